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
