"""`doit recover`: the machine is lost; a fresh clone gets the newest point in time back.

One command instead of a recipe to follow by hand: the kit's excludes are written first
(a fresh clone's exclude file lists nothing, and the sets about to arrive must never be
taken for the project's untracked files); the newest backup set is chosen from what the
offsite repository and this folder hold (a backup set: it holds every volume, where a
checkpoint holds a phase's); it is fetched and verified; the git-ignored files it keeps
(`include_ignored`) are written back, since compose may need them to start; then the
plan's full rollback runs on that set, named, so that files and volumes come from its
one point in time, and is proven by the plan's checks. The set stays a fetched one: the
next `doit backup` opens a new cycle, and only that one is what a rollback restores.
"""

from __future__ import annotations

from ..backup import backup
from . import offsite
from ..repo import gitstate
from ..rollback import repair, rollback
from ..stack import ignored
from ..store import lock, snapshots
from ..stack.compose import for_plan
from ..errors import UndoitError
from ..output.progress import say
from ..store import restic

RECOVERED = "recovered.json"


def choose(plan, set_id: str | None) -> tuple[str, str]:
    """(set id, where it is: "here" or "offsite") of the set to recover: the one named,
    else the newest backup set here or offsite."""
    local = {s.id for s in snapshots.all_sets(plan.snapshots_dir, plan.project_name)
             if s.complete and s.manifest.get("kind") == "backup"}
    there: dict = {}
    if plan.offsite is not None:
        there = restic.Repo(plan).sets()
    if set_id:
        if set_id in local:
            return set_id, "here"
        if set_id in there:
            return set_id, "offsite"
        raise UndoitError(f"no backup set {set_id} here or in the offsite repository"
                          if plan.offsite else f"no backup set {set_id} in {plan.snapshots_dir}")
    candidates = local | {sid for sid, info in there.items() if info["tags"].get("kind") == "backup"}
    if not candidates:
        raise UndoitError("nothing to recover from: no backup set here" +
                          (" or in the offsite repository" if plan.offsite else
                           " and no [offsite] section in the plan to fetch one from"))
    newest = max(candidates)  # set ids begin with their UTC time
    return newest, "here" if newest in local else "offsite"


def _startable(plan, s) -> None:
    """Refuse before anything changes when compose could not start the stack: a file it
    needs that git ignores and the set does not keep (the backups named it)."""
    try:
        config = for_plan(plan).config_json()
    except UndoitError as err:
        raise UndoitError(f"compose cannot read the project as it is here ({err}); a git-ignored file the set does "
                          "not keep may be missing (each backup named them): put it back, then run `doit recover` "
                          "again; the stack was not touched") from None
    gone = ignored.missing(plan, config)
    if gone:
        raise UndoitError(f"compose needs {', '.join(gone)}, which is not here and which set {s.id} does not keep "
                          "(git ignores it; each backup named it): put it back, then run `doit recover` again; "
                          "the stack was not touched")


def recover(plan, set_id: str | None = None, yes: bool = False, dry_run: bool = False) -> dict:
    gitstate.require_repo(plan.root)
    backup.hide_kit_state(plan)  # first: the sets about to arrive are never the project's files
    with lock.held(rollback.lock_path(plan), "recover"):  # the rollback below takes it again
        repair.repair_for(plan)
        sid, where = choose(plan, set_id)
        say(f"recover: set {sid} ({'named' if set_id else 'the newest backup set'}, {where})")
        if dry_run and where != "here":
            say(f"dry run: nothing was changed; `doit recover{' set=' + set_id if set_id else ''}` fetches set "
                f"{sid}, verifies it and runs the full rollback on it")
            return {"set": sid, "outcome": "dry-run"}
        s = offsite.fetch(plan, sid) if where == "offsite" else snapshots.get_set(plan.snapshots_dir, sid)
        if not dry_run:
            for line in ignored.put_back(plan, s):
                say(f"recover: {line}")
            _startable(plan, s)
    rec = rollback.execute(plan, plan.full.id, dry_run=dry_run, yes=yes, set_id=sid,
                           reason=f"recovery of set {sid}")
    if rec["outcome"] == "dry-run":
        return {"set": sid, "outcome": "dry-run"}
    left = sorted(set(s.volumes) - set(rollback.restored_volumes(plan.full)))
    if left:
        say(f"WARNING: set {sid} also holds {', '.join(left)}, which the plan's full rollback does not restore")
    if rec["outcome"] == "success":
        snapshots.note(plan.snapshots_dir, RECOVERED, sid)
        m = s.manifest
        git = m.get("git") or {}
        say(f"recovered: the stack is now set {sid} as taken {m.get('finished')} on {(m.get('engine') or {}).get('host')}"
            f" (cycle {m.get('cycle')}, commit {str(git.get('commit') or git.get('head'))[:12]}); run `doit backup` "
            "before the next change: it opens a new cycle, which is what rollbacks restore from then on")
    return dict(rec, set=sid)
