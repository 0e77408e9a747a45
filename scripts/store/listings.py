"""Listings as sorted files on disk: built from entries in any order, read back as a stream.

A volume of a million small files has a listing of about 150 MB as lines and 450 MB as
Entry objects; a restore compares two of them. Held in memory that was most of a
rollback's peak RSS, so a listing is built here in sorted runs of RUN entries spilled to
a temporary file, merged into one sorted file, and compared by walking two of them side
by side: memory stays flat whatever the number of files.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import struct
import tempfile
import weakref
from itertools import zip_longest
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from .entries import BY_PATH, Entry, listing_bytes, show_path

RUN = 50_000  # entries sorted in memory before they go to disk (~15 MiB)
_RECORD = struct.Struct(">IIqH")  # path length, line length, file size, digest tail length


class Listing:
    """A listing file sorted by path, one JSON line per entry: iterate it, count it, digest
    it. Made by Writer (a temporary file, deleted with the object) or from a set's file."""

    def __init__(self, path: Path, count: int, digest: str, root: Entry | None,
                 total: int | None = None, fingerprint: str | None = None, fd: int | None = None):
        self.path, self.count, self.digest, self.root = path, count, digest, root
        self._total, self._fingerprint = total, fingerprint
        if fd is not None:  # a deleted temporary file, open until this object goes
            weakref.finalize(self, os.close, fd)

    @classmethod
    def of_file(cls, path: Path) -> "Listing":
        """A listing file as written into a set (one pass: its checksum, count and root)."""
        sha, count, root = hashlib.sha256(), 0, None
        with open(path, "rb") as f:
            for line in f:
                sha.update(line)
                if line.strip():
                    count += 1
                    if line.startswith(b'[".", '):  # the root: no other path encodes as "."
                        root = _parse(line)
        return cls(Path(path), count, sha.hexdigest(), root)

    def lines(self) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            for line in f:
                if line.strip():
                    yield line

    def __iter__(self) -> Iterator[Entry]:
        return (_parse(line) for line in self.lines())

    def __len__(self) -> int:
        return self.count

    def __eq__(self, other) -> bool:
        if isinstance(other, Listing):
            return self.digest == other.digest
        if isinstance(other, (list, tuple)):
            return all(a == b for a, b in zip_longest(self, sorted(other, key=BY_PATH)))
        return NotImplemented

    __hash__ = None

    @property
    def total(self) -> int:
        """Bytes of the regular files listed."""
        if self._total is None:
            self._total = sum(e.size for e in self if e.type == "f")
        return self._total

    @property
    def fingerprint(self) -> str:
        """sha256 of the lines without content digests (what staleness is judged on)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for line in self.lines():
                h.update(_split(line)[0] + b"\n")
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def copy_to(self, out: BinaryIO) -> None:
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                out.write(chunk)

    def __repr__(self) -> str:
        return f"Listing({self.path}, {self.count} entries)"


def _parse(line: bytes) -> Entry:
    return Entry.from_line(line.decode("utf-8", "surrogatepass"))


def _temp() -> BinaryIO:
    """A private temporary file, deleted at once: nothing is left behind by a run that is
    killed. (A Listing reads its own again through /proc/self/fd, one descriptor a reader.)"""
    fd, path = tempfile.mkstemp(prefix="undoit-listing-")
    os.unlink(path)
    return os.fdopen(fd, "w+b")


class Writer:
    """Collects entries in any order; finish() sorts them (on disk past RUN) into a Listing.

    Hard links (link(entry, target)) get their target's size and content digest at the
    end: the target's entry may already be on disk when the link comes by."""

    def __init__(self):
        self._buf: list[tuple[bytes, bytes, int, int]] = []
        self._runs: list[BinaryIO] = []
        self._links: dict[bytes, tuple[Entry, bytes]] = {}

    def add(self, e: Entry) -> None:
        self._buf.append((e.path, e.encoded, e.size, digest_tail(e)))
        if len(self._buf) >= RUN:
            self._spill()

    def link(self, e: Entry, target: bytes) -> None:
        """A hard link: a file whose size and digest are those of target (seen before it)."""
        self._links[e.path] = (e, target)
        self.add(e)

    def _spill(self) -> None:
        self._buf.sort(key=_first)
        f = _temp()
        for p, line, size, tail in self._buf:
            f.write(_RECORD.pack(len(p), len(line), size, tail) + p + line)
        f.flush()
        self._runs.append(f)
        self._buf = []

    def _records(self) -> Iterator[tuple[bytes, bytes, int, int]]:
        """Every record, merged in path order."""
        if not self._runs:
            return iter(sorted(self._buf, key=_first))
        self._buf.sort(key=_first)
        return heapq.merge(*(_read_run(f) for f in self._runs), iter(self._buf), key=_first)

    def finish(self) -> Listing:
        try:
            fixed = self._resolve_links() if self._links else {}
            out = _temp()
            sha, fp, count, root, total = hashlib.sha256(), hashlib.sha256(), 0, None, 0
            try:
                for p, line, size, tail in self._records():
                    if p in fixed:
                        e = fixed[p]
                        line, size, tail = e.encoded, e.size, digest_tail(e)
                    fp.update(line[:-tail] + b"]\n" if tail else line + b"\n")
                    line += b"\n"
                    out.write(line)
                    sha.update(line)
                    count += 1
                    total += size
                    if p == b".":
                        root = _parse(line)
                out.flush()
                fd = os.dup(out.fileno())
            finally:
                out.close()
            return Listing(Path(f"/proc/self/fd/{fd}"), count, sha.hexdigest(), root, total, fp.hexdigest(), fd=fd)
        finally:
            for f in self._runs:
                f.close()
            self._runs, self._buf = [], []

    def _resolve_links(self) -> dict[bytes, Entry]:
        """Each link's entry with its target's size and digest (one extra merge over the runs)."""
        from dataclasses import replace

        def final(path: bytes) -> bytes:
            seen = set()
            while path in self._links and path not in seen:  # a link to a link: to its file
                seen.add(path)
                path = self._links[path][1]
            return path

        wanted = {final(t) for _, t in self._links.values()}
        found: dict[bytes, Entry] = {}
        for p, line, _, _ in self._records():
            if p in wanted:
                found[p] = _parse(line)
        out = {}
        for path, (e, target) in self._links.items():
            t = found.get(final(target))
            out[path] = replace(e, size=t.size, digest=t.digest) if t is not None and t.type == "f" else e
        return out


