"""The runbook's phases applied to the real demo stack through phases.toml's [phase.change]
(refs made from demo/changes, then steps): each change lands as commits in the demo's scratch
repository and shows on the running stack the way that phase's checks look for."""

from __future__ import annotations

import subprocess

import pytest

from demo import kit as demo
from scripts.rehearse import changes
from scripts.repo import gitstate
from scripts.stack.compose import for_plan
from scripts.errors import UndoitError

PHASES = [f"phase{i}" for i in range(1, 12)]

from .conftest import wait_health

pytestmark = pytest.mark.docker

LABEL = "com.docker.compose.project={}"


def subjects(plan, since: str) -> list[str]:
    """Commit subjects after `since`, oldest first."""
    out = gitstate.run(plan.root, "log", "--reverse", "--format=%s", f"{since}..HEAD")
    return out.splitlines() if out else []


def containers(docker_client, plan, running=True):
    return docker_client.containers.list(all=not running, filters={"label": LABEL.format(plan.project_name)})


def services(docker_client, plan) -> set[str]:
    return {c.labels["com.docker.compose.service"] for c in containers(docker_client, plan)}


def compose_keys(docker_client, plan, kind: str, label: str) -> set[str]:
    coll = docker_client.volumes if kind == "volumes" else docker_client.networks
    return {(o.attrs.get("Labels") or {}).get(label) for o in coll.list(filters={"label": LABEL.format(plan.project_name)})}


def psql(plan, sql, service="mvp-postgres", db="app"):
    return for_plan(plan).exec(service, "psql", "-U", "postgres", "-d", db, "-Atc", sql).strip()


def apply(plan, *pids) -> dict[str, list[str]]:
    """The phases' changes as a rehearsal applies them; phase id -> the commits it made."""
    made = {}
    for pid in pids:
        start = gitstate.head(plan.root)
        changes.apply_all(plan, changes.phases_of(plan, plan.procedure(pid)))
        out = gitstate.run(plan.root, "rev-list", "--reverse", f"{start}..HEAD")
        made[pid] = out.split()
    return made


def host(plan, *argv, cwd="."):
    return subprocess.run(list(argv), cwd=plan.root / cwd, capture_output=True, text=True, timeout=60)


# One demo, brought up once, takes every phase in order (as the full drill does); after
# the phases whose effects the runbook's checks look for, those effects are asserted.

def phase2_two_commits_and_the_backend_turns_unhealthy(docker_client, plan, base, commits):
    assert len(commits) == 2 and commits[-1] == gitstate.head(plan.root)
    assert [s.split(":")[0] for s in subjects(plan, base)] == ["phase2", "phase2"]
    # the deletions are in the first commit: the runbook's HEAD~1 does not have the files
    with pytest.raises(UndoitError):
        gitstate.run(plan.root, "cat-file", "-e", "HEAD~1:backend/src/core/middleware/tenant.ts")
    gitstate.run(plan.root, "cat-file", "-e", f"{base}:backend/src/core/middleware/tenant.ts")
    app_ts = (plan.root / "backend/src/app.ts").read_text()
    assert "tenantMiddleware" not in app_ts and "tenantRoutes" not in app_ts
    assert not (plan.root / "backend/src/features/tenant-management").exists()
    assert gitstate.dirty(plan.root) == []
    assert wait_health(docker_client, plan, "mvp-backend", "unhealthy")
    assert host(plan, "npm", "run", "build", cwd="backend").returncode != 0


def phase3_removes_minio_service_and_its_data(docker_client, plan, base, commits):
    assert len(commits) == 1 and subjects(plan, base)[0].startswith("phase3:")
    changed = gitstate.run(plan.root, "diff", "--name-only", base, "HEAD").splitlines()
    assert {"docker-compose.yml", "backend/src/core/storage/minio.adapter.ts",
            "backend/src/features/documents/documents.service.ts"} <= set(changed)
    assert "admin-minio" not in (plan.root / "docker-compose.yml").read_text()
    # the container is gone, so is the bucket's volume; the other data volumes stay
    assert "admin-minio" not in services(docker_client, plan)
    vols = compose_keys(docker_client, plan, "volumes", "com.docker.compose.volume")
    assert "minio_data" not in vols and {"postgres_data", "platform_db_data"} <= vols


