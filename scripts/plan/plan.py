"""phases.toml + .env -> frozen dataclasses, checked once, with no side effects.

Every error names the file, the table and the key, so a team editing the plan for
another stack never has to read Python to find what is wrong.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UndoitError
from . import settings
from .settings import Settings


# step type -> (required keys, optional keys)
STEP_KEYS: dict[str, tuple[set[str], set[str]]] = {
    "stop": (set(), {"services"}),
    "down": (set(), {"services"}),
    "up": (set(), {"services", "timeout"}),
    "restart": (set(), {"services", "timeout"}),
    "restore-files": ({"paths"}, {"ref"}),
    "restore-volumes": ({"volumes"}, {"set"}),
    "remove-networks": ({"networks"}, set()),
    "create-networks": ({"networks"}, set()),
    "run": ({"argv"}, {"cwd", "env"}),
    "exec": ({"service", "argv"}, {"user"}),
    "note": ({"text"}, set()),
}
# what a phase's change may do to the running stack: the same vocabulary minus the
# restores (a change moves forward; only a rollback restores), plus removing a volume
# the change does away with. A change's `up` and `restart` do not wait for health: a
# change may break it, and the checks read afterwards are how the drill sees that.
CHANGE_STEP_KEYS: dict[str, tuple[set[str], set[str]]] = {
    **{k: v for k, v in STEP_KEYS.items() if k not in ("restore-files", "restore-volumes", "note")},
    "remove-volumes": ({"volumes"}, set()),
}
# check type -> (required keys, optional keys); every check may also carry a `name`
CHECK_KEYS: dict[str, tuple[set[str], set[str]]] = {
    "container-count": ({"expect"}, set()),
    "healthy": (set(), {"services"}),
    "logs-clean": (set(), {"services", "pattern"}),
    "networks-exist": ({"networks"}, set()),
    "networks-absent": ({"networks"}, set()),
    "volume-matches": ({"volumes"}, {"ignore"}),
    "files-match": ({"paths"}, {"ref"}),
    "command": ({"argv"}, {"cwd", "expect"}),
    "exec": ({"service", "argv"}, {"expect", "user"}),
    "test": (set(), set()),
}
QUIESCE = ("stop", "pause", "none")


@dataclass(frozen=True)
class Step:
    """One typed rollback step: `do` is the type, `args` its checked keys."""

    do: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One validation item of the runbook, made executable."""

    check: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """What a phase changes, so a rehearsal can apply it: the commits of `ref` (a branch,
    tag or commit: those not in HEAD; or a range A..B), then `steps` on the stack, then
    `settle` seconds for healthchecks to notice before the checks are read."""

    ref: str | None = None
    steps: tuple[Step, ...] = ()
    settle: float = 0


@dataclass(frozen=True)
class Procedure:
    """A phase rollback, the full rollback or a partial scenario: steps then checks."""

    id: str
    title: str
    kind: str  # "phase" | "full" | "scenario"
    risk: str = ""
    duration: str = ""
    triggers: tuple[str, ...] = ()
    ref: str | None = None
    volumes: tuple[str, ...] = ()
    keeps: tuple[str, ...] = ()
    rolls_back: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()
    checks: tuple[Check, ...] = ()
    change: Change | None = None  # phases only: what the rehearsal applies before rolling back
    # scenarios only: the phases whose changes its drill applies (None: all it rolls back)
    rehearse_changes: tuple[str, ...] | None = None

    @property
    def minutes(self) -> int | None:
        """The runbook's estimate as its upper bound in minutes ("15-30 min" -> 30)."""
        return duration_minutes(self.duration)


@dataclass(frozen=True)
class Volume:
    key: str
    services: tuple[str, ...]
    quiesce: str = "stop"
    pre: tuple[str, ...] = ()
    post: tuple[str, ...] = ()
    hook_service: str | None = None
    # a command run in the hook service whose output changes whenever the data does:
    # staleness for volumes that a clean stop/start rewrites (Postgres' pg_control,
    # pg_wal...), where a metadata walk would call every backup stale
    probe: tuple[str, ...] = ()
    # a bind-mounted data folder (relative to the project root) instead of a named volume
    bind: str | None = None
    devices: bool = False  # device nodes allowed in its archives (refused otherwise)


