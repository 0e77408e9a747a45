"""A private copy of a live folder, taken in two passes: a bulk copy while it is in use,
then, while nothing writes, only what changed since. No Docker here.

The first pass walks the folder (lstat of every path, recorded in a temporary file) and
then copies it whole with a GNU tar pipe (the same fidelity as an archive: numeric
owners, setuid bits, symlinks, hard links, FIFOs, nanosecond mtimes). The catch-up walks
it again and copies anew every path whose lstat moved: the inode and its ctime, which
no program can set back (a write, a truncate, a chmod, a rename onto it, a new hard link
all move it), then size, mtime, mode and owner. A path whose ctime was within MARGIN of
its first stat is never trusted (a timestamp is as coarse as the kernel's tick: a write
right after the stat, in the same tick, leaves it unchanged), and neither is a file with
more than one hard link (its paths are re-linked as one). What the catch-up leaves is
the folder as it was during the catch-up, byte for byte.
"""

from __future__ import annotations

import marshal
import os
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from ..errors import UndoitError
from . import gnutar
from .archive import CHUNK
from .entries import entry_of, walk
from .listings import Writer

MARGIN_NS = 1_000_000_000  # far above any filesystem's timestamp granularity


def _key(rel: bytes) -> tuple[tuple[bytes, ...], bytes]:
    """walk()'s order: a folder's entries by name, listed together, then its subfolders'
    (depth first): the folder's path, then the name."""
    if rel == b".":
        return (), b""
    parent, _, name = rel.rpartition(b"/")
    return tuple(parent.split(b"/")) if parent else (), name


def _sig(st: os.stat_result) -> tuple:
    return (st.st_mode, st.st_ino, st.st_ctime_ns, st.st_mtime_ns, st.st_size, st.st_uid, st.st_gid)


@dataclass
class FirstPass:
    """What the first pass saw: one record per path, in walk order, in a temporary file."""

    records: BinaryIO
    bytes: int  # of regular files, as the walk saw them

    def __iter__(self) -> Iterator[tuple[bytes, tuple | None]]:
        return _load(self.records)

    def close(self) -> None:
        self.records.close()


@dataclass
class CatchUp:
    """What the catch-up did, and the listing of the folder as it walked it."""

    copied: int  # paths copied again (new or changed)
    gone: int  # paths removed (gone since the first pass)
    bytes: int  # of the files copied again
    listing: Writer  # finished by the caller, once nothing waits on it


def first_pass(live: Path, staging: Path, progress: Callable[[int], None] | None = None) -> FirstPass:
    """Record every path's lstat, then copy live into staging (an empty folder)."""
    total = 0
    with tempfile.TemporaryFile(prefix="undoit-precopy-") as seen:
        for rel, st in walk(live):
            trusted = st.st_ctime_ns < time.time_ns() - MARGIN_NS
            marshal.dump((rel, _sig(st) if trusted else None), seen)
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
        _copy_tree(live, staging, progress)
        # what tar copied that the walk never saw (made between the two) is in staging
        # too: recorded untrusted, so the catch-up copies it again or removes it
        records = tempfile.TemporaryFile(prefix="undoit-precopy-")
        copied = ((rel, None) for rel, _ in walk(staging))
        for rel, walked, _ in _merge(_load(seen), copied):
            marshal.dump(walked or (rel, None), records)
    return FirstPass(records, total)


def _load(f: BinaryIO) -> Iterator[tuple[bytes, tuple | None]]:
    f.seek(0)
    while True:
        try:
            yield marshal.load(f)
        except EOFError:
            return


def _merge(xs, ys) -> Iterator[tuple[bytes, tuple | None, tuple | None]]:
    """Two streams of (path, ...) in walk order, side by side: (path, x or None, y or None)."""
    x, y = next(xs, None), next(ys, None)
    while x is not None or y is not None:
        kx = _key(x[0]) if x is not None else None
        ky = _key(y[0]) if y is not None else None
        if ky is None or (kx is not None and kx < ky):
            yield x[0], x, None
            x = next(xs, None)
        elif kx is None or ky < kx:
            yield y[0], None, y
            y = next(ys, None)
        else:
            yield x[0], x, y
            x, y = next(xs, None), next(ys, None)


