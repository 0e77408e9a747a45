"""The rollback engine on a real engine and a real repo: steps, checks, safety, undo, dry
run, lock, and the refusal to run without a verified backup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.backup import backup
from scripts.repo import gitstate
from scripts.rollback import rollback, runlog
from scripts.stack import volumes
from scripts.store import listings, lock, snapshots
from scripts.errors import NO_BACKUP, PUT_BACK_FAILED, UndoitError

from .conftest import KIT, doit, make_stack, sweep, unique, volume_path
from .projects import app, check, compose_file, do, everything, healthy_when, phase, plan, redis, refill, volume

pytestmark = pytest.mark.docker

CANARY = "canary-S3cr3t-0451"

# the mini stack's Redis; its app on an internal network, healthy while conf/app.conf exists
COMPOSE = compose_file({"store": redis(), "app": app(
    user="0", networks=["inner"], volumes=["files:/files", "./:/srv:ro"], stop_grace_period="2s",
    healthcheck=healthy_when("test", "-f", "/srv/conf/app.conf", retries=2))},
    volumes=["data", "files"], networks={"inner": {"internal": True}})

REDIS_CLI = ["redis-cli", "-h", "127.0.0.1"]
PLAN = plan(
    ["store", "app"], project={"networks": ["inner"],
                               "test_command": ["sh", "-c", "test -f config.txt && test -f conf/app.conf"]},
    volumes={"data": volume("store"), "files": volume("app", quiesce="none")},
    phases=[
        phase("files", "config files", [do("restore-files", paths=["conf/"]), do("restart", services=["app"])],
              [check("files-match", paths=["conf/"]), check("healthy", services=["app"])]),
        phase("vol", "volume", refill(["files"], ["app"]),
              [check("volume-matches", volumes=["files"]), check("healthy")], volumes=["files"]),
        phase("net", "networks", [do("down"), do("remove-networks", networks=["inner"]),
                                  do("create-networks", networks=["inner"]), do("up")],
              [check("networks-exist", networks=["inner"]), check("container-count", expect=2), check("logs-clean")]),
        phase("cmd", "commands", [do("run", argv=["sh", "-c", "echo built > build.out"], cwd="conf"),
                                  do("exec", service="store", argv=[*REDIS_CLI, "set", "marker", CANARY]),
                                  do("note", text="tell the team")], [
            check("command", argv=["cat", "build.out"], cwd="conf", expect="built"),
            check("exec", service="store", argv=[*REDIS_CLI, "get", "marker"], expect=CANARY),
            check("test"),
            check("networks-absent", networks=["inner"], name="inner is gone (fails on purpose)")]),
        phase("broken", "fails midway", [do("stop", services=["app"]), do("restore-volumes", volumes=["files"]),
                                         do("restore-files", paths=["conf/"]), do("run", argv=["false"]),
                                         do("up", services=["app"])], volumes=["files"]),
    ],
    full=everything(["data", "files"], stop="down", checks=[check("container-count", expect=2), check("test")]),
    contacts={"On call": "+1 555 0100"}, after={"next_steps": ["Analyze root cause."]})


@pytest.fixture
def eng(docker_client, kit_images, tmp_path):
    name = unique()
    try:
        plan = make_stack(name, tmp_path, COMPOSE, PLAN, files={
            "conf/app.conf": "mode=full\n",
            "conf/tuning.conf": "workers=4\n",
            ".env": f"APP_ENV=prod\nAPI_SECRET={CANARY}\n",
        })
        (volume_path(docker_client, plan, "files") / "doc.txt").write_text("document v1\n")
        yield plan
    finally:
        sweep(docker_client, name)



def commit(root: Path, message: str) -> None:
    gitstate.run(root, "add", "-A")
    gitstate.run(root, "commit", "-q", "-m", message)


def fingerprint(docker_client, plan) -> dict:
    """Everything a rollback could change: volumes, containers, repo."""
    label = {"label": f"com.docker.compose.project={plan.project_name}"}
    vols = {v.name: listings.fingerprint(volumes.listing(docker_client, v.name))
            for v in docker_client.volumes.list(filters=label)}
    cons = sorted((c.name, c.id, c.status) for c in docker_client.containers.list(all=True, filters=label))
    nets = sorted(n.id for n in docker_client.networks.list(filters=label))
    repo = (gitstate.head(plan.root), gitstate.run(plan.root, "status", "--porcelain", "--untracked-files=all"),
            gitstate.run(plan.root, "for-each-ref"),
            {str(p.relative_to(plan.root)): p.read_bytes() for p in plan.root.rglob("*")
             if p.is_file() and ".git" not in p.parts})
    return {"volumes": vols, "containers": cons, "networks": nets, "repo": repo}


def test_no_overlay_restore_files_and_checks(docker_client, eng):
    backup.backup(eng)
    root = eng.root
    (root / "conf/app.conf").unlink()            # deleted: must come back
    (root / "conf/tuning.conf").write_text("workers=1\n")   # modified: must be reverted
    (root / "conf/added.conf").write_text("new\n")           # added since: must disappear
    commit(root, "change conf")
    (root / "conf/scratch.txt").write_text("untracked notes\n")  # untracked: moved aside
    rec = rollback.execute(eng, "files")
    assert rec["outcome"] == "success", rec
    assert (root / "conf/app.conf").read_text() == "mode=full\n"
    assert (root / "conf/tuning.conf").read_text() == "workers=4\n"
    assert not (root / "conf/added.conf").exists()
    assert not (root / "conf/scratch.txt").exists()
    moved = list((eng.snapshots_dir / "runs").rglob("moved/conf/scratch.txt"))
    assert len(moved) == 1 and moved[0].read_text() == "untracked notes\n"
    assert gitstate.ref_exists(root, f"refs/tags/{rec['pre_rollback_tag']}")
    assert [c["ok"] for c in rec["checks"]] == [True, True]


def test_volume_network_and_command_steps(docker_client, eng):
    s = backup.backup(eng)
    files = volume_path(docker_client, eng, "files")
    (files / "doc.txt").write_text("corrupted\n")
    (files / "junk.bin").write_bytes(b"x" * 100)
    rec = rollback.execute(eng, "vol")
    assert rec["outcome"] == "success", rec
    assert (files / "doc.txt").read_text() == "document v1\n" and not (files / "junk.bin").exists()
    assert len(rec["safety_sets"]) == 1
    safety = snapshots.get_set(eng.snapshots_dir, rec["safety_sets"][0])
    assert snapshots.check_set(safety) == [] and "junk.bin" in safety.listing_path("files").read_text()
    assert rec["snapshot_set"] == s.id

    rec = rollback.execute(eng, "net")
    assert rec["outcome"] == "success", rec

    rec = rollback.execute(eng, "cmd")
    results = {c["check"]: c for c in rec["checks"]}
    assert results["command"]["ok"] and results["exec"]["ok"] and results["test"]["ok"]
    assert not results["networks-absent"]["ok"]  # every check ran, and this one failed
    assert rec["outcome"] == "checks failed"
    assert (eng.root / "conf/build.out").read_text() == "built\n"


def test_no_baseline_refuses_and_changes_nothing(docker_client, eng):
    before = fingerprint(docker_client, eng)
    res = doit(eng, "rollback:vol")
    assert res.returncode == NO_BACKUP  # README "Exit codes"
    assert "no verified backup: run `doit backup` before the change" in res.stdout + res.stderr
    assert fingerprint(docker_client, eng) == before
    assert not eng.snapshots_dir.exists() or not snapshots.all_sets(eng.snapshots_dir)  # no backup taken


def test_corrupted_baseline_refuses_before_any_change(docker_client, eng):
    s = backup.backup(eng)
    path = s.archive_path("files")
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    (volume_path(docker_client, eng, "files") / "doc.txt").write_text("live\n")
    before = fingerprint(docker_client, eng)
    res = doit(eng, "rollback:vol")
    assert res.returncode == NO_BACKUP
    assert "no verified backup" in res.stdout + res.stderr and "files.tar.zst" in res.stdout + res.stderr
    assert fingerprint(docker_client, eng) == before


def test_rollback_never_backs_up_the_broken_stack(docker_client, eng):
    s = backup.backup(eng)
    (volume_path(docker_client, eng, "files") / "doc.txt").write_text("broken by the change\n")
    res = doit(eng, "rollback:vol")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    backups = [x for x in snapshots.all_sets(eng.snapshots_dir) if x.manifest.get("kind") == "backup"]
    assert [x.id for x in backups] == [s.id]  # no new backup set: the baseline was restored
    assert (volume_path(docker_client, eng, "files") / "doc.txt").read_text() == "document v1\n"


def test_failed_step_is_logged_services_come_back_and_undo_is_bit_identical(docker_client, eng):
    backup.backup(eng)
    files = volume_path(docker_client, eng, "files")
    (files / "doc.txt").write_text("state after the change\n")
    os.utime(files / "doc.txt", ns=(1_650_000_000_123_456_789, 1_650_000_000_123_456_789))
    (eng.root / "conf/tuning.conf").write_text("workers=9\n")
    (eng.root / "conf/new.conf").write_text("added by the change\n")
    commit(eng.root, "the change")
    (eng.root / "conf/notes.txt").write_text("untracked\n")
    name = volumes.resolve(docker_client, eng.project_name, ["files"])["files"].name
    vol_before = volumes.listing(docker_client, name)
    files_before = {p: (eng.root / p).read_bytes() for p in ("conf/tuning.conf", "conf/new.conf", "conf/notes.txt")}

    # keep=1: the half state is left for inspection (without it the run puts it back itself:
    # tests/test_atomic.py), and `doit undo` puts it back
    res = doit(eng, "rollback:broken", "reason=testing a failure", "keep=1")
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "step 4 (run) failed" in out and "On call: +1 555 0100" in out and "doit undo" in out
    log = eng.log_path.read_text()
    assert "FAILED" in log and "Failed at step 4 (run)" in log and "testing a failure" in log
    report = json.loads(next(eng.reports_dir.glob("*-broken.json")).read_text())
    assert report["failed_step"]["n"] == 4 and report["outcome"] == "step failed"
    # the failed run stopped `app`; it must be running again
    assert "brought back app" in report["services"]
    app = docker_client.containers.list(filters={"label": [f"com.docker.compose.project={eng.project_name}",
                                                           "com.docker.compose.service=app"]})
    assert app and app[0].status == "running"

    res = doit(eng, "undo")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert volumes.listing(docker_client, name) == vol_before
    for p, data in files_before.items():
        assert (eng.root / p).read_bytes() == data, p
    assert gitstate.run(eng.root, "status", "--porcelain", "--", "conf/tuning.conf", "conf/new.conf") == ""
    assert doit(eng, "undo").returncode != 0  # nothing left to undo


def test_dry_run_changes_nothing_and_real_run_still_runs(docker_client, eng):
    backup.backup(eng)
    (volume_path(docker_client, eng, "files") / "doc.txt").write_text("changed\n")
    (eng.root / "conf/app.conf").write_text("mode=broken\n")
    commit(eng.root, "change")
    before = fingerprint(docker_client, eng)
    res = doit(eng, "rollback:full", "dry_run=1")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    volname = volumes.resolve(docker_client, eng.project_name, ["files"])["files"].name
    assert volname in out and "git checkout" in out and "dry run: nothing was changed" in out
    assert fingerprint(docker_client, eng) == before
    assert not eng.log_path.exists()
    res = doit(eng, "rollback:full")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (eng.root / "conf/app.conf").read_text() == "mode=full\n"
    assert (volume_path(docker_client, eng, "files") / "doc.txt").read_text() == "document v1\n"


def test_secrets_never_reach_output_log_or_report(docker_client, eng):
    backup.backup(eng)
    res = doit(eng, "rollback:cmd", f"reason=secret is {CANARY}")
    # its last check fails on purpose; the put-back cannot take back what its command wrote,
    # and says so (exit 7), naming the file
    assert res.returncode == PUT_BACK_FAILED, res.stdout[-3000:]
    assert "untracked files differ: conf/build.out" in res.stdout + res.stderr
    assert CANARY in (eng.root / ".env").read_text()
    assert CANARY not in res.stdout + res.stderr
    assert CANARY not in eng.log_path.read_text()
    for report in eng.reports_dir.glob("*.json"):
        assert CANARY not in report.read_text()
    for f in eng.snapshots_dir.rglob("*.json"):
        assert CANARY not in f.read_text()


def test_two_rollbacks_at_once_and_a_dead_holder(docker_client, eng):
    backup.backup(eng)
    lock = rollback.lock_path(eng)
    # a real holder: another process inside the lock
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from scripts.store import lock\n"
        "with lock.held(%r, 'rollback full'):\n"
        "    print('held', flush=True); time.sleep(120)") % (str(KIT), str(lock))],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        res = doit(eng, "rollback:files")
        assert res.returncode != 0
        assert f"pid {holder.pid}" in res.stdout + res.stderr and "rollback full" in res.stdout + res.stderr
    finally:
        holder.kill()
        holder.wait()
    # the holder died without a word: the kernel released its lock, nothing to take over
    res = doit(eng, "rollback:files")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def _race(path: str, start, results) -> None:
    start.wait()  # both released at once: the tightest race two processes can run
    try:
        with lock.held(path, "race"):
            results.put("won")
            time.sleep(0.05)
    except UndoitError:
        results.put("lost")


def test_the_lock_is_won_by_exactly_one_of_two_racing_processes(tmp_path):
    """100 times, two processes race for the lock: exactly one wins each time."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for i in range(100):
        start, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_race, args=(str(tmp_path / f"lock{i}"), start, results)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        assert sorted(results.get(timeout=5) for _ in procs) == ["lost", "won"], i


