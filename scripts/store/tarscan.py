"""Check and list a tar stream as it passes, without holding it.

A restore hands GNU tar only bytes this scanner has already seen, so tar never acts
on a member whose header was not checked first: no absolute names, no `..`, nothing
below a symlink of the archive, no relative symlink that climbs out of the volume, no
hard link to something the archive did not create. The listing it builds is the one a
metadata walk of the extracted volume must equal.

Only what undoit's archives use is accepted: ustar headers with pax (and GNU long
name) extensions. Anything else is refused rather than guessed at.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from .entries import Entry, parse_ns
from ..errors import UndoitError
from .listings import Listing, Writer

BLOCK = 512

# type flag -> listing type; "h" marks a hard link (a file in the listing)
_KINDS = {b"0": "f", b"\0": "f", b"7": "f", b"1": "h", b"2": "l", b"3": "c", b"4": "b",
          b"5": "d", b"6": "p"}
_EXTENSIONS = (b"x", b"g", b"L", b"K")
EMPTY_DIGEST = hashlib.sha256(b"").hexdigest()


def _number(field: bytes) -> int:
    if field[:1] == b"\x80":  # GNU base-256, for values octal cannot hold
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        return int.from_bytes(field, "big", signed=True)
    digits = field.strip(b" \0")
    return int(digits, 8) if digits else 0


def _cstring(field: bytes) -> bytes:
    end = field.find(b"\0")
    return field if end < 0 else field[:end]


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    records, pos = {}, 0
    while pos < len(data) and data[pos:pos + 1] not in (b"\0", b""):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        records[key] = value
        pos += length
    return records


def _relative(name: bytes) -> bytes:
    """The member's path as extraction resolves it: `./`, `././`, repeated and trailing
    slashes folded away (every containment check runs on this form)."""
    parts = [p for p in name.split(b"/") if p not in (b"", b".")]
    return b"/".join(parts) or b"."


class TarScanner:
    """feed() the tar bytes in order; finish() returns the sorted listing (on disk: see
    listings.py; only the paths' hashes stay in memory, for checking hard links).

    When feed() returns, every member whose header lies in the bytes fed so far has
    been checked (UndoitError otherwise): a consumer given only those bytes is safe.
    """

    def __init__(self, label: str, check: bool = True, devices: bool = False, digests: bool = True):
        self.label = label
        # digests=False: no content digest (a metadata listing); the data is let through unread
        self.digests = digests
        # check=False: list only (a backup lists what it archives; the restore checks it)
        self.check = check
        # device nodes are refused unless the plan allows them for the volume: a restored
        # /dev/mem or disk node in a volume is a way into the host
        self.devices = devices
        self._listing = Writer()
        # hash() of every path seen (what a hard link may point to): a Python int each,
        # where the paths themselves took 5x the memory on a million files. A collision
        # could only let a link to a path the archive did not create reach tar, which
        # then fails to make it (nothing below an archive's symlink is allowed either)
        self._seen: set[int] = set()
        self._file: Entry | None = None  # the regular file whose data is passing
        self._hash = None  # sha256 of the regular file whose data is passing
        self._data = 0  # bytes of that file's data still to come (the rest of _skip is padding)
        self._symlinks: set[bytes] = set()
        self._buf = bytearray()
        self._need = BLOCK  # bytes to collect before the next step
        self._skip = 0  # file data (and padding) to let through unread
        self._extension: tuple[bytes, int] | None = None  # (type, length) being collected
        self._pax: dict[bytes, bytes] = {}
        self._global: dict[bytes, bytes] = {}
        self._zero_blocks = 0
        self.ended = False

    def feed(self, data) -> None:
        view = memoryview(data)
        pos, size = 0, len(view)
        while pos < size and not self.ended:
            if self._skip:
                step = min(self._skip, size - pos)
                if self._data:
                    n = min(step, self._data)
                    self._hash.update(view[pos:pos + n])
                    self._data -= n
                    if not self._data:
                        self._file_done()
                self._skip -= step
                pos += step
                continue
            step = min(self._need - len(self._buf), size - pos)
            self._buf += view[pos:pos + step]
            pos += step
            if len(self._buf) == self._need:
                block, self._buf = bytes(self._buf), bytearray()
                try:
                    self._step(block)
                except (ValueError, IndexError) as err:  # malformed numbers or pax records
                    raise UndoitError(f"{self.label}: damaged archive ({err})") from None

    def finish(self) -> Listing:
        if not self.ended:
            raise UndoitError(f"{self.label}: archive is truncated (no end-of-archive marker)")
        return self._listing.finish()

    # --- internals ---------------------------------------------------------------

    def _step(self, block: bytes) -> None:
        if self._extension is not None:
            kind, length = self._extension
            self._extension = None
            self._need = BLOCK
            self._extend(kind, block[:length])
            return
        if not any(block):
            self._zero_blocks += 1
            self.ended = self._zero_blocks == 2
            return
        if self._zero_blocks:
            raise UndoitError(f"{self.label}: damaged archive (a lone zero block)")
        self._header(block)

    def _extend(self, kind: bytes, data: bytes) -> None:
        if kind == b"x":
            self._pax.update(_pax_records(data))
        elif kind == b"g":
            self._global.update(_pax_records(data))
        else:  # GNU long name / long link name
            self._pax[b"path" if kind == b"L" else b"linkpath"] = _cstring(data)

    def _header(self, h: bytes) -> None:
        stored = _number(h[148:156])
        unsigned = sum(h) - sum(h[148:156]) + 8 * 32
        if stored != unsigned and stored != unsigned - 256 * sum(b > 127 for b in h[:148] + h[156:]):
            raise UndoitError(f"{self.label}: damaged archive (bad header checksum)")
        flag = h[156:157]
        size = _number(h[124:136])
        if flag in _EXTENSIONS:
            if size > 1 << 20:
                raise UndoitError(f"{self.label}: oversized extended header ({size} bytes)")
            self._extension = (flag, size)
            self._need = -(-size // BLOCK) * BLOCK or BLOCK
            if size == 0:
                self._extension, self._need = None, BLOCK
            return
        pax = {**self._global, **{k: v for k, v in self._pax.items() if v != b""}}
        self._pax = {}
        # a POSIX ustar header ("ustar\0") has a path prefix at 345; a GNU one ("ustar  ")
        # keeps access and change times there
        name = pax.get(b"path") or (
            (_cstring(h[345:500]) + b"/" if h[257:263] == b"ustar\0" and h[345] else b"") + _cstring(h[0:100]))
        link = pax.get(b"linkpath") or _cstring(h[157:257])
        if b"size" in pax:
            size = int(pax[b"size"])
        kind = _KINDS.get(flag)
        if kind == "f" and flag == b"\0" and name.endswith(b"/"):
            kind = "d"  # pre-POSIX directory
        if kind is None:
            raise UndoitError(f"{self.label}: member {name!r} has an unknown type {flag!r}")
        if size and kind != "f":
            raise UndoitError(f"{self.label}: damaged archive ({name!r} is not a file but has data)")
        rel = self._check(name, kind, link) if self.check else _relative(name)
        self._skip = -(-size // BLOCK) * BLOCK
        hard_link = kind == "h"
        kind = "f" if hard_link else kind
        if self.check:
            self._seen.add(hash(rel))
        mtime = pax.get(b"mtime")
        e = Entry(
            rel, kind, size if kind == "f" else 0, _number(h[100:108]) & 0o7777 if kind != "l" else 0,
            int(pax[b"uid"]) if b"uid" in pax else _number(h[108:116]),
            int(pax[b"gid"]) if b"gid" in pax else _number(h[116:124]),
            parse_ns(mtime.decode()) if mtime else _number(h[136:148]) * 1_000_000_000,
            link if kind == "l" else b"", EMPTY_DIGEST if kind == "f" and not size and self.digests else "")
        if hard_link:  # size and digest are its target's, filled in by the listing
            self._listing.link(replace(e, size=0, digest=""), _relative(link))
        elif kind == "f" and size and self.digests:  # listed once its data has passed, with the digest
            self._file, self._hash, self._data = e, hashlib.sha256(), size
        else:
            self._listing.add(e)

    def _file_done(self) -> None:
        """The last data byte of a regular file went by: it is listed with its digest."""
        self._listing.add(replace(self._file, digest=self._hash.hexdigest()))
        self._file, self._hash = None, None

    def _check(self, name: bytes, kind: str, link: bytes) -> bytes:
        """The member's relative path, or UndoitError when it could write outside the volume
        or is not allowed in it. Every check runs on the normalised path."""
        shown = name.decode("utf-8", "backslashreplace")
        if name.startswith(b"/") or b".." in name.split(b"/"):
            raise UndoitError(f"unsafe archive member {shown!r}: absolute or contains '..'")
        rel = _relative(name)
        if kind in ("c", "b") and not self.devices:
            raise UndoitError(f"archive member {shown!r} is a device node: refused (allow them for this volume "
                              "with devices = true in the plan)")
        if rel == b".":
            if kind != "d":
                raise UndoitError(f"unsafe archive member {shown!r}: the volume's root must be a directory")
        elif self._below_symlink(rel):
            raise UndoitError(f"unsafe archive member {shown!r}: lies below a symlink")
        if kind == "l":
            self._symlinks.add(rel)
            if not link.startswith(b"/"):
                # absolute targets are left alone: they resolve in whatever container
                # mounts the volume, and extraction never follows them
                depth = 0 if rel == b"." else rel.count(b"/")
                for p in link.split(b"/"):
                    if p in (b"", b"."):
                        continue
                    depth += -1 if p == b".." else 1
                    if depth < 0:
                        raise UndoitError(f"unsafe archive member {shown!r}: symlink escapes the volume")
        elif kind == "h":
            target = _relative(link)
            if link.startswith(b"/") or b".." in link.split(b"/") or hash(target) not in self._seen \
                    or self._below_symlink(target):
                raise UndoitError(f"unsafe archive member {shown!r}: hard link to {link.decode('utf-8', 'backslashreplace')!r}")
        return rel

    def _below_symlink(self, rel: bytes) -> bool:
        parts = rel.split(b"/")
        return any(b"/".join(parts[:i]) in self._symlinks for i in range(1, len(parts)))