@dataclass(frozen=True)
class MatrixRow:
    failure: str
    scope: str
    risk: str
    duration: str
    target: str | None  # a procedure id, or None where the scope is a judgement call


# every wait on the engine has a limit (seconds), [timeouts] in the plan: a hung service
# is a failed step with its reason, never a run that holds the lock forever
TIMEOUTS = {
    "up": 180,  # up/restart until healthy, and bringing services back
    "stop": 120,  # stop/down/pause of the services (compose's own grace period is inside it)
    "command": 900,  # run/exec steps, command checks, pre/post hooks
}


RESTIC_SCHEMES = ("sftp:", "rest:", "s3:", "b2:", "azure:", "gs:", "swift:", "rclone:")


@dataclass(frozen=True)
class Offsite:
    """[offsite]: a restic repository the sets are copied to. The password is never in the
    plan: a file (password_file) or an environment variable (password_env) holds it."""

    repository: str  # a local path (absolute), or sftp:, rest:, s3:, ... as restic takes it
    password_file: Path | None = None
    password_env: str | None = None
    after_backup: bool = False  # every `doit backup` sends its set
    check_subset: str = "10%"  # `restic check --read-data-subset` after each sending


@dataclass(frozen=True)
class Plan:
    path: Path
    project_name: str
    root: Path
    compose_files: tuple[str, ...]  # empty: the files compose itself finds (compose.discover)
    services: tuple[str, ...]
    networks: tuple[str, ...]
    test_command: tuple[str, ...]
    backup_branch: str
    backup_tag: str
    snapshots_dir: Path
    log_path: Path
    reports_dir: Path
    volumes: dict[str, Volume]
    phases: tuple[Procedure, ...]
    full: Procedure
    scenarios: tuple[Procedure, ...]
    matrix: tuple[MatrixRow, ...]
    contacts: dict[str, str]
    next_steps: tuple[str, ...]
    env: dict[str, str]
    profiles: tuple[str, ...] = ()
    env_files: tuple[str, ...] = ()
    timeouts: dict[str, int] = field(default_factory=lambda: dict(TIMEOUTS))
    offsite: Offsite | None = None
    keep_last: int | None = None  # `doit prune` defaults ([backup])
    keep_days: float | None = None
    include_ignored: tuple[str, ...] = ()  # git-ignored files kept in every set ([backup])

    def allows_devices(self, key: str) -> bool:
        """Whether this volume's archives may hold device nodes ([volumes.X] devices)."""
        vol = self.volumes.get(key)
        return bool(vol and vol.devices)

    def kit_paths(self) -> tuple[Path, ...]:
        """The kit's own files and folders: the plan, its snapshots, reports and log, and
        the bind-mounted data folders (restored as volumes). Wherever they lie inside the
        project, a restore of files never rolls them back or moves them aside."""
        return (self.path, self.snapshots_dir, self.reports_dir, self.log_path,
                *(Path(p) for p in self.bind_paths().values()))

    def bind_paths(self) -> dict[str, str]:
        """Volume key -> absolute folder, for the plan's bind-mounted data folders."""
        return {k: os.path.abspath(self.root / v.bind) for k, v in self.volumes.items() if v.bind}

    def procedure(self, pid: str) -> Procedure:
        for proc in (*self.phases, self.full, *self.scenarios):
            if proc.id == pid:
                return proc
        raise UndoitError(f"{self.path.name}: no phase or scenario named {pid!r}")


def duration_minutes(text: str) -> int | None:
    m = re.fullmatch(r"\s*(\d+)(?:\s*-\s*(\d+))?\s*min\s*", text or "")
    if not m:
        return None
    return int(m.group(2) or m.group(1))


