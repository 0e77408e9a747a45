"""The Docker engine, reached through the SDK: one place that says clearly when it is not there."""

from __future__ import annotations

import os
from functools import lru_cache

from .errors import UndoitError

HOW_TO_START = "start one with `bash .ci/docker-engine.sh` (installs and starts dockerd)"


def engine_error(err: Exception | str, env: dict | None = None) -> UndoitError:
    host = (env if env is not None else os.environ).get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return UndoitError(
        f"cannot reach the Docker engine at DOCKER_HOST={host} ({_short(err)}); {HOW_TO_START}"
    )


def _short(err: Exception | str) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:160]


@lru_cache(maxsize=1)
def client():
    """A docker SDK client that has answered a ping, or UndoitError naming DOCKER_HOST."""
    import docker  # imported here: `doit list` must not pay for requests/urllib3
    from docker.errors import DockerException

    try:
        cli = docker.from_env(timeout=300)
        cli.ping()
    except DockerException as err:
        raise engine_error(err) from err
    return cli


def engine_available() -> bool:
    try:
        client()
    except UndoitError:
        client.cache_clear()
        return False
    return True
