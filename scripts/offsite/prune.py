"""`doit prune`: retention of snapshot sets, here and in the offsite repository, and of
what rollbacks keep on the engine (parked safety copies, pinned images).

What goes is decided once and shown before anything is removed, one line per set with
where it is and why it stays (`dry_run=1` stops there). A set is kept when it is: in
the current change cycle (a rollback restores its baseline or a checkpoint of it);
among the newest keep_last; younger than keep_days; or the holder of an archive a kept
set uses ("unchanged since set X": the archive exists once, in X). When the kit cannot
tell which cycle is current (no backup since a recovery, a HEAD that descends from no
backup) every baseline stays too. Everything else goes. The sets judged are those here
and those only the offsite repository holds (their manifests read from it): after a
recovery, the sets from before the loss are history like any other, not left alone
forever.

Here, a set's folder is first renamed out of the sets' namespace (`.prune-<id>`, never
read as a set) and then deleted, so a prune killed midway leaves no half set behind;
the next prune finishes it. Offsite, the same sets are forgotten (`restic forget
--prune`). Safety sets of rollbacks (`snapshots/safety/`, with the replaced contents
some keep parked under the engine's data root) go too, except those `doit undo` still
needs (the last rollback's, until undone) and those younger than keep_days; then every
pinned image (`undoit-pin/<project>:<id>`) that no kept set ran is released.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..backup import cycles
from ..rollback import runlog
from ..stack import clones, engine, pins
from ..store import snapshots
from ..errors import UndoitError
from ..output.progress import human, say
from ..store.snapshots import SnapshotSet


@dataclass(frozen=True)
class Verdict:
    set: SnapshotSet
    keep: bool
    why: str


def _key(s: SnapshotSet) -> tuple:
    return cycles.cycle_tag(s), cycles.cycle_commit(s)


def decide(sets: list[SnapshotSet], *, current_cycle: tuple | None, keep_last: int | None,
           keep_days: float | None, now: datetime | None = None, cycle_of=None) -> list[Verdict]:
    """Keep or remove each complete set (oldest first), with the reason (pure).
    current_cycle: the key (tag, commit) of the cycle a rollback restores, None when the
    kit cannot tell; cycle_of(s): a set's cycle key."""
    now = now or datetime.now(timezone.utc)
    cycle_of = cycle_of or _key
    newest = {s.id for s in sets[-keep_last:]} if keep_last else set()
    why: dict[str, str] = {}
    for s in sets:
        key = cycle_of(s)
        if current_cycle is not None and key == current_cycle:
            why[s.id] = f"in the current cycle {key[0]} (a rollback restores it)"
        elif current_cycle is None and s.manifest.get("baseline"):
            why[s.id] = f"baseline of cycle {key[0]} (no current cycle: which baseline a rollback needs is unknown)"
        elif s.id in newest:
            why[s.id] = f"among the newest {keep_last}"
        elif keep_days is not None and _when(s) > now - timedelta(days=keep_days):
            why[s.id] = f"younger than {keep_days:g} day(s)"
    for s in reversed(sets):  # an archive lives once, in the set that wrote it (older than its users)
        if s.id in why:
            for ref in snapshots.referenced(s):
                why.setdefault(ref, f"holds archives set {s.id} uses")
    return [Verdict(s, s.id in why, why.get(s.id, "")) for s in sets]


def _when(s: SnapshotSet) -> datetime:
    try:
        return datetime.fromisoformat(s.created)
    except (TypeError, ValueError):
        return datetime.fromtimestamp(s.path.stat().st_mtime, timezone.utc)


def _size(s: SnapshotSet) -> int | None:
    try:
        return sum(f.stat().st_size for f in s.path.iterdir() if f.is_file())
    except OSError:
        return None  # a set only the repository holds


