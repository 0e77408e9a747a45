"""`doit prune`: retention of snapshot sets, here and in the offsite repository.

What goes is decided once, from the local sets, and shown before anything is removed
(`dry_run=1` stops there). A set is kept, with the reason, when it is: in the current
change cycle (a rollback restores its baseline or a checkpoint of it); the baseline of
any cycle not released with `release=TAG`; among the newest keep_last; younger than
keep_days; or the holder of an archive a kept set uses ("unchanged since set X": the
archive exists once, in X). Everything else goes: its folder is first renamed out of
the sets' namespace (`.prune-<id>`, never read as a set) and then deleted, so a prune
killed midway leaves no half set behind; the next prune finishes it. Offsite, the same
sets are forgotten (`restic forget --prune`); a set only the repository holds is left
alone (its manifest is not here to judge it by). Safety copies of rollbacks live
outside the sets (`snapshots/safety/`) and are never touched.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from . import snapshots
from .errors import UndoitError
from .progress import say
from .snapshots import SnapshotSet


@dataclass(frozen=True)
class Verdict:
    set: SnapshotSet
    keep: bool
    why: str


def _referenced(s: SnapshotSet) -> set[str]:
    from .offsite import _referenced as refs

    return refs(s)


def decide(sets: list[SnapshotSet], *, current_cycle: str | None, keep_last: int | None, keep_days: float | None,
           released: set[str], now: datetime | None = None, cycle_of=None) -> list[Verdict]:
    """Keep or remove each complete set (oldest first), with the reason (pure)."""
    now = now or datetime.now(timezone.utc)
    cycle_of = cycle_of or (lambda s: s.manifest.get("cycle") or (s.manifest.get("git") or {}).get("tag"))
    newest = {s.id for s in sets[-keep_last:]} if keep_last else set()
    why: dict[str, str] = {}
    for s in sets:
        cycle = cycle_of(s)
        if current_cycle is not None and cycle == current_cycle:
            why[s.id] = f"in the current cycle {cycle}"
        elif s.manifest.get("baseline") and cycle not in released:
            why[s.id] = f"baseline of cycle {cycle} (not released)"
        elif s.id in newest:
            why[s.id] = f"among the newest {keep_last}"
        elif keep_days is not None and _when(s) > now - timedelta(days=keep_days):
            why[s.id] = f"younger than {keep_days:g} day(s)"
    for s in sets:  # an archive lives once, in the set that wrote it
        if s.id in why:
            for ref in _referenced(s):
                why.setdefault(ref, f"holds archives set {s.id} uses")
    return [Verdict(s, s.id in why, why.get(s.id, "")) for s in sets]


def _when(s: SnapshotSet) -> datetime:
    try:
        return datetime.fromisoformat(s.created)
    except (TypeError, ValueError):
        return datetime.fromtimestamp(s.path.stat().st_mtime, timezone.utc)


def prune(plan, keep_last: int | None, keep_days: float | None, released: set[str], dry_run: bool,
          offsite_too: bool) -> dict:
    if keep_last is None and keep_days is None:
        raise UndoitError("prune needs keep_last=N or keep_days=D (or [backup] keep_last / keep_days in the plan)")
    if keep_last is not None and keep_last < 1:
        raise UndoitError("keep_last must be 1 or more")
    from . import cycles

    if not dry_run:
        _finish_interrupted(plan)
    try:
        current = cycles.current(plan)[0].tag
    except UndoitError:
        current = None  # no usable cycle: every baseline is kept anyway
    sets = [s for s in snapshots.all_sets(plan.snapshots_dir, plan.project_name)
            if s.complete and s.manifest.get("kind") in ("backup", "checkpoint")]
    verdicts = decide(sets, current_cycle=current, keep_last=keep_last, keep_days=keep_days, released=released)
    doomed = [v.set for v in verdicts if not v.keep]
    for v in verdicts:
        size = sum(f.stat().st_size for f in v.set.path.iterdir() if f.is_file())
        say(f"{'keep  ' if v.keep else 'remove'} {v.set.id} ({v.set.manifest.get('kind')}, "
            f"{snapshots._human(size)}){': ' + v.why if v.keep else ''}")
    repo = there = None
    if offsite_too:
        from .offsite import Repo

        repo = Repo(plan)
        there = repo.sets()
        gone = [s.id for s in doomed if s.id in there]
        only_there = sorted(set(there) - {s.id for s in sets})
        say(f"offsite: {len(gone)} set(s) to forget in {repo.o.repository}"
            + (f"; {len(only_there)} set(s) only there are left alone" if only_there else ""))
    if dry_run:
        say(f"dry run: nothing was removed ({len(doomed)} of {len(sets)} set(s) would go)")
        return {"removed": [], "would_remove": [s.id for s in doomed]}
    freed = 0
    for s in doomed:
        freed += sum(f.stat().st_size for f in s.path.iterdir() if f.is_file())
        aside = s.path.with_name(f".prune-{s.id}")
        s.path.rename(aside)  # out of the sets' namespace at once: never a half set
        shutil.rmtree(aside)
    if repo is not None:
        ids = [there[s.id]["snapshot"] for s in doomed if s.id in there]
        if ids:
            repo.run("forget", "--prune", *ids)
    say(f"removed {len(doomed)} set(s), {snapshots._human(freed)} freed here"
        + (f"; {len([s for s in doomed if s.id in (there or {})])} forgotten offsite" if repo else ""))
    return {"removed": [s.id for s in doomed], "freed": freed}


def _finish_interrupted(plan) -> None:
    for left in plan.snapshots_dir.glob(".prune-*") if plan.snapshots_dir.is_dir() else ():
        shutil.rmtree(left, ignore_errors=True)
        say(f"finished removing {left.name[len('.prune-'):]} (a prune was interrupted)")