class _Reader:
    """Walks the parsed TOML, checking keys and types; errors name file, table and key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, table: str, key: str | None, problem: str) -> UndoitError:
        where = f"[{table}]" + (f" {key}" if key else "")
        return UndoitError(f"{self.path}: {where}: {problem}", exit_code=2)

    def keys(self, table: str, data: Any, required: set[str], optional: set[str]) -> dict:
        if not isinstance(data, dict):
            raise self.fail(table, None, "must be a table")
        for key in data:
            if key not in required | optional:
                allowed = ", ".join(sorted(required | optional))
                raise self.fail(table, key, f"unknown key (allowed: {allowed})")
        for key in sorted(required):
            if key not in data:
                raise self.fail(table, key, "missing")
        return data

    def str_(self, table: str, data: dict, key: str, default: str | None = None) -> str:
        value = data.get(key, default)
        if not isinstance(value, str):
            raise self.fail(table, key, "must be a string")
        return value

    def bool_(self, table: str, data: dict, key: str, default: bool = False) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(table, key, "must be true or false")
        return value

    def strs(self, table: str, data: dict, key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(table, key, "must be a list of strings")
        return tuple(value)


def plan_path(env: dict[str, str] | None = None) -> Path:
    return Settings(settings.current() if env is None else env).plan_path


def load_for(argv) -> Plan | None:
    """The plan, or None when its file does not exist yet and the command is plan:init."""
    if not plan_path().exists() and any(a == "plan:init" for a in argv):
        return None
    return load()


def load(path: Path | None = None, env: dict[str, str] | None = None) -> Plan:
    """Read and check the plan; raise UndoitError (exit 2) naming file, table and key."""
    env = Settings(settings.current() if env is None else env)
    path = Path(path or env.plan_path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UndoitError(f"{path}: plan file not found", exit_code=2) from None
    except UnicodeDecodeError as err:
        raise UndoitError(f"{path}: not UTF-8 text (byte {err.start}): a plan is a UTF-8 TOML file",
                          exit_code=2) from None
    except tomllib.TOMLDecodeError as err:
        raise UndoitError(f"{path}: not valid TOML: {err}", exit_code=2) from None
    except RecursionError:
        raise UndoitError(f"{path}: nested deeper than any plan is: refused", exit_code=2) from None
    except ValueError as err:  # e.g. an integer past Python's digit limit
        raise UndoitError(f"{path}: a value the plan cannot hold ({str(err).splitlines()[0][:120]})",
                          exit_code=2) from None
    if _depth(raw) > MAX_DEPTH:
        raise UndoitError(f"{path}: nested deeper than any plan is (more than {MAX_DEPTH} levels): refused",
                          exit_code=2)
    r = _Reader(path)
    top = r.keys(
        "plan",
        raw,
        {"project", "full"},
        {"phase", "backup", "volumes", "scenario", "matrix", "contacts", "after", "timeouts", "offsite"},
    )

    proj = r.keys(
        "project",
        top["project"],
        {"name", "root", "services"},
        {"compose_files", "networks", "test_command", "log", "reports", "profiles", "env_files"},
    )
    services = r.strs("project", proj, "services")
    networks = r.strs("project", proj, "networks")
    root = Path(env.get("UNDOIT_PROJECT_DIR") or r.str_("project", proj, "root"))
    if not root.is_absolute():
        root = path.parent / root

    backup = r.keys("backup", top.get("backup", {}), set(),
                    {"branch", "tag", "snapshots", "keep_last", "keep_days", "include_ignored"})
    include_ignored = r.strs("backup", backup, "include_ignored")
    for rel in include_ignored:
        if not rel.strip() or rel.startswith("/") or ".." in rel.split("/"):
            raise r.fail("backup", "include_ignored", f"{rel!r}: a file or folder of the project, relative to its root")
    for key in ("keep_last", "keep_days"):
        value = backup.get(key)
        if value is not None and (not _within(value, 1, 10 ** 9) or (key == "keep_last" and not isinstance(value, int))):
            raise r.fail("backup", key, "must be a whole number of sets, 1 or more" if key == "keep_last"
                         else "must be a number of days, 1 or more")
    snapshots_value = r.str_("backup", backup, "snapshots", "snapshots")
    if not snapshots_value.strip():
        raise r.fail("backup", "snapshots", "must name a folder")
    snapshots = Path(snapshots_value)
    if not snapshots.is_absolute():
        snapshots = path.parent / snapshots

    volumes: dict[str, Volume] = {}
    vols_raw = top.get("volumes", {})
    if not isinstance(vols_raw, dict):
        raise r.fail("volumes", None, "must be a table of volume tables")
    for key, spec in vols_raw.items():
        table = f"volumes.{key}"
        r.keys(table, spec, {"services"}, {"quiesce", "pre", "post", "hook_service", "probe", "bind", "devices"})
        vol_services = r.strs(table, spec, "services")
        _known(r, table, "services", vol_services, services, "service")
        quiesce = r.str_(table, spec, "quiesce", "stop")
        if quiesce not in QUIESCE:
            raise r.fail(table, "quiesce", f"{quiesce!r} is not one of {', '.join(QUIESCE)}")
        hook = spec.get("hook_service")
        if hook is not None:
            _known(r, table, "hook_service", [r.str_(table, spec, "hook_service")], services, "service")
        volumes[key] = Volume(
            key=key,
            services=vol_services,
            quiesce=quiesce,
            pre=_command(r, table, spec, "pre"),
            post=_command(r, table, spec, "post"),
            hook_service=hook,
            probe=_command(r, table, spec, "probe"),
            bind=_bind(r, table, spec),
            devices=r.bool_(table, spec, "devices"),
        )

    ctx = _Context(r, services, networks, tuple(volumes))
    phase_list = top.get("phase", [])
    if not isinstance(phase_list, list):
        raise r.fail("phase", None, "must be an array of tables ([[phase]])")
    phases = tuple(ctx.procedure("phase", i, spec) for i, spec in enumerate(phase_list))
    full = ctx.procedure("full", None, top["full"])
    scen_list = top.get("scenario", [])
    if not isinstance(scen_list, list):
        raise r.fail("scenario", None, "must be an array of tables ([[scenario]])")
    scenarios = tuple(ctx.procedure("scenario", i, spec) for i, spec in enumerate(scen_list))

    seen: set[str] = set()
    for proc in (*phases, full, *scenarios):
        if proc.id in seen:
            raise r.fail(proc.kind, "id", f"duplicate id {proc.id!r}")
        seen.add(proc.id)
    phase_ids = tuple(p.id for p in phases)
    for proc in scenarios:
        table = f"scenario.{proc.id}"
        for key in ("keeps", "rolls_back"):
            _known(r, table, key, getattr(proc, key), phase_ids, "phase")
        if proc.rehearse_changes is not None:
            _known(r, table, "rehearse_changes", proc.rehearse_changes, proc.rolls_back, "phase it rolls back:")

    matrix = []
    for i, row in enumerate(_array(r, "matrix", top.get("matrix", []))):
        table = f"matrix[{i}]"
        r.keys(table, row, {"failure", "scope", "risk", "duration"}, {"target"})
        target = row.get("target")
        if target is not None and not isinstance(target, str):
            raise r.fail(table, "target", "must be the id of a phase or scenario (a string)")
        if target is not None and target not in seen:
            raise r.fail(table, "target", f"unknown phase or scenario {target!r}")
        matrix.append(
            MatrixRow(
                failure=r.str_(table, row, "failure"),
                scope=r.str_(table, row, "scope"),
                risk=r.str_(table, row, "risk"),
                duration=r.str_(table, row, "duration"),
                target=target,
            )
        )

    contacts = top.get("contacts", {})
    if not isinstance(contacts, dict) or not all(isinstance(v, str) for v in contacts.values()):
        raise r.fail("contacts", None, "must be a table of strings")
    after = r.keys("after", top.get("after", {}), set(), {"next_steps"})
    limits = r.keys("timeouts", top.get("timeouts", {}), set(), set(TIMEOUTS))
    for key, value in limits.items():
        if not _within(value, 1, 86400):
            raise r.fail("timeouts", key, "must be a number of seconds between 1 and 86400")

    return Plan(
        path=path,
        project_name=env.get("UNDOIT_PROJECT_NAME") or r.str_("project", proj, "name"),
        root=root,
        compose_files=r.strs("project", proj, "compose_files"),
        profiles=r.strs("project", proj, "profiles"),
        env_files=r.strs("project", proj, "env_files"),
        services=services,
        networks=networks,
        test_command=r.strs("project", proj, "test_command"),
        backup_branch=_ref_template(r, "backup", backup, "branch", "backup-{timestamp}"),
        backup_tag=_ref_template(r, "backup", backup, "tag", "pre-change-{date}"),
        snapshots_dir=snapshots,
        log_path=_beside(path, r.str_("project", proj, "log", "ROLLBACK-LOG.md")),
        reports_dir=_beside(path, r.str_("project", proj, "reports", "reports")),
        volumes=volumes,
        phases=phases,
        full=full,
        scenarios=scenarios,
        matrix=tuple(matrix),
        contacts=dict(contacts),
        next_steps=r.strs("after", after, "next_steps"),
        env=env,
        timeouts={**TIMEOUTS, **{k: int(v) for k, v in limits.items()}},
        offsite=_offsite(r, path, top.get("offsite")),
        keep_last=backup.get("keep_last"),
        keep_days=backup.get("keep_days"),
        include_ignored=include_ignored,
    )


def _offsite(r: "_Reader", path: Path, raw) -> Offsite | None:
    if raw is None:
        return None
    if isinstance(raw, dict) and "password" in raw:
        raise r.fail("offsite", "password", "a password never goes in the plan: name a file (password_file) "
                                            "or an environment variable (password_env) that holds it")
    t = r.keys("offsite", raw, {"repository"}, {"password_file", "password_env", "after_backup", "check_subset"})
    repo = r.str_("offsite", t, "repository").strip()
    if not repo:
        raise r.fail("offsite", "repository", "must name a restic repository")
    if not repo.startswith(RESTIC_SCHEMES):
        repo = str(_beside(path, repo))  # a local path, relative to the plan
    if ("password_file" in t) == ("password_env" in t):
        raise r.fail("offsite", None, "needs exactly one of password_file and password_env")
    pw_file = _beside(path, r.str_("offsite", t, "password_file")) if "password_file" in t else None
    pw_env = r.str_("offsite", t, "password_env") if "password_env" in t else None
    if pw_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", pw_env):
        raise r.fail("offsite", "password_env", "must be the name of an environment variable")
    subset = r.str_("offsite", t, "check_subset", "10%")
    if not re.fullmatch(r"(100|[1-9]?[0-9](\.[0-9]+)?)%", subset):
        raise r.fail("offsite", "check_subset", "must be a percentage, e.g. \"10%\"")
    return Offsite(repo, pw_file, pw_env, r.bool_("offsite", t, "after_backup"), subset)


# the plan's real shape: [[phase]] > a phase > change > steps > a step > argv (or env) > a value
MAX_DEPTH = 7


def _depth(value, level: int = 0) -> int:
    """How deep tables and arrays nest (iterative: a hostile file must not recurse us out)."""
    deepest, stack = level, [(value, level)]
    while stack:
        item, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > MAX_DEPTH:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)
    return deepest


# git's own rules for a ref name (git check-ref-format), for branch and tag templates
_BAD_REF = re.compile(r"(^[-/.]|/\.|\.\.|[\x00-\x20\x7f~^:?*\[\\]|@\{|//|/$|\.$|\.lock$|\.lock/)")


# a revision git can resolve (main, v1.2, a1b2c3, main~2): never an option, never blank
_REVISION = re.compile(r"[^-.\s][^\s\x00-\x1f\x7f]*")


def _ref_template(r: "_Reader", table: str, data: dict, key: str, default: str) -> str:
    """A branch or tag template, rendered once with sample values: unknown {fields} and
    names git would refuse are caught here, not after a backup began."""
    template = r.str_(table, data, key, default)
    try:
        sample = template.format(date="20260101", timestamp="20260101-000000")
    except (KeyError, IndexError, ValueError) as err:
        raise r.fail(table, key, f"{template!r}: unknown field {err} (use {{date}} and {{timestamp}})") from None
    if not sample or sample == "@" or _BAD_REF.search(sample):
        raise r.fail(table, key, f"{template!r} gives {sample!r}, which git does not accept as a ref name")
    return template


def _command(r: _Reader, table: str, data: dict, key: str) -> tuple[str, ...]:
    """A command (argv) a volume's hooks or probe run: none, or one that names a program."""
    argv = r.strs(table, data, key)
    if argv and not argv[0]:
        raise r.fail(table, key, "its first item must name the command to run")
    return argv


