"""A phase names its change (git ref + steps) and the rehearsal applies it, sees it felt,
rolls it back, and applies it again; on a project of the tests' own: a Postgres with a
migration that drops a table and a service whose healthcheck a config change breaks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from scripts.rehearse import changes
from scripts.repo import gitstate
from scripts.plan import plan as planmod
from scripts.stack.compose import for_plan
from scripts.errors import DRILL_FAILED, UndoitError

from .conftest import KIT, make_stack, sweep, unique
from .projects import app, check, compose_file, do, full, healthy_when, phase, plan, postgres, volume, write_plan

COMPOSE = compose_file({
    "books": postgres("ledger", volumes=["pgdata:/var/lib/postgresql/data", "./migrations:/migrations:ro"]),
    # reads its config live: the change breaks it without a restart
    "shop": app(volumes=["./conf:/conf:ro"], healthcheck=healthy_when("grep", "-q", "^mode=on$$", "/conf/shop.conf",
                                                                       retries=3)),
}, volumes=["pgdata"])

MIGRATE = ["psql", "-U", "postgres", "-d", "ledger", "-v", "ON_ERROR_STOP=1", "-q", "-f"]

ORDERS = check("exec", name="orders", service="books", expect="3",
               argv=["psql", "-U", "postgres", "-d", "ledger", "-Atc", "select count(*) from orders"])
MIGRATION_002 = {"ref": "main..release~1",  # from the release branch
                 "steps": [do("exec", service="books", argv=MIGRATE + ["/migrations/002_drop_orders.sql"])]}

PLAN = plan(["books", "shop"], volumes={"pgdata": volume("books", quiesce="stop")}, phases=[
    phase("migrate", "orders table dropped by migration 002",
          [do("stop", services=["books"]), do("restore-files", paths=["migrations"]),
           do("restore-volumes", volumes=["pgdata"]), do("up")], [ORDERS], change=MIGRATION_002),
    phase("config", "shop switched off by its config", [do("restore-files", paths=["conf"]), do("up")],
          [check("healthy", services=["shop"])], change={"ref": "release~1..release", "settle": 4}),
    phase("forgetful", "the migration again, by a plan that forgets the volume",
          [do("restore-files", paths=["migrations"]), do("up")], [ORDERS], change=MIGRATION_002),
    phase("untouched", "a phase with no change named", [do("up")], [check("healthy")]),
], full=full([do("up")]))

WORKFLOW = KIT / "examples" / "github-actions-rehearse.yml"


# ---------------------------------------------------------------------------- pure: the plan

def _plan(tmp_path: Path, phase_extra: str = "", *phases: dict, **tables):
    """A plan of one service, its phase p1 with phase_extra (TOML) in it, then phases."""
    doc = plan(["a"], phases=[phase("p1", "t", **tomllib.loads(phase_extra)), *phases], full=full(title="f"), **tables)
    return planmod.load(write_plan(tmp_path / "p.toml", doc, "x", tmp_path), env={})


@pytest.mark.parametrize("extra, why", [
    ('change = { ref = "--upload-pack=x" }', "a branch, tag or commit"),
    ('change = { ref = "a..b..c" }', "a branch, tag or commit"),
    ('change = { }', "nothing to apply"),
    ('change = { ref = "x", settle = -1 }', "seconds"),
    ('change = { ref = "x", steps = [{ do = "restore-volumes", volumes = [] }] }', "unknown type"),
    ('change = { ref = "x", wat = 1 }', "wat"),
])
def test_a_bad_change_is_a_plan_error_naming_the_key(tmp_path, extra, why):
    with pytest.raises(UndoitError) as info:
        _plan(tmp_path, extra)
    assert why in str(info.value) and "phase.p1.change" in str(info.value) and info.value.exit_code == 2


def test_which_changes_a_drill_applies(tmp_path):
    plan = _plan(tmp_path, 'change = { ref = "c1" }', phase("p2", "t"),
                 phase("p3", "t", change={"ref": "main~2..main", "steps": [do("up")]}),
                 scenario=[{"id": "s", "title": "t", "keeps": ["p1"], "rolls_back": ["p2", "p3"]}])
    ids = lambda pid: [p.id for p in changes.phases_of(plan, plan.procedure(pid))]  # noqa: E731
    assert ids("p1") == ["p1"] and ids("p2") == [] and ids("full") == ["p1", "p3"] and ids("s") == ["p3"]
    assert plan.procedure("p3").change.ref == "main~2..main"


def _commit_all(root: Path, message: str) -> str:
    gitstate.run(root, "add", "-A")
    gitstate.run(root, "commit", "-q", "-m", message)
    return gitstate.head(root)


def test_the_change_keeps_its_commits_and_refuses_what_no_longer_fits(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "a.txt").write_text("one\n")
    gitstate.init(root, "base")
    gitstate.run(root, "checkout", "-q", "-b", "feature")
    (root / "a.txt").write_text("two\n")
    _commit_all(root, "first")
    (root / "b.txt").write_text("new\n")
    _commit_all(root, "second")
    gitstate.run(root, "checkout", "-q", "main")
    (root / "c.txt").write_text("main moved on\n")  # HEAD gained a commit the branch lacks
    start = _commit_all(root, "later")
    plan = _plan(tmp_path, 'change = { ref = "feature" }')
    tip, files = changes.apply_files(root, root, plan.procedure("p1"))
    assert files == 2 and gitstate.head(root) == tip
    assert (root / "a.txt").read_text() == "two\n" and (root / "b.txt").exists()
    assert (root / "c.txt").exists(), "HEAD's own later commit was undone by the change"
    # two commits stay two: a plan that rolls back with HEAD~1 would miss the first
    assert gitstate.run(root, "rev-parse", "HEAD~2") == start
    # applied again: already there, nothing changes
    assert changes.apply_files(root, root, plan.procedure("p1"))[1] == 0
    # HEAD changed the same line another way: the change no longer fits
    gitstate.run(root, "reset", "--hard", "-q", start)
    (root / "a.txt").write_text("three\n")
    moved = _commit_all(root, "a.txt differently")
    with pytest.raises(UndoitError, match="does not apply to HEAD: conflict in a.txt"):
        changes.apply_files(root, root, plan.procedure("p1"))
    assert gitstate.head(root) == moved and not gitstate.dirty(root), "a change that did not apply left traces"


def test_a_range_with_merges_applies_as_one_diff(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "a.txt").write_text("one\n")
    base = gitstate.init(root, "base")
    gitstate.run(root, "checkout", "-q", "-b", "side")
    (root / "s.txt").write_text("side\n")
    _commit_all(root, "side")
    gitstate.run(root, "checkout", "-q", "-b", "release", base)
    (root / "r.txt").write_text("release\n")
    _commit_all(root, "release")
    gitstate.run(root, "merge", "-q", "--no-edit", "side")
    gitstate.run(root, "checkout", "-q", "main")
    plan = _plan(tmp_path, f'change = {{ ref = "{base}..release" }}')
    tip, files = changes.apply_files(root, root, plan.procedure("p1"))
    assert files == 2 and (root / "s.txt").exists() and (root / "r.txt").exists()
    assert gitstate.run(root, "rev-parse", "HEAD~1") == base  # one commit


# ---------------------------------------------------------------------------- real engine


@pytest.fixture
def shop(docker_client, kit_images, tmp_path):
    name = unique("chg")
    try:
        plan = make_stack(name, tmp_path, COMPOSE, PLAN, files={
            "conf/shop.conf": "mode=on\n",
            "migrations/001_orders.sql": "create table orders(id int);\n"})
        compose = for_plan(plan)
        compose.exec("books", *MIGRATE, "/migrations/001_orders.sql")
        compose.exec("books", "psql", "-U", "postgres", "-d", "ledger", "-qc",
                     "insert into orders select generate_series(1, 3)")
        # the team's next release, on a branch: a migration, then a config change
        root = plan.root
        gitstate.run(root, "checkout", "-q", "-b", "release")
        (root / "migrations" / "002_drop_orders.sql").write_text("drop table orders;\n")
        gitstate.run(root, "add", "-A")
        gitstate.run(root, "commit", "-q", "-m", "002: orders go")
        (root / "conf" / "shop.conf").write_text("mode=off\n")
        gitstate.run(root, "commit", "-q", "-am", "shop off")
        gitstate.run(root, "checkout", "-q", "main")
        yield plan
    finally:
        sweep(docker_client, name)


def _workflow_commands() -> list[str]:
    """The example workflow's `run:` lines that call the kit."""
    return [m.group(1).strip() for m in re.finditer(r"(?m)^\s+- run: (doit .*)$", WORKFLOW.read_text())]


