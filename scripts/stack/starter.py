"""`doit plan:init`: a starter phases.toml for a compose project, from what compose and the
engine know.

It reads `docker compose config` with every profile on, and the engine's images: the
services and which of them only run under a profile (left out of the plan's services
and of its container count), named volumes and who mounts them, bind-mounted folders
that hold data (offered as `[volumes.X] bind = ...`), networks, healthchecks (the
compose file's, else the image's own), and the env files and secrets compose reads that
git ignores (kept in every set with `[backup] include_ignored`). What only the team
knows gets a safe default: one phase to rename and edit, a full rollback, one matrix
row. The team edits it, then runs `doit plan:check`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from ..errors import UndoitError
from ..repo import gitstate
from . import ignored
from .compose import own_config, stack_env

# a probe that moves with every write and survives a clean restart, for images it knows
POSTGRES_PROBE = ["sh", "-c", "for d in $(psql -U postgres -Atc 'select datname from pg_database where "
                  "datallowconn order by 1'); do psql -U postgres -d \"$d\" -Atc 'select pg_current_snapshot(), "
                  "(select sum(last_value) from pg_sequences)'; done"]
# databases that recover from a crash on their own (a write-ahead log, an append-only
# file, a journal): their volume copied while they are frozen in place (paused) is what
# a power cut would leave, which they start from; a frozen client waits where a stopped
# one would fail. Told by the image's name (its last part, no tag), the server binary the
# service runs, or its healthcheck's probe; never by a word anywhere (postgres-exporter,
# mongo-express and an app given a postgres:// URL are not databases)
CRASH_SAFE = {
    "Postgres": (r"postgres(ql)?|postgis|timescaledb(-ha)?", r"postgres", r"pg_isready"),
    "Redis": (r"redis(-stack(-server)?)?|valkey|keydb", r"(redis|valkey|keydb)-server", r"(redis|valkey)-cli"),
    "MySQL": (r"mysql(-server)?|percona(-server)?", r"mysqld", r"mysqladmin"),
    "MariaDB": (r"mariadb", r"mariadbd|mysqld", r"mariadb-admin"),
    "MongoDB": (r"mongo(db-community-server)?", r"mongod", r"mongosh|mongo"),
}
# where containers keep no state worth a backup (sockets, scratch)
SCRATCH = ("/tmp", "/run", "/var/run", "/var/tmp", "/var/cache", "/dev", "/proc", "/sys")


@dataclass
class Survey:
    """What compose and the engine say of a project, as a plan needs it."""

    services: list[str]  # those that run without a profile: the plan's
    profiled: dict[str, list[str]]  # service -> its profiles (not the plan's)
    images: dict[str, str]
    replicas: dict[str, int]
    volume_users: dict[str, list[str]] = field(default_factory=dict)
    binds: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # key -> (./rel, services)
    anonymous: list[str] = field(default_factory=list)
    layer_only: list[str] = field(default_factory=list)
    no_health: list[str] = field(default_factory=list)  # neither the compose file nor the image has one
    unknown_health: list[str] = field(default_factory=list)  # none in compose, the image not here to ask
    ignored: dict[str, str] = field(default_factory=dict)  # git-ignored files compose reads -> what reads them
    databases: dict[str, str] = field(default_factory=dict)  # service -> the crash-safe database it runs
    networks: list[str] = field(default_factory=list)


def survey(config: dict, root: Path, client=None) -> Survey:
    services = config.get("services") or {}
    if not services:
        raise UndoitError(f"docker compose config in {root} lists no services: nothing to plan")
    s = Survey(services=sorted(n for n, spec in services.items() if not spec.get("profiles")),
               profiled={n: sorted(spec["profiles"]) for n, spec in services.items() if spec.get("profiles")},
               images={n: spec.get("image") or "" for n, spec in services.items()},
               replicas={n: int(((spec.get("deploy") or {}).get("replicas")) or 1) for n, spec in services.items()},
               networks=sorted(k for k in (config.get("networks") or {}) if k != "default"))
    for svc, spec in sorted(services.items()):
        _mounts(s, svc, spec.get("volumes") or [], root)
        if svc in s.services:  # a profile service is none of the plan's checks' business
            _health(s, svc, spec, client)
        kind = database(spec)
        if kind:
            s.databases[svc] = kind
    s.ignored = ignored.ignored(SimpleNamespace(root=root, env_files=(), include_ignored=()), config)
    return s


def _mounts(s: Survey, svc: str, mounts: list[dict], root: Path) -> None:
    if not mounts:
        s.layer_only.append(svc)
    for m in mounts:
        kind, source, target = m.get("type"), m.get("source"), m.get("target") or ""
        if kind == "volume" and source:
            s.volume_users.setdefault(source, []).append(svc)
        elif kind == "volume":
            s.anonymous.append(svc)
        elif kind == "bind" and not m.get("read_only") and source and not _scratch(target):
            _data_folder(s, svc, Path(source), root)


def _scratch(target: str) -> bool:
    return any(target == p or target.startswith(p + "/") for p in SCRATCH)


def _data_folder(s: Survey, svc: str, source: Path, root: Path) -> None:
    """A writable bind folder of the project that git does not track: data, kept as a
    volume of the plan (a tracked folder is the project's files, restored by git)."""
    if not source.is_relative_to(root) or source == root or (source.exists() and not source.is_dir()):
        return
    rel = source.relative_to(root).as_posix()
    try:
        if gitstate.run(root, "ls-files", "--", rel):
            return
    except UndoitError:
        pass  # not a git repository yet: nothing of it is tracked
    mine = next((k for k, (folder, _) in s.binds.items() if folder == f"./{rel}"), None)
    if mine is None:
        base = re.sub(r"[^a-z0-9_-]+", "_", source.name.lower()).strip("_") or "data"
        taken = set(s.binds) | set(s.volume_users)
        mine = next(k for k in (base, *(f"{base}_{n}" for n in range(2, 100))) if k not in taken)
        s.binds[mine] = (f"./{rel}", [])
    s.binds[mine] = (s.binds[mine][0], sorted({*s.binds[mine][1], svc}))


def _health(s: Survey, svc: str, spec: dict, client) -> None:
    check = spec.get("healthcheck") or {}
    if check and not check.get("disable") and check.get("test") != ["NONE"]:
        return
    if check.get("disable") or check.get("test") == ["NONE"]:
        s.no_health.append(svc)
        return
    own = _image_healthcheck(client, s.images[svc])
    if own is None:
        s.unknown_health.append(svc)
    elif not own:
        s.no_health.append(svc)


def database(spec: dict) -> str | None:
    """The crash-safe database a service of the compose file runs (CRASH_SAFE), if any."""
    image = re.split(r"[:@]", (spec.get("image") or "").rsplit("/", 1)[-1])[0].lower()
    run = [w for key in ("entrypoint", "command") for w in _words(spec.get(key))]
    server = os.path.basename(run[0]) if run else ""
    test = _words((spec.get("healthcheck") or {}).get("test"))
    probe = os.path.basename((test[1:] or [""])[0].split()[0]) if test[1:] and test[1].strip() else ""
    for kind, (images, servers, probes) in CRASH_SAFE.items():
        if re.fullmatch(images, image) or re.fullmatch(servers, server) or re.fullmatch(probes, probe):
            return kind
    return None


def _words(value) -> list[str]:
    """A compose command, entrypoint or test as a list (a string is one shell line)."""
    return value.split() if isinstance(value, str) else list(value or [])


def _image_healthcheck(client, image: str) -> bool | None:
    """Whether the image defines a healthcheck of its own (None: no engine, or the image is
    not here to ask)."""
    if client is None or not image:
        return None
    from docker.errors import ImageNotFound  # here: the plan loader imports this package

    try:
        test = ((client.images.get(image).attrs.get("Config") or {}).get("Healthcheck") or {}).get("Test")
    except ImageNotFound:
        return None
    return bool(test) and test != ["NONE"]


def _toml(value) -> str:
    return json.dumps(value)  # TOML's basic strings and arrays of them are JSON's


def _table(items: list[dict]) -> str:
    return "[\n" + "".join(f"  {{ {', '.join(f'{k} = {_toml(v)}' for k, v in it.items())} }},\n" for it in items) + "]"


def render(s: Survey, root: Path, name: str) -> str:
    lines = [
        f"# Starter rollback plan for compose project {name}, written by `doit plan:init` from",
        "# `docker compose config` and the engine's images. Edit it (phases: what each change does",
        "# and what undoes it), then run `doit plan:check`. Steps and checks: README, \"Steps and checks\".",
        "", "[project]", f"name = {_toml(name)}",
        f"root = {_toml(str(root))}  # the compose project's folder, relative to this file",
        f"services = {_toml(s.services)}", f"networks = {_toml(s.networks)}",
    ]
    for svc, profiles in sorted(s.profiled.items()):
        lines.append(f"# {svc} runs only under profile {', '.join(profiles)}: not one of the plan's services, "
                     "nor counted by its checks")
    lines += ["", "[backup]", 'branch = "backup-{timestamp}"', 'tag = "pre-change-{date}"']
    if s.ignored:
        lines += [f"# git ignores these and compose reads them: {'; '.join(f'{k} ({v})' for k, v in s.ignored.items())}",
                  "# kept in every set (owner-only here, encrypted offsite), written back by `doit recover`",
                  f"include_ignored = {_toml(sorted(s.ignored))}"]
    lines.append("")
    lines += _notes(s)
    lines += _volume_tables(s)
    return "\n".join(lines + _procedures(s))


def _notes(s: Survey) -> list[str]:
    out = [f"# {svc} has no healthcheck (neither the compose file nor its image): `healthy` can only see that it runs"
           for svc in s.no_health]
    out += [f"# {svc} has no healthcheck in the compose file, and its image is not here to ask whether it has one"
            for svc in s.unknown_health]
    out += [f"# {svc} has an anonymous volume: no backup covers it (give it a name)" for svc in sorted(set(s.anonymous))]
    out += [f"# {svc} mounts no volume: anything it keeps lives in its container and is lost when a rollback "
            "recreates it" for svc in s.layer_only if svc in s.services]
    return out


def _volume_tables(s: Survey) -> list[str]:
    out = []
    for vol, users in sorted(s.volume_users.items()):
        out += ["", f"[volumes.{vol}]", f"services = {_toml(sorted(set(users)))}", *_quiesce(s, users)]
        if any("postgres" in s.images[u] for u in users):
            out += ["# Postgres rewrites its files on every clean restart: judge staleness by its",
                    "# transaction ids and sequences instead", f"probe = {_toml(POSTGRES_PROBE)}"]
    for key, (folder, users) in sorted(s.binds.items()):
        out += ["", f"[volumes.{key}]  # a bind-mounted folder that git does not track: data",
                f"services = {_toml(users)}", f"bind = {_toml(folder)}", 'quiesce = "stop"']
    return out


def _quiesce(s: Survey, users: list[str]) -> list[str]:
    """The volume's quiesce: paused when every service that mounts it is a database that
    recovers from a crash, else stopped (an application's files may be half written)."""
    if any(u not in s.databases for u in users):
        return ['quiesce = "stop"']
    kinds = sorted({s.databases[u] for u in users})
    return [f"# {', '.join(kinds)} recovers from a crash on its own: paused (frozen in place) while its copy",
            "# catches up, its volume is what a power cut would leave and its clients wait instead of failing",
            'quiesce = "pause"']


def _procedures(s: Survey) -> list[str]:
    count = sum(s.replicas[svc] for svc in s.services)
    checks = [{"check": "healthy", "services": s.services},
              {"check": "container-count", "expect": count, "of": "plan"}]
    restored = sorted(s.volume_users) + sorted(s.binds)
    return [
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
                            + ([{"do": "restore-volumes", "volumes": restored}] if restored else [])
                            + [{"do": "up"}]),
        "checks = " + _table(checks),
        "", "[[matrix]]", 'failure = "Anything broken after the change"', 'scope = "Full rollback"',
        'risk = "Medium"', 'duration = "15 min"', 'target = "full"', "",
    ]


