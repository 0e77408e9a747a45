"""The Docker engine, reached through the SDK: which one, and one place that says clearly
when it is not there.

The kit, compose and the docker CLI must all talk to the same engine. They resolve it the
same way (DOCKER_HOST, else DOCKER_CONTEXT, else the docker config's current context);
`endpoint()` does it once, and refuses a context that does not exist instead of falling
back to the local socket, as the SDK would."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import UndoitError
from ..plan import settings

HOW_TO_START = "start one with `bash .ci/docker-engine.sh` (installs and starts dockerd)"
DEFAULT_HOST = "unix:///var/run/docker.sock"
ENGINE_KEYS = ("DOCKER_HOST", "DOCKER_CONTEXT")


@dataclass(frozen=True)
class Endpoint:
    host: str  # unix:///..., tcp://..., ssh://user@host
    via: str  # "DOCKER_HOST", "context NAME", "default"

    def __str__(self) -> str:
        return f"{self.host} ({self.via})"


def docker_settings(env: dict | None = None) -> dict[str, str]:
    """DOCKER_HOST / DOCKER_CONTEXT as the kit uses them: env's (default: the process
    environment's) when it names either, else the kit's .env's. Compose v2 ignores a
    DOCKER_HOST in a .env file, so `environment()` hands them to every process."""
    env = os.environ if env is None else env
    chosen = {k: env[k] for k in ENGINE_KEYS if env.get(k)}
    if chosen:
        return chosen
    dot = settings.current()
    return {k: dot[k] for k in ENGINE_KEYS if dot.get(k)}


def environment(base: dict | None = None) -> dict[str, str]:
    """base (default os.environ) with the kit's engine settings applied: the environment
    for every compose and docker CLI process the kit starts, so they reach the engine
    the SDK reaches."""
    env = dict(os.environ if base is None else base)
    env.update(docker_settings(env))
    return env


@dataclass(frozen=True)
class _Context:
    host: str
    tls: dict  # ca/cert/key paths that exist, and skip_verify


def config_dir() -> Path:
    """The docker CLI's config folder: DOCKER_CONFIG, else ~/.docker (whether or not a
    config.json exists there: docker-py's own lookup needs one, the CLI does not)."""
    return Path(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"))


def _current_context() -> str:
    try:
        return json.loads((config_dir() / "config.json").read_text()).get("currentContext") or "default"
    except (OSError, ValueError):
        return "default"


def _context(name: str) -> _Context | None:
    """A context as the docker CLI stores it (contexts/meta/<sha256 of name>/meta.json)."""
    cid = hashlib.sha256(name.encode()).hexdigest()
    try:
        meta = json.loads((config_dir() / "contexts" / "meta" / cid / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    ep = (meta.get("Endpoints") or {}).get("docker") or {}
    if not ep.get("Host"):
        return None
    tls_dir = config_dir() / "contexts" / "tls" / cid / "docker"
    tls = {k: str(tls_dir / f"{k}.pem") for k in ("ca", "cert", "key") if (tls_dir / f"{k}.pem").is_file()}
    return _Context(ep["Host"], dict(tls, skip_verify=bool(ep.get("SkipTLSVerify"))))


def endpoint(env: dict | None = None) -> Endpoint:
    """The engine the kit talks to, resolved as the docker CLI does; UndoitError for a
    context that does not exist (the SDK would quietly fall back to the local socket)."""
    picked = docker_settings(env)
    if picked.get("DOCKER_HOST"):
        return Endpoint(picked["DOCKER_HOST"], "DOCKER_HOST")
    name = picked.get("DOCKER_CONTEXT") or _current_context()
    if name == "default":
        return Endpoint(DEFAULT_HOST, "default")
    ctx = _context(name)
    if ctx is None:
        where = "DOCKER_CONTEXT" if picked.get("DOCKER_CONTEXT") else f"currentContext in {config_dir()}/config.json"
        raise UndoitError(f"docker context {name!r} (from {where}) does not exist or names no engine; "
                          "`docker context ls` lists them")
    return Endpoint(ctx.host, f"context {name}")


def engine_error(err: Exception | str, env: dict | None = None) -> UndoitError:
    try:
        where = endpoint(env)
    except UndoitError as bad:
        return bad
    shown = f"DOCKER_HOST={where.host}" if where.via == "DOCKER_HOST" else str(where)
    return UndoitError(f"cannot reach the Docker engine at {shown} ({_short(err)}); {HOW_TO_START}")


def _short(err: Exception | str) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:160]


@lru_cache(maxsize=1)
def client():
    """A docker SDK client of endpoint() that has answered a ping, or UndoitError naming it."""
    import docker  # imported here: `doit list` must not pay for requests/urllib3
    from docker.errors import DockerException

    where = endpoint()
    bridged = None
    try:
        if where.host.startswith("ssh://"):
            # the SDK speaks to a local socket whose connections ssh carries (sshbridge)
            from .sshbridge import bridge

            bridged = bridge(where.host)
            cli = docker.DockerClient(base_url=bridged.url, timeout=300)
            cli.api.mount("http+docker://", bridged.adapter(timeout=300))
        elif where.via == "DOCKER_HOST":  # with docker's DOCKER_TLS_VERIFY / DOCKER_CERT_PATH
            env = environment()
            env.pop("DOCKER_CONTEXT", None)
            cli = docker.from_env(timeout=300, environment=env, use_context=False)
        else:
            cli = docker.DockerClient(base_url=where.host, tls=_tls(where), timeout=300)
        cli.ping()
    except DockerException as err:
        raise engine_error(bridged.last_error if bridged and bridged.last_error else err) from err
    return cli


def engine_id(cli) -> str:
    """Tells two engines apart: a digest of the engine's ID, host name and data root.
    The ID alone does not: engines of one machine (and cloned machines) share the key
    it comes from (dockerd 20.10: /etc/docker/key.json)."""
    known = getattr(cli, "_undoit_engine_id", None)  # asked once per client (11 ms)
    if known is None:
        info = cli.info()
        parts = "\0".join(str(info.get(k) or "") for k in ("ID", "Name", "DockerRootDir"))
        known = cli._undoit_engine_id = hashlib.sha256(parts.encode()).hexdigest()[:16]
    return known


def _tls(where: Endpoint):
    """The TLS settings a context stores for its engine (None: none stored)."""
    if where.via == "default":
        return None
    ctx = _context(where.via[len("context "):])
    if ctx is None or not any(k in ctx.tls for k in ("ca", "cert")):
        return None
    from docker.tls import TLSConfig

    cert = (ctx.tls["cert"], ctx.tls["key"]) if "cert" in ctx.tls and "key" in ctx.tls else None
    return TLSConfig(client_cert=cert, ca_cert=ctx.tls.get("ca"), verify=not ctx.tls["skip_verify"])


def engine_available() -> bool:
    try:
        client()
    except UndoitError:
        client.cache_clear()
        return False
    return True


def on_this_host() -> bool:
    """Whether the engine's volume folders are this host's folders, so the kit may read
    and write them directly (the fast path). Only a unix socket whose peer is a dockerd in
    this process's own mount namespace and root says yes: a socket forwarded from another
    machine or VM (its peer is ssh, socat or a proxy), an engine in a container or its own namespace, a tcp:// or ssh://
    engine all say no, and then every volume goes through the engine. A path the engine
    reports is otherwise a guess that can land on a same-named volume of this host.
    UNDOIT_ENGINE=remote says no for a local engine (the fault suite forces it so)."""
    if os.environ.get("UNDOIT_ENGINE", settings.current().get("UNDOIT_ENGINE")) == "remote":
        return False
    return _socket_is_local(endpoint().host)


@lru_cache(maxsize=4)
def _socket_is_local(host: str) -> bool:
    if not host.startswith("unix://"):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(host[len("unix://"):])
            pid, _uid, _gid = struct.unpack("3i", s.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        if pid <= 0:  # the peer is in another pid namespace
            return False
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() != "dockerd":  # a forwarder (ssh -L, socat, a VM's proxy)
                return False
        if os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
            return False
        theirs, ours = os.stat(f"/proc/{pid}/root"), os.stat("/")
        return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)
    except OSError:  # not ours to inspect (another user's engine): not on this host for us
        return False
