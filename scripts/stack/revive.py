"""Held services counted back the moment their own healthcheck passes.

A hold's end used to be `compose up --wait`, which waits for the engine's health status:
it changes only at the healthcheck's next interval (a service ready in 0.2 s counted
back 1 s later with `interval: 1s`, 30 s later with `interval: 30s`), then at compose's
own next look. Here compose starts them (`up --detach`: in dependency order, creating
one removed meanwhile) and the healthcheck's own test runs in each container (docker
exec, as the engine would run it) until it passes.
"""

from __future__ import annotations

import threading
import time

from ..errors import UndoitError

SERVICE_LABEL = "com.docker.compose.service"
PAUSE = 0.05  # seconds between two runs of a check that failed: ready within it, not a busy loop


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


def passes_within(container, within: float) -> bool:
    """The container's own healthcheck test passes on one run now (docker exec), given at
    most its own timeout and `within` seconds; False for a container with none."""
    test = health_test(container)
    return test is not None and within > 0 and passes(container, test, min(_probe_limit(container), within))


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


def wait_back(client, project: str, services: list[str], timeout: float) -> None:
    """Wait until every container of the services (started again) is back, all within
    timeout seconds, else UndoitError."""
    from docker.errors import APIError  # here: the plan loader imports this package

    deadline = time.monotonic() + timeout
    for svc in services:
        for c in client.containers.list(all=True, filters={"label": [f"com.docker.compose.project={project}",
                                                                     f"{SERVICE_LABEL}={svc}",
                                                                     "com.docker.compose.oneoff=False"]}):
            try:
                back(c, deadline)
            except APIError as err:  # removed, or the engine refused the exec
                raise UndoitError(f"{c.name} did not come back: {err.explanation or err}") from err


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
