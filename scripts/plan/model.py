"""The plan as frozen dataclasses: what phases.toml holds once read.py has checked it.

Nothing here reads a file or the environment; registry.py knows the step and check types.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UndoitError
from .registry import CHECKS, STEPS, CheckType, StepType

QUIESCE = ("stop", "pause", "none")


@dataclass(frozen=True)
class Step:
    """One typed rollback step: `do` is the type, `args` its checked keys."""

    do: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> StepType:
        return STEPS[self.do]


@dataclass(frozen=True)
class Check:
    """One validation item of the runbook, made executable."""

    check: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> CheckType:
        return CHECKS[self.check]


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
    on_failure: str | None = None  # the wider procedure to try when this one fails (the matrix's escalation)

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
    # copied while its services run, then only what changed while they are held still
    # (scripts/store/mirror.py): the stop lasts as long as the changes take, not the data
    precopy: bool = True


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
    escalate: bool = False  # [rollback] escalate: a failed rollback, put back, runs its on_failure
    rehearse_require: bool = False  # [rehearse] require: a checkpoint waits for a passed drill

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
