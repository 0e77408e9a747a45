"""Whether a folder's filesystem can share a file's blocks with a copy (a reflink:
btrfs, XFS made with reflink=1): detection only, no copy is made here yet.

The filesystem's type (statfs) says whether to try; a probe file cloned with the
FICLONE ioctl says whether it works there, on this kernel, between these two folders
(XFS without reflink=1, or two mounts, refuse it): never guessed from the type alone.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import uuid
from pathlib import Path

FICLONE = 0x40049409  # _IOW(0x94, 9, int)

# statfs f_type of the filesystems that can clone a file's extents
REFLINK_TYPES = {0x9123683E: "btrfs", 0x58465342: "xfs", 0x2FC12FC1: "zfs", 0x5346544E: "ntfs", 0xCA451A4E: "bcachefs"}
OTHER_TYPES = {0xEF53: "ext2/3/4", 0x01021994: "tmpfs", 0x794C7630: "overlay", 0x6969: "nfs"}


class _StatFs(ctypes.Structure):
    # struct statfs on 64-bit Linux: f_type first, the rest is not read here
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 112)]


def filesystem(path: Path) -> str:
    """The filesystem type's name at path (statfs), or its magic number in hex."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = _StatFs()
    if libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
    kind = buf.f_type & 0xFFFFFFFF
    return REFLINK_TYPES.get(kind) or OTHER_TYPES.get(kind) or hex(kind)


def reflinks(src: Path, dst: Path) -> bool:
    """Whether a file in folder src can be cloned into folder dst: a filesystem that
    may, then one probe file of 4 KiB cloned (removed again, whatever happens)."""
    try:
        if filesystem(src) not in REFLINK_TYPES.values() or filesystem(dst) not in REFLINK_TYPES.values():
            return False
    except OSError:
        return False
    name = f".undoit-cow-probe-{uuid.uuid4().hex[:10]}"
    a, b = Path(src) / name, Path(dst) / f"{name}-clone"
    try:
        with open(a, "xb") as f:
            f.write(b"\0" * 4096)
        with open(a, "rb") as fa, open(b, "xb") as fb:
            fcntl.ioctl(fb.fileno(), FICLONE, fa.fileno())
        return True
    except OSError:
        return False
    finally:
        for p in (a, b):
            try:
                os.unlink(p)
            except OSError:
                pass
