"""Listing entries: what a volume holds, one entry per path (type, size, mode, owner,
mtime to the nanosecond, link target, content digest), as the archive, the listing
files and a walk of the volume all describe it. No tar, no zstd, no Docker here.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Iterable, Iterator

# listing entry types
TYPES = {
    stat.S_IFDIR: "d",
    stat.S_IFREG: "f",
    stat.S_IFLNK: "l",
    stat.S_IFIFO: "p",
    stat.S_IFCHR: "c",
    stat.S_IFBLK: "b",
}


class _cached:
    """functools.cached_property without its lock: Python 3.11 takes one at each first
    access, a fifth of a volume listing's time. A listing is built by one thread."""

    def __init__(self, fn):
        self.fn, self.name, self.__doc__ = fn, fn.__name__, fn.__doc__

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)  # found there from now on, before this
        return value


@dataclass(frozen=True, order=True)
class Entry:
    """One file of a volume as the listing records it (hard links count as files)."""

    path: bytes  # relative, b"." for the volume's root
    type: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    target: bytes = b""  # symlink target
    # sha256 (hex) of a regular file's content, computed as the archive streams; "" in a
    # metadata walk, which reads no file
    digest: str = ""

    @property
    def meta(self) -> tuple:
        """Everything but the content digest: what a metadata walk can tell."""
        return (self.path, self.type, self.size, self.mode, self.uid, self.gid, self.mtime_ns, self.target)

    def line(self) -> str:
        return self.encoded.decode("utf-8", "surrogatepass")

    @_cached
    def encoded(self) -> bytes:
        """The listing line (JSON, no newline) as bytes. Cached: one listing is hashed,
        written and fingerprinted, and a volume can hold millions of entries."""
        p, t = self.path, self.target
        tail = b', "%s"]' % self.digest.encode() if self.digest else b"]"
        if _PLAIN(p) and _PLAIN(t):
            # what json.dumps gives for names that need no escaping, 5x faster
            return b'["%s", "%s", %d, "%s", %d, %d, %d, "%s"%s' % (
                p, self.type.encode(), self.size, oct(self.mode).encode(), self.uid, self.gid,
                self.mtime_ns, t, tail)
        fields = [show_path(p), self.type, self.size, oct(self.mode), self.uid, self.gid, self.mtime_ns, show_path(t)]
        return json.dumps(fields + ([self.digest] if self.digest else [])).encode("utf-8", "surrogatepass")

    @_cached
    def meta_encoded(self) -> bytes:
        """The listing line without the content digest (what fingerprints are made of)."""
        # `, "<digest>"]` closes the line of an entry with a digest, both ways encoded writes it
        return self.encoded[:-(len(self.digest) + 5)] + b"]" if self.digest else self.encoded

    @classmethod
    def from_line(cls, line: str) -> "Entry":
        p, t, size, mode, uid, gid, mtime, target, *digest = json.loads(line)
        return cls(unshow_path(p), t, size, int(mode, 8), uid, gid, mtime, unshow_path(target), *digest[:1])


_PLAIN = re.compile(rb'[ !#-\[\]-~]*').fullmatch  # printable ASCII without '"' and '\\'


BY_PATH = attrgetter("path")  # paths are unique in a listing: sorting by them is enough


def show_path(raw: bytes) -> str:
    # surrogateescape keeps non-UTF-8 bytes invertible through JSON
    return raw.decode("utf-8", "surrogateescape").encode("utf-8", "surrogatepass").decode(
        "utf-8", "surrogatepass"
    )


def unshow_path(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def listing_bytes(entries: Iterable[Entry]) -> bytes:
    """The listing file's content: one line per entry, sorted by path."""
    return b"".join(e.encoded + b"\n" for e in sorted(entries, key=BY_PATH))


def walk(root: Path) -> Iterator[tuple[bytes, os.stat_result]]:
    """(relative path, lstat) for the root and everything below, parents first, sorted.

    A folder walked while its services run (a pre-copy's first pass, its size) loses
    entries between the listing of a folder and their lstat: what is gone by then is
    not there, and is left out (a folder gone, or no folder any more, with all it held)."""
    root_b = os.fsencode(root)
    yield b".", os.lstat(root_b)
    stack = [b""]
    name_of = attrgetter("name")
    while stack:
        rel = stack.pop()
        prefix = rel + b"/" if rel else b""
        try:
            with os.scandir(os.path.join(root_b, rel) if rel else root_b) as it:
                found = sorted(it, key=name_of)
        except (FileNotFoundError, NotADirectoryError):
            if not rel:
                raise  # the root itself: nothing to walk
            continue
        subdirs = []
        for e in found:
            try:
                st = e.stat(follow_symlinks=False)  # an lstat of e.path, which scandir joined in C
            except FileNotFoundError:
                continue
            if stat.S_ISSOCK(st.st_mode):
                continue  # sockets are runtime state; tar cannot hold them
            child = prefix + e.name
            yield child, st
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(child)
        stack.extend(reversed(subdirs))


def entry_of(rel: bytes, st: os.stat_result, root: Path) -> Entry:
    kind = TYPES[stat.S_IFMT(st.st_mode)]
    target = os.readlink(os.path.join(os.fsencode(root), rel)) if kind == "l" else b""
    return Entry(
        path=rel,
        type=kind,
        size=st.st_size if kind == "f" else 0,
        mode=stat.S_IMODE(st.st_mode) if kind != "l" else 0,
        uid=st.st_uid,
        gid=st.st_gid,
        mtime_ns=st.st_mtime_ns,
        target=target,
    )


def parse_ns(text: str) -> int:
    """'1700000000.123456789' (any number of decimals) -> integer nanoseconds."""
    if text.startswith("-"):  # before 1970: the decimal is the whole (negative) value
        return -parse_ns(text[1:])
    sec, _, frac = text.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)
