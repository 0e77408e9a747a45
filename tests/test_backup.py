"""`doit backup`, verify and the restore primitive on a real engine and real git repos."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from unittest import mock

import pytest

from scripts.backup import backup, cycles
from scripts.repo import gitstate
from scripts.rollback import restore
from scripts.stack import volumes
from scripts.store import archive, listings, mirror, snapshots
from scripts.stack.compose import for_plan
from scripts.errors import UndoitError

from .conftest import KIT, replaced_contents_gone, volume_path

pytestmark = pytest.mark.docker


def fill_special(root: Path) -> None:
    """Everything a naive tar or the plain Docker API gets wrong."""
    r = os.fsencode(root)
    (root / "db").mkdir(mode=0o700)
    (root / "db" / "page").write_bytes(os.urandom(20000))
    os.link(root / "db" / "page", root / "hardlink")
    os.symlink("db/page", root / "rel-link")
    os.symlink("/does/not/exist", root / "dangling")
    os.mkfifo(root / "fifo")
    (root / "suid").write_text("#!/bin/sh\n")
    os.chown(root / "suid", 4321, 8765)
    os.chmod(root / "suid", 0o4755)
    os.chown(root / "db", 999, 999)
    with open(os.path.join(r, b"caf\xe9-latin1"), "wb") as f:
        f.write(b"not utf-8 name")
    os.utime(root / "db" / "page", ns=(1_700_000_000_123_456_789, 1_700_000_000_987_654_321))


def set_of(plan, s_id=None):
    sets = [s for s in snapshots.all_sets(plan.snapshots_dir, plan.project_name) if s.complete]
    return sets[-1] if s_id is None else snapshots.get_set(plan.snapshots_dir, s_id)


def compose(plan):
    return for_plan(plan)


def service_state(docker_client, plan, service):
    c = docker_client.containers.list(all=True, filters={
        "label": [f"com.docker.compose.project={plan.project_name}", f"com.docker.compose.service={service}"]})[0]
    c.reload()
    return c.status, (c.attrs["State"].get("Health") or {}).get("Status")


@pytest.mark.parametrize("use_host", [True, False], ids=["host-path", "api-path"])
def test_special_files_round_trip(docker_client, mini, use_host, monkeypatch):
    # listings in runs of 3 entries: every listing here is merged from runs on disk, the
    # hard link's target among them (scripts/listings.py)
    monkeypatch.setattr(listings, "RUN", 3)
    fill_special(volume_path(docker_client, mini, "files"))
    name = volumes.resolve(docker_client, mini.project_name, ["files"])["files"].name
    original = volumes.listing(docker_client, name)
    with mock.patch.object(volumes, "host_path", volumes.host_path if use_host else (lambda *a: None)):
        s = backup.backup(mini)
        assert listings.diff(original, s.listing("files")) == []
        compose(mini).stop(["app"])
        files = volume_path(docker_client, mini, "files")
        (files / "db" / "page").write_bytes(b"damaged")
        (files / "suid").unlink()
        (files / "new-junk").write_text("x")
        done = restore.restore_volume(docker_client, s, "files", safety_dir=mini.snapshots_dir,
                                      project=mini.project_name)
    # the host path builds the new contents beside the live ones and swaps them in
    assert done["staged"] is use_host
    assert replaced_contents_gone(volume_path(docker_client, mini, "files").parent) == ["_data"]
    restored = volumes.listing(docker_client, name)
    assert listings.diff(original, restored) == []
    assert restored == original
    page = volume_path(docker_client, mini, "files") / "db" / "page"
    assert os.stat(page).st_mtime_ns == 1_700_000_000_987_654_321
    assert stat.S_IMODE(os.stat(volume_path(docker_client, mini, "files") / "suid").st_mode) == 0o4755


def test_set_layout_manifest_and_permissions(docker_client, mini):
    s = backup.backup(mini)
    assert s.manifest["baseline"] is True
    assert set(s.volumes) == {"data", "files"}
    assert s.volumes["data"]["quiesce"] == "stop" and s.volumes["files"]["quiesce"] == "none"
    assert {"containers.json", "containers.txt", "networks.json", "volumes.json", "images.json",
            "compose-config.json"} <= set(s.manifest["state"])
    assert stat.S_IMODE(os.stat(s.path).st_mode) == 0o700
    for f in s.path.iterdir():
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
    assert snapshots.check_set(s) == []
    tag = s.manifest["git"]["tag"]
    assert gitstate.run(mini.root, "cat-file", "-t", tag) == "tag"  # annotated
    assert gitstate.run(mini.root, "rev-parse", f"{tag}^{{commit}}") == gitstate.head(mini.root)
    assert gitstate.ref_exists(mini.root, "refs/heads/" + s.manifest["git"]["branch"])


def without_precopy(plan):
    """The plan with `precopy = false` on every volume."""
    from dataclasses import replace

    return replace(plan, volumes={k: replace(v, precopy=False) for k, v in plan.volumes.items()})


@pytest.mark.parametrize("precopy", [True, False], ids=["pre-copied", "precopy-false"])
def test_stopped_service_comes_back_even_when_export_fails(docker_client, mini, precopy):
    # fail inside the quiesced window: patch what runs there (the exporter, or the
    # pre-copy's catch-up), not the hook
    plan = mini if precopy else without_precopy(mini)
    real_export, real_catch_up = volumes.export, mirror.catch_up

    def failing_export(client, name, out, **kwargs):
        if name.endswith("_data"):
            assert service_state(docker_client, mini, "store")[0] == "exited"
            raise UndoitError("injected export failure")
        return real_export(client, name, out, **kwargs)

    def failing_catch_up(live, staging, first):
        assert service_state(docker_client, mini, "store")[0] == "exited"
        real_catch_up(live, staging, first)
        raise UndoitError("injected export failure")

    with mock.patch.object(volumes, "export", failing_export), mock.patch.object(mirror, "catch_up", failing_catch_up), \
            pytest.raises(UndoitError, match="injected"):
        backup.backup(plan)
    assert service_state(docker_client, mini, "store") == ("running", "healthy")
    assert not any(s.complete for s in snapshots.all_sets(mini.snapshots_dir))
    assert not list(mini.snapshots_dir.glob("*/.precopy-*"))  # the copy went with the set
    # and on success too
    backup.backup(plan)
    assert service_state(docker_client, mini, "store") == ("running", "healthy")


def test_unchanged_stack_reuses_and_one_change_exports_one(docker_client, mini):
    first = backup.backup(mini)
    assert backup.up_to_date(mini)
    second = backup.backup(mini)
    assert all(v.get("reused_from") == first.id for v in second.volumes.values())
    assert not list(second.path.glob("*.tar.zst"))
    assert second.manifest["git"]["reused"] and second.manifest["baseline"] is False
    (volume_path(docker_client, mini, "files") / "new.txt").write_text("changed")
    assert not backup.up_to_date(mini)
    third = backup.backup(mini)
    assert [p.name for p in third.path.glob("*.tar.zst")] == ["files.tar.zst"]
    assert third.volumes["data"]["reused_from"] == first.id
    assert snapshots.check_set(third) == []
    assert cycles.current(mini)[0].baseline.id == first.id


def test_flipped_byte_fails_verify_and_restore_leaves_volume_alone(docker_client, mini):
    s = backup.backup(mini)
    files = volume_path(docker_client, mini, "files")
    (files / "live.txt").write_text("live data")
    name = volumes.resolve(docker_client, mini.project_name, ["files"])["files"].name
    before = volumes.listing(docker_client, name)
    path = s.archive_path("files")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(UndoitError, match="files.tar.zst"):
        backup.verify(mini, s.id)
    compose(mini).stop(["app"])
    with pytest.raises(UndoitError, match="checksum"):
        restore.restore_volume(docker_client, s, "files", safety_dir=mini.snapshots_dir)
    assert volumes.listing(docker_client, name) == before
    assert (files / "live.txt").read_text() == "live data"


def test_verify_gives_the_verdict_a_restore_gives_on_device_nodes(docker_client, mini):
    """A set whose archive holds a device node the plan does not allow is not valid: every
    restore refuses it, so `doit verify` must not call it good."""
    from dataclasses import replace

    os.mknod(volume_path(docker_client, mini, "files") / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    s = backup.backup(mini)
    with pytest.raises(UndoitError, match=r"volume files holds 1 device node\(s\) \(first: null\).*devices = true"):
        backup.verify(mini, s.id)
    with pytest.raises(UndoitError, match="device node"):  # the same answer as a restore's
        restore.check_restorable(s, "files")
    allowed = replace(mini, volumes={**mini.volumes, "files": replace(mini.volumes["files"], devices=True)})
    assert backup.verify(allowed, s.id) == []
    restore.check_restorable(s, "files", devices=True)


def test_restore_refuses_volume_in_use(docker_client, mini):
    s = backup.backup(mini)
    with pytest.raises(UndoitError, match="in use by running container"):
        restore.restore_volume(docker_client, s, "files")


def test_sigkill_midway_leaves_no_valid_set(docker_client, mini, tmp_path):
    good = backup.backup(mini)
    (volume_path(docker_client, mini, "files") / "big").write_bytes(os.urandom(1 << 20))
    (volume_path(docker_client, mini, "data") / "more").write_text("x")
    script = tmp_path / "slow_backup.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(KIT)!r})
        from scripts.backup import backup
        from scripts.plan import plan
        p = plan.load({str(mini.path)!r}, env={{}})
        def slow(key):
            if key == "files":
                print("EXPORTED-FIRST", flush=True)
                time.sleep(60)
        backup.backup(p, export_hook=slow)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    for line in proc.stdout:
        if "EXPORTED-FIRST" in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    sets = snapshots.all_sets(mini.snapshots_dir)
    assert len(sets) == 2
    killed = [s for s in sets if s.id != good.id][0]
    assert not killed.complete
    assert list(killed.path.glob("*.tar.zst"))  # it had written an archive...
    assert snapshots.check_set(killed) != []  # ...and still does not count
    assert snapshots.latest_complete(mini.snapshots_dir, mini.project_name).id == good.id
    assert snapshots.check_set(good) == []
    # the killed run stopped `store`; bring it back the way a person would
    compose(mini).up()


def test_dirty_tree_refused_unless_included(docker_client, mini):
    (mini.root / "config.txt").write_text("v2 uncommitted\n")
    with pytest.raises(UndoitError, match="uncommitted changes"):
        backup.backup(mini)
    head = gitstate.head(mini.root)
    s = backup.backup(mini, include_dirty=True)
    git = s.manifest["git"]
    assert git["dirty_included"] and git["commit"] != head
    assert gitstate.head(mini.root) == head  # HEAD and the working tree untouched
    assert (mini.root / "config.txt").read_text() == "v2 uncommitted\n"
    assert gitstate.run(mini.root, "show", f"{git['tag']}:config.txt") == "v2 uncommitted"


def test_unsafe_member_stops_a_staged_restore_before_tar_sees_it(docker_client, mini, tmp_path):
    """A set whose archive and manifest were both rewritten: checksums pass, the member
    check does not, and neither the live volume nor anything outside it changes."""
    import io
    import json
    import tarfile

    import zstandard

    s = backup.backup(mini)
    outside = tmp_path / "outside"
    outside.mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        link = tarfile.TarInfo("./escape")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        tar.addfile(link)
        payload = tarfile.TarInfo("./escape/pwned")
        payload.size = 3
        tar.addfile(payload, io.BytesIO(b"bad"))
    evil = zstandard.ZstdCompressor().compress(buf.getvalue())
    path = s.archive_path("files")
    os.chmod(path, 0o600)
    path.write_bytes(evil)
    manifest = json.loads((s.path / "manifest.json").read_text())
    manifest["volumes"]["files"]["sha256"] = archive.hashlib.sha256(evil).hexdigest()
    (s.path / "manifest.json").write_text(json.dumps(manifest))
    s = snapshots.load_set(s.path)
    files = volume_path(docker_client, mini, "files")
    (files / "live.txt").write_text("live data")
    name = volumes.resolve(docker_client, mini.project_name, ["files"])["files"].name
    before = volumes.listing(docker_client, name)
    compose(mini).stop(["app"])
    with pytest.raises(UndoitError, match="below a symlink"):
        restore.restore_volume(docker_client, s, "files")
    assert list(outside.iterdir()) == []
    assert volumes.listing(docker_client, name) == before
    assert [p.name for p in files.parent.iterdir()] == ["_data"]


def test_volume_with_driver_options_goes_through_the_engine(docker_client, kit_images, tmp_path):
    """A bind-type local volume is mounted on its Mountpoint only while a container uses
    it: undoit must not read or fill that directory from the host."""
    from .conftest import unique

    device = tmp_path / "device"
    device.mkdir()
    (device / "kept.txt").write_text("data on the bound path")
    name = unique("utopts")
    docker_client.volumes.create(name, driver_opts={"type": "none", "o": "bind", "device": str(device)})
    try:
        assert volumes.host_path(docker_client, name) is None
        assert {e.path for e in volumes.listing(docker_client, name)} == {b".", b"kept.txt"}
    finally:
        docker_client.volumes.get(name).remove(force=True)


def test_staged_restore_without_rename_exchange(docker_client, mini):
    """Where the kernel has no RENAME_EXCHANGE the swap is two renames: same result."""
    s = backup.backup(mini)
    files = volume_path(docker_client, mini, "files")
    name = volumes.resolve(docker_client, mini.project_name, ["files"])["files"].name
    original = volumes.listing(docker_client, name)
    (files / "after-backup.txt").write_text("goes away")
    compose(mini).stop(["app"])
    with mock.patch.object(volumes, "_exchange", side_effect=OSError(22, "Invalid argument")):
        done = restore.restore_volume(docker_client, s, "files")
    assert done["staged"] is True
    assert volumes.listing(docker_client, name) == original
    assert replaced_contents_gone(files.parent) == ["_data"]
