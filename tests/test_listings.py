"""Listings on disk (scripts/listings.py): sorted runs merged, hard links filled in, compared
side by side. Pure logic and real files; RUN is made tiny so that every test spills."""

from __future__ import annotations

import gc
import hashlib
import io
import os
import random
import tarfile
import tempfile
from dataclasses import replace

import pytest

from scripts.store import listings, snapshots
from scripts.store.entries import BY_PATH, Entry, listing_bytes, show_path
from scripts.errors import UndoitError
from scripts.store.tarscan import TarScanner


@pytest.fixture(autouse=True)
def small_runs(monkeypatch):
    monkeypatch.setattr(listings, "RUN", 7)


def entries(n: int, seed: int = 3) -> list[Entry]:
    rng = random.Random(seed)
    out = [Entry(b".", "d", 0, 0o755, 0, 0, 1)]
    for i in range(n):
        # names that sort differently as bytes than as folders would (a.b vs a/b), one
        # that is not UTF-8 and one that needs JSON escaping
        path = rng.choice([b"a", b"a.b", b"a/b", b"x\xff", b'q"uote']) + b"/%d" % i
        digest = hashlib.sha256(path).hexdigest() if i % 3 else ""
        out.append(Entry(path, "f", i, 0o644, 1000, 1000, 10**18 + i, b"", digest))
    rng.shuffle(out)
    return out


def test_a_spilled_listing_is_the_sorted_listing_with_its_digests():
    es = entries(100)
    got = listings.build(es)
    assert got.path.read_bytes() == listing_bytes(es)
    assert got.digest == hashlib.sha256(listing_bytes(es)).hexdigest()
    assert got.fingerprint == listings.fingerprint(es)  # computed while merging, without parsing
    assert (len(got), got.total, got.root) == (101, sum(e.size for e in es), es[[e.path for e in es].index(b".")])
    assert list(got) == sorted(es, key=BY_PATH)
    assert got == es and listings.diff(es, got) == []


def test_no_file_is_left_behind_even_by_a_killed_run():
    """Runs and the listing are deleted as soon as they are created (a SIGKILL leaves
    nothing in the temp folder); the listing's descriptor closes with the object."""
    tmp = tempfile.gettempdir()
    before = set(os.listdir(tmp))
    got = listings.build(entries(50))
    assert [f for f in set(os.listdir(tmp)) - before if f.startswith("undoit-listing-")] == []
    fd = int(got.path.name)
    assert len(list(got)) == len(list(got)) == 51  # read twice, each reader its own descriptor
    del got
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_set_listing_file_reads_back_with_the_same_digest(tmp_path):
    es = entries(40)
    digest = snapshots.write_listing(tmp_path / "v.listing", listings.build(es))
    back = snapshots.read_listing_file(tmp_path / "v.listing")
    assert back.digest == digest == listings.listing_digest(es)
    assert back.root.path == b"." and len(back) == 41 and back.total == sum(e.size for e in es)
    assert back.fingerprint == listings.fingerprint(es)


def test_hard_links_get_their_targets_size_and_digest_across_runs():
    w = listings.Writer()
    target = Entry(b"z/target", "f", 5, 0o644, 0, 0, 1, b"", "ab" * 32)
    w.add(target)
    for e in entries(30):  # the target is on disk in the first run before the links come
        w.add(e)
    w.link(Entry(b"a0link", "f", 0, 0o644, 0, 0, 1), b"z/target")
    w.link(Entry(b"a1chain", "f", 0, 0o644, 0, 0, 1), b"a0link")  # a link to a link
    w.link(Entry(b"a2nowhere", "f", 0, 0o644, 0, 0, 1), b"missing")
    got = {e.path: e for e in w.finish()}
    assert (got[b"a0link"].size, got[b"a0link"].digest) == (5, "ab" * 32)
    assert (got[b"a1chain"].size, got[b"a1chain"].digest) == (5, "ab" * 32)
    assert (got[b"a2nowhere"].size, got[b"a2nowhere"].digest) == (0, "")