def phase5_three_networks_become_one(docker_client, plan, base, commits):
    assert len(commits) == 1 and subjects(plan, base)[0].startswith("phase5:")
    nets = docker_client.networks.list(filters={"label": LABEL.format(plan.project_name)})
    assert {n.attrs["Labels"]["com.docker.compose.network"] for n in nets} == {"app"}
    assert all(n.attrs["Internal"] for n in nets)  # still nothing reachable over IP
    # down + up -d: every service back, the data kept
    assert services(docker_client, plan) == set(plan.services) - {"mvp-redis", "admin-minio"}
    assert psql(plan, "select count(*) from vehicles") == "1000"


def phase7_migration_loses_rows_and_the_history_table(docker_client, plan, base, commits):
    assert len(commits) == 1 and subjects(plan, base)[0].startswith("phase7:")
    changed = gitstate.run(plan.root, "diff", "--name-only", base, "HEAD").splitlines()
    assert {"docker-compose.yml", "backend/src/_system/migrations/002_vehicles.sql",
            "backend/src/_system/migrations/003_single_tenant.sql"} <= set(changed)
    # phases.toml's "All tables exist" query: neither table is there any more
    assert psql(plan, "select count(*) from information_schema.tables "
                      "where table_name in ('vehicles', 'schema_migrations')") == "0"
    assert int(psql(plan, "select count(*) from user_vehicles")) == 50  # was 1000
    # the database section change reached the running postgres
    assert psql(plan, "show max_connections") == "50"


AFTER = {"phase2": phase2_two_commits_and_the_backend_turns_unhealthy,
         "phase3": phase3_removes_minio_service_and_its_data,
         "phase5": phase5_three_networks_become_one,
         "phase7": phase7_migration_loses_rows_and_the_history_table}


@pytest.mark.long
def test_every_phase_in_order_on_one_demo(docker_client, demo_plan):
    demo.up(demo_plan)
    start = gitstate.head(demo_plan.root)
    made = {}
    for pid in PHASES:
        base = gitstate.head(demo_plan.root)
        made.update(apply(demo_plan, pid))
        if pid in AFTER:
            AFTER[pid](docker_client, demo_plan, base, made[pid])
    assert made["phase11"] == [] and len(made["phase2"]) == 2
    assert all(len(made[f"phase{i}"]) == 1 for i in (1, 3, 4, 5, 6, 7, 8, 9, 10))
    # commits in phase order, each named after its phase, ending at HEAD
    flat = [c for cs in made.values() for c in cs]
    assert flat[-1] == gitstate.head(demo_plan.root)
    assert [s.split(":")[0] for s in subjects(demo_plan, start)] == [p for p, cs in made.items() for _ in cs]
    assert gitstate.dirty(demo_plan.root) == []
    # the stack is up in its simplified shape: no redis, no minio, one network
    ps = for_plan(demo_plan).ps()
    assert {c["Service"] for c in ps} == set(demo_plan.services) - {"mvp-redis", "admin-minio"}
    assert all(c["State"] == "running" for c in ps), ps
    assert compose_keys(docker_client, demo_plan, "networks", "com.docker.compose.network") == {"app"}
    assert host(demo_plan, "make", "-n", "test").returncode != 0
    assert psql(demo_plan, "select count(*) from catalog", "mvp-platform-vehicles-db", "vehicles") == "50"
    # the phases the runbook says only restart, not recreate, still show
    assert wait_health(docker_client, demo_plan, "mvp-frontend", "unhealthy")
