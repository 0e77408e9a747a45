"""Ctrl-C or SIGTERM while doit loads the plan or goes between tasks: one line and out, not
Python's traceback from wherever the import had got to. dodo.py installs this before it
imports anything else of the kit (importing the kit is most of a start-up); a task's
action takes the signals over for the work itself (raised_in_work)."""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

from ..errors import INTERRUPTED


def exit_with(message: str, code: int):
    """End doit with the kit's own exit code (errors.py): doit's runner lets SystemExit
    through after closing its state, where a failed task would always exit 1."""
    print(f"undoit: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def _quiet(signum, frame):
    how = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    exit_with(f"interrupted ({how}) outside any task's work: nothing was left half done", INTERRUPTED)


def quiet() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _quiet)
        signal.signal(signal.SIGTERM, _quiet)


# --- a task's own work: signals raised where the work can clean up ---------------------
_pending: list[int] = []


def terminated(signum, frame):
    """SIGTERM (a closed terminal, `docker stop`, systemd) ends the work like Ctrl-C: through
    every finally that brings services back, not mid-step with them left stopped."""
    raise KeyboardInterrupt(f"signal {signum}")


def redeliver(unraisable):
    """A signal's KeyboardInterrupt raised where Python cannot raise (an at-fork hook of
    logging while sh forks, a finaliser) is printed as "Exception ignored" and lost: the
    run would go on as if never interrupted. Raise it again shortly instead, from an
    alarm (a call that cannot block here, where a signal would be lost once more): it
    lands at an ordinary line and the run ends through its finally blocks."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        text = str(unraisable.exc_value)
        _pending[:] = [int(text.split()[1]) if text.startswith("signal ") else signal.SIGINT]
        try:
            signal.signal(signal.SIGALRM, _alarm)
            signal.setitimer(signal.ITIMER_REAL, 0.001)
            return
        except ValueError:  # not the main thread: nothing to do but say it
            pass
    sys.__unraisablehook__(unraisable)


def pending() -> KeyboardInterrupt | None:
    """The interruption a signal that landed where it could not be raised would have
    raised (SIGINT: Python's own), if one did."""
    if not _pending:
        return None
    return KeyboardInterrupt(f"signal {_pending[0]}" if _pending[0] != signal.SIGINT else "")


def _alarm(signum, frame):
    f = frame
    while f is not None:  # fired before redeliver returned (a loaded machine): raised there,
        if f.f_code is redeliver.__code__:  # it would be "ignored" once more; try again shortly
            signal.setitimer(signal.ITIMER_REAL, 0.001)
            return
        f = f.f_back
    raise pending()


@contextmanager
def raised_in_work():
    """For the block (a task's work, in the main thread): SIGTERM and Ctrl-C raise
    KeyboardInterrupt, and one that lands where Python cannot raise is raised again."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminated) if main else None
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler) if main else None
    hook, sys.unraisablehook = sys.unraisablehook, redeliver
    _pending.clear()
    try:
        yield
    finally:
        if _pending and main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            _pending.clear()
        sys.unraisablehook = hook
        if main:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
