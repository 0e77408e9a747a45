"""Copy-on-write backups and rollbacks on real copy-on-write filesystems: a second dockerd
whose data root is a loop-mounted btrfs, then XFS made with reflink=1, on a project
unlike the demo (an `herbarium`: a `press` service keeping `specimens`), over two change
cycles: each backup holds the service still only for a clone, each rollback clones the
set's clone back instead of extracting, undo swaps the parked contents back, prune
releases the clones of the sets it removes, and a kill at each of those steps leaves
the services running and nothing counted that the archive does not hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.repo import gitstate
from scripts.stack import clones, engine, volumes
from scripts.store import cow, snapshots

from .conftest import KIT, make_stack, sweep, unique, volume_path
from .cowengine import LoopEngine, Unavailable, as_the_engine, loop_engine
from .test_faults import killed
from .projects import compose_file, everything, keeper, phase, refill, volume, waiter
from .projects import plan as plan_of

pytestmark = [pytest.mark.docker, pytest.mark.long(3)]


@pytest.fixture(scope="module", params=["btrfs", "xfs"])
def cow_engine(request, docker_client, kit_images):
    """The process's engine while the module runs: a second dockerd with its data root on
    a 3 GiB loop-mounted btrfs, then XFS; all of it removed."""
    try:
        with loop_engine(request.param, 3, [kit_images["base"]]) as eng, as_the_engine(eng):
            assert engine.on_this_host()  # the kit reads its volumes' folders directly
            yield eng
    except Unavailable as err:  # .ci/servers.sh installs what it needs: in CI, its absence fails
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(str(err))


@pytest.fixture
def herbarium(cow_engine, tmp_path):
    name = unique("utherb")
    compose = compose_file({"press": keeper("specimens"), "catalog": waiter()}, volumes=["specimens"])
    plan = plan_of(["press", "catalog"], volumes={"specimens": volume("press", quiesce="stop")},
                   phases=[phase("specimens", "the specimens back", refill(["specimens"], ["press"]),
                                 volumes=["specimens"])],
                   full=everything(["specimens"], checks=()))
    try:
        p = make_stack(name, tmp_path, compose, plan)
        vol = volume_path(cow_engine.client, p, "specimens")
        (vol / "pressed").write_text("ready\n")
        (vol / "sheets").mkdir()
        for i in range(300):
            (vol / "sheets" / f"s{i:03d}.txt").write_text(f"sheet {i}\n" * 20)
        (vol / "atlas.bin").write_bytes(os.urandom(48 << 20))
        (vol / "plates.bin").write_bytes(os.urandom(4 << 20))
        os.link(vol / "sheets/s000.txt", vol / "sheets/first.txt")
        os.symlink("sheets/s001.txt", vol / "latest")
        yield p
    finally:
        sweep(cow_engine.client, name)


def doit(plan, *args, killed_at: str | None = None, timeout=300) -> subprocess.CompletedProcess:
    """`doit` on plan against the copy-on-write engine; killed_at: tests.killpoints' N."""
    env = dict(os.environ, UNDOIT_PLAN=str(plan.path), CI="true")
    head = [sys.executable, "-m", "tests.killpoints", killed_at, "0"] if killed_at else [sys.executable, "-m", "doit"]
    return subprocess.run([*head, "-f", str(KIT / "dodo.py"), "-d", str(KIT), *args], cwd=KIT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def contents(client, plan) -> list:
    """The volume as a restore must leave it: every entry's metadata and content digest."""
    name = volumes.resolve(client, plan.project_name, ["specimens"])["specimens"].name
    return sorted(e.meta for e in volumes.listing(client, name)) + sorted(volumes.content_digests(client, name).items())


def store(cow: LoopEngine, plan) -> Path:
    return clones.path_of(cow.root / clones.FOLDER, plan.snapshots_dir, "set", "key").parent.parent


def change(client, plan, cycle: int) -> None:
    vol = volume_path(client, plan, "specimens")
    with open(vol / "atlas.bin", "r+b") as f:  # a rewrite in place: the clone keeps the old blocks
        f.seek(4 << 20)
        f.write(os.urandom(8 << 20))
    with open(vol / "plates.bin", "wb") as f:  # rewritten whole: its old blocks are the clone's alone
        f.write(os.urandom(4 << 20))
    (vol / f"sheets/s{cycle + 1:03d}.txt").unlink()
    (vol / f"cycle{cycle}.txt").write_text(f"found in cycle {cycle}\n")


def test_backups_clone_and_rollbacks_clone_back_over_two_cycles(cow_engine, herbarium):
    plan, client = herbarium, cow_engine.client
    sets = []
    for cycle in (1, 2):
        if cycle == 2:  # what cycle 1 left, committed: the next backup is the next cycle's baseline
            (plan.root / "config.txt").write_text("v2\n")
            gitstate.run(plan.root, "commit", "-q", "-am", "v2")
        for task in ("backup", "checkpoint:specimens")[:cycle]:  # cycle 2: the phase's checkpoint too
            if task.startswith("checkpoint"):  # written since the backup: the checkpoint exports it anew
                (volume_path(client, plan, "specimens") / "label.txt").write_text("pressed in cycle 2\n")
            res = doit(plan, task)
            out = res.stdout + res.stderr
            assert res.returncode == 0, out[-3000:]
            assert "press stopped" in out and "a copy-on-write clone of" in out, out[-3000:]
        s = snapshots.latest_complete(plan.snapshots_dir, plan.project_name)
        assert s.manifest["kind"] == ("backup", "checkpoint")[cycle - 1]
        sets.append(s)
        entry = s.volumes["specimens"]
        assert entry["precopy"]["cloned"] and entry["held"]["services"] == ["press"]
        image = store(cow_engine, plan) / s.id / "specimens"
        assert image.is_dir() and json.loads((image.parent / "specimens.json").read_text())["sha256"] == entry["sha256"]
        at_backup = contents(client, plan)
        change(client, plan, cycle)
        changed = contents(client, plan)
        assert changed != at_backup
        _, alone = cow.pinned_bytes(image)
        if cycle == 1:  # (in cycle 2 the backup's clone shares those blocks with the checkpoint's)
            assert alone >= 4 << 20  # plates.bin's old blocks, rewritten by the change: the clone's alone now

        res = doit(plan, "rollback:specimens", "dry_run=1")
        assert "volumes cloned from the set's copy-on-write clones" in res.stdout, res.stdout[-3000:]
        res = doit(plan, "rollback:specimens", f"reason=cycle {cycle}")
        out = res.stdout + res.stderr
        assert res.returncode == 0, out[-3000:]
        assert f"cloned from set {s.id}'s copy-on-write clone" in out and "the archive not read" in out, out[-3000:]
        assert "specimens cloned from the set's copy-on-write clone(s)" in out and "read to the end" not in out
        assert contents(client, plan) == at_backup  # this cycle's point in time, byte for byte
        report = json.loads(max(plan.reports_dir.glob("*-specimens.json")).read_text())
        assert report["snapshot_set"] == s.id

        res = doit(plan, "undo")
        assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
        assert contents(client, plan) == changed  # the change back, from the parked contents

    res = doit(plan, "snapshots")
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "copy-on-write clones: 3 set(s) keep one" in out, out[-3000:]
    res = doit(plan, "prune", "keep_last=1")
    out = res.stdout + res.stderr
    assert res.returncode == 0 and f"released the copy-on-write clone(s) of set {sets[0].id}" in out, out[-3000:]
    assert not (store(cow_engine, plan) / sets[0].id).exists()
    assert (store(cow_engine, plan) / sets[1].id / "specimens").is_dir()
    res = doit(plan, "release", "yes=1")
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "set(s)' copy-on-write clones" in out, out[-3000:]
    assert not store(cow_engine, plan).exists()  # every clone released; the sets themselves stay
    assert snapshots.latest_complete(plan.snapshots_dir, plan.project_name).id == sets[1].id



def events(plan) -> list[str]:
    """What each state change of the last run under tests.killpoints was, in order."""
    return (plan.path.parent / "killpoints.count.events").read_text().splitlines()


def at(said: list[str], *parts: str) -> int:
    """The kill point right before the first state change whose line holds every part
    (a probe of whether a rename reaches a folder is never the one aimed at)."""
    return next(i for i, line in enumerate(said) if all(p in line for p in parts) and "probe" not in line) + 1


def clean(cow: LoopEngine, plan, client) -> None:
    """After a repair: the service runs, no partial set, no staging or clone that no
    complete set keeps sealed."""
    out = doit(plan, "snapshots")
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    running = {c.labels["com.docker.compose.service"] for c in client.containers.list(
        filters={"label": f"com.docker.compose.project={plan.project_name}"})}
    assert running == {"press", "catalog"}, (out.stdout + out.stderr)[-3000:]
    done = {s.id: s for s in snapshots.all_sets(plan.snapshots_dir) if s.complete}
    assert len(done) == len(snapshots.all_sets(plan.snapshots_dir))
    for folder in store(cow, plan).iterdir() if store(cow, plan).is_dir() else ():
        if folder.is_dir():
            assert folder.name in done, f"a clone no complete set keeps: {folder}"
            assert sorted(p.name for p in folder.iterdir()) == ["specimens", "specimens.json"]
    live = volume_path(client, plan, "specimens")
    assert [p.name for p in live.parent.iterdir()] == ["_data"]


def test_a_kill_at_each_copy_on_write_step_loses_nothing(cow_engine, herbarium):
    """SIGKILL while the clone is taken (the service stopped), before its seal, before
    the set's manifest; in a rollback while the set's clone is cloned back and at the
    swap; in undo at its swap: the next command repairs, the service runs, nothing is
    counted that the archive does not hold, and undo brings back the state before."""
    plan, client = herbarium, cow_engine.client
    vol = volume_path(client, plan, "specimens")
    for n in range(2):  # the second: a backup like those cut below (HEAD reused, a set before it)
        (vol / "round.txt").write_text(f"round {n}\n")
        assert killed(plan, 0, "backup")[0] == 0
    said = events(plan)
    first = snapshots.latest_complete(plan.snapshots_dir, plan.project_name)
    points = [at(said, "--reflink=always"), at(said, "specimens.json"), at(said, "manifest.json")]
    for n, point in enumerate(points):
        (vol / f"written{n}.txt").write_text(f"after the kill point {n}\n")
        killed(plan, point, "backup")
        clean(cow_engine, plan, client)
        assert snapshots.latest_complete(plan.snapshots_dir, plan.project_name).id == first.id
    assert killed(plan, 0, "backup")[0] == 0
    whole = snapshots.latest_complete(plan.snapshots_dir, plan.project_name)
    assert {b"written0.txt", b"written2.txt"} <= {e.path for e in whole.listing("specimens")}
    restored = contents(client, plan)

    change(client, plan, 1)
    before = contents(client, plan)
    assert killed(plan, 0, "rollback:specimens", "yes=1", f"set={whole.id}")[0] == 0
    said = events(plan)
    assert contents(client, plan) == restored
    assert killed(plan, 0, "undo")[0] == 0
    undo_said = events(plan)
    assert contents(client, plan) == before
    # the clone cloned back; the folder the replaced contents go to; the move after the swap
    for point in (at(said, "--reflink=always"), at(said, "os.mkdir", volumes.PARKED),
                  at(said, "os.rename", volumes.STAGING_PREFIX)):
        killed(plan, point, "rollback:specimens", "yes=1", f"set={whole.id}")
        out = doit(plan, "undo")
        assert out.returncode in (0, 1), (out.stdout + out.stderr)[-3000:]
        assert contents(client, plan) == before, (point, (out.stdout + out.stderr)[-3000:])
        clean(cow_engine, plan, client)
    for point in (at(undo_said, "os.mkdir", volumes.PARKED), at(undo_said, "os.rename", volumes.PARKED)):
        assert killed(plan, 0, "rollback:specimens", "yes=1", f"set={whole.id}")[0] == 0
        killed(plan, point, "undo")
        out = doit(plan, "undo")
        assert out.returncode == 0, (undo_said[point - 1], (out.stdout + out.stderr)[-3000:])
        assert contents(client, plan) == before
        clean(cow_engine, plan, client)
