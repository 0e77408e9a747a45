"""phases.toml + settings -> a Plan: the file parsed once, then one reader per table.

Every error names the file, the table and the key, so a team editing the plan for
another stack never has to read Python to find what is wrong (exit code errors.PLAN).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from .. import errors
from ..errors import UndoitError
from . import procedures, settings
from .model import QUIESCE, TIMEOUTS, MatrixRow, Offsite, Plan, Volume
from .settings import Settings
from .tables import Reader, beside, within

RESTIC_SCHEMES = ("sftp:", "rest:", "s3:", "b2:", "azure:", "gs:", "swift:", "rclone:")
# the plan's real shape: [[phase]] > a phase > change > steps > a step > argv (or env) > a value
MAX_DEPTH = 7
# git's own rules for a ref name (git check-ref-format), for branch and tag templates
_BAD_REF = re.compile(r"(^[-/.]|/\.|\.\.|[\x00-\x20\x7f~^:?*\[\\]|@\{|//|/$|\.$|\.lock$|\.lock/)")


def plan_path(env: dict[str, str] | None = None) -> Path:
    return Settings(settings.current() if env is None else env).plan_path


def load_for(argv) -> Plan | None:
    """The plan, or None when its file does not exist yet and the command is plan:init."""
    if not plan_path().exists() and any(a == "plan:init" for a in argv):
        return None
    return load()


def load(path: Path | None = None, env: dict[str, str] | None = None) -> Plan:
    """Read and check the plan; raise UndoitError (exit errors.PLAN) naming file, table and key."""
    env = Settings(settings.current() if env is None else env)
    path = Path(path or env.plan_path)
    r = Reader(path)
    top = r.keys("plan", _parse(path), {"project", "full"},
                 {"phase", "backup", "volumes", "scenario", "matrix", "contacts", "after", "timeouts", "offsite",
                  "rollback", "rehearse"})
    project = _project(r, top["project"], env)
    backup = _backup(r, top.get("backup", {}))
    volumes = _volumes(r, top.get("volumes", {}), project["services"])
    phases, full, scenarios = procedures.read(r, top, project["services"], project["networks"], volumes)
    ids = {p.id for p in (*phases, full, *scenarios)}
    return Plan(
        path=path,
        **project,
        **backup,
        volumes=volumes,
        phases=phases,
        full=full,
        scenarios=scenarios,
        matrix=_matrix(r, top.get("matrix", []), ids),
        contacts=_contacts(r, top.get("contacts", {})),
        next_steps=r.strs("after", r.keys("after", top.get("after", {}), set(), {"next_steps"}), "next_steps"),
        env=env,
        timeouts=_timeouts(r, top.get("timeouts", {})),
        offsite=_offsite(r, top.get("offsite")),
        escalate=r.bool_("rollback", r.keys("rollback", top.get("rollback", {}), set(), {"escalate"}), "escalate"),
        # [rehearse] require: checkpoint:<phase> waits for a drill of that phase that passed
        rehearse_require=r.bool_("rehearse", r.keys("rehearse", top.get("rehearse", {}), set(), {"require"}),
                                 "require"),
    )


def _parse(path: Path) -> dict:
    """The file as TOML, no deeper than a plan is; any other content is one line."""
    def refused(why: str) -> UndoitError:
        return UndoitError(f"{path}: {why}", exit_code=errors.PLAN)

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise refused("plan file not found") from None
    except UnicodeDecodeError as err:
        raise refused(f"not UTF-8 text (byte {err.start}): a plan is a UTF-8 TOML file") from None
    except tomllib.TOMLDecodeError as err:
        raise refused(f"not valid TOML: {err}") from None
    except RecursionError:
        raise refused("nested deeper than any plan is: refused") from None
    except ValueError as err:  # e.g. an integer past Python's digit limit
        raise refused(f"a value the plan cannot hold ({str(err).splitlines()[0][:120]})") from None
    if _depth(raw) > MAX_DEPTH:
        raise refused(f"nested deeper than any plan is (more than {MAX_DEPTH} levels): refused")
    return raw


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


def _project(r: Reader, raw: Any, env: Settings) -> dict:
    """[project]: the compose project, its folder and files; the log and reports beside the plan."""
    proj = r.keys("project", raw, {"name", "root", "services"},
                  {"compose_files", "networks", "test_command", "log", "reports", "profiles", "env_files"})
    root = Path(env.get("UNDOIT_PROJECT_DIR") or r.str_("project", proj, "root"))
    if not root.is_absolute():
        root = r.path.parent / root
    return dict(
        project_name=env.get("UNDOIT_PROJECT_NAME") or r.str_("project", proj, "name"),
        root=root,
        compose_files=r.strs("project", proj, "compose_files"),
        profiles=r.strs("project", proj, "profiles"),
        env_files=r.strs("project", proj, "env_files"),
        services=r.strs("project", proj, "services"),
        networks=r.strs("project", proj, "networks"),
        test_command=r.strs("project", proj, "test_command"),
        log_path=beside(r.path, r.str_("project", proj, "log", "ROLLBACK-LOG.md")),
        reports_dir=beside(r.path, r.str_("project", proj, "reports", "reports")),
    )


def _backup(r: Reader, raw: Any) -> dict:
    """[backup]: the git names a backup makes, where its sets go, how many prune keeps."""
    backup = r.keys("backup", raw, set(), {"branch", "tag", "snapshots", "keep_last", "keep_days", "include_ignored"})
    include_ignored = r.strs("backup", backup, "include_ignored")
    for rel in include_ignored:
        if not rel.strip() or rel.startswith("/") or ".." in rel.split("/"):
            raise r.fail("backup", "include_ignored", f"{rel!r}: a file or folder of the project, relative to its root")
    for key in ("keep_last", "keep_days"):
        value = backup.get(key)
        if value is not None and (not within(value, 1, 10 ** 9) or (key == "keep_last" and not isinstance(value, int))):
            raise r.fail("backup", key, "must be a whole number of sets, 1 or more" if key == "keep_last"
                         else "must be a number of days, 1 or more")
    snapshots = r.str_("backup", backup, "snapshots", "snapshots")
    if not snapshots.strip():
        raise r.fail("backup", "snapshots", "must name a folder")
    return dict(
        backup_branch=_ref_template(r, "backup", backup, "branch", "backup-{timestamp}"),
        backup_tag=_ref_template(r, "backup", backup, "tag", "pre-change-{date}"),
        snapshots_dir=beside(r.path, snapshots),
        keep_last=backup.get("keep_last"),
        keep_days=backup.get("keep_days"),
        include_ignored=include_ignored,
    )


def _volumes(r: Reader, raw: Any, services) -> dict[str, Volume]:
    """[volumes.X]: each volume (or bind folder) the plan backs up, and how it is quiesced."""
    if not isinstance(raw, dict):
        raise r.fail("volumes", None, "must be a table of volume tables")
    volumes: dict[str, Volume] = {}
    for key, spec in raw.items():
        table = f"volumes.{key}"
        r.keys(table, spec, {"services"}, {"quiesce", "pre", "post", "hook_service", "probe", "bind", "devices",
                                                  "precopy"})
        vol_services = r.strs(table, spec, "services")
        r.known(table, "services", vol_services, services, "service")
        quiesce = r.str_(table, spec, "quiesce", "stop")
        if quiesce not in QUIESCE:
            raise r.fail(table, "quiesce", f"{quiesce!r} is not one of {', '.join(QUIESCE)}")
        hook = spec.get("hook_service")
        if hook is not None:
            r.known(table, "hook_service", [r.str_(table, spec, "hook_service")], services, "service")
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
            precopy=r.bool_(table, spec, "precopy", True),
        )
    return volumes


def _matrix(r: Reader, raw: Any, ids: set[str]) -> tuple[MatrixRow, ...]:
    """[[matrix]]: the decision matrix; a row's target is a procedure of the plan."""
    rows = []
    for i, row in enumerate(r.array("matrix", raw), 1):
        table = f"matrix row {i}"
        r.keys(table, row, {"failure", "scope", "risk", "duration"}, {"target"})
        target = row.get("target")
        if target is not None and not isinstance(target, str):
            raise r.fail(table, "target", "must be the id of a phase or scenario (a string)")
        if target is not None and target not in ids:
            raise r.fail(table, "target", f"unknown phase or scenario {target!r}")
        rows.append(MatrixRow(failure=r.str_(table, row, "failure"), scope=r.str_(table, row, "scope"),
                              risk=r.str_(table, row, "risk"), duration=r.str_(table, row, "duration"),
                              target=target))
    return tuple(rows)


