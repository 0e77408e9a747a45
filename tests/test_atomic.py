"""A rollback is a transaction: when a step or check fails, the state from just before it
is put back by itself and proven; with escalate=1 the wider procedure the plan names
runs next, in the same lock and one log entry. On a project unlike the demo: a `ledger`
volume kept by a `vault` service, a `teller` beside it, settings in `books/`."""

from __future__ import annotations

import json
import os

import pytest

from scripts.backup import backup
from scripts.errors import PUT_BACK_FAILED, ROLLBACK_FAILED
from scripts.repo import gitstate
from scripts.rollback import rollback, runlog
from scripts.stack import volumes
from scripts.store import snapshots

from .conftest import doit, make_stack, sweep, unique, volume_path
from .projects import app, check, compose_file, do, everything, keeper, phase, plan, volume

pytestmark = pytest.mark.docker

COMPOSE = compose_file({"vault": keeper("ledger", stop_grace_period="1s"), "teller": app()},
                       volumes=["ledger"])
CHECKS = [check("healthy", services=["vault"]),
          check("command", argv=["test", "-f", "books/audited"], name="the audit mark (fails: never there)")]
PLAN = plan(
    ["vault", "teller"], volumes={"ledger": volume("vault", quiesce="stop")},
    phases=[
        phase("books", "the ledger and its settings back",
              [do("restore-files", paths=["books/"]), do("stop", services=["vault"]),
               do("restore-volumes", volumes=["ledger"]), do("up", services=["vault"])],
              CHECKS, volumes=["ledger"], on_failure="full"),
        phase("midway", "fails after the volume is replaced",
              [do("stop", services=["vault"]), do("restore-volumes", volumes=["ledger"]),
               do("restore-files", paths=["books/"]), do("run", argv=["false"]), do("up", services=["vault"])],
              volumes=["ledger"]),
    ],
    full=everything(["ledger"], checks=[check("healthy")]),
    contacts={"Treasury": "ext. 4410"})



@pytest.fixture
def ledger(docker_client, kit_images, tmp_path):
    name = unique("utledger")
    try:
        plan = make_stack(name, tmp_path, COMPOSE, PLAN, files={"books/rates.ini": "rate=1\n"})
        vol = volume_path(docker_client, plan, "ledger")
        (vol / "entries.txt").write_text("cycle 1\n")
        backup.backup(plan)
        yield plan
    finally:
        sweep(docker_client, name)


def commit(root, message: str) -> None:
    gitstate.run(root, "add", "-A")
    gitstate.run(root, "commit", "-q", "-m", message)


def change(client, plan, cycle: int) -> None:
    """A change after the backup: the ledger written, the settings committed, a note left."""
    vol = volume_path(client, plan, "ledger")
    (vol / "entries.txt").write_text("".join(f"cycle {i}\n" for i in range(1, cycle + 1)))
    (vol / f"cycle{cycle}.bin").write_bytes(os.urandom(4096))
    (plan.root / "books/rates.ini").write_text(f"rate={cycle}\n")
    (plan.root / "books/new.ini").write_text("added by the change\n")
    commit(plan.root, f"change {cycle}")
    (plan.root / "books/draft.txt").write_text("untracked, never committed\n")
    (plan.root / "books/rates.ini").write_text(f"rate={cycle}.5\n")  # and an uncommitted edit


def state(client, plan) -> dict:
    """What the put-back must leave as it was: the volume's entries and contents, the
    project's files, git's HEAD, index and status, the running services and their images."""
    name = volumes.resolve(client, plan.project_name, ["ledger"])["ledger"].name
    running = {c.labels["com.docker.compose.service"]: c.attrs["Image"] for c in client.containers.list(
        filters={"label": f"com.docker.compose.project={plan.project_name}"})}
    return {"volume": sorted(e.meta for e in volumes.listing(client, name)),
            "contents": volumes.content_digests(client, name),
            "files": {str(p.relative_to(plan.root)): p.read_bytes() for p in plan.root.rglob("*")
                      if p.is_file() and ".git" not in p.parts},
            "git": (gitstate.head(plan.root), gitstate.run(plan.root, "status", "--porcelain", "-uall"),
                    gitstate.run(plan.root, "write-tree")),
            "running": running}


