"""Make written data survive a power cut before anything relies on it.

A set's manifest declares its archives complete, and a restore's swap lets the old
contents of a volume go: each happens only after what it vouches for is on the disk,
not in the page cache. One syncfs for a whole folder's filesystem costs one flush,
where an fsync per file of a restored tree would cost one each.
"""

from __future__ import annotations

import ctypes
import os
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


def sync_dir(path: Path) -> None:
    """The folder's own entries (a rename into it, a removal) on the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
