"""Copy-on-write on the host: whether a folder's filesystem can share a file's blocks
with a copy (a reflink: btrfs, XFS made with reflink=1), a folder cloned so, and what
disk a clone pins once what it was cloned from moves on.

The filesystem's type (statfs) says whether to try; a probe file cloned with the
FICLONE ioctl says whether it works there, on this kernel, between these two folders
(XFS without reflink=1, or two mounts, refuse it): never guessed from the type alone.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import stat
import struct
import subprocess
import uuid
from pathlib import Path

from ..errors import UndoitError
from .entries import walk

FICLONE = 0x40049409  # _IOW(0x94, 9, int)
FS_IOC_FIEMAP = 0xC020660B  # _IOWR('f', 11, struct fiemap)
FIEMAP_FLAG_SYNC, FIEMAP_EXTENT_LAST, FIEMAP_EXTENT_SHARED = 0x1, 0x1, 0x2000  # SYNC: data not yet on the disk has no extent
_FIEMAP_HEAD, _FIEMAP_EXTENT = struct.Struct("=QQLLLL"), struct.Struct("=QQQQQLLLL")
_EXTENTS = 256  # asked for per ioctl

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


def clone_tree(src: Path, dst: Path) -> None:
    """dst (absent, or an empty folder) becomes a copy of folder src whose files share
    src's blocks: GNU cp, which clones each file (FICLONE) and keeps owners, modes,
    nanosecond mtimes, hard links, symlinks, FIFOs and device nodes as an archive would.
    --reflink=always: a file it cannot clone is an error, never a silent full copy (the
    caller counted on a copy that costs no time and no room). dst is left half made on
    failure: the caller removes it."""
    if os.path.lexists(dst) and not (os.path.isdir(dst) and not os.path.islink(dst) and not os.listdir(dst)):
        # cp would merge into it: what is there already would pass for part of the clone
        raise UndoitError(f"the copy-on-write clone of {src} was to go to {dst}, which is not empty: refused")
    cp = shutil.which("cp")
    if cp is None:
        raise UndoitError("a copy-on-write clone needs cp (GNU coreutils)")
    res = subprocess.run([cp, "--archive", "--reflink=always", "--no-target-directory", "--", str(src), str(dst)],
                         capture_output=True, text=True)
    if res.returncode:
        raise UndoitError(f"the copy-on-write clone of {src} failed: "
                          f"{(res.stderr.strip() or f'cp exit {res.returncode}').splitlines()[-1]}")


def pinned_bytes(folder: Path) -> tuple[int, int]:
    """(bytes of the regular files under folder, bytes of their extents no other file
    shares): what removing folder would free now. A clone pins nothing at first; each
    block its source rewrites since moves from the second figure's complement into it.
    Read from the filesystem's own extent map (FIEMAP), never assumed."""
    total = alone = 0
    seen: set[int] = set()
    for rel, st in walk(folder):
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0 or st.st_ino in seen:
            continue  # a file with more hard links is counted once
        seen.add(st.st_ino)
        total += st.st_size
        with open(os.path.join(os.fsencode(folder), rel), "rb") as f:
            alone += _unshared(f.fileno(), st.st_size)
    return total, alone


def _unshared(fd: int, size: int) -> int:
    start, alone = 0, 0
    while start < size:
        buf = bytearray(_FIEMAP_HEAD.pack(start, size - start, FIEMAP_FLAG_SYNC, 0, _EXTENTS, 0) + bytes(_FIEMAP_EXTENT.size * _EXTENTS))
        fcntl.ioctl(fd, FS_IOC_FIEMAP, buf)
        mapped = _FIEMAP_HEAD.unpack_from(buf)[3]
        if mapped == 0:
            break  # the rest is a hole
        for i in range(mapped):
            logical, _phys, length, _r1, _r2, flags, *_ = _FIEMAP_EXTENT.unpack_from(
                buf, _FIEMAP_HEAD.size + i * _FIEMAP_EXTENT.size)
            if not flags & FIEMAP_EXTENT_SHARED:
                alone += length
            start = logical + length
            if flags & FIEMAP_EXTENT_LAST:
                return alone
    return alone
