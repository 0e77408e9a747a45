"""A started service counts healthy once its own healthcheck passes, run by the kit, not
at the engine's first check one interval later; a verdict the engine gave stays its own."""

from __future__ import annotations

import time

import pytest

from scripts.plan import plan as planmod
from scripts.rollback.checks import services as health_of
from scripts.rollback.context import StackContext
from scripts.rollback.steps import services as service_steps
from scripts.stack.compose import for_plan

from .conftest import health, sweep, unique
from .projects import app, compose_file, do, healthy_when, lay_out, phase, plan, write_plan

pytestmark = pytest.mark.docker

SLOW = "60s"  # the engine's first check comes this long after a start: far past every wait below


@pytest.fixture
def slow(docker_client, kit_images, tmp_path):
    """`quick` (its check passes) and `never` (its check fails), both checked by the engine
    only every 60 s, started without waiting for either."""
    name = unique("hc")
    compose = compose_file({"quick": app(healthcheck=healthy_when("true", interval=SLOW)),
                            "never": app(healthcheck=healthy_when("false", interval=SLOW))})
    root = lay_out(tmp_path / "project", {"docker-compose.yml": compose}, "two slow healthchecks")
    p = planmod.load(write_plan(tmp_path / "phases.toml", plan(
        ["quick", "never"], phases=[phase("p", "quick up", [do("up", services=["quick"])])]), name, root,
        kept=tmp_path), env={})
    try:
        for_plan(p).up(wait=False)
        yield p
    finally:
        sweep(docker_client, name)


def test_up_counts_a_started_service_healthy_by_its_own_check_before_the_engines_first(docker_client, slow):
    ctx = StackContext.of(slow, slow.procedure("p"), health_wait=5)
    start = time.monotonic()
    note = service_steps.up(ctx.compose, ctx, ["quick"], 30)
    assert time.monotonic() - start < 30
    assert health(docker_client, slow, "quick") == "starting"  # the engine has not checked it yet
    assert "quick: by the service's own healthcheck, run by the kit" in note
    ok, why = health_of.health(ctx, ["quick"], 5)
    assert ok and "own healthcheck" in why, why
    # a check that fails stays not healthy, with the engine's word for it
    ok, why = health_of.health(ctx, ["never"], 1)
    assert not ok and why.startswith("never: starting"), why
    # the checks on the stack as it is this instant (run_now: no wait) run nothing
    state, _ = health_of.readiness(_container(docker_client, slow, "quick"))
    assert state == "starting"


def _container(client, p, service: str):
    (c,) = client.containers.list(filters={"label": [f"com.docker.compose.project={p.project_name}",
                                                     f"com.docker.compose.service={service}"]})
    return c