def _first(record):
    return record[0]


def _read_run(f: BinaryIO) -> Iterator[tuple[bytes, bytes, int, int]]:
    f.seek(0)
    reader = _Buffered(f)
    while header := reader.take(_RECORD.size):
        n_path, n_line, size, tail = _RECORD.unpack(header)
        data = reader.take(n_path + n_line)
        yield data[:n_path], data[n_path:], size, tail


class _Buffered:
    """Reads a run file in 1 MiB blocks (a file object per run would buffer only 8 KiB)."""

    def __init__(self, f: BinaryIO):
        self.f, self.buf, self.pos = f, b"", 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            self.buf = self.buf[self.pos:] + self.f.read(max(n, 1 << 20))
            self.pos = 0
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out


def digest_tail(e: Entry) -> int:
    """How many bytes of e's line its content digest takes: `, "<hex>"]` closes every line
    that has one (both ways Entry.encoded writes it), `]` the same line without."""
    return len(e.digest) + 5 if e.digest else 0


def build(entries: Iterable[Entry]) -> Listing:
    w = Writer()
    for e in entries:
        w.add(e)
    return w.finish()


def in_order(entries: Iterable[Entry]) -> Iterator[Entry]:
    """entries sorted by path: a Listing as it streams, anything else sorted in memory."""
    return iter(entries) if isinstance(entries, Listing) else iter(sorted(entries, key=BY_PATH))


