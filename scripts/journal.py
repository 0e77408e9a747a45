"""Write the intent before the act: what a run is about to change, kept durably until done.

A backup stops the services that write a volume while it exports it. Killed in that
moment (SIGKILL, a reboot, a closed terminal), it leaves them stopped, and a later
backup would take "stopped" for the stack's normal state. So before it stops anything
it records which services it stops, and removes the record once they are back. The
next kit command that takes the lock finds what a dead run left unfinished and puts it
right first, saying what it did in one line each. Staging folders of a killed restore
are swept the same way.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .snapshots import JOURNAL



def _dir(snapshots_dir: Path) -> Path:
    return Path(snapshots_dir) / JOURNAL


def _durable_write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@contextmanager
def intent(snapshots_dir: Path, project: str, what: str, **details):
    """Record the intent for the block; the record goes when the block completes. If the
    block fails or is interrupted (or the process is killed) the record stays, and the
    next run checks what is left to put right: repairs are idempotent."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = _dir(snapshots_dir) / f"{stamp}-{os.getpid()}.json"
    _durable_write(path, {"project": project, "what": what, "pid": os.getpid(), "host": socket.gethostname(),
                          "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), **details})
    yield path
    path.unlink(missing_ok=True)


def unfinished(snapshots_dir: Path, project: str) -> list[tuple[Path, dict]]:
    """Records a dead run left (the caller holds the lock: no living run owns them)."""
    base = _dir(snapshots_dir)
    out = []
    for path in sorted(base.glob("*.json")) if base.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # torn before its rename: it never took effect
            continue
        if data.get("project") == project:
            out.append((path, data))
    return out


def repair(plan, client, compose) -> list[str]:
    """Finish what dead runs left: services they stopped are started again; staging
    folders of killed restores are removed. One line for each thing done."""
    from . import volumes
    from .errors import UndoitError

    said = []
    for path, data in unfinished(plan.snapshots_dir, plan.project_name):
        services = [svc for svc in data.get("stopped") or [] if not _running(client, plan.project_name, svc)]
        if services:
            try:
                compose("up", "--detach", "--wait", "--wait-timeout", "180", "--no-recreate", "--no-deps", *services)
                said.append(f"repaired: started {', '.join(services)} again, stopped by a {data.get('what')} that "
                            f"died (pid {data.get('pid')}, {data.get('started')})")
            except UndoitError as err:
                raise UndoitError(f"a {data.get('what')} that died (pid {data.get('pid')}) left {', '.join(services)} "
                                  f"stopped, and starting them failed: {err}") from None
        paused = data.get("paused") or []
        if paused:
            try:
                compose("unpause", *paused)
                said.append(f"repaired: unpaused {', '.join(paused)}, paused by a {data.get('what')} that died")
            except UndoitError:
                pass  # no longer paused (restarted since): nothing to put right
        path.unlink(missing_ok=True)
    for key, ref in _refs(plan, client).items():
        live = volumes.host_path(client, ref.name)
        if live is None:
            continue
        for leftover in live.parent.glob(f"*{volumes.STAGING_PREFIX}*"):
            if leftover.is_dir() and leftover != live:
                volumes.discard(leftover)
                said.append(f"repaired: removed {leftover.name}, left beside {key} by a restore that died")
    return said


def _running(client, project: str, service: str) -> bool:
    cs = client.containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                   f"com.docker.compose.service={service}"]})
    return bool(cs)


def _refs(plan, client) -> dict:
    from . import stackcheck
    from .errors import UndoitError

    try:
        return stackcheck.refs(plan, client)
    except UndoitError:
        return {}


def repair_for(plan) -> None:
    """repair(), for a task that holds the lock: what it did, one line each."""
    from . import engine
    from .compose import for_plan
    from .progress import say

    for line in repair(plan, engine.client(), for_plan(plan)):
        say(line)