def _copy_tree(live: Path, staging: Path, progress) -> None:
    """GNU tar | GNU tar: a file that changes while it is read is copied again by the
    catch-up (its ctime moved), so tar's "file changed as we read it" is no failure."""
    tar = gnutar.gnu_tar()
    if tar is None:
        raise UndoitError("a pre-copy needs GNU tar")
    create = subprocess.Popen([tar, "--create", "--file=-", f"--directory={live}", "--format=posix",
                               "--numeric-owner", "--warning=no-file-changed", "--warning=no-file-removed",
                               "--warning=no-file-ignored", *gnutar.TAR_RECORDS, "."],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with tempfile.TemporaryFile() as errors:
        extract = subprocess.Popen(gnutar.extract_argv(staging), stdin=subprocess.PIPE, stderr=errors)
        try:
            while chunk := create.stdout.read(CHUNK):
                extract.stdin.write(chunk)
                if progress:
                    progress(len(chunk))
        except BrokenPipeError:
            pass  # the extraction stopped early: its exit code says why
        finally:
            for pipe in (create.stdout, extract.stdin):
                try:
                    pipe.close()
                except BrokenPipeError:
                    pass
            made, err = create.wait(), create.stderr.read().decode(errors="replace").strip()
            create.stderr.close()
            taken = extract.wait()
        errors.seek(0)
        err_x = errors.read().decode(errors="replace").strip()
    if made not in (0, 1):
        raise UndoitError(f"the pre-copy of {live} failed (tar exit {made}): {(err or '?').splitlines()[-1]}")
    if taken != 0:
        raise UndoitError(f"the pre-copy into {staging} failed (tar exit {taken}): "
                          f"{(err_x or '?').splitlines()[-1]}")


def catch_up(live: Path, staging: Path, first: FirstPass) -> CatchUp:
    """Make staging what live holds now (nothing may write to live meanwhile): copy the
    paths new or changed since the first pass, remove those gone, then set every
    folder's owner, mode and mtime (deepest first: a change inside moves them).

    Nothing is ever written through a path of staging that the catch-up has not seen
    to be a real folder: a symlink tar copied where the walk saw a folder is replaced,
    and what the first pass recorded below a path made anew is not looked up there."""
    base, live_b = os.fsencode(staging), os.fsencode(live)
    done = CatchUp(0, 0, 0, Writer())
    old = iter(first)
    prev = next(old, None)
    anew: set[bytes] = set()  # paths made anew or removed in staging: nothing below them is looked up
    folders: list[tuple[bytes, os.stat_result]] = []
    links: dict[int, bytes] = {}
    for rel, st in walk(live):
        done.listing.add(entry_of(rel, st, live))
        k, seen = _key(rel), None
        while prev is not None and _key(prev[0]) <= k:
            if _below(prev[0], anew):
                pass
            elif prev[0] == rel:
                seen = prev
            else:
                done.gone += _remove(os.path.join(base, prev[0]))
                anew.add(prev[0])  # and whatever it held
            prev = next(old, None)
        dst = os.path.join(base, rel) if rel != b"." else base
        if stat.S_ISDIR(st.st_mode):
            folders.append((dst, st))
            if not _is_folder(dst):  # new, or something else in staging
                _remove(dst)
                os.mkdir(dst, 0o700)
                anew.add(rel)
            continue
        if seen is not None and seen[1] == _sig(st) and st.st_nlink == 1:
            continue  # untouched since the first pass copied it
        _remove(dst)
        anew.add(rel)  # a folder there before: what it held went with it
        _copy(os.path.join(live_b, rel), dst, st, links, base, rel)
        done.copied += 1
        done.bytes += st.st_size if stat.S_ISREG(st.st_mode) else 0
    for rel, _ in chain([prev] if prev else [], old):
        if not _below(rel, anew):
            done.gone += _remove(os.path.join(base, rel))
            anew.add(rel)
    for dst, st in reversed(folders):
        _set_attrs(dst, st)
    return done


def _below(rel: bytes, paths: set[bytes]) -> bool:
    """Whether a folder above rel is in paths."""
    i = rel.find(b"/")
    while paths and i != -1:
        if rel[:i] in paths:
            return True
        i = rel.find(b"/", i + 1)
    return False


def _is_folder(path: bytes) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _remove(path: bytes) -> int:
    """Remove whatever is at path (a folder with all it holds; a symlink, never what it
    points to); 1 if something was there."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)
    return 1


def _copy(src: bytes, dst: bytes, st: os.stat_result, links: dict[int, bytes], base: bytes, rel: bytes) -> None:
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFREG:
        if st.st_nlink > 1:
            first = links.setdefault(st.st_ino, rel)
            if first != rel:  # another path of the same file: one file in staging too
                os.link(os.path.join(base, first), dst)
                return
        _copy_file(src, dst, st)
    elif kind == stat.S_IFLNK:
        os.symlink(os.readlink(src), dst)
    elif kind == stat.S_IFIFO:
        os.mkfifo(dst, 0o600)
    elif kind in (stat.S_IFCHR, stat.S_IFBLK):
        os.mknod(dst, 0o600 | kind, st.st_rdev)
    _set_attrs(dst, st)


def _copy_file(src: bytes, dst: bytes, st: os.stat_result) -> None:
    """The file the walk saw, by its inode: a path swapped for a symlink since (by a
    process the hold did not stop) is refused, never followed out of the volume."""
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb"):  # closes fd
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise UndoitError(f"{os.fsdecode(src)} changed while its services were held still (something else "
                              "writes to the volume): nothing was backed up")
        with open(dst, "xb") as fo:
            while os.sendfile(fo.fileno(), fd, None, CHUNK * 8):
                pass


def _set_attrs(dst: bytes, st: os.stat_result) -> None:
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):  # after the chown, which clears setuid bits
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