def prune(plan, keep_last: int | None, keep_days: float | None, dry_run: bool, offsite_too: bool) -> dict:
    if keep_last is None and keep_days is None:
        raise UndoitError("prune needs keep_last=N or keep_days=D (or [backup] keep_last / keep_days in the plan)")
    if keep_last is not None and keep_last < 1:
        raise UndoitError("keep_last must be 1 or more")
    if not dry_run:
        _finish_interrupted(plan)
    try:
        current = cycles.current(plan)[0].key
    except UndoitError:
        current = None  # no usable cycle: every baseline is kept
    local = [s for s in snapshots.all_sets(plan.snapshots_dir, plan.project_name)
             if s.complete and s.manifest.get("kind") in ("backup", "checkpoint")]
    member = {s.id: c.key for c in cycles.all_cycles(plan.snapshots_dir, plan.project_name) for s in c.sets}
    repo, there, only_there = None, {}, []
    if offsite_too:
        from ..store.restic import Repo

        repo = Repo(plan)
        there = repo.sets()
        here = {s.id for s in local}
        only_there = [repo.remote_set(sid, info) for sid, info in sorted(there.items()) if sid not in here]
    sets = sorted(local + only_there, key=lambda s: s.id)
    verdicts = decide(sets, current_cycle=current, keep_last=keep_last, keep_days=keep_days,
                      cycle_of=lambda s: member.get(s.id) or _key(s))
    here = {s.id for s in local}
    for v in verdicts:
        where = ("here + offsite" if v.set.id in there else "here") if v.set.id in here else "offsite only"
        size = _size(v.set) if v.set.id in here else None
        say(f"{'keep  ' if v.keep else 'remove'} {v.set.id} ({v.set.manifest.get('kind')}, {where}"
            f"{', ' + human(size) if size is not None else ''}){': ' + v.why if v.keep else ''}")
    doomed = [v.set for v in verdicts if not v.keep]
    safety = _safety_verdicts(plan, keep_days)
    kept_images = {info["id"] for v in verdicts if v.keep and v.set.id in here
                   for info in pins.recorded(v.set.path).values()}
    kept_images |= {i for v in verdicts if v.keep and v.set.id not in here
                    for i in v.set.manifest.get("images_ran", ())}  # Repo.remote_set read them
    released = pins.unused(plan.project_name, kept_images)
    for name in released:
        say(f"release pin {name} (no kept set ran it)")
    if repo is not None:
        gone = [s.id for s in doomed if s.id in there]
        say(f"offsite: {len(gone)} set(s) to forget in {repo.o.repository}")
    if dry_run:
        say(f"dry run: nothing was removed ({len(doomed)} of {len(sets)} set(s), "
            f"{len([s for s, keep, _ in safety if not keep])} safety set(s) and {len(released)} pin(s) would go)")
        return {"removed": [], "would_remove": [s.id for s in doomed]}
    freed = 0
    for s in [s for s in doomed if s.id in here]:
        freed += _size(s) or 0
        aside = s.path.with_name(f".prune-{s.id}")
        s.path.rename(aside)  # out of the sets' namespace at once: never a half set
        shutil.rmtree(aside)
    if repo is not None:
        ids = [there[s.id]["snapshot"] for s in doomed if s.id in there]
        if ids:
            repo.run("forget", "--prune", *ids)
    freed += _remove_safety(plan, [s for s, keep, _ in safety if not keep])
    pins.release(plan.project_name, released)
    for set_id in clones.tidy(engine.client(), plan.snapshots_dir):
        say(f"released the copy-on-write clone(s) of set {set_id}")
    say(f"removed {len([s for s in doomed if s.id in here])} set(s) here, {human(freed)} freed"
        + (f"; {len([s for s in doomed if s.id in there])} forgotten offsite" if repo else "")
        + f"; {len([s for s, keep, _ in safety if not keep])} safety set(s), {len(released)} pin(s) released")
    return {"removed": [s.id for s in doomed], "freed": freed}


