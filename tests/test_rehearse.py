"""`doit rehearse` on the demo: the whole drill green, the live stack untouched, nothing
left behind (after success, failure and SIGINT), and failures reported, not hidden."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from scripts.backup import backup, cycles
from scripts.rehearse import rehearse
from scripts.repo import gitstate
from scripts.stack import volumes
from scripts.stack.compose import for_plan
from scripts.errors import INTERRUPTED, UndoitError

from .conftest import KIT, live_demo

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def live(docker_client, kit_images, tmp_path_factory):
    """A live demo, up and backed up, with a plan file of its own (for `doit` runs)."""
    with live_demo(docker_client, tmp_path_factory.mktemp("rehearse"), "utreh") as plan:
        yield plan


PG_CONTENT = {
    "postgres_data": ("mvp-postgres", "app", ["vehicles", "schema_migrations", "tenants"]),
    "platform_db_data": ("mvp-platform-vehicles-db", "vehicles", ["vehicle_models"]),
}


def live_state(client, plan) -> dict:
    """The live stack as a rehearsal must leave it: containers, volumes, networks, repo."""
    label = {"label": f"com.docker.compose.project={plan.project_name}"}
    containers = sorted((c.name, c.id, c.status, c.attrs["State"]["StartedAt"])
                        for c in client.containers.list(all=True, filters=label))
    refs = volumes.resolve(client, plan.project_name, list(plan.volumes))
    vols = {}
    compose = for_plan(plan)
    for key, ref in refs.items():
        if key in PG_CONTENT:
            # a running Postgres touches its own files (autovacuum, stats): compare its rows
            service, db, tables = PG_CONTENT[key]
            sql = " union all ".join(f"select '{t}', md5(coalesce(string_agg(x::text, ',' order by x::text), '')) "
                                     f"from {t} x" for t in tables)
            vols[key] = compose.exec(service, "psql", "-U", "postgres", "-d", db, "-Atc", sql)
        else:
            vols[key] = backup.volume_state(client, plan, key, ref.name)["fingerprint"]
    networks = sorted(n.id for n in client.networks.list(filters=label))
    repo = (gitstate.head(plan.root), gitstate.run(plan.root, "for-each-ref"),
            gitstate.run(plan.root, "status", "--porcelain", "--untracked-files=all"),
            gitstate.run(plan.root, "worktree", "list", "--porcelain"),
            {str(p.relative_to(plan.root)): p.read_bytes() for p in plan.root.rglob("*")
             if p.is_file() and ".git" not in p.parts})
    return {"containers": containers, "volumes": vols, "networks": networks, "repo": repo}


def leftovers(client, plan) -> list[str]:
    prefix = f"{plan.project_name}-rehearsal-"
    # filtered by the engine: listing every container races with other projects' removals
    out = [c.name for c in client.containers.list(all=True, filters={"name": prefix}) if c.name.startswith(prefix)]
    out += [v.name for v in client.volumes.list() if v.name.startswith(prefix)]
    out += [n.name for n in client.networks.list() if n.name.startswith(prefix)]
    out += [line for line in gitstate.run(plan.root, "worktree", "list").splitlines()
            if "rehearsal" in line]
    return out


@pytest.mark.long(6)
def test_full_drill_is_green_and_leaves_the_live_stack_alone(docker_client, live):
    before = live_state(docker_client, live)
    report = rehearse.rehearse(live)
    failed = [(r["procedure"], r["failed"]) for r in report["rows"] if not r["ok"]]
    assert report["ok"], failed
    drilled = [r["procedure"] for r in report["rows"] if r["kind"] != "proof"]
    assert drilled == [p.id for p in live.phases] + ["full"] + [s.id for s in live.scenarios]
    assert set(report["archives_proven"]) == set(live.volumes)
    for r in report["rows"]:  # how fast against the runbook: bench/rehearse.py (never a timed assertion)
        if r["runbook_minutes"]:  # the ratio is the drill's own time (seconds are shown to 0.1 s)
            budget = r["runbook_minutes"] * 60
            assert r["seconds"] > 0 and abs(r["ratio"] * budget - r["seconds"]) <= 0.05 + 0.00005 * budget + 1e-9, r
    # every change was felt: some check of its procedure failed before the rollback
    # (phase 11 only adds tests; its drill changes nothing)
    drills = [r for r in report["rows"] if r["kind"] != "proof"]
    unfelt = [r["procedure"] for r in drills if r["procedure"] != "phase11" and not r["felt"]]
    assert unfelt == [], unfelt
    # each change applied from the plan's refs and steps, and applied again after its rollback
    assert [r["procedure"] for r in drills if r["reapplied"] is not True] == ["phase11"]
    assert [r["procedure"] for r in drills if r["change"] is None] == ["phase11"]
    assert os.path.exists(report["path"])
    assert live_state(docker_client, live) == before
    assert leftovers(docker_client, live) == []


def test_sigint_tears_the_sandbox_down(docker_client, live):
    before = live_state(docker_client, live)
    env = dict(os.environ, UNDOIT_PLAN=str(live.path), CI="true")
    proc = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "-d", str(KIT),
                             "rehearse", "only=full"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    prefix = f"{live.project_name}-rehearsal-"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if docker_client.containers.list(filters={"name": prefix}):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the sandbox never came up")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:  # whatever failed above, no rehearsal runs on unwatched
            proc.kill()
            proc.communicate()
    assert proc.returncode == INTERRUPTED, out[-3000:]
    assert "removing the sandbox" in out
    assert leftovers(docker_client, live) == []
    assert live_state(docker_client, live) == before


def test_a_corrupted_archive_fails_the_rehearsal_and_is_named(docker_client, live):
    base = cycles.current(live)[0].baseline
    path = base.archive_path("redis_data")
    data = path.read_bytes()
    try:
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
        with pytest.raises(UndoitError, match="redis_data.tar.zst"):
            rehearse.rehearse(live, only="phase1")
        env = dict(os.environ, UNDOIT_PLAN=str(live.path), CI="true")
        res = subprocess.run([sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "-d", str(KIT),
                              "rehearse", "only=phase1"], env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode != 0 and "redis_data.tar.zst" in res.stdout + res.stderr
    finally:
        path.write_bytes(data)
    assert leftovers(docker_client, live) == []
