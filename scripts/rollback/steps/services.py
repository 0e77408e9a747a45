"""Steps on the project's services through compose: stop, down, up, restart.

In a rollback `up` and `restart` wait for health and name the service that is not; in a
phase's change they do not: breaking it may be the change, and the checks read
afterwards are how the drill sees that.
"""

from __future__ import annotations

import time

from ...errors import UndoitError
from ...plan.registry import STEPS, StepType
from ...stack import pins
from ...stack.compose import Compose, discover
from ..checks import services as health_of


def _services(step) -> list[str]:
    return list(step.args.get("services") or [])


def compose_line(ctx, *args: str) -> str:
    return f"docker compose --project-name {ctx.plan.project_name} " + " ".join(args)


def _all(svcs) -> str:
    return ", ".join(svcs) or "all services"


@STEPS.register
class Stop(StepType):
    name = "stop"
    summary = "stop services (all when none named); they keep their containers and volumes"
    example = {"do": "stop", "services": ["app"]}
    optional = frozenset({"services"})
    for_change = True

    def describe(self, run, step):
        return "$ " + compose_line(run.ctx, "stop", *_services(step))

    def act(self, ctx, step):
        ctx.compose.stop(_services(step))
        return f"stopped {_all(_services(step))}"


@STEPS.register
class Down(StepType):
    name = "down"
    summary = "remove the containers (of services, else of the whole project), keeping volumes"
    example = {"do": "down"}
    optional = frozenset({"services"})
    destructive = True
    for_change = True

    def describe(self, run, step):
        return "$ " + compose_line(run.ctx, "down", *_services(step))

    def act(self, ctx, step):
        svcs = _services(step)
        if svcs:
            ctx.compose("rm", "--stop", "--force", *svcs)
        else:
            ctx.compose.down()
        return f"removed containers of {_all(svcs)}"


@STEPS.register
class Up(StepType):
    name = "up"
    summary = "start services as the compose file on disk describes them, the set's images pinned, and wait until healthy (timeout: seconds)"
    example = {"do": "up", "services": ["app"], "timeout": 120}
    optional = frozenset({"services", "timeout"})
    runs_images = True
    for_change = True

    def describe(self, run, step):
        # the pinned images are said once, in the run's preview (rollback/preview.py), not on every `up`
        ctx = run.ctx
        return "$ " + compose_line(ctx, "up", "--detach", "--wait", "--wait-timeout",
                                   str(step.args.get("timeout", ctx.up_timeout)), *_services(step))

    def execute(self, run, step):
        svcs = _services(step)
        late = up(pinned(run), run.ctx, svcs, int(step.args.get("timeout", run.ctx.up_timeout)))
        return f"{_all(svcs)} up and healthy{late}"

    def apply(self, ctx, step):
        # --remove-orphans: a change that removes a service takes its container away
        ctx.compose("up", "--detach", "--remove-orphans", *_services(step),
                    timeout=int(step.args.get("timeout", ctx.up_timeout)))


@STEPS.register
class Restart(StepType):
    name = "restart"
    summary = "restart services and wait until healthy (timeout: seconds)"
    example = {"do": "restart", "services": ["app"]}
    optional = frozenset({"services", "timeout"})
    for_change = True

    def describe(self, run, step):
        return "$ " + compose_line(run.ctx, "restart", *_services(step))

    def act(self, ctx, step):
        svcs = _services(step)
        ctx.compose.restart(svcs)
        wait_healthy(ctx, svcs, int(step.args.get("timeout", ctx.up_timeout)))
        return f"restarted {_all(svcs)}, healthy"

    def apply(self, ctx, step):
        ctx.compose.restart(_services(step))