def _contacts(r: Reader, raw: Any) -> dict[str, str]:
    """[contacts]: who to call, named in every failure's output."""
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise r.fail("contacts", None, "must be a table of strings")
    return dict(raw)


def _timeouts(r: Reader, raw: Any) -> dict[str, int]:
    """[timeouts]: the limits of every wait on the engine, the defaults where not given."""
    limits = r.keys("timeouts", raw, set(), set(TIMEOUTS))
    for key, value in limits.items():
        if not within(value, 1, 86400):
            raise r.fail("timeouts", key, "must be a number of seconds between 1 and 86400")
    return {**TIMEOUTS, **{k: int(v) for k, v in limits.items()}}


def _offsite(r: Reader, raw) -> Offsite | None:
    """[offsite]: the restic repository, and where its password is (never in the plan)."""
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
        repo = str(beside(r.path, repo))  # a local path, relative to the plan
    if ("password_file" in t) == ("password_env" in t):
        raise r.fail("offsite", None, "needs exactly one of password_file and password_env")
    pw_file = beside(r.path, r.str_("offsite", t, "password_file")) if "password_file" in t else None
    pw_env = r.str_("offsite", t, "password_env") if "password_env" in t else None
    if pw_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", pw_env):
        raise r.fail("offsite", "password_env", "must be the name of an environment variable")
    subset = r.str_("offsite", t, "check_subset", "10%")
    if not re.fullmatch(r"(100|[1-9]?[0-9](\.[0-9]+)?)%", subset):
        raise r.fail("offsite", "check_subset", "must be a percentage, e.g. \"10%\"")
    return Offsite(repo, pw_file, pw_env, r.bool_("offsite", t, "after_backup"), subset)


def _ref_template(r: Reader, table: str, data: dict, key: str, default: str) -> str:
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


def _command(r: Reader, table: str, data: dict, key: str) -> tuple[str, ...]:
    """A command (argv) a volume's hooks or probe run: none, or one that names a program."""
    argv = r.strs(table, data, key)
    if argv and not argv[0]:
        raise r.fail(table, key, "its first item must name the command to run")
    return argv


def _bind(r: Reader, table: str, data: dict) -> str | None:
    if "bind" not in data:
        return None
    bind = r.str_(table, data, "bind")
    if not bind.strip():
        raise r.fail(table, "bind", "must name a folder (an empty one would be the whole project)")
    return bind
