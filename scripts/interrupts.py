"""Ctrl-C or SIGTERM while doit loads the plan or goes between tasks: one line and out, not
Python's traceback from wherever the import had got to. dodo.py installs this before it
imports anything else of the kit (importing the kit is most of a start-up); tasks.action()
takes the signals over for the work itself."""

from __future__ import annotations

import signal
import sys
import threading

from .errors import INTERRUPTED


def _quiet(signum, frame):
    how = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    print(f"undoit: interrupted ({how}) outside any task's work: nothing was left half done",
          file=sys.stderr, flush=True)
    raise SystemExit(INTERRUPTED)


def quiet() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _quiet)
        signal.signal(signal.SIGTERM, _quiet)
