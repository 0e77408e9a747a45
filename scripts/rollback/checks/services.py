"""Checks of the project's containers: how many run, whether they are healthy, their logs."""

from __future__ import annotations

import re
import time

from ...output.redact import PLAIN, Redactor
from ...plan.registry import CHECKS, CheckType, Invalid
from ...stack import revive

DEFAULT_LOG_PATTERN = r"(?i)\b(error|fatal|panic|exception)\b"
SERVICE_LABEL = "com.docker.compose.service"
READY = "ready"
OWN_CHECK = "own check"  # readiness: healthy by its own healthcheck, run by the kit


def by_own_check(services) -> str:
    """The note for services counted healthy by their own healthcheck run by the kit."""
    if not services:
        return ""
    return (f" ({', '.join(sorted(set(services)))}: by the service's own healthcheck, run by the kit; "
            "the engine's first was still to come)")


def project_containers(ctx, running_only: bool = True) -> list:
    """The project's containers (running ones only, by default), not the kit's helpers."""
    from ...stack import volumes  # here: the plan loader imports this module, and volumes the docker SDK

    filters = {"label": f"com.docker.compose.project={ctx.plan.project_name}"}
    if running_only:
        filters["status"] = "running"
    return [c for c in ctx.client.containers.list(all=not running_only, filters=filters)
            if volumes.HELPER_LABEL not in (c.labels or {})]


def health(ctx, services, wait: float) -> tuple[bool, str]:
    """Whether every container of services (all: empty) runs and is healthy or has no
    healthcheck, waiting up to `wait` seconds for it; one line either way."""
    wanted = list(services or ()) or None
    start = time.monotonic()
    deadline = start + wait
    while True:
        bad, probed = [], []
        cs = {c.labels.get(SERVICE_LABEL): c for c in project_containers(ctx, running_only=False)}
        for svc in wanted or sorted(cs):
            c = cs.get(svc)
            if c is None:
                bad.append(f"{svc}: no container")
                continue
            state, why = readiness(c, ctx.redact, probe_within=deadline - time.monotonic())
            if state != READY:
                bad.append(why)
            elif why:
                probed.append(svc)
        if not bad:
            return True, f"{len(wanted or cs)} service(s) running and healthy" + by_own_check(probed)
        if time.monotonic() > deadline or any("no container" in b or ": exited" in b for b in bad):
            return False, "; ".join(bad)
        # a restart waits on this: the first seconds often (a healthcheck every 250 ms is
        # seen 50 ms after it passes; the listing costs ~6 ms), then less
        time.sleep(0.05 if time.monotonic() - start < 3 else 0.25)


def readiness(container, redact: Redactor = PLAIN, probe_within: float = 0) -> tuple[str, str]:
    """(READY, "") for a container that runs and is healthy or has no healthcheck; else
    its state (exited, created, ...) or, running, its health (starting, unhealthy), and
    one line: "<service>: <state>" or "<service>: <health> (<its last health output>)",
    that output masked by redact before it is cut.

    With probe_within, a container the engine has not checked yet (`starting`: its first
    healthcheck comes one interval after the start) is READY once its own healthcheck
    passes, run by the kit (docker exec, as the engine runs it): (READY, "own check").
    A verdict the engine gave (unhealthy) stays the engine's."""
    svc = container.labels.get(SERVICE_LABEL)
    state = container.attrs["State"]
    if state.get("Status") != "running":
        return state.get("Status"), f"{svc}: {state.get('Status')}"
    status = (state.get("Health") or {}).get("Status")
    if status in (None, "healthy"):
        return READY, ""
    if status == "starting" and revive.passes_within(container, probe_within):
        return READY, OWN_CHECK
    return status, f"{svc}: {status} ({last_health_output(container, redact)})"


def last_health_output(container, redact: Redactor = PLAIN) -> str:
    """The last line the container's healthcheck printed: usually the reason it fails."""
    log = ((container.attrs.get("State") or {}).get("Health") or {}).get("Log") or []
    if not log:
        return "no health output yet"
    lines = (log[-1].get("Output") or "").strip().splitlines()
    return redact.clip(lines[-1], 160) if lines else f"exit {log[-1].get('ExitCode')}"


@CHECKS.register
class ContainerCount(CheckType):
    """How many containers run: of the whole compose project (`of = "project"`, the
    default), or only of the plan's services (`of = "plan"`: a service under a profile,
    running or not, changes nothing)."""

    name = "container-count"
    summary = "exactly expect containers run: of the compose project, or of the plan's services (of = \"plan\")"
    example = {"check": "container-count", "expect": 4, "of": "plan"}
    required = frozenset({"expect"})
    optional = frozenset({"of"})

    def validate(self, args):
        expect = args["expect"]
        if isinstance(expect, bool) or not isinstance(expect, int) or expect < 0:
            raise Invalid("expect", "must be a whole number of containers")
        if args.get("of", "project") not in ("project", "plan"):
            raise Invalid("of", '"project" (every container of the compose project) or "plan" (its services)')

    def describe(self, ctx, check):
        whose = f"the plan's services ({', '.join(ctx.plan.services)})" if check.args.get("of") == "plan" \
            else f"project {ctx.plan.project_name}"
        return f"{check.args['expect']} containers of {whose} running"

    def run(self, ctx, check):
        cs = project_containers(ctx)
        if check.args.get("of") == "plan":
            cs = [c for c in cs if c.labels.get(SERVICE_LABEL) in ctx.plan.services]
        want = int(check.args["expect"])
        return len(cs) == want, f"{len(cs)} container(s) running, expected {want}"


def _of_services(check) -> str:
    return f"{check.check}: {', '.join(check.args.get('services') or ['all services'])}"


@CHECKS.register
class Healthy(CheckType):
    name = "healthy"
    summary = "every container of services (all when none named) runs and is healthy (or has no healthcheck)"
    example = {"check": "healthy"}
    optional = frozenset({"services"})

    def describe(self, ctx, check):
        return _of_services(check)

    def run(self, ctx, check):
        return health(ctx, check.args.get("services"), ctx.health_wait)


@CHECKS.register
class LogsClean(CheckType):
    name = "logs-clean"
    summary = "no log line since the rollback began matches pattern (default: error, fatal, panic, exception)"
    example = {"check": "logs-clean", "services": ["backend"]}
    optional = frozenset({"services", "pattern"})

    def describe(self, ctx, check):
        return _of_services(check)

    def run(self, ctx, check):
        pattern = re.compile(check.args.get("pattern") or DEFAULT_LOG_PATTERN)
        out = ctx.compose("logs", "--no-color", "--since", ctx.since, *(check.args.get("services") or ()))
        hits = [line for line in out.splitlines() if pattern.search(line)]
        if hits:
            return False, (f"{len(hits)} matching line(s) since the rollback began, first: "
                           f"{ctx.redact.clip(hits[0], 160)}")
        return True, "no error lines in the logs since the rollback began"
