"""`doit plan:init`: a starter phases.toml for a compose project, from `docker compose config`.

It writes what compose knows (services, named volumes and who mounts them, networks,
healthchecks, profiles) and a safe default for what only the team knows: one phase to
rename and edit, a full rollback, one matrix row. The team edits it, then runs
`doit plan:check`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .compose import own_config
from ..errors import UndoitError

# a probe that moves with every write and survives a clean restart, for images it knows
POSTGRES_PROBE = ["sh", "-c", "for d in $(psql -U postgres -Atc 'select datname from pg_database where "
                  "datallowconn order by 1'); do psql -U postgres -d \"$d\" -Atc 'select pg_current_snapshot(), "
                  "(select sum(last_value) from pg_sequences)'; done"]


def _toml(value) -> str:
    return json.dumps(value)  # TOML's basic strings and arrays of them are JSON's


def _table(items: list[dict]) -> str:
    return "[\n" + "".join(f"  {{ {', '.join(f'{k} = {_toml(v)}' for k, v in it.items())} }},\n" for it in items) + "]"


def render(config: dict, root: Path, name: str) -> str:
    services = config.get("services") or {}
    if not services:
        raise UndoitError(f"docker compose config in {root} lists no services: nothing to plan")
    volume_users: dict[str, list[str]] = {}
    images: dict[str, str] = {}
    anonymous, layer_only, unhealthy, profiles = [], [], [], set()
    for svc, spec in sorted(services.items()):
        images[svc] = spec.get("image") or ""
        profiles.update(spec.get("profiles") or [])
        mounts = spec.get("volumes") or []
        for m in mounts:
            if m.get("type") == "volume" and m.get("source"):
                volume_users.setdefault(m["source"], []).append(svc)
            elif m.get("type") == "volume":
                anonymous.append(svc)
        if not mounts:
            layer_only.append(svc)
        if not spec.get("healthcheck") or spec["healthcheck"].get("disable"):
            unhealthy.append(svc)
    networks = sorted(k for k in (config.get("networks") or {}) if k != "default")
    lines = [
        f"# Starter rollback plan for compose project {name}, written by `doit plan:init` from",
        "# `docker compose config`. Edit it (phases: what each change does and what undoes it),",
        "# then run `doit plan:check`. Steps and checks: see the kit's README.",
        "",
        "[project]",
        f"name = {_toml(name)}",
        f"root = {_toml(str(root))}  # the compose project's folder, relative to this file",
        f"services = {_toml(sorted(services))}",
        f"networks = {_toml(networks)}",
    ]
    if profiles:
        lines.append(f"profiles = {_toml(sorted(profiles))}  # the profiles the running stack uses: keep only those")
    lines += ["", "[backup]", 'branch = "backup-{timestamp}"', 'tag = "pre-change-{date}"', ""]
    for svc in unhealthy:
        lines.append(f"# {svc} has no healthcheck: `healthy` can only see that it runs")
    for svc in sorted(set(anonymous)):
        lines.append(f"# {svc} has an anonymous volume: no backup covers it (give it a name)")
    for svc in layer_only:
        lines.append(f"# {svc} mounts no volume: anything it keeps lives in its container and is lost when "
                     "a rollback recreates it")
    for vol, users in sorted(volume_users.items()):
        lines += ["", f"[volumes.{vol}]", f"services = {_toml(sorted(set(users)))}", 'quiesce = "stop"']
        if any("postgres" in images[u] for u in users):
            lines += ["# Postgres rewrites its files on every clean restart: judge staleness by its",
                      "# transaction ids and sequences instead", f"probe = {_toml(POSTGRES_PROBE)}"]
    all_vols = sorted(volume_users)
    count = len([s for s in services if not services[s].get("profiles") or set(services[s]["profiles"]) & profiles])
    checks = [{"check": "healthy"}, {"check": "container-count", "expect": count}]
    lines += [
        "", "[[phase]]", 'id = "phase1"', 'title = "the first change (rename and describe it)"',
        'risk = "Low"', 'duration = "5 min"',
        "steps = " + _table([{"do": "down"}, {"do": "restore-files", "paths": ["."]}, {"do": "up"}]),
        "checks = " + _table(checks),
        "# the change itself, for `doit rehearse` to apply, see felt, roll back and apply again:",
        "# [phase.change]",
        '# ref = "my-change-branch"        # its commits not in HEAD (or a range A..B)',
        '# steps = [{ do = "up" }]         # then on the stack: up, exec (migrations), ...',
        "", "[full]", 'title = "everything back to the backup"', 'risk = "Medium"', 'duration = "15 min"',
        "steps = " + _table([{"do": "down"}, {"do": "restore-files", "paths": ["."]}]
                            + ([{"do": "restore-volumes", "volumes": all_vols}] if all_vols else [])
                            + [{"do": "up"}]),
        "checks = " + _table(checks),
        "", "[[matrix]]", 'failure = "Anything broken after the change"', 'scope = "Full rollback"',
        'risk = "Medium"', 'duration = "15 min"', 'target = "full"', "",
    ]
    return "\n".join(lines)


def init(path: Path, project_dir: Path) -> Path:
    """Write a starter plan at path for the compose project in project_dir (never over a plan)."""
    path, project_dir = Path(path), Path(project_dir).resolve()
    if path.exists():
        raise UndoitError(f"{path} exists already: refusing to overwrite a plan (set UNDOIT_PLAN to another file)")
    config = own_config(project_dir)
    # relative to the plan: a clone of the project in another folder (a recovery) finds
    # its root where the plan is, not where the lost machine had it
    root = Path(os.path.relpath(project_dir, path.parent.resolve()))
    path.write_text(render(config, root, config.get("name") or project_dir.name))
    return path
