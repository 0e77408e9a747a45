"""Copy-on-write detection (scripts/store/cow.py) on a loop-mounted btrfs, and on the
filesystem the tests run on."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from scripts.store import cow


@pytest.fixture
def btrfs(tmp_path):
    """A 128 MiB btrfs, loop-mounted under tmp_path; unmounted and its image removed."""
    if shutil.which("mkfs.btrfs") is None:  # CI installs it (.ci/servers.sh): there, its absence fails
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)("no mkfs.btrfs (apt-get install btrfs-progs)")
    image, mount = tmp_path / "btrfs.img", tmp_path / "mnt"
    mount.mkdir()
    with open(image, "wb") as f:
        f.truncate(128 << 20)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    res = subprocess.run(["mount", "-o", "loop", str(image), str(mount)], capture_output=True, text=True)
    if res.returncode:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(f"no loop mount here: {res.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
        image.unlink(missing_ok=True)


def test_btrfs_clones_and_says_so(btrfs):
    (btrfs / "a").mkdir()
    (btrfs / "b").mkdir()
    assert cow.filesystem(btrfs) == "btrfs"
    assert cow.reflinks(btrfs / "a", btrfs / "b")
    assert list(btrfs.rglob("*undoit-cow-probe*")) == []  # the probe files are gone


def test_no_clone_across_filesystems_or_on_one_that_cannot(btrfs, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert cow.filesystem(plain) != "btrfs"
    assert not cow.reflinks(btrfs, plain) and not cow.reflinks(plain, btrfs)
    if cow.filesystem(plain) not in cow.REFLINK_TYPES.values():
        assert not cow.reflinks(plain, plain)
    assert list(plain.iterdir()) == [] and list(btrfs.iterdir()) == []


def test_a_clone_is_the_folder_entry_for_entry_and_pins_only_what_moved_on(btrfs):
    """clone_tree keeps owners, modes, mtimes, hard links, symlinks and FIFOs (the listing
    an archive would take is the same); pinned_bytes counts, from the extent map, the
    blocks only the clone still holds once the source rewrote a file whole."""
    from scripts.store import archive

    src = btrfs / "src"
    (src / "deep").mkdir(parents=True)
    (src / "data.bin").write_bytes(os.urandom(1 << 20))
    (src / "deep" / "note").write_text("kept\n")
    os.link(src / "deep" / "note", src / "again")
    os.symlink("deep/note", src / "link")
    os.mkfifo(src / "pipe")
    os.chown(src / "deep" / "note", 1234, 4321)
    os.chmod(src / "deep", 0o750)
    os.utime(src / "data.bin", ns=(1, 1_500_000_000_123_456_789))
    cow.clone_tree(src, btrfs / "clone")
    assert archive.listing(btrfs / "clone") == archive.listing(src)
    assert os.stat(btrfs / "clone" / "again").st_ino == os.stat(btrfs / "clone" / "deep" / "note").st_ino
    assert cow.pinned_bytes(btrfs / "clone")[0] == (1 << 20) + 5
    with open(src / "data.bin", "wb") as f:  # rewritten whole: the old blocks are the clone's alone
        f.write(os.urandom(1 << 20))
    total, alone = cow.pinned_bytes(btrfs / "clone")
    assert alone >= 1 << 20 and total == (1 << 20) + 5
    with pytest.raises(Exception, match="copy-on-write clone"):
        cow.clone_tree(src, btrfs / "clone")  # never over what is there
