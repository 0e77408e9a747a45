"""The demo stack on a real engine: data survives restarts, the stack comes up healthy and
goes away without a trace, and a broken phase file shows as an unhealthy service."""

from __future__ import annotations

import shutil

import pytest

from demo import kit as demo
from scripts.stack.compose import for_plan

from .conftest import health, wait_health

pytestmark = pytest.mark.docker


def project_resources(docker_client, name):
    label = {"label": f"com.docker.compose.project={name}"}
    return (docker_client.containers.list(all=True, filters=label),
            docker_client.volumes.list(filters=label),
            docker_client.networks.list(filters=label))


def test_postgres_rows_survive_a_restart(demo_plan):
    compose = for_plan(demo_plan)
    compose.up(["mvp-postgres"], wait_timeout=60)
    sql = "CREATE TABLE t(id int primary key, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1,500) g;"
    compose.exec("mvp-postgres", "psql", "-v", "ON_ERROR_STOP=1", "-qAt", "-U", "postgres", "-d", "app", "-c", sql)
    before = compose.exec("mvp-postgres", "psql", "-qAt", "-U", "postgres", "-d", "app", "-c",
                          "select count(*), md5(string_agg(v, ',' order by id)) from t")
    compose.restart(["mvp-postgres"])
    compose.up(["mvp-postgres"], wait_timeout=60)
    after = compose.exec("mvp-postgres", "psql", "-qAt", "-U", "postgres", "-d", "app", "-c",
                         "select count(*), md5(string_agg(v, ',' order by id)) from t")
    assert before.startswith("500|") and after == before


def test_whole_demo_up_healthy_then_down_leaves_nothing(docker_client, demo_plan):
    demo.up(demo_plan)
    compose = for_plan(demo_plan)
    ps = compose.ps()
    assert sorted(c["Service"] for c in ps) == sorted(demo_plan.services)
    assert all(c["State"] == "running" and c["Health"] == "healthy" for c in ps), ps
    # the seed ran: rows, keys and objects are there
    n = compose.exec("mvp-postgres", "psql", "-qAt", "-U", "postgres", "-d", "app", "-c", "select count(*) from vehicles")
    assert int(n) == 1000
    # every network is internal: nothing can reach a container over IP
    _, _, nets = project_resources(docker_client, demo_plan.project_name)
    assert nets and all(n.attrs["Internal"] for n in nets)
    demo.down(demo_plan)
    assert project_resources(docker_client, demo_plan.project_name) == ([], [], [])


def test_deleting_the_tenant_middleware_breaks_the_backend(docker_client, demo_plan):
    compose = for_plan(demo_plan)
    compose.up(["mvp-backend"], wait_timeout=90)
    assert health(docker_client, demo_plan, "mvp-backend") == "healthy"
    tenant = demo_plan.root / "backend/src/core/middleware/tenant.ts"
    saved = tenant.read_bytes()
    tenant.unlink()
    assert wait_health(docker_client, demo_plan, "mvp-backend", "unhealthy")
    tenant.write_bytes(saved)
    assert wait_health(docker_client, demo_plan, "mvp-backend", "healthy")


def test_materialize_makes_a_scratch_repo_once(tmp_path):
    dest = tmp_path / "d"
    assert demo.materialize(dest) is True
    assert (dest / ".git").is_dir() and (dest / "backend/src/app.ts").exists()
    assert demo.materialize(dest) is False
    shutil.rmtree(dest / ".git")
    with pytest.raises(Exception, match="not a git repository"):
        demo.materialize(dest)
