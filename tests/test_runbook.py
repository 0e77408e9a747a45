"""The runbook, proven on the demo: for every phase, the full rollback and each scenario,
break the demo the way it breaks, see a check fail, run the rollback, see every check
pass and the data (rows, Redis keys, stored objects) equal what the backup holds.

One demo is brought up and backed up for the module; each case leaves it at the
baseline (the rollback's restored files are committed), so the cases run in order.
"""

from __future__ import annotations

import hashlib

import pytest

from scripts.rehearse import changes
from scripts.repo import gitstate
from scripts.rollback import checks, rollback
from scripts.plan import plan as planmod
from scripts.stack.compose import for_plan

from .conftest import KIT, live_demo

pytestmark = pytest.mark.docker

PLAN = planmod.load(KIT / "phases.toml", env={})
# one procedure per family of steps (down/up, run, volumes, networks, exec, a scenario
# with volumes, full); every procedure is drilled, with its checks failing after the
# change and passing after the rollback, by tests/test_rehearse.py's full drill
ORDER = ["phase1", "phase2", "phase3", "phase5", "phase7", "storage-only", PLAN.full.id]

LIST_OBJECTS = """
const h = require('http');
h.get('http://127.0.0.1:4568/documents', (r) => {
  let x = ''; r.on('data', (c) => (x += c));
  r.on('end', () => {
    const keys = [...x.matchAll(/<Key>([^<]+)<\\/Key>/g)].map((m) => m[1]).sort();
    let out = [], n = keys.length;
    if (!n) { console.log('[]'); return; }
    keys.forEach((k, i) => h.get('http://127.0.0.1:4568/documents/' + k, (g) => {
      let b = ''; g.on('data', (c) => (b += c));
      g.on('end', () => { out[i] = k + '=' + b.length + ':' + b.slice(0, 20); if (!--n) console.log(JSON.stringify(out)); });
    }));
  });
}).on('error', (e) => { console.log('ERR ' + e.message); });
"""


def data_state(plan) -> dict:
    """What a user would call "the data": rows, keys, objects, catalogue."""
    c = for_plan(plan)
    sql = ("select count(*), md5(string_agg(vin || '|' || make || '|' || model || '|' || odometer, ',' order by vin)) "
           "from vehicles")
    rows = c.exec("mvp-postgres", "psql", "-U", "postgres", "-d", "app", "-Atc", sql).strip()
    keys = c.exec("mvp-redis", "redis-cli", "-h", "127.0.0.1", "--scan").split()
    values = {k: c.exec("mvp-redis", "redis-cli", "-h", "127.0.0.1", "get", k).strip() for k in sorted(keys)}
    objects = c.exec("admin-minio", "node", "-e", LIST_OBJECTS).strip()
    catalogue = c.exec("mvp-platform-vehicles-db", "psql", "-U", "postgres", "-d", "vehicles", "-Atc",
                       "select count(*), md5(string_agg(year || make || model, ',' order by year, make, model)) "
                       "from vehicle_models").strip()
    return {"rows": rows, "redis": hashlib.sha256(repr(values).encode()).hexdigest(), "keys": len(values),
            "objects": objects, "catalogue": catalogue}


@pytest.fixture(scope="module")
def live(docker_client, kit_images, tmp_path_factory):
    """The demo, up, seeded and backed up once; its data as the baseline holds it."""
    with live_demo(docker_client, tmp_path_factory.mktemp("runbook"), "utrb") as plan:
        yield plan, data_state(plan)


def checks_now(plan, pid):
    run = rollback.prepare(plan, pid, dry_run=True, yes=True)
    return checks.run_now(run.ctx, run.proc.checks)


@pytest.mark.parametrize("pid", ORDER)
def test_procedure_restores_the_demo(live, pid):
    plan, baseline = live
    proc = plan.procedure(pid)
    # the changes a rehearsal of pid applies (phases.toml's [phase.change]), for real
    if changes.apply_all(plan, changes.phases_of(plan, proc)):  # phase 11 (testing) names none
        before = checks_now(plan, pid)
        assert any(not r.ok for r in before), f"{pid}: the change broke nothing its checks see"

    rec = rollback.execute(plan, pid, yes=True, reason=f"test of {pid}")

    failed = [f"{c['name']}: {c['reason']}" for c in rec["checks"] if not c["ok"]]
    assert rec["outcome"] == "success", (rec.get("failed_step"), failed)
    assert all(c["ok"] for c in rec["checks"]) and len(rec["checks"]) == len(proc.checks)
    assert data_state(plan) == baseline
    log = plan.log_path.read_text()
    assert f"{proc.kind} {pid}: SUCCESS" in log and f"test of {pid}" in log
    # leave the demo at the baseline for the next case: the rollback's files, committed
    if gitstate.dirty(plan.root):
        gitstate.run(plan.root, "add", "-A")
        gitstate.run(plan.root, "commit", "-q", "-m", f"rollback of {pid}")


def test_phase2_needs_more_than_head_minus_one(live):
    """The runbook's `git checkout HEAD~1` after phase 2's two commits misses files."""
    plan, _ = live
    start = gitstate.head(plan.root)
    changes.apply_files(plan.root, plan.root, plan.procedure("phase2"))
    tenant = "backend/src/core/middleware/tenant.ts"
    assert not gitstate.ref_exists(plan.root, f"HEAD~1:{tenant}")  # HEAD~1 has no tenant.ts
    assert gitstate.ref_exists(plan.root, f"{start}:{tenant}")
    rec = rollback.execute(plan, "phase2", yes=True, reason="two commits")
    assert rec["outcome"] == "success"
    assert (plan.root / tenant).exists()
    gitstate.run(plan.root, "add", "-A")
    gitstate.run(plan.root, "commit", "-q", "-m", "rollback of phase2 (again)")