def _safety_verdicts(plan, keep_days: float | None) -> list[tuple[SnapshotSet, bool, str]]:
    """Each safety set, whether it stays and why, said one line each: the last rollback's
    stay while `doit undo` can use them, and those younger than keep_days."""
    last = runlog.last_record(plan, kinds=("phase", "full", "scenario"))
    needed = set((last or {}).get("safety_sets") or []) if last and not last.get("undone") else set()
    now = datetime.now(timezone.utc)
    out = []
    for s in snapshots.safety_sets(plan.snapshots_dir):
        parked = parked_bytes(s)
        if s.id in needed:
            why = f"the last rollback's ({last['run']}): `doit undo` uses it"
        elif keep_days is not None and _when(s) > now - timedelta(days=keep_days):
            why = f"younger than {keep_days:g} day(s)"
        else:
            why = ""
        out.append((s, bool(why), why))
        say(f"{'keep  ' if why else 'remove'} safety set {s.id}" + (f" (parked {human(parked)})" if parked else "")
            + (f": {why}" if why else ""))
    return out


def parked_bytes(s: SnapshotSet) -> int:
    """What the safety set keeps parked under the engine's data root, by its own listing."""
    return sum(v.get("bytes", 0) for k, v in s.volumes.items() if s.parked_path(k) is not None
               and s.parked_path(k).is_dir())


def _remove_safety(plan, doomed: list[SnapshotSet]) -> int:
    from ..stack import volumes

    freed = 0
    for s in doomed:
        freed += parked_bytes(s)
        folders = {s.parked_path(k).parent for k in s.volumes if s.parked_path(k) is not None}
        aside = s.path.with_name(f".prune-{s.id}")
        s.path.rename(aside)
        for folder in folders:
            volumes.discard(folder)
        shutil.rmtree(aside)
    return freed


def _finish_interrupted(plan) -> None:
    for base in (plan.snapshots_dir, plan.snapshots_dir / snapshots.SAFETY):
        for left in base.glob(".prune-*") if base.is_dir() else ():
            s = snapshots.load_set(left)
            for key in s.volumes if s.complete else ():  # a safety set's parked contents
                if s.parked_path(key) is not None:
                    shutil.rmtree(s.parked_path(key).parent, ignore_errors=True)
            shutil.rmtree(left, ignore_errors=True)
            say(f"finished removing {left.name[len('.prune-'):]} (a prune was interrupted)")


def release(plan, yes: bool) -> dict:
    """`doit release`: what the kit keeps for this project outside its sets, released
    whole: every safety set with the contents it keeps parked on the engine, and every
    pinned image. The backup sets stay (`doit prune` or the folder itself)."""
    safety = snapshots.safety_sets(plan.snapshots_dir)
    pinned = pins.unused(plan.project_name, set())
    parked = sum(parked_bytes(s) for s in safety)
    client = engine.client()
    held = clones.inventory(client, plan.snapshots_dir, snapshots.all_sets(plan.snapshots_dir))
    held.update(clones.inventory(client, plan.snapshots_dir / snapshots.SAFETY, safety))
    say(f"release: {len(safety)} safety set(s) ({human(parked)} parked on the engine), {len(pinned)} pinned "
        f"image tag(s) of project {plan.project_name}"
        + (f" and the copy-on-write clones of {len(held)} set(s) (pinning "
           f"{human(sum(h.pinned for h in held.values()))})" if held else ""))
    if not (safety or pinned or held):
        say("release: nothing to release")
        return {"safety": 0, "pins": 0}
    if not yes:
        raise UndoitError("release removes every safety copy `doit undo` would use: pass yes=1 to go on; "
                          "nothing was removed")
    _remove_safety(plan, safety)
    pins.release(plan.project_name, pinned)
    for folder in (plan.snapshots_dir, plan.snapshots_dir / snapshots.SAFETY):
        clones.release_all(client, folder)  # a rollback from a backup set then extracts its archive
    say(f"release: released {len(safety)} safety set(s), {human(parked)}, {len(pinned)} pin(s) and "
        f"{len(held)} set(s)' copy-on-write clones; the backup sets in {plan.snapshots_dir} stay")
    return {"safety": len(safety), "pins": len(pinned), "clones": len(held)}

