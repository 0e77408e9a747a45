"""Write the intent before the act: what a run is about to change, kept durably until done.

A backup stops the services that write a volume while it exports it. Killed in that
moment (SIGKILL, a reboot, a closed terminal), it leaves them stopped, and a later
backup would take "stopped" for the stack's normal state. So before it stops anything
it records which services it stops, and removes the record once they are back. The
next kit command that takes the lock finds what a dead run left unfinished and puts it
right first, saying what it did in one line each. Staging folders of a killed restore
are swept the same way, and so are a killed rehearsal's sandbox (recorded before its
first part is made: sandboxes.py) and the sets a killed backup left without a manifest.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .durable import write_json
from .snapshots import JOURNAL


def _dir(snapshots_dir: Path) -> Path:
    return Path(snapshots_dir) / JOURNAL


class Entry:
    """One run's record of intent, rewritten durably at each step that changes what a
    dead run would leave behind."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data

    def update(self, **details) -> None:
        self.data.update(details)
        write_json(self.path, self.data)


def begin(snapshots_dir: Path, project: str, what: str, **details) -> Entry:
    """A new record of intent, on the disk before the caller does anything it names."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    entry = Entry(_dir(snapshots_dir) / f"{stamp}-{os.getpid()}.json",
                  {"project": project, "what": what, "pid": os.getpid(), "host": socket.gethostname(),
                   "pid_started": _process_start(os.getpid()),
                   "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), **details})
    entry.update()
    return entry


def _process_start(pid: int) -> str | None:
    """When the process started, in clock ticks since boot (/proc/<pid>/stat, field 22):
    with the pid, it names one process, never a later one given the same pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_alive(data: dict) -> bool:
    """Whether the process that wrote a record still runs (one on another host: assumed so)."""
    if data.get("host") != socket.gethostname():
        return True
    pid = data.get("pid")
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True
    started = _process_start(int(pid))
    return data.get("pid_started") is None or started == data["pid_started"]


@contextmanager
def intent(snapshots_dir: Path, project: str, what: str, **details):
    """Record the intent for the block; the record goes when the block completes. If the
    block fails or is interrupted (or the process is killed) the record stays, and the
    next run checks what is left to put right: repairs are idempotent."""
    entry = begin(snapshots_dir, project, what, **details)
    yield entry
    if not entry.data.get("replacing"):  # a refill that failed midway: the next run finishes it
        entry.path.unlink(missing_ok=True)


def replacing(entry: Entry | None, key: str, name: str, s, devices: bool = False,
              parking: dict | None = None) -> None:
    """Volume `name`'s contents are about to be destroyed to put set s's `key` in their
    place: until replaced(), a dead run leaves a half-filled volume the next run refills.
    parking: {"from", "to", "inode"}: a swap is about to move the contents it replaces
    (the folder with that inode) from `from` to `to`, a safety set's folder."""
    if entry is not None:
        entry.update(replacing={"key": key, "name": name, "set": str(s.path), "devices": devices,
                                **({"parking": parking} if parking else {})})


def replaced(entry: Entry | None) -> None:
    if entry is not None:
        entry.update(replacing=None)


def cleanup(fn, what: str, interrupted: bool = True):
    """Run fn, the putting-back on the way out of a run; when the run was interrupted,
    say so first (it can take a while), and a second Ctrl-C skips it, saying what that
    leaves for the next run."""
    try:
        if interrupted:  # in the try: a second Ctrl-C right after the line is caught too
            print(f"interrupted: {what} first (Ctrl-C again skips it)", flush=True)
        return fn()
    except KeyboardInterrupt:
        print(f"interrupted again: {what} skipped; the journal keeps what is unfinished, and the next "
              "kit command puts it right", flush=True)
        raise


def unfinished(snapshots_dir: Path, project: str, live_rehearsals: bool = True) -> list[tuple[Path, dict]]:
    """Records a dead run left (the caller holds the lock: no living backup, rollback or
    undo owns them; a rehearsal holds it shared, so its record may be a living one's:
    live_rehearsals=False leaves those out)."""
    base = _dir(snapshots_dir)
    out = []
    for path in sorted(base.glob("*.json")) if base.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # torn before its rename: it never took effect
            continue
        if data.get("project") == project and (live_rehearsals or not _live_rehearsal(data)):
            out.append((path, data))
    return out


def _live_rehearsal(data: dict) -> bool:
    return data.get("what") == "rehearsal" and owner_alive(data)