@pytest.mark.docker
def test_rehearsal_applies_each_change_sees_it_felt_rolls_back_and_reapplies(docker_client, shop):
    from junitparser import Failure, JUnitXml

    commands = _workflow_commands()
    assert [c.split()[-1] for c in commands] == ["backup", "rehearse"], commands
    env = dict(os.environ, UNDOIT_PLAN=str(shop.path), UNDOIT_KIT=str(KIT), CI="true",
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    # the workflow's own commands, as the workflow runs them
    backup = subprocess.run(["bash", "-c", commands[0]], env=env, capture_output=True, text=True, timeout=300)
    assert backup.returncode == 0, backup.stdout[-3000:] + backup.stderr[-2000:]
    res = subprocess.run(["bash", "-c", commands[1] + " only=migrate,config,forgetful,untouched"], env=env,
                         capture_output=True, text=True, timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == DRILL_FAILED, out[-4000:]  # forgetful fails, and says so with its own code

    json_path = max(shop.reports_dir.glob("rehearsal-*.json"))
    report = json.loads(json_path.read_text())
    rows = {r["procedure"]: r for r in report["rows"]}
    for pid in ("migrate", "config"):
        assert rows[pid]["ok"], rows[pid]
        assert rows[pid]["reapplied"] is True, rows[pid]
    assert rows["migrate"]["felt"] == ["orders"]
    assert rows["config"]["felt"] == ["healthy"]
    bad = rows["forgetful"]
    assert not bad["ok"] and bad["felt"] == ["orders"] and bad["reapplied"] is None
    assert any(f.startswith("orders:") for f in bad["failed"]), bad
    assert rows["untouched"]["ok"] and rows["untouched"]["change"] is None
    assert "no change rehearsed" in out
    assert re.search(r"FAIL forgetful: orders: .*", out), out[-3000:]  # the whole reason, below the table
    assert report["archives_proven"] == ["pgdata"]
    # CI=true: plain lines, one per drill and step, no escape codes; every step in the log
    assert "\x1b[" not in out
    assert "drill migrate: applying the change again" in out and re.search(r"drill config: PASS .* in [0-9.]+ s", out)
    assert "[1/4] stop" not in out
    log = Path(report["log"])
    assert "[1/4] stop" in log.read_text() and (log.stat().st_mode & 0o777) == 0o600

    # the live stack never saw the change
    compose = for_plan(shop)
    assert compose.exec("books", "psql", "-U", "postgres", "-d", "ledger", "-Atc",
                        "select count(*) from orders").strip() == "3"
    assert (shop.root / "conf" / "shop.conf").read_text() == "mode=on\n"
    assert not (shop.root / "migrations" / "002_drop_orders.sql").exists()

    # the JUnit file, read by a JUnit reader: a case per drill, a failure per reason
    xml = JUnitXml.fromfile(str(json_path.with_suffix(".xml")))
    cases = {c.name: c for suite in xml for c in suite}
    assert {"migrate", "config", "forgetful", "untouched"} <= set(cases)
    assert cases["migrate"].is_passed and cases["config"].is_passed and cases["untouched"].is_passed
    failures = [r for r in cases["forgetful"].result if isinstance(r, Failure)]
    assert failures and failures[0].message.startswith("orders:")
    assert xml.failures == sum(1 for r in report["rows"] if not r["ok"]) == 1
