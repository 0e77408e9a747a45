"""The one domain error: an expected failure the user can act on, and the exit codes."""

# Exit codes of `doit <task>`, stable for CI scripts (README: "Exit codes").
FAILED = 1  # the task failed; its one line says what (also: a backup, offsite, prune...)
PLAN = 2  # the plan file or a parameter is wrong; nothing was done
# 3 is doit's own: an unknown task or option
NO_BACKUP = 4  # no verified backup to restore: the rollback refused before changing anything
ROLLBACK_FAILED = 5  # the rollback ran and a step or check failed; services were brought back
DRILL_FAILED = 6  # a rehearsal drill failed (the live stack was not touched)
PUT_BACK_FAILED = 7  # a rollback failed and putting back the state from before it failed too
INTERRUPTED = 130  # Ctrl-C or SIGTERM; the next kit command finishes what it left


class UndoitError(Exception):
    """Something went wrong that the user can fix; the message says what and what next.

    Tasks turn it into one line and its exit code (FAILED unless it says otherwise);
    anything else is a bug and keeps its traceback.
    """

    def __init__(self, message: str, *, exit_code: int = FAILED):
        super().__init__(message)
        self.exit_code = exit_code
