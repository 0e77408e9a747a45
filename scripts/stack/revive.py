"""Held containers brought back through the engine itself, and counted back the moment
their own healthcheck passes.

A hold's end used to be `compose up --wait`: a compose process that parses the project
before it starts anything (0.3 s and more on a busy host, inside the hold), then waits
for the engine's health status, which changes only at the healthcheck's next interval
(a service ready in 0.2 s counted back 1 s later with `interval: 1s`, 30 s later with
`interval: 30s`). Here the containers the hold stopped are started by id, in their
dependency order, and the healthcheck's own test runs in them (docker exec, as the
engine would run it) until it passes.
"""

from __future__ import annotations

import threading
import time

from ..errors import UndoitError

DEPENDS_LABEL = "com.docker.compose.depends_on"  # "db:service_healthy:false,cache:..."
SERVICE_LABEL = "com.docker.compose.service"
PAUSE = 0.05  # seconds between two runs of a check that failed: ready within it, not a busy loop


def waves(containers: list) -> list[list]:
    """The containers in waves: each wave's services depend only on earlier waves' (among
    these), so a wave starts once the one before it is back. A cycle (compose refuses
    one) or a label compose did not write leaves the rest in one last wave."""
    by_service: dict[str, list] = {}
    for c in containers:
        by_service.setdefault(c.labels.get(SERVICE_LABEL) or c.name, []).append(c)
    needs = {svc: {d.split(":", 1)[0] for d in (cs[0].labels.get(DEPENDS_LABEL) or "").split(",") if d}
             & set(by_service) - {svc} for svc, cs in by_service.items()}
    out, done = [], set()
    while len(done) < len(needs):
        ready = sorted(s for s in needs if s not in done and needs[s] <= done) or \
            sorted(s for s in needs if s not in done)
        out.append([c for s in ready for c in by_service[s]])
        done |= set(ready)
    return out


def health_test(container) -> list[str] | None:
    """The command the engine runs as the container's healthcheck (None: it has none)."""
    test = (container.attrs.get("Config") or {}).get("Healthcheck") or {}
    test = test.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return list(test[1:])
    if test[0] == "CMD-SHELL":
        shell = (container.attrs.get("Config") or {}).get("Shell") or ["/bin/sh", "-c"]
        return [*shell, test[1]]
    return None  # a form the engine itself would not run


def _probe_limit(container) -> float:
    """How long one run of the check may take: the healthcheck's own timeout (the engine's
    default, 30 s, where it sets none)."""
    nanos = ((container.attrs.get("Config") or {}).get("Healthcheck") or {}).get("Timeout") or 30e9
    return nanos / 1e9


def passes(container, test: list[str], limit: float) -> bool:
    """One run of the check in the container (docker exec) exits 0 within limit seconds.
    The engine gives up on a run past its timeout; so does this: the wait for it is left
    to a daemon thread (the SDK's own socket timeout ends it), never the kit's exit."""
    result = []

    def run():
        try:
            # attached (its output read and dropped): an exec with no stream attached
            # returns at once, its exit code None while a slow check still runs
            result.append(container.exec_run(test).exit_code)
        except Exception:  # noqa: BLE001 -- an exec refused or cut: this run failed
            result.append(None)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(max(limit, 0.1))
    return result == [0]


def back(container, deadline: float) -> None:
    """Wait until the started container is back: running, and its healthcheck's test
    passing where it has one; UndoitError when it exits or the deadline passes."""
    test = health_test(container)
    while True:
        container.reload()
        state = container.attrs.get("State") or {}
        if container.status != "running" or state.get("Restarting"):
            raise UndoitError(f"{container.name} did not stay up after its start ({container.status}, "
                              f"exit {state.get('ExitCode')}): see `docker logs {container.name}`")
        if test is None or passes(container, test, min(_probe_limit(container), deadline - time.monotonic())):
            return
        if time.monotonic() > deadline:
            raise UndoitError(f"{container.name} is running but its healthcheck ({' '.join(test)}) still fails "
                              f"after the kit's wait: see `docker logs {container.name}`")
        time.sleep(PAUSE)


def start(containers: list, timeout: float) -> list[str]:
    """Start the containers (stopped by a hold) wave by wave, each back before the next
    wave starts, all within timeout seconds (else UndoitError); the services of those
    that are gone (removed while held), for compose to create again."""
    from docker.errors import APIError, NotFound  # here: the plan loader imports this package

    deadline, gone = time.monotonic() + timeout, []
    for wave in waves(containers):
        started = []
        for c in wave:
            try:
                c.start()
                started.append(c)
            except NotFound:
                gone.append(c.labels.get(SERVICE_LABEL) or c.name)
            except APIError as err:
                raise UndoitError(f"starting {c.name} again failed: {err.explanation or err}") from err
        for c in started:
            try:
                back(c, deadline)
            except APIError as err:  # removed, or the engine refused the exec
                raise UndoitError(f"{c.name} did not come back: {err.explanation or err}") from err
    return sorted(set(gone))


def unpause(containers: list) -> None:
    """Thaw the containers a hold paused (a frozen process resumes where it was: no
    health to wait for)."""
    from docker.errors import APIError  # here: the plan loader imports this package

    for c in containers:
        try:
            c.reload()
            if c.status == "paused":
                c.unpause()
        except APIError as err:
            raise UndoitError(f"thawing {c.name} failed: {err.explanation or err}") from err


def settled(client, project: str, timeout: float) -> None:
    """Wait (at most timeout seconds) until the engine's own health status of the
    project's containers has caught up: none still `starting`. Nothing is held any more
    (their own check passed), but a person or a tool reading `docker ps` right after the
    kit returns sees the stack as healthy as it was."""
    from docker.errors import NotFound  # here: the plan loader imports this package

    deadline = time.monotonic() + timeout
    for c in client.containers.list(filters={"label": f"com.docker.compose.project={project}",
                                             "health": "starting"}):
        try:
            while ((c.attrs.get("State") or {}).get("Health") or {}).get("Status") == "starting" \
                    and time.monotonic() < deadline:
                time.sleep(PAUSE * 4)
                c.reload()
        except NotFound:
            continue  # removed meanwhile: nothing to wait for