def test_a_failed_check_puts_back_the_state_from_before_and_proves_it(docker_client, ledger):
    """Two backups, each before its change; in each cycle `rollback:books` restores files
    and the volume from that cycle's set, its second check fails: exit 5, and volumes,
    files, index and services are as before the run, without another command; the log
    and the JSON report say so."""
    plan = ledger
    sets = {2: snapshots.latest_complete(plan.snapshots_dir, plan.project_name).id}
    for cycle in (2, 3):
        if cycle == 3:  # what cycle 2 left, committed and backed up: the next point in time
            commit(plan.root, "cycle 2 kept")
            sets[3] = backup.backup(plan).id
        change(docker_client, plan, cycle)
        before = state(docker_client, plan)
        res = doit(plan, "rollback:books", f"reason=cycle {cycle}")
        out = res.stdout + res.stderr
        assert res.returncode == ROLLBACK_FAILED, out[-3000:]
        assert "the state from before it is back (proven)" in out, out[-3000:]
        assert "doit rollback:full" in out and "escalate=1" in out  # the plan's wider procedure, advised
        assert state(docker_client, plan) == before
        report = json.loads(max(plan.reports_dir.glob("*-books.json")).read_text())
        assert report["outcome"] == "checks failed" and report["put_back"]["ok"], report["put_back"]
        assert report["snapshot_set"] == sets[cycle]  # this cycle's set, not the first
        assert "ledger (" in report["put_back"]["detail"] and report["undone"]
        assert [c["ok"] for c in report["checks"]] == [True, False]
        assert report["put_back"]["detail"] in ledger.log_path.read_text().replace("\n", " ") or \
            "**Put back:** proven" in ledger.log_path.read_text()
    res = doit(plan, "undo")
    assert res.returncode != 0 and "already undone" in res.stdout + res.stderr


def test_a_step_failing_midway_is_put_back_and_keep_leaves_it_for_undo(docker_client, ledger):
    plan = ledger
    change(docker_client, plan, 2)
    before = state(docker_client, plan)
    rec = rollback.execute(plan, "midway", yes=True)
    assert rec["outcome"] == "step failed" and rec["failed_step"]["n"] == 4, rec["failed_step"]
    assert rec["put_back"]["ok"], rec["put_back"]
    assert state(docker_client, plan) == before
    # keep=1: the half state stays (the set's ledger, services brought back); undo puts it back
    rec = rollback.execute(plan, "midway", yes=True, keep=True)
    assert rec["put_back"] is None and "brought back vault" in rec["services"], rec["services"]
    vol = volume_path(docker_client, plan, "ledger")
    assert (vol / "entries.txt").read_text() == "cycle 1\n" and not (vol / "cycle2.bin").exists()
    assert doit(plan, "undo").returncode == 0
    assert state(docker_client, plan) == before


def test_escalate_runs_the_wider_procedure_in_one_log_entry(docker_client, ledger):
    plan = ledger
    change(docker_client, plan, 2)
    res = doit(plan, "rollback:books", "escalate=1")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "escalating: phase books failed and was put back; running full" in out
    vol = volume_path(docker_client, plan, "ledger")
    assert (vol / "entries.txt").read_text() == "cycle 1\n" and not (vol / "cycle2.bin").exists()
    assert (plan.root / "books/rates.ini").read_text() == "rate=1\n" and not (plan.root / "books/new.ini").exists()
    log = plan.log_path.read_text()
    assert log.count("\n## ") == 1 and "### Escalated to full full" in log and "**Put back:** proven" in log
    report = json.loads(max(plan.reports_dir.glob("*-books.json")).read_text())
    assert report["escalation"]["outcome"] == "success" and report["escalation"]["procedure"] == "full"
    # the wider run is the last rollback: undo puts back the state from before it
    assert runlog.last_record(plan, kinds=("phase", "full"))["procedure"] == "full"


def test_decide_shows_the_escalation_and_the_dry_run_says_what_a_failure_does(ledger):
    plan = ledger
    res = doit(plan, "rollback:books", "dry_run=1")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "if a step or check fails: the state from before the run is put back and proven" in res.stdout
    assert "then full is advised (escalate=1 runs it)" in res.stdout
    assert PUT_BACK_FAILED == 7  # README "Exit codes"
