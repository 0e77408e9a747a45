"""One backup or rollback at a time: a lock file naming its holder (pid, host, command)."""

from __future__ import annotations

import json
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

from .errors import UndoitError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def held(path: Path, what: str):
    """Hold the lock at path for the block; a lock whose process is gone is taken over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": what,
          "argv": " ".join(sys.argv[1:])[:200]}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, ValueError):
                holder = {}
            same_host = holder.get("host") == socket.gethostname()
            if holder and same_host and not _alive(int(holder.get("pid", 0))):
                path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            if not holder:
                path.unlink(missing_ok=True)  # half-written by a process killed mid-write
                continue
            raise UndoitError(
                f"another {holder.get('command', 'run')} holds the lock {path}: pid {holder.get('pid')} "
                f"on {holder.get('host')} ({holder.get('argv') or 'doit'}); wait for it, or remove the "
                "file if that process is gone on that host"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me))
        break
    else:
        raise UndoitError(f"could not take the lock {path}")
    try:
        yield
    finally:
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass
