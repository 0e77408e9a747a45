"""Hostile archives with a consistent manifest: refused before a single byte is written,
on both restore paths (staged beside the volume, and in place), nothing written outside
the volume, the volume's contents untouched."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest
import zstandard

from scripts.backup import backup
from scripts.rollback import restore
from scripts.stack import volumes
from scripts.store import entries, snapshots
from scripts.errors import UndoitError
from scripts.store.tarscan import TarScanner

from .conftest import volume_path

pytestmark = pytest.mark.docker


def member(name, kind=tarfile.REGTYPE, data=b"bad", link="", devmajor=0, devminor=0):
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = kind, link
    ti.devmajor, ti.devminor = devmajor, devminor
    if kind == tarfile.REGTYPE:
        ti.size = len(data)
        return ti, io.BytesIO(data)
    return ti, None


def root_dir():
    ti = tarfile.TarInfo(".")
    ti.type, ti.mode = tarfile.DIRTYPE, 0o755
    return ti, None


def hostile(outside):
    o = str(outside)
    return {
        "char device (mem 1:1)": [root_dir(), member("./mem", tarfile.CHRTYPE, devmajor=1, devminor=1)],
        "block device": [root_dir(), member("./disk", tarfile.BLKTYPE, devmajor=8, devminor=0)],
        "dot-dot path": [root_dir(), member("./../pwned")],
        "absolute path": [root_dir(), member(f"{o}/pwned")],
        "symlink escape": [root_dir(), member("./up", tarfile.SYMTYPE, link="../../../../" + o.lstrip("/"))],
        "file below an absolute symlink": [root_dir(), member("./out", tarfile.SYMTYPE, link=o),
                                           member("./out/pwned")],
        "hard link to an absolute path": [root_dir(), member("./h", tarfile.LNKTYPE, link="/etc/shadow")],
        "hard link with dot-dot": [root_dir(), member("./h", tarfile.LNKTYPE, link="../x")],
        "./././ prefixed symlink then a file below it": [root_dir(), member("./././s", tarfile.SYMTYPE, link=o),
                                                         member("s/pwned")],
        "symlink climbing out by depth": [root_dir(), member("./././l", tarfile.SYMTYPE, link="a/b/../../../x")],
        "repeated slashes then a file below a symlink": [root_dir(), member(".//s", tarfile.SYMTYPE, link=o),
                                                         member("./s//pwned")],
        "root entry that is a symlink": [member(".", tarfile.SYMTYPE, link=o), member("./pwned")],
        "hard link below a symlink": [root_dir(), member("./s", tarfile.SYMTYPE, link=o),
                                      member("./h", tarfile.LNKTYPE, link="s/passwd")],
    }


def tamper(s, key, members) -> snapshots.SnapshotSet:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in members:
            tar.addfile(ti, data)
    evil = zstandard.ZstdCompressor().compress(buf.getvalue())
    path = s.archive_path(key)
    os.chmod(path, 0o600)
    path.write_bytes(evil)
    manifest = json.loads((s.path / "manifest.json").read_text())
    manifest["volumes"][key]["sha256"] = hashlib.sha256(evil).hexdigest()
    manifest["volumes"][key]["size"] = len(evil)
    (s.path / "manifest.json").write_text(json.dumps(manifest))
    return snapshots.load_set(s.path)


@pytest.mark.parametrize("path", ["staged", "in place"])
def test_hostile_archives_are_refused_before_a_byte_is_written(docker_client, mini, tmp_path, monkeypatch, path):
    if path == "in place":
        monkeypatch.setattr(volumes, "stage", lambda *a, **k: None)
    files = volume_path(docker_client, mini, "files")
    (files / "live.txt").write_text("live data")
    s = backup.backup(mini)
    pristine = s.archive_path("files").read_bytes(), (s.path / "manifest.json").read_text()
    outside = tmp_path / "outside"
    outside.mkdir()
    name = volumes.resolve(docker_client, mini.project_name, ["files"])["files"].name
    from scripts.stack.compose import for_plan

    for_plan(mini).stop(["app"])
    before = volumes.listing(docker_client, name)
    for what, members in hostile(outside).items():
        evil = tamper(s, "files", members)
        with pytest.raises(UndoitError) as err:
            restore.restore_volume(docker_client, evil, "files")
        assert "\n" not in str(err.value), what
        assert list(outside.iterdir()) == [], what
        assert volumes.listing(docker_client, name) == before, what
        assert [p.name for p in files.parent.iterdir()] == ["_data"], what  # no staging left
        s.archive_path("files").write_bytes(pristine[0])
        (s.path / "manifest.json").write_text(pristine[1])
    assert (files / "live.txt").read_text() == "live data"


def test_device_nodes_are_restored_only_where_the_plan_allows_them(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in [root_dir(), member("./null", tarfile.CHRTYPE, devmajor=1, devminor=3)]:
            tar.addfile(ti, data)
    refused = TarScanner("x")
    with pytest.raises(UndoitError, match="device node"):
        refused.feed(buf.getvalue())
    allowed = TarScanner("x", devices=True)
    allowed.feed(buf.getvalue())
    assert [e.type for e in allowed.finish()] == ["d", "c"]


def test_gnu_headers_are_read_by_their_magic(tmp_path):
    """A GNU header keeps access and change times where ustar keeps its path prefix."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for ti, data in [root_dir(), member("./file.txt", data=b"data")]:
            tar.addfile(ti, data)
    raw = bytearray(buf.getvalue())
    header = raw[512:1024]
    assert header[257:265] == b"ustar  \0"
    header[345:357] = b"14767047517\0"  # an atime
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    raw[512:1024] = header
    scanner = TarScanner("gnu")
    scanner.feed(bytes(raw))
    assert [e.path for e in scanner.finish()] == [b".", b"file.txt"]
    assert entries.Entry  # the listing names the file, not "14767047517/file.txt"