def test_rehearsals_share_the_lock_and_exclude_live_runs_both_ways(tmp_path):
    path = tmp_path / ".lock"
    with lock.held(path, "rehearse", shared=True), lock.held(path, "rehearse", shared=True):  # side by side
        with pytest.raises(UndoitError, match="another rehearse holds the lock"):
            with lock.held(path, "rollback phase1"):
                pass
    with lock.held(path, "rollback phase1"):
        with pytest.raises(UndoitError, match="another rollback phase1 holds the lock"):
            with lock.held(path, "rehearse", shared=True):
                pass
    with lock.held(path, "rollback phase1"):  # every holder gone: free again
        pass


def test_checkpoint_is_where_a_phase_goes_back_to(docker_client, eng):
    backup.backup(eng)
    (eng.root / "conf/app.conf").write_text("mode=phase-one\n")
    commit(eng.root, "an earlier phase")
    cp = backup.checkpoint(eng, "files")
    assert cp.manifest["kind"] == "checkpoint" and cp.manifest["phase"] == "files"
    with pytest.raises(UndoitError, match="exists already"):
        backup.checkpoint(eng, "files")
    (eng.root / "conf/app.conf").write_text("mode=broken\n")
    commit(eng.root, "phase files, commit 1")
    (eng.root / "conf/tuning.conf").write_text("workers=0\n")
    commit(eng.root, "phase files, commit 2")  # two commits: HEAD~1 would be wrong
    rec = rollback.execute(eng, "files")
    assert rec["ref"] == "undoit/files/pre" and rec["outcome"] == "success", rec
    assert (eng.root / "conf/app.conf").read_text() == "mode=phase-one\n"
    assert (eng.root / "conf/tuning.conf").read_text() == "workers=4\n"
    assert runlog.last_record(eng, ("phase",))["procedure"] == "files"
