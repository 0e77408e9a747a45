"""The task families of sets beyond this machine: offsite, fetch, recover, prune, release.

The kit's work is imported inside each action (see backups.py: `doit list` stays fast)."""

from __future__ import annotations

from ..errors import UndoitError
from ..plan.plan import Plan
from . import options
from .action import action
from .options import Args
from .rollbacks import conclude


def offsite(plan: Plan, args: Args) -> dict:
    """offsite: every set not yet in the plan's restic repository, sent and checked."""
    return {"basename": "offsite", "actions": [action(_offsite, plan, args)], "uptodate": [False], "verbosity": 2,
            "doc": "send every set not yet offsite to the plan's restic repository, and check it"
                   + options.doc("offsite")}


def _offsite(plan: Plan, args: Args) -> None:
    from ..offsite import offsite as copies
    from ..rollback import repair
    from ..rollback import rollback as rollbacks
    from ..store import lock, restic

    repair.repair_if_free(plan)
    # shared: a prune (exclusive) must not remove a set while restic reads it; a rehearsal
    # may run alongside
    with lock.held(rollbacks.lock_path(plan), "offsite", shared=True):
        if args.flag("init"):
            restic.Repo(plan).init()
        copies.send(plan, args.text("set"))


def fetch(plan: Plan, args: Args) -> dict:
    """fetch: a set brought back from the repository, verified."""
    return {"basename": "fetch", "actions": [action(_fetch, plan, args)], "uptodate": [False], "verbosity": 2,
            "doc": "bring a set back from the restic repository (set=ID or latest) and verify it"}


def _fetch(plan: Plan, args: Args) -> None:
    from ..offsite import offsite as copies
    from ..rollback import repair
    from ..rollback import rollback as rollbacks
    from ..store import lock

    wanted = args.text("set")
    if not wanted:
        raise UndoitError("fetch needs set=ID or set=latest")
    with lock.held(rollbacks.lock_path(plan), "fetch"):
        repair.repair_for(plan)
        copies.fetch(plan, wanted)


def recover(plan: Plan, args: Args) -> dict:
    """recover: a lost machine's newest point in time, back in a fresh clone."""
    return {"basename": "recover", "actions": [action(_recover, plan, args)], "uptodate": [False], "verbosity": 2,
            "doc": "after a lost machine: fetch the newest backup set (or set=ID), put back files, volumes and "
                   "kept git-ignored files, prove them" + options.doc("recover")}


def _recover(plan: Plan, args: Args):
    from ..offsite import recover as recovery

    rec = recovery.recover(plan, args.text("set"), yes=args.flag("yes"), dry_run=args.flag("dry_run"))
    return conclude(plan, rec)


def prune(plan: Plan, args: Args) -> dict:
    """prune: old sets removed here and offsite, by the plan's policy or keep_last/keep_days."""
    return {"basename": "prune", "actions": [action(_prune, plan, args)], "uptodate": [False], "verbosity": 2,
            "doc": "remove old sets by keep_last/keep_days, here and offsite (dry_run=1 lists)"}


def _prune(plan: Plan, args: Args) -> None:
    from ..offsite import prune as retention
    from ..rollback import repair
    from ..rollback import rollback as rollbacks
    from ..store import lock

    keep_last = args.number("keep_last", int, plan.keep_last)
    keep_days = args.number("keep_days", float, plan.keep_days)
    offsite_too = plan.offsite is not None and args.flag("offsite", default=True)
    with lock.held(rollbacks.lock_path(plan), "prune"):
        repair.repair_for(plan)
        retention.prune(plan, keep_last, keep_days, args.flag("dry_run"), offsite_too)


def release(plan: Plan, args: Args) -> dict:
    """release: what the kit keeps on the engine for the project (safety copies, pins)."""
    # not `forget`: that name is doit's own command
    return {"basename": "release", "actions": [action(_release, plan, args)], "uptodate": [False], "verbosity": 2,
            "doc": "release what the kit keeps on the engine for this project: every safety set with its "
                   "parked contents, every pinned image (yes=1); backup sets stay"}


def _release(plan: Plan, args: Args) -> None:
    from ..offsite import prune as retention
    from ..rollback import repair
    from ..rollback import rollback as rollbacks
    from ..store import lock

    with lock.held(rollbacks.lock_path(plan), "release"):
        repair.repair_for(plan)
        retention.release(plan, yes=args.flag("yes"))
