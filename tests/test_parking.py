"""A swap moves what it replaces into the safety set ("parked") instead of copying it:
the contents stay exactly as they were, `doit undo` puts them back, and a run killed
around the swap leaves them in the set or in the volume, never lost."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from scripts.backup import backup
from scripts.rollback import repair, restore, rollback, undo
from scripts.stack import volumes
from scripts.store import snapshots
from scripts.plan.plan import Procedure, Step

from .conftest import volume_path

pytestmark = pytest.mark.docker


def contents(folder) -> dict:
    """Every entry's metadata and every file's bytes: what a safety copy must keep."""
    out = {}
    for dirpath, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = open(p, "rb").read() if os.path.isfile(p) else b""
            out[os.path.relpath(p, folder)] = (st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns, data)
    return out


@pytest.fixture
def changed(docker_client, mini):
    """mini backed up with doc.txt v1, then changed: (plan, the volume's folder, its contents now)."""
    files = volume_path(docker_client, mini, "files")
    (files / "doc.txt").write_text("v1\n")
    backup.backup(mini)
    plan = replace(mini, phases=(Procedure(id="files", title="files", kind="phase", steps=(
        Step("stop", {"services": ["app"]}), Step("restore-volumes", {"volumes": ["files"]}), Step("up", {}))),))
    (files / "doc.txt").write_text("v2\n")
    (files / "sub").mkdir()
    (files / "sub" / "new.bin").write_bytes(os.urandom(4096))
    os.chmod(files / "sub" / "new.bin", 0o640)
    yield plan, files, contents(files)
    restore.discard_safety_sets(plan.snapshots_dir)


def test_the_replaced_contents_are_moved_into_the_safety_set_and_undo_puts_them_back(docker_client, changed):
    plan, files, before = changed
    rec = rollback.execute(plan, "files", yes=True)
    assert rec["outcome"] == "success", rec
    assert (files / "doc.txt").read_text() == "v1\n" and not (files / "sub").exists()
    safety = snapshots.get_set(plan.snapshots_dir, rec["safety_sets"][0])
    parked = safety.parked_path("files")
    assert parked is not None and contents(parked) == before  # exactly what was there, not a copy of it
    assert not list(safety.path.glob("*.tar.zst"))
    assert snapshots.check_set(safety) == []  # its listing matches the folder
    assert not list(files.parent.glob(f"{volumes.STAGING_PREFIX}*"))

    undone = undo.undo(plan)
    assert undone["volumes"] == ["files"]
    assert contents(files) == before
    assert not parked.exists()  # moved back in, not copied
    # what the rollback had restored is kept in turn, the same way
    later = [snapshots.get_set(plan.snapshots_dir, p.name) for p in (plan.snapshots_dir / snapshots.SAFETY).iterdir()
             if p.name != safety.id]
    assert len(later) == 1 and (later[0].parked_path("files") / "doc.txt").read_text() == "v1\n"


def test_a_run_killed_between_the_swap_and_the_move_leaves_the_contents_to_the_next_command(
        docker_client, changed, monkeypatch):
    plan, files, before = changed
    real = os.rename

    def killed(src, dst, *a, **k):
        if volumes.PARKED in str(dst) and os.path.basename(dst) == "files":
            raise KeyboardInterrupt  # the swap is done, the move not
        return real(src, dst, *a, **k)

    monkeypatch.setattr(volumes.os, "rename", killed)
    with pytest.raises(KeyboardInterrupt):  # keep: as a run that died there (no put-back of its own)
        rollback.execute(plan, "files", yes=True, keep=True)
    monkeypatch.undo()
    stranded = list(files.parent.glob(f"{volumes.STAGING_PREFIX}*"))
    assert len(stranded) == 1 and contents(stranded[0]) == before  # still there, in the volume's folder
    said = repair.repair_for(plan)
    assert any("as its safety copy" in line for line in said), said
    safety = snapshots.get_set(plan.snapshots_dir, undo.last_record(plan)["safety_sets"][0])
    assert contents(safety.parked_path("files")) == before
    assert (files / "doc.txt").read_text() == "v1\n"
    assert not list(files.parent.glob(f"{volumes.STAGING_PREFIX}*"))
    undo.undo(plan)
    assert contents(files) == before


def test_a_run_killed_before_the_swap_leaves_the_volume_as_it_was(docker_client, changed, monkeypatch):
    plan, files, before = changed

    def killed(a, b):
        raise KeyboardInterrupt

    monkeypatch.setattr(volumes, "_exchange", killed)
    with pytest.raises(KeyboardInterrupt):  # keep: as a run that died there (no put-back of its own)
        rollback.execute(plan, "files", yes=True, keep=True)
    monkeypatch.undo()
    said = repair.repair_for(plan)
    assert any("keeps its contents" in line for line in said), said
    assert contents(files) == before
    assert not list(files.parent.glob(f"{volumes.STAGING_PREFIX}*"))  # the build that was never swapped in
    safety = snapshots.get_set(plan.snapshots_dir, undo.last_record(plan)["safety_sets"][0])
    assert not safety.parked_path("files").exists()
    undone = undo.undo(plan)
    assert undone["volumes"] == [] and contents(files) == before


@pytest.mark.parametrize("cut", ["between the swap and the move", "before the swap"])
def test_a_run_interrupted_around_its_swap_puts_itself_back_and_loses_nothing(docker_client, changed, monkeypatch,
                                                                             cut):
    """Ctrl-C at the swap: the run's own put-back first finishes what the swap began (the
    contents swapped out land in the safety set, never taken for a dead restore's
    leftovers), then puts them back: the volume holds exactly what it held, and nothing
    is left beside it."""
    plan, files, before = changed
    real_rename, real_exchange, cut_once = os.rename, volumes._exchange, []

    def rename(src, dst, *a, **k):
        if volumes.PARKED in str(dst) and os.path.basename(dst) == "files" and not cut_once:
            cut_once.append(dst)
            raise KeyboardInterrupt  # the swap is done, the move not (once: the put-back makes it)
        return real_rename(src, dst, *a, **k)

    def exchange(a, b):
        raise KeyboardInterrupt

    if cut == "before the swap":
        monkeypatch.setattr(volumes, "_exchange", exchange)
    else:
        monkeypatch.setattr(volumes.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        rollback.execute(plan, "files", yes=True)
    monkeypatch.undo()
    assert volumes._exchange is real_exchange
    rec = undo.last_record(plan)
    assert rec["put_back"]["ok"] and rec["undone"], rec["put_back"]
    assert contents(files) == before
    assert not list(files.parent.glob(f"{volumes.STAGING_PREFIX}*"))
    assert repair.repair_for(plan) == []  # nothing left for the next command
    assert contents(files) == before