def _bind(r: _Reader, table: str, data: dict) -> str | None:
    if "bind" not in data:
        return None
    bind = r.str_(table, data, "bind")
    if not bind.strip():
        raise r.fail(table, "bind", "must name a folder (an empty one would be the whole project)")
    return bind


def _beside(plan_path: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else plan_path.parent / p


def _array(r: _Reader, table: str, value: Any) -> list:
    if not isinstance(value, list):
        raise r.fail(table, None, f"must be an array of tables ([[{table}]])")
    return value


def _known(r: _Reader, table: str, key: str, values, known, what: str) -> None:
    for value in values:
        if value not in known:
            raise r.fail(table, key, f"unknown {what} {value!r}")


class _Context:
    """What steps and checks may refer to: the plan's services, networks and volumes."""

    def __init__(self, r: _Reader, services, networks, volumes):
        self.r, self.services, self.networks, self.volumes = r, services, networks, volumes

    def procedure(self, kind: str, index: int | None, spec: Any) -> Procedure:
        named = isinstance(spec, dict) and isinstance(spec.get("id"), str)
        label = kind if index is None else (f"{kind}.{spec['id']}" if named else f"{kind}[{index}]")
        r = self.r
        r.keys(
            label,
            spec,
            {"title"} | ({"id"} if kind != "full" else set()),
            {"risk", "duration", "triggers", "ref", "volumes", "steps", "checks"}
            | ({"keeps", "rolls_back", "rehearse_changes"} if kind == "scenario" else set())
            | ({"change"} if kind == "phase" else set())
            | ({"id"} if kind == "full" else set()),
        )
        pid = r.str_(label, spec, "id", "full")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", pid):
            raise r.fail(label, "id", f"{pid!r}: use lowercase letters, digits, - and _")
        table = f"{kind}.{pid}" if kind != "full" else "full"
        vols = r.strs(table, spec, "volumes")
        _known(r, table, "volumes", vols, self.volumes, "volume")
        ref = spec.get("ref")
        if ref is not None and not isinstance(ref, str):
            raise r.fail(table, "ref", "must be a string")
        return Procedure(
            id=pid,
            title=r.str_(table, spec, "title"),
            kind=kind,
            risk=r.str_(table, spec, "risk", ""),
            duration=r.str_(table, spec, "duration", ""),
            triggers=r.strs(table, spec, "triggers"),
            ref=ref,
            volumes=vols,
            keeps=r.strs(table, spec, "keeps"),
            rolls_back=r.strs(table, spec, "rolls_back"),
            steps=tuple(
                self.step(f"{table}.steps[{i}]", s)
                for i, s in enumerate(_array(r, f"{table}.steps", spec.get("steps", [])))
            ),
            checks=tuple(
                self.check(f"{table}.checks[{i}]", c)
                for i, c in enumerate(_array(r, f"{table}.checks", spec.get("checks", [])))
            ),
            change=self.change(f"{table}.change", spec["change"]) if "change" in spec else None,
            rehearse_changes=r.strs(table, spec, "rehearse_changes") if "rehearse_changes" in spec else None,
        )

    def change(self, table: str, spec: Any) -> Change:
        r = self.r
        r.keys(table, spec, set(), {"ref", "steps", "settle"})
        ref = spec.get("ref")
        if ref is not None and (not isinstance(ref, str) or ref.count("..") > 1
                                or not all(_REVISION.fullmatch(part) for part in ref.split(".."))):
            raise r.fail(table, "ref", f"{ref!r}: a branch, tag or commit, or a range A..B")
        settle = spec.get("settle", 0)
        if not _within(settle, 0, 600):
            raise r.fail(table, "settle", "must be a number of seconds between 0 and 600")
        steps = tuple(self.step(f"{table}.steps[{i}]", s, CHANGE_STEP_KEYS)
                      for i, s in enumerate(_array(r, f"{table}.steps", spec.get("steps", []))))
        if ref is None and not steps:
            raise r.fail(table, None, "names neither a ref nor steps: nothing to apply")
        return Change(ref=ref, steps=steps, settle=settle)

    def step(self, table: str, spec: Any, kinds: dict = STEP_KEYS) -> Step:
        kind = self._type(table, spec, "do", kinds)
        required, optional = kinds[kind]
        self.r.keys(table, spec, required | {"do"}, optional)
        args = {k: v for k, v in spec.items() if k != "do"}
        self._refs(table, args)
        return Step(do=kind, args=args)

    def check(self, table: str, spec: Any) -> Check:
        kind = self._type(table, spec, "check", CHECK_KEYS)
        required, optional = CHECK_KEYS[kind]
        self.r.keys(table, spec, required | {"check"}, optional | {"name"})
        args = {k: v for k, v in spec.items() if k not in ("check", "name")}
        self._refs(table, args)
        name = spec.get("name", kind)
        if kind == "container-count" and (isinstance(args["expect"], bool) or not isinstance(args["expect"], int)
                                          or args["expect"] < 0):
            raise self.r.fail(table, "expect", "must be a whole number of containers")
        return Check(check=kind, name=self.r.str_(table, spec, "name", name), args=args)

    def _type(self, table: str, spec: Any, key: str, kinds: dict) -> str:
        if not isinstance(spec, dict) or key not in spec:
            raise self.r.fail(table, key, "missing")
        kind = spec[key]
        if not isinstance(kind, str) or kind not in kinds:
            raise self.r.fail(table, key, f"unknown type {kind!r} (known: {', '.join(kinds)})")
        return kind

    def _refs(self, table: str, args: dict) -> None:
        """Every key of a step or check, to the leaf: its type, that it names something
        the plan has, and the value a runner can use (a command, a path, a duration)."""
        r = self.r
        for key in ("services", "networks", "volumes", "paths", "argv", "ignore"):
            if key in args:
                r.strs(table, args, key)
        for key in ("cwd", "user", "text", "ref", "set", "pattern", "service"):
            if key in args and not isinstance(args[key], str):
                raise r.fail(table, key, "must be a string")
        if "service" in args:
            _known(r, table, "service", [args["service"]], self.services, "service")
        _known(r, table, "services", args.get("services", ()), self.services, "service")
        _known(r, table, "networks", args.get("networks", ()), self.networks, "network")
        _known(r, table, "volumes", args.get("volumes", ()), self.volumes, "volume")
        _leaves(r, table, args)


# keys a step or check must name at least one of, and what each names
AT_LEAST_ONE = {"argv": "a command", "paths": "a path", "volumes": "a volume", "networks": "a network"}
# string keys whose empty value would stand for nothing (or, for ref, for the run's own ref)
NOT_EMPTY = ("user", "text", "ref", "set", "pattern", "service")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _leaves(r: _Reader, table: str, args: dict) -> None:
    for key, what in AT_LEAST_ONE.items():
        if key in args and not args[key]:
            raise r.fail(table, key, f"must name {what} (an empty list)")
    if "argv" in args and not args["argv"][0]:
        raise r.fail(table, "argv", "its first item must name the command to run")
    for path in args.get("paths", ()):
        if not path or path.startswith("/") or ".." in path.split("/"):
            raise r.fail(table, "paths", f"{path!r}: a path of the project, relative to its root")
    for key in NOT_EMPTY:
        if args.get(key) == "":
            raise r.fail(table, key, "must not be empty")
    if "ref" in args and not _REVISION.fullmatch(args["ref"]):
        raise r.fail(table, "ref", f"{args['ref']!r}: a branch, tag or commit")
    if "timeout" in args and not _within(args["timeout"], 1, 86400):
        raise r.fail(table, "timeout", "must be a number of seconds between 1 and 86400")
    if "expect" in args and (isinstance(args["expect"], bool) or not isinstance(args["expect"], (int, str))):
        raise r.fail(table, "expect", "must be a number or a string")
    if "cwd" in args and (args["cwd"].startswith("/") or ".." in args["cwd"].split("/")):
        raise r.fail(table, "cwd", "a folder of the project, relative to its root")
    if "pattern" in args:
        try:
            re.compile(args["pattern"])
        except re.error as err:
            raise r.fail(table, "pattern", f"not a regular expression ({err})") from None
    if "env" in args and not (isinstance(args["env"], dict) and all(
            isinstance(v, str) and _ENV_NAME.fullmatch(k) for k, v in args["env"].items())):
        raise r.fail(table, "env", "must be a table of strings, each under a variable's name (A-Z, 0-9, _)")


def _within(value, low: float, high: float) -> bool:
    """A number (not a boolean) from low to high: TOML's inf and nan are not."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and low <= value <= high