def every_profile(project_dir: Path) -> dict:
    """`docker compose config` of the folder with every profile on (a service under a
    profile is still a service compose knows)."""
    return own_config(project_dir, env=dict(stack_env(), COMPOSE_PROFILES="*"))


def init(path: Path, project_dir: Path, client=None) -> Survey:
    """Write a starter plan at path for the compose project in project_dir (never over a
    plan); what it found."""
    path, project_dir = Path(path), Path(project_dir).resolve()
    if path.exists():
        raise UndoitError(f"{path} exists already: refusing to overwrite a plan (set UNDOIT_PLAN to another file)")
    config = every_profile(project_dir)
    # relative to the plan: a clone of the project in another folder (a recovery) finds
    # its root where the plan is, not where the lost machine had it
    root = Path(os.path.relpath(project_dir, path.parent.resolve()))
    found = survey(config, project_dir, client)
    path.write_text(render(found, root, config.get("name") or project_dir.name))
    return found


def summary(s: Survey) -> list[str]:
    """What plan:init found that a person should know, one line each (printed after it)."""
    out = [f"volume {v}: mounted by {', '.join(sorted(set(u)))}" for v, u in sorted(s.volume_users.items())]
    out += [f"bind-mounted data folder {folder}: mounted by {', '.join(users)}; in the plan as [volumes.{k}]"
            for k, (folder, users) in sorted(s.binds.items())]
    out += [f"profile service {svc} ({', '.join(p)}): left out of the plan's services and its container count"
            for svc, p in sorted(s.profiled.items())]
    out += [f"git-ignored {rel}, read by compose ({why}): kept in every set ([backup] include_ignored)"
            for rel, why in s.ignored.items()]
    return out
