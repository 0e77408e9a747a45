"""Archive safety and listing logic: pure, on host files only."""

import io
import os
import tarfile

import pytest
import zstandard

from scripts.store import archive, entries, listings
from scripts.errors import UndoitError


def make_archive(path, members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    path.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))


def member(name, kind=tarfile.REGTYPE, data=b"x", link=""):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = link
    if kind == tarfile.REGTYPE:
        ti.size = len(data)
        return ti, data
    return ti, None


@pytest.mark.parametrize("members, why", [
    ([member("../evil")], "contains '..'"),
    ([member("/etc/passwd")], "absolute"),
    ([member("./a/../../b")], "contains '..'"),
    ([member("./l", tarfile.SYMTYPE, link="../../outside")], "escapes"),
    ([member("./l", tarfile.SYMTYPE, link="/etc"), member("./l/passwd")], "below a symlink"),
    ([member("./h", tarfile.LNKTYPE, link="/etc/shadow")], "hard link"),
])
def test_unsafe_members_refused(tmp_path, members, why):
    path = tmp_path / "bad.tar.zst"
    make_archive(path, members)
    with pytest.raises(UndoitError, match=why):
        archive.read_listing(path)


def test_host_archive_listing_round_trip(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"abc" * 1000)
    os.link(src / "d" / "f", src / "hl")
    os.symlink("d/f", src / "sl")
    os.mkfifo(src / "p")
    with open(os.path.join(os.fsencode(src), b"n\xff"), "wb") as f:
        f.write(b"1")
    os.utime(src / "d" / "f", ns=(1, 1_600_000_000_000_000_007))
    out = tmp_path / "a.tar.zst"
    with open(out, "wb") as f:
        written = archive.write_host_archive(src, f)
    assert [e.meta for e in written] == [e.meta for e in archive.listing(src)]
    assert archive.read_listing(out) == written
    import hashlib
    digests = {e.path: e.digest for e in written}
    assert digests[b"d/f"] == digests[b"hl"] == hashlib.sha256(b"abc" * 1000).hexdigest()
    assert digests[b"n\xff"] == hashlib.sha256(b"1").hexdigest() and digests[b"sl"] == ""
    assert {e.path for e in written} >= {b".", b"d", b"d/f", b"hl", b"sl", b"p", b"n\xff"}
    entry = {e.path: e for e in written}[b"d/f"]
    assert entry.mtime_ns == 1_600_000_000_000_000_007
    assert entries.Entry.from_line(entry.line()) == entry


def test_diff_names_a_content_change_with_the_same_size_and_mtime():
    a = [entries.Entry(b"x", "f", 1, 0o644, 0, 0, 5, b"", "aa")]
    assert listings.diff(a, [entries.Entry(b"x", "f", 1, 0o644, 0, 0, 5, b"", "bb")]) == \
        ["x: content differs (same size and mtime)"]
    assert listings.diff(a, [entries.Entry(b"x", "f", 1, 0o644, 0, 0, 5)]) == []  # a walk: no digest


def test_listing_lines_without_digests_still_read():
    old = entries.Entry.from_line('["a", "f", 1, "0o644", 0, 0, 5, ""]')
    assert old.digest == "" and entries.Entry.from_line(old.line()) == old


def test_diff_names_what_differs():
    a = [entries.Entry(b"x", "f", 1, 0o644, 0, 0, 5)]
    b = [entries.Entry(b"x", "f", 2, 0o644, 0, 0, 5), entries.Entry(b"y", "f", 1, 0o644, 0, 0, 5)]
    out = listings.diff(a, b)
    assert out[0].startswith("x: size 1->2") and out[1] == "unexpected y"


def test_parse_ns():
    assert entries.parse_ns("1700000000.5") == 1_700_000_000_500_000_000
    assert entries.parse_ns("12") == 12_000_000_000


