"""A task's action: the kit's work, wrapped so that it ends the way a user can act on.

An expected failure (UndoitError) is one line and its exit code; a bug keeps its
traceback; Ctrl-C or SIGTERM runs every finally on the way out (services come back) and
then ends with one line; everything printed, and that line, is masked by the plan's
secrets (output/redact.py)."""

from __future__ import annotations

import traceback

from doit.exceptions import TaskError, TaskFailed

from .. import errors
from ..errors import UndoitError
from ..output import redact
from . import interrupts


def action(fn, *args, **kwargs):
    """A doit python-action calling fn(*args, **kwargs); what doit hands the action (the
    values of the tasks named in its `getargs`) goes to fn as keyword arguments too."""

    def run(**given):
        try:
            with interrupts.raised_in_work(), redact.task_output() as mask:
                try:
                    result = fn(*args, **kwargs, **given)
                    late = interrupts.pending()
                    if late is not None:  # interrupted where it could not be raised, done before the alarm
                        raise late
                except UndoitError as err:
                    if err.exit_code == errors.FAILED:
                        return TaskFailed(mask(str(err)))
                    interrupts.exit_with(mask(str(err)), err.exit_code)
                except Exception:  # a bug: its traceback, masked (doit would print the message as it is)
                    return TaskError(mask(traceback.format_exc()))
        except KeyboardInterrupt as err:
            # every finally on the way out has run: one line, no traceback
            how = "SIGTERM" if "signal" in str(err) else "Ctrl-C"
            interrupts.exit_with(f"interrupted ({how}); whatever it left unfinished, the next kit command "
                                 "(or `doit repair`) puts right first", errors.INTERRUPTED)
        return result if isinstance(result, (dict, TaskFailed)) else None

    run.__name__ = getattr(fn, "__name__", "action")
    run.__doc__ = getattr(fn, "__doc__", None)
    return run