def pairs(expected: Iterable[Entry], actual: Iterable[Entry]) -> Iterator[tuple[Entry | None, Entry | None]]:
    """Both listings walked side by side in path order: (e, a) for a path in both, (e, None)
    for one only expected, (None, a) for one only actual. Between two Listings, two lines
    that say the same (metadata alike, content digests alike where both have one) are
    skipped unparsed: a restore compares a million of them."""
    if isinstance(expected, Listing) and isinstance(actual, Listing):
        xs, ys, parse, same = expected.lines(), actual.lines(), _parse, _same
    else:
        xs, ys, parse, same = in_order(expected), in_order(actual), _as_is, _never
    x, y = next(xs, None), next(ys, None)
    ex = ey = None  # x and y parsed, once they had to be
    while x is not None or y is not None:
        if ex is None and ey is None and x is not None and y is not None and same(x, y):
            x, y = next(xs, None), next(ys, None)
            continue
        if ex is None and x is not None:
            ex = parse(x)
        if ey is None and y is not None:
            ey = parse(y)
        if ey is None or (ex is not None and ex.path < ey.path):
            yield ex, None
            x, ex = next(xs, None), None
        elif ex is None or ey.path < ex.path:
            yield None, ey
            y, ey = next(ys, None), None
        else:
            yield ex, ey
            x, y, ex, ey = next(xs, None), next(ys, None), None, None


def _as_is(e: Entry) -> Entry:
    return e


def _never(x, y) -> bool:
    return False


def _same(x: bytes, y: bytes) -> bool:
    if x == y:
        return True
    mx, dx = _split(x)
    my, dy = _split(y)
    return mx == my and (not dx or not dy or dx == dy)


def _split(line: bytes) -> tuple[bytes, bytes]:
    """(the line without its content digest, the digest). A digest is the 9th field: the
    field before it is the (quoted) symlink target, where the line of an entry without one
    has the mtime (digits) before its last field."""
    line = line.rstrip(b"\n")
    if len(line) > 70 and line[-69:-66] == b', "' and line[-70:-69] == b'"' and line.endswith(b'"]'):
        return line[:-69] + b"]", line[-66:-2]
    return line, b""


def listing_digest(entries: Iterable[Entry], content: bool = True) -> str:
    """The listing's sha256; content=False leaves the content digests out (how sets
    written before listings had them recorded it)."""
    if not content:
        return fingerprint(entries)
    if isinstance(entries, Listing):
        return entries.digest
    return hashlib.sha256(listing_bytes(entries)).hexdigest()


def fingerprint(entries: Iterable[Entry]) -> str:
    """What staleness is judged on: the listing's metadata, as a walk of the volume sees it."""
    if isinstance(entries, Listing):
        return entries.fingerprint
    h = hashlib.sha256()
    for e in sorted(entries, key=BY_PATH):
        h.update(e.meta_encoded + b"\n")
    return h.hexdigest()


def diff(expected: Iterable[Entry], actual: Iterable[Entry], limit: int = 5) -> list[str]:
    """Human-readable differences between two listings (first few), walked side by side in
    path order. Content digests are compared where both sides have one."""

    out = []
    for ea, eb in pairs(expected, actual):
        if ea is not None and eb is not None and ea.meta == eb.meta and \
                (not ea.digest or not eb.digest or ea.digest == eb.digest):
            continue
        name = show_path((ea or eb).path)
        if ea is None:
            out.append(f"unexpected {name}")
        elif eb is None:
            out.append(f"missing {name}")
        else:
            fields = [f for f in ("type", "size", "mode", "uid", "gid", "mtime_ns", "target")
                      if getattr(ea, f) != getattr(eb, f)]
            if not fields:
                out.append(f"{name}: content differs (same size and mtime)")
            else:
                out.append(f"{name}: {', '.join(f'{f} {getattr(ea, f)!r}->{getattr(eb, f)!r}' for f in fields)}")
        if len(out) >= limit:
            break
    return out