def test_scanner_is_blind_to_chunk_boundaries_and_long_names(tmp_path):
    """GNU long names and pax names, fed whole or a few bytes at a time: one listing."""
    from scripts.store.tarscan import TarScanner

    long_dir = "./" + "d" * 120
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
            for ti, data in [member(long_dir, tarfile.DIRTYPE), member(long_dir + "/" + "f" * 150, data=b"y" * 700),
                             member("./h", tarfile.LNKTYPE, link=long_dir + "/" + "f" * 150),
                             member("./s", tarfile.SYMTYPE, link="d" * 120)]:
                tar.addfile(ti, io.BytesIO(data) if data is not None else None)
        raw = buf.getvalue()
        whole = TarScanner("t")
        whole.feed(raw)
        listing = whole.finish()
        assert [e.path for e in listing] == [b"d" * 120, b"d" * 120 + b"/" + b"f" * 150, b"h", b"s"]
        assert {e.path: e.size for e in listing}[b"h"] == 700  # a hard link lists its file
        pieces = TarScanner("t")
        for i in range(0, len(raw), 37):
            pieces.feed(raw[i:i + 37])
        assert pieces.finish() == listing


def test_scanner_refuses_truncated_and_damaged_archives():
    from scripts.store.tarscan import TarScanner

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ti, data = member("./f", data=b"z" * 2000)
        tar.addfile(ti, io.BytesIO(data))
    raw = bytearray(buf.getvalue())
    truncated = TarScanner("t")
    truncated.feed(bytes(raw[:1536]))
    with pytest.raises(UndoitError, match="truncated"):
        truncated.finish()
    raw[5] ^= 0x20  # a byte of the name in the header
    with pytest.raises(UndoitError, match="checksum"):
        TarScanner("t").feed(bytes(raw))


def _frames(data: bytes) -> list[bytes]:
    """An archive cut into its zstd frames (by their magic; a chance match inside
    compressed bytes would only split a frame, making the test stricter)."""
    magic = b"\x28\xb5\x2f\xfd"
    starts, i = [], data.find(magic)
    while i != -1:
        starts.append(i)
        i = data.find(magic, i + 4)
    return [data[a:b] for a, b in zip(starts, starts[1:] + [len(data)])]


@pytest.mark.parametrize("writer", ["gnu tar", "python"])
def test_a_file_added_early_leaves_the_rest_of_the_archive_as_it_was(tmp_path, writer, monkeypatch):
    """What makes archives deduplicable offsite: frames begin at members chosen by their
    content, so one new file early in the tree leaves the frames after it byte for byte
    the same (before, one endless frame changed whole). Frames of 1 MiB here (8 in the
    kit) keep the tree small; what changes is the frames holding the new files and the
    headers of their folders (new mtimes)."""
    import random

    monkeypatch.setattr(archive, "FRAME_MIN", 1 << 20)
    rng = random.Random(3)
    src = tmp_path / "tree"
    (src / "big").mkdir(parents=True)
    for n in range(24):  # big files, each starting its own frame
        (src / "big" / f"f{n:02d}").write_bytes(rng.randbytes(512 << 10) * 3)
    (src / "small").mkdir()
    for n in range(3000):  # small ones, cut where a header's crc32 selects
        (src / "small" / f"d{n:04d}").write_bytes(rng.randbytes(rng.randint(1000, 9000)))
    write = archive.write_host_archive if writer == "gnu tar" else archive.write_host_archive_py

    def pack(name):
        with open(tmp_path / name, "wb") as f:
            entries = write(src, f)
        return (tmp_path / name).read_bytes(), entries

    before, _ = pack("a.tar.zst")
    (src / "big" / "a-new").write_bytes(rng.randbytes(256 << 10))  # sorts first
    (src / "small" / "d0100x").write_bytes(b"a new small file\n")
    after, entries = pack("b.tar.zst")
    old = set(_frames(before))
    assert len(_frames(after)) >= 10
    kept = sum(len(f) for f in _frames(after) if f in old)
    assert kept >= 0.85 * len(before), (kept, len(before))
    assert archive.read_listing(tmp_path / "b.tar.zst") == entries  # still one archive to every reader
