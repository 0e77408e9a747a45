"""The two-pass copy behind pre-copied backups (scripts/store/mirror.py), on plain folders."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from scripts.store import archive, listings, mirror
from scripts.store.entries import walk


def contents(root: Path) -> dict[bytes, bytes]:
    out = {}
    for rel, st in walk(root):
        p = os.path.join(os.fsencode(root), rel)
        if os.path.isfile(p) and not os.path.islink(p):
            out[rel] = Path(os.fsdecode(p)).read_bytes()
    return out


def same(live: Path, staging: Path, done: mirror.CatchUp) -> None:
    assert listings.diff(archive.listing(live), archive.listing(staging)) == []
    assert contents(live) == contents(staging)
    # the listing taken during the catch-up is the folder's
    assert done.listing.finish().fingerprint == archive.listing(live).fingerprint


@pytest.fixture
def tree(tmp_path, monkeypatch):
    # a ctime cannot be set back: what the fixture made counts as old, by a narrow margin
    monkeypatch.setattr(mirror, "MARGIN_NS", 0)
    live, staging, outside = tmp_path / "live", tmp_path / "staging", tmp_path / "outside"
    for d in (live / "keep", live / "gone", live / "swap", outside):
        d.mkdir(parents=True)
    (live / "keep" / "a.bin").write_bytes(os.urandom(4096))
    (live / "gone" / "x").write_text("x")
    (live / "swap" / "victim").write_text("in the volume")
    (outside / "victim").write_text("outside the volume")
    (live / "same-size").write_bytes(b"1" * 100)
    (live / "linked").write_text("one file, two names")
    os.link(live / "linked", live / "keep" / "linked-too")
    os.symlink("/nowhere", live / "dangling")
    os.mkfifo(live / "fifo")
    os.chmod(live / "keep", 0o750)
    staging.mkdir(mode=0o700)
    old = 1_600_000_000_000_000_000
    for rel, _ in walk(live):
        os.utime(os.path.join(os.fsencode(live), rel), ns=(old, old), follow_symlinks=False)
    return live, staging, outside


def test_an_untouched_folder_needs_no_copy_under_quiesce(tree):
    live, staging, _ = tree
    first = mirror.first_pass(live, staging)
    assert first.bytes == 4096 + 1 + 13 + 100 + 19 * 2
    done = mirror.catch_up(live, staging, first)
    same(live, staging, done)
    assert done.gone == 0 and done.copied == 2  # only the two names of the hard-linked file


def test_changes_between_the_passes_are_caught_and_nothing_outside_is_touched(tree):
    live, staging, outside = tree
    first = mirror.first_pass(live, staging)
    st = os.stat(live / "same-size")
    (live / "same-size").write_bytes(b"2" * 100)  # same size, mtime put back: the ctime moved
    os.utime(live / "same-size", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.unlink(live / "gone" / "x")
    os.rmdir(live / "gone")
    (live / "swap" / "victim").unlink()
    (live / "swap").rmdir()
    os.symlink(outside, live / "swap")  # where a folder was, a symlink out of the volume
    (live / "keep" / "new.txt").write_text("new")
    os.mkdir(live / "keep" / "newdir")
    (live / "keep" / "newdir" / "deep").write_text("deep")
    os.chmod(live / "keep" / "a.bin", 0o4755)
    done = mirror.catch_up(live, staging, first)
    same(live, staging, done)
    assert not (staging / "gone").exists() and os.path.islink(staging / "swap")
    assert (outside / "victim").read_text() == "outside the volume"
    assert os.stat(staging / "linked").st_ino == os.stat(staging / "keep" / "linked-too").st_ino
    assert done.gone == 1  # the folder, with what it held


def test_what_tar_copied_but_the_walk_never_saw_goes_if_it_is_gone(tree, monkeypatch):
    live, staging, _ = tree
    real = mirror._copy_tree

    def made_between(src, dst, progress):  # a file made after the walk, before tar
        (src / "keep" / "late").write_text("late")
        real(src, dst, progress)
        (src / "keep" / "late").unlink()

    monkeypatch.setattr(mirror, "_copy_tree", made_between)
    first = mirror.first_pass(live, staging)
    assert (staging / "keep" / "late").exists()
    done = mirror.catch_up(live, staging, first)
    same(live, staging, done)
    assert not (staging / "keep" / "late").exists()


def test_a_file_written_right_before_its_first_stat_is_copied_again(tree, monkeypatch):
    live, staging, _ = tree
    time.sleep(0.3)
    monkeypatch.setattr(mirror, "MARGIN_NS", 200_000_000)
    (live / "hot").write_text("written now")  # its ctime is within the margin: not trusted
    first = mirror.first_pass(live, staging)
    assert dict(first)[b"hot"] is None
    done = mirror.catch_up(live, staging, first)
    assert done.copied == 3
    same(live, staging, done)


def test_a_file_swapped_under_the_catch_up_is_refused_not_followed(tmp_path):
    from scripts.errors import UndoitError

    (tmp_path / "vol").mkdir()
    (tmp_path / "secret").write_text("outside the volume")
    src = tmp_path / "vol" / "data"
    src.write_text("inside")
    st = os.lstat(src)
    os.rename(src, tmp_path / "kept")  # kept: its inode number is not given to another file
    os.symlink(tmp_path / "secret", src)  # what the walk saw is gone, a symlink out is there
    with pytest.raises(OSError):
        mirror._copy_file(os.fsencode(src), os.fsencode(tmp_path / "copy"), st)
    src.unlink()
    (tmp_path / "other").write_text("another file")
    os.rename(tmp_path / "other", src)  # another inode at the same path
    with pytest.raises(UndoitError, match="changed while its services were held still"):
        mirror._copy_file(os.fsencode(src), os.fsencode(tmp_path / "copy"), st)
    assert not (tmp_path / "copy").exists()
