"""A snapshots folder on a filesystem too small: a backup and a rollback each end with one
line, nothing partial is left, the previous set and the live stack are untouched."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace

import pytest

from scripts.backup import backup
from scripts.rollback import rollback
from scripts.stack import volumes
from scripts.store import snapshots
from scripts.errors import UndoitError
from scripts.plan.plan import Procedure, Step

from .conftest import volume_path

pytestmark = pytest.mark.docker


@pytest.fixture
def small(tmp_path):
    """A 24 MiB tmpfs, unmounted afterwards."""
    path = tmp_path / "small"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path, mib: int, name: str = "blob") -> None:
    with open(path / name, "wb") as f:
        f.write(os.urandom(mib << 20))  # random: zstd cannot shrink it


def services_running(client, plan) -> list[str]:
    return sorted(c.labels["com.docker.compose.service"] for c in client.containers.list(
        filters={"label": f"com.docker.compose.project={plan.project_name}"}))


def test_a_backup_and_a_rollback_on_a_full_disk_end_with_one_line_each(docker_client, mini, small, capsys,
                                                                       monkeypatch):
    files = volume_path(docker_client, mini, "files")
    fill(files, 14)
    plan = replace(mini, snapshots_dir=small / "snapshots", full=Procedure(
        id="full", title="everything", kind="full", steps=(
            Step("stop", {"services": ["app"]}), Step("restore-volumes", {"volumes": ["files"]}), Step("up", {}))))
    first = backup.backup(plan)  # 14 MiB: fits
    running = services_running(docker_client, plan)
    # the next backup needs another 14 MiB: there are about 10 left
    fill(files, 14, "blob2")
    with pytest.raises(UndoitError) as err:
        backup.backup(plan)
    assert "\n" not in str(err.value) and ("no space left" in str(err.value) or "not enough room" in str(err.value))
    assert [s.id for s in snapshots.all_sets(plan.snapshots_dir)] == [first.id]  # no partial set left
    assert snapshots.check_set(first) == [] and services_running(docker_client, plan) == running
    # a rollback whose safety copy of the volume (28 MiB) cannot fit: a copy, as where the
    # engine's data root spans mounts (the replaced contents cannot be moved aside instead)
    monkeypatch.setattr(volumes, "park_folder", lambda *a: None)
    listing = sorted(e.meta for e in volumes.listing(docker_client, first.volumes["files"]["name"]))
    rec = rollback.execute(plan, "full", yes=True)
    assert rec["outcome"] == "step failed", rec
    assert "\n" not in rec["failed_step"]["detail"]
    assert "no space left" in rec["failed_step"]["detail"] or "not enough room" in rec["failed_step"]["detail"]
    assert not list((plan.snapshots_dir / snapshots.SAFETY).glob("*"))  # the partial safety copy is gone
    assert not list(files.parent.glob("undoit-staging-*"))  # nor what was built ahead to swap in
    assert sorted(e.meta for e in volumes.listing(docker_client, first.volumes["files"]["name"])) == listing
    assert services_running(docker_client, plan) == running  # brought back
    # the record says what happened (the log and report live elsewhere than the full disk)
    assert "Failed at step 2 (restore-volumes)" in plan.log_path.read_text()
    assert (plan.reports_dir / f"{rec['run']}.json").is_file()
    assert "Traceback" not in capsys.readouterr().out
