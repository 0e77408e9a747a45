"""One backup or rollback at a time: an OS lock (flock) on snapshots/.lock, naming its holder.

The kernel holds the lock for the process and drops it when the process dies, however
it dies: no stale lock to take over, no window between creating a lock file and writing
it in which a second process could take it for stale. The file itself is never removed;
it only says who holds it (pid, host, command) for the refusal. A rehearsal holds the
shared form: it excludes live backups and rollbacks, not other rehearsals.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

from ..errors import UndoitError


def path_of(snapshots_dir: Path) -> Path:
    """The lock of the runs of one snapshots folder."""
    return Path(snapshots_dir) / ".lock"


def _take(path: Path, what: str, shared: bool) -> int:
    """The lock's file descriptor, locked; UndoitError naming the holder, without waiting."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = _holder(path)
        raise UndoitError(
            f"another {holder.get('command', 'run')} holds the lock {path}: pid {holder.get('pid', '?')} "
            f"on {holder.get('host', '?')} ({holder.get('argv') or 'doit'}); wait for it to finish"
        ) from None
    # the holder's details, for the refusal of the next one (shared holders: the latest)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": what,
          "argv": " ".join(sys.argv[1:])[:200]}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    return fd


@contextmanager
def held(path: Path, what: str, shared: bool = False):
    """Hold the lock at path for the block (shared: alongside other shared holders)."""
    fd = _take(path, what, shared)
    try:
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextmanager
def held_if_free(path: Path, what: str):
    """The lock, exclusively, for the block if no one holds it: yields None; else, at once,
    who holds it (one line), and the block runs without it."""
    try:
        fd = _take(path, what, False)
    except UndoitError as busy:
        yield str(busy)
        return
    try:
        yield None
    finally:
        os.close(fd)


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