def pinned(run) -> Compose:
    """The run's compose, with the images the restored set ran pinned for each service
    the compose file has now (see pins.py); the plain one when the set recorded none."""
    ctx = run.ctx
    if ctx.snapshot is None or ctx.sandbox:
        return ctx.compose
    images = pins.recorded(ctx.snapshot.path)
    if not images:
        return ctx.compose
    services = ctx.compose.config_json().get("services") or {}
    # only where the compose file's image is no longer the one the set ran (a rebuilt
    # tag, an upgrade): elsewhere the containers stay exactly as compose describes them
    differ = {svc: info for svc, info in images.items()
              if svc in services and pins.image_id(ctx.client, services[svc].get("image")) != info["id"]}
    path = pins.override(ctx.plan.project_name, differ, services, ctx.run_dir / "images-override.yml")
    if path is None:
        return ctx.compose
    c = ctx.compose
    return Compose(c.root, c.project, (*(ctx.plan.compose_files or discover(c.root, c.env)), str(path)), env=c.env,
                   profiles=ctx.plan.profiles, env_files=ctx.plan.env_files)


def up(c: Compose, ctx, services, timeout: int) -> str:
    """compose up, then a wait until the services run and are healthy; on failure, say
    which service is not and why. Returns a note when a service became healthy only on
    the engine's next healthcheck.

    The kit waits itself, looking every 50 ms: compose's --wait looks every 500 ms, a
    quarter of a second late on average, and each `up` of a rollback waits so. Where a
    container is in a state compose has rules for (exited, created, none for a service),
    compose's own --wait decides, as before."""
    try:
        c.up(services, wait_timeout=timeout, wait=False)
        settled, note = _running_and_healthy(ctx, services, timeout)
        if settled:
            return note
        c.up(services, wait_timeout=timeout)
        return ""
    except UndoitError as err:
        if str(err).startswith(_TIMED_OUT):
            raise
        ok, why = health_of.health(ctx, services, min(ctx.health_wait, timeout))
        # compose gives up at once on a container that is unhealthy when it looks, though
        # the cause may be gone (a config the service reads live, restored a moment ago):
        # the engine's next healthcheck decides. Any other failure stays a failure.
        if ok and str(err).rstrip().endswith("is unhealthy"):
            return " (on the engine's next healthcheck: compose had given up on it as unhealthy from before)"
        raise UndoitError(f"up failed: {why if not ok else err}") from None


_TIMED_OUT = "up failed (the wait for health timed out): "


def _running_and_healthy(ctx, services, timeout: int) -> tuple[bool, str]:
    """Wait until every container of services (all: those of the project) runs and is
    healthy or has no healthcheck: (True, note). (False, "") at once for a state only
    compose's wait judges (a container exited, created or restarting; a named service
    with none). Raises when the time is up with a service still starting or unhealthy."""
    start = time.monotonic()
    seen_unhealthy, probed = False, set()
    # starting: as long as compose's --wait would wait; unhealthy: as long as the kit
    # waits for an engine's next healthcheck after compose gave up on one
    deadlines = {False: start + timeout, True: start + min(ctx.health_wait, timeout)}
    label = health_of.SERVICE_LABEL
    while True:
        cs = [c for c in health_of.project_containers(ctx, running_only=False)
              if c.labels.get("com.docker.compose.oneoff") != "True"]
        by_service = {c.labels.get(label) for c in cs}
        if any(svc not in by_service for svc in services):
            return False, ""
        waiting, unhealthy = [], False
        for c in cs:
            if services and c.labels.get(label) not in services:
                continue
            if c.attrs["State"].get("Status") != "running":
                return False, ""
            state, why = health_of.readiness(c, ctx.redact, probe_within=deadlines[False] - time.monotonic())
            if state != health_of.READY:  # its health: starting, unhealthy
                unhealthy |= state == "unhealthy"
                waiting.append(why)
            elif why:
                probed.add(c.labels.get(label))
        if not waiting:
            return True, (" (on the engine's next healthcheck: it was unhealthy from before)" if seen_unhealthy
                          else "") + health_of.by_own_check(probed)
        seen_unhealthy |= unhealthy
        if time.monotonic() > deadlines[unhealthy]:
            raise UndoitError(_TIMED_OUT + "; ".join(waiting))
        time.sleep(0.05 if time.monotonic() - start < 3 else 0.25)


def wait_healthy(ctx, services, timeout: int) -> None:
    ok, why = health_of.health(ctx, services, timeout)
    if not ok:
        raise UndoitError(f"not healthy after {timeout} s: {why}")
