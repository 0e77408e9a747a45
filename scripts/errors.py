"""The one domain error: an expected failure the user can act on."""


class UndoitError(Exception):
    """Something went wrong that the user can fix; the message says what and what next.

    Tasks turn it into one line and a non-zero exit (2 for a bad plan, else 1);
    anything else is a bug and keeps its traceback.
    """

    def __init__(self, message: str, *, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
