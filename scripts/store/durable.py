"""Make written data survive a power cut before anything relies on it.

A set's manifest declares its archives complete, and a restore's swap lets the old
contents of a volume go: each happens only after what it vouches for is on the disk,
not in the page cache. One syncfs for a whole folder's filesystem costs one flush,
where an fsync per file of a restored tree would cost one each.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
from pathlib import Path

_libc = None


def sync_filesystem(path: Path) -> None:
    """Flush every dirty page of the filesystem holding path (syncfs; sync where the C
    library has none)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        syncfs = getattr(_libc, "syncfs", None)
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def write_out(paths, limit: float) -> None:
    """Write out the dirty pages of the filesystems holding paths (each filesystem once),
    waiting at most limit seconds in all: for speed only (a later unmount would write
    them inside a service's stop), nothing relies on it. In a thread: a signal is handled
    at once, not only after the flush returns, and a filesystem others keep writing to
    does not hold the caller past limit."""
    def flush():
        seen = set()
        for path in paths:
            try:
                device = os.stat(path).st_dev
                if device not in seen:
                    seen.add(device)
                    sync_filesystem(path)
            except OSError:
                pass  # gone, or not ours to open: the unmount writes them, as before

    worker = threading.Thread(target=flush, daemon=True)
    worker.start()
    worker.join(limit)


def sync_dir(path: Path) -> None:
    """The folder's own entries (a rename into it, a removal) on the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: dict) -> None:
    """A small record (journal entry, run record) replaced whole and on the disk: temp
    file (owner only), fsync, rename, fsync of the folder. A kill leaves old or new."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    sync_dir(path.parent)
