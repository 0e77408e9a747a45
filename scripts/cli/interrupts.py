"""Ctrl-C or SIGTERM while doit loads the plan or goes between tasks: one line and out, not
Python's traceback from wherever the import had got to. dodo.py installs this before it
imports anything else of the kit (importing the kit is most of a start-up); tasks.action()
takes the signals over for the work itself."""

from __future__ import annotations

import signal
import sys
import threading

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
