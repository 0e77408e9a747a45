"""What a procedure restores: one set and the files of the same point in time, checked.

Never HEAD~1, and never an older cycle's baseline: both put back the wrong point in time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..backup import cycles
from ..errors import UndoitError
from ..plan.plan import Plan, Procedure
from ..repo import gitstate, records
from ..stack import volumes
from ..store import restic, snapshots
from . import restore

NO_BACKUP = cycles.NO_BACKUP


@dataclass(frozen=True)
class Choice:
    """What a procedure restores: one set, and the files of the same point in time."""

    set: snapshots.SnapshotSet
    set_source: str  # one line: which set and why
    ref: str
    ref_source: str


def files_of(plan: Plan, s: snapshots.SnapshotSet, named: bool = False) -> tuple[str, str]:
    """The commit a set was taken at (its tag's, when the tag still points there): files
    and volumes always come from one point in time. A tag of that name that points
    elsewhere stops a run the kit chose the set for (another cycle may have made the
    name again: which point in time is meant is no longer certain); a set named with
    set=ID takes its own commit, and says the tag moved."""
    git = (s.manifest or {}).get("git") or {}
    commit, tag = git.get("commit") or git.get("head"), git.get("tag")
    if not commit:
        raise UndoitError(f"set {s.id} records no git commit: it cannot be the source of a rollback's files")
    if not gitstate.ref_exists(plan.root, commit + "^{commit}"):
        raise UndoitError(f"set {s.id} was taken at commit {commit[:12]}, which this repository does not have "
                          "(fetch it from the remote that has it, e.g. the backup branch), so its files cannot "
                          "be put back: nothing was changed")
    if tag and gitstate.ref_exists(plan.root, f"refs/tags/{tag}"):
        points = gitstate.run(plan.root, "rev-parse", f"{tag}^{{commit}}")
        if points == commit:
            return tag, f"tag of set {s.id}"
        if not named:
            raise UndoitError(f"tag {tag} has moved: it points at {points[:12]}, and set {s.id} was taken at "
                              f"{commit[:12]}; refusing to guess which point in time is meant (put the tag back "
                              f"with `git tag -f {tag} {commit[:12]}`, or name the set with set={s.id})")
        return commit, f"commit of set {s.id} (tag {tag} has moved to {points[:12]})"
    return commit, f"commit of set {s.id}"


def choose(plan: Plan, proc: Procedure, set_id: str | None = None) -> Choice:
    """The set a procedure restores (named; else, for a phase, its checkpoint in the
    current cycle; else the current cycle's baseline) and the files that go with it.

    Never HEAD~1, and never an older cycle's baseline: both put back the wrong point in time.
    """
    if set_id:
        s = restic.find(plan, set_id)
        source = f"set {set_id} (named)"
    else:
        cycle, why = cycles.current(plan)
        s, source = cycle.baseline, why
        cp = cycle.checkpoint(proc.id) if proc.kind == "phase" else None
        if cp is not None:
            s, source = cp, f"checkpoint of {proc.id} in cycle {cycle.tag}"
    if s.manifest is None:
        raise UndoitError(f"{NO_BACKUP} (set {s.id} has no readable manifest)")
    ref, ref_source = (proc.ref, "plan ref") if proc.ref else files_of(plan, s, named=bool(set_id))
    return Choice(s, source, ref, ref_source)


def same_volume(plan: Plan, key: str, entry: dict, name: str) -> bool:
    """Whether the set's entry for key is the project's volume `name`: the same name, or
    for a bind-mounted folder the same folder relative to the project (a clone in
    another folder recovering its data)."""
    if entry.get("name") == name:
        return True
    bind = plan.volumes[key].bind if key in plan.volumes else None
    if not (bind and volumes.is_bind(name) and volumes.is_bind(entry.get("name", ""))):
        return False
    rel = os.path.normpath(bind)
    if entry.get("bind") is not None:
        return os.path.normpath(entry["bind"]) == rel
    return entry["name"].endswith("/" + rel)  # a set from before binds were recorded relatively


def restored_volumes(proc: Procedure) -> list[str]:
    """The plan's volume keys the procedure's steps restore, each once, in order."""
    keys = []
    for step in proc.steps:
        keys += [k for k in step.type.volumes_restored(step) if k not in keys]
    return keys


def verified_set(plan: Plan, pid: str, set_id: str | None = None,
                 given: snapshots.SnapshotSet | None = None) -> snapshots.SnapshotSet:
    """The set a procedure will restore, checked: its manifest, listings, state files and
    records, and that its archives are there. The archives it restores the run reads to
    the end before its first step (prove_restored, prestage); the others it has no use
    for. One line and no change when there is none or it is bad."""
    return verified_choice(plan, pid, set_id, given).set


def verified_choice(plan: Plan, pid: str, set_id: str | None = None,
                    given: snapshots.SnapshotSet | None = None) -> Choice:
    proc = plan.procedure(pid)
    if given is not None:
        ref, ref_source = (proc.ref, "plan ref") if proc.ref else files_of(plan, given, named=True)
        choice = Choice(given, "rehearsed set", ref, ref_source)
    else:
        choice = choose(plan, proc, set_id)
    s, source = choice.set, choice.set_source
    # no archive hashed here: those it restores are read to the end before the first step,
    # and the others are no part of this rollback (a files rollback beside a 50 GiB
    # database does not wait for its checksum; `doit verify` reads the whole set)
    problems = snapshots.check_set(s, deep=False, archives=False)
    if not problems and s.manifest.get("kind") in ("backup", "checkpoint"):
        problems = [p for p in [records.problem(plan.root, s)] if p]
    if problems:
        raise UndoitError(f"{NO_BACKUP} (the set {s.id}, {source}, is not valid: {problems[0]})")
    for key in restored_volumes(proc):
        if key not in s.volumes:
            raise UndoitError(f"{NO_BACKUP} (the set {s.id}, {source}, holds no volume {key})")
        try:
            restore.check_listing(s, key)
        except UndoitError as err:
            raise UndoitError(f"{NO_BACKUP} (the set {s.id}, {source}: {err})") from None
    return choice