def test_diff_walks_both_sides_and_names_each_difference():
    es = sorted(entries(20), key=BY_PATH)
    changed = [replace(es[3], size=es[3].size + 1), *es[5:]] + [Entry(b"zz-new", "f", 0, 0o644, 0, 0, 1)]
    out = listings.diff(listings.build(es), listings.build(changed), limit=10)
    shown = [show_path(e.path) for e in es]
    assert out[0] == f"missing {shown[0]}"
    assert f"{shown[3]}: size {es[3].size}->{es[3].size + 1}" in out
    assert len(out) == 6 and out[-1] == "unexpected zz-new"  # 4 missing, 1 changed, 1 new
    assert listings.diff(es, listings.build(es)) == []


def tar_of(members: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """(name, data, hard link target) -> an uncompressed pax tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        root = tarfile.TarInfo(".")
        root.type = tarfile.DIRTYPE
        tar.addfile(root)
        for name, data, link in members:
            ti = tarfile.TarInfo(name)
            if link is not None:
                ti.type, ti.linkname = tarfile.LNKTYPE, link
                tar.addfile(ti)
            elif data is None:
                ti.type, ti.linkname = tarfile.SYMTYPE, "/etc"
                tar.addfile(ti)
            else:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_the_scanner_lists_a_hard_link_whose_target_went_to_disk_long_before():
    files = [(f"./f{i:03d}", b"%d" % i, None) for i in range(40)]
    scanner = TarScanner("t")
    scanner.feed(tar_of(files + [("./zlink", None, "./f000")]))
    got = {e.path: e for e in scanner.finish()}
    assert (got[b"zlink"].size, got[b"zlink"].digest) == (1, hashlib.sha256(b"0").hexdigest())


@pytest.mark.parametrize("members,why", [
    ([("./zlink", None, "./never")], "hard link"),
    ([("./s", None, None), ("./zlink", None, "./s/passwd")], "hard link"),
])
def test_the_scanner_still_refuses_links_to_what_the_archive_did_not_create(members, why):
    scanner = TarScanner("t")
    with pytest.raises(UndoitError, match=why):
        scanner.feed(tar_of([(f"./f{i:03d}", b"x", None) for i in range(20)] + members))


def test_lines_compared_unparsed_agree_with_entries_compared():
    """The fast path (lines alike skipped unparsed) finds what comparing entries finds:
    a digest on one side only is no difference, a different digest or mtime is one, and a
    symlink whose target looks like a digest is not taken for a file with one."""
    base = sorted(entries(30), key=BY_PATH)
    link = Entry(b"ln", "l", 0, 0, 0, 0, 5, b"ab" * 32)
    walked = [replace(e, digest="") for e in base] + [link]
    other = [replace(e, digest="cd" * 32) if e.digest else e for e in base] + [replace(link, target=b"cd" * 32)]
    for a, b in [(base + [link], walked), (base + [link], other), (walked, other),
                 (base, [replace(e, mtime_ns=e.mtime_ns + 1) if i % 7 == 0 else e for i, e in enumerate(base)])]:
        assert listings.diff(listings.build(a), listings.build(b), limit=100) == listings.diff(a, b, limit=100)
    assert listings.diff(listings.build(base + [link]), listings.build(walked)) == []
    assert len(listings.diff(listings.build(base + [link]), listings.build(other), limit=100)) == 1 + sum(
        1 for e in base if e.digest)


def test_walk_leaves_out_what_goes_while_it_walks(tmp_path, monkeypatch):
    """A running service removes files and folders between the listing of a folder and
    the lstat of its entries (the pre-copy walks a live volume): what is gone is left
    out, the walk goes on."""
    import os

    from scripts.store import entries

    for name in ("a", "b", "c"):
        (tmp_path / name).write_text(name)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    from contextlib import contextmanager

    real = os.scandir

    @contextmanager
    def scandir_then_remove(path):
        with real(path) as it:
            found = list(it)  # the folder listed (a, b, c, d), then b and the folder d go
        if isinstance(path, (str, bytes)) and os.fsdecode(path) == str(tmp_path):
            (tmp_path / "b").unlink()
            (tmp_path / "d" / "x").unlink()
            (tmp_path / "d").rmdir()
        yield iter(found)

    monkeypatch.setattr(entries.os, "scandir", scandir_then_remove)
    assert [rel for rel, _ in entries.walk(tmp_path)] == [b".", b"a", b"c"]
