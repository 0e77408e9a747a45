"""What a step or check reads (a context, fixed) and what a rollback has done so far (Run).

A step type (plan/registry.py) acts with a context: StackContext for a phase's change
(the plan, the engine, compose, how long to wait), RunContext for a rollback (that and
the point in time it goes back to: ref, set, volume names, the run's id and folder).
Run is the runner's own state around it: the record it keeps on disk, the journal
entry, the volumes built ahead, the file restores planned while describing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from ..output.redact import Redactor
from ..plan.plan import Plan, Procedure, Step
from ..stack import engine
from ..stack.compose import Compose, for_plan, stack_env
from ..store import snapshots
from ..store.journal import Entry
from . import restore, runlog


@dataclass(frozen=True, kw_only=True)
class StackContext:
    """What a step reads to act on the project's stack. A phase's change runs its steps
    with one of these (rehearse/changes.py); a rollback with a RunContext."""

    plan: Plan
    proc: Procedure  # the procedure run (for a change: its phase)
    client: Any  # the engine's client (stack/engine.py)
    compose: Compose
    env: Mapping[str, str]  # what host commands run with
    redact: Redactor
    up_timeout: int  # how long `up` and `restart` wait for health
    command_timeout: int
    health_wait: int = 60  # how long the healthy check waits
    interactive: bool = False  # someone at a terminal answers (a note's Enter, the yes)
    sandbox: bool = False  # a rehearsal's: shares the live repository's refs, so it tags nothing

    def __post_init__(self):
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))

    @classmethod
    def of(cls, plan: Plan, proc: Procedure, **given) -> StackContext:
        """The plan's own: its compose, the engine, its redactor and [timeouts]; given
        fields are taken as they are."""
        own = dict(client=engine.client(), compose=for_plan(plan), redact=Redactor.shared(plan),
                   env=dict(stack_env(), COMPOSE_PROJECT_NAME=plan.project_name),
                   up_timeout=plan.timeouts["up"], command_timeout=plan.timeouts["command"])
        return cls(plan=plan, proc=proc, **{**own, **given})

    def network_name(self, key: str) -> str:
        """The engine's name of the plan's network key (compose's default when it has none)."""
        project = self.plan.project_name
        for n in self.client.networks.list(filters={"label": f"com.docker.compose.project={project}"}):
            if (n.attrs.get("Labels") or {}).get("com.docker.compose.network") == key:
                return n.name
        return f"{project}_{key}"


@dataclass(frozen=True, kw_only=True)
class RunContext(StackContext):
    """What a rollback's steps and checks read, resolved before anything changes."""

    ref: str  # the files go back to this
    ref_source: str  # one line: why this ref
    snapshot: snapshots.SnapshotSet | None  # the set the volumes come from
    snapshot_source: str
    volume_names: Mapping[str, str]  # plan volume key -> the engine's volume (or a bind folder)
    run_id: str
    run_dir: Path  # the run's safety copies and record
    dry_run: bool = False
    reason: str = ""
    since: str = ""  # when the steps began (ISO 8601): logs are read from then

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "volume_names", MappingProxyType(dict(self.volume_names)))


@dataclass
class Run:
    """A rollback as it goes: its context, replaced (never changed) where the runner
    learns something (its final id, when the steps began), and its state."""

    ctx: RunContext
    record: runlog.Record | None = None  # kept on disk from before the first step (undo reads it)
    journal: Entry | None = None  # what a dead run leaves unfinished (store/journal.py)
    started_at: float = 0.0  # time.time() at the start of the steps
    staged: dict = field(default_factory=dict)  # volume key -> restore.Staged, built ahead (prestage)
    file_plans: dict[int, dict] = field(default_factory=dict)  # step index -> restore_plan, described last
    keep: bool = False  # a failed run leaves its half state (no put-back: putback.py)
    escalate: bool = False  # a failed run put back runs its procedure's on_failure next
    escalated_from: str | None = None  # this run is another's escalation: the log entry is that one's
    escalating: bool = False  # it failed, was put back, and its on_failure runs next (execute)
    cost: Any = None  # what it will cost (preview.Cost), once described

    @property
    def proc(self) -> Procedure:
        return self.ctx.proc

    def persist(self) -> None:
        """The run record as it stands, durably: a run killed at any point leaves it, with
        every safety copy made so far, for `doit undo`."""
        if self.record is not None:
            runlog.keep(self.ctx.plan, self.record, self.ctx.redact)

    def step_index(self, step: Step) -> int:
        return self.ctx.proc.steps.index(step)

    def step_dir(self, step: Step) -> Path:
        return self.ctx.run_dir / f"step{self.step_index(step) + 1}"

    def safety_snapshot(self, targets: dict[str, str], park=()) -> snapshots.SnapshotSet | None:
        """The safety set of what targets hold now (park: keys whose contents the swap moves
        into it), on the run's record; None when none of them exists."""
        c = self.ctx
        existing = {k: v for k, v in targets.items() if restore.volume_exists(c.client, v)}
        if not existing:
            return None
        s = restore.safety_snapshot(c.client, c.plan.snapshots_dir, c.plan.project_name, existing,
                                    f"before {c.proc.kind} {c.proc.id} ({c.run_id})",
                                    park=[k for k in park if k in existing])
        self.record.safety_sets.append(s.id)
        return s
