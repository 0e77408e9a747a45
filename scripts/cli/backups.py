"""The backup task families: backup, checkpoint:<phase>, verify, snapshots.

The kit's work is imported inside each action, not at the top: creating the tasks
(`doit list`, and every `doit` before its task runs) must not load the engine's SDK."""

from __future__ import annotations

from ..errors import UndoitError
from ..plan.plan import Plan
from . import options
from .action import action
from .options import Args
from .report import clone_column, safety_lines, snapshot_table


def backup(plan: Plan, args: Args) -> dict:
    """backup: git refs, the stack's state and the volumes that changed, as one set."""
    return {"basename": "backup", "actions": [action(_backup, plan, args)], "verbosity": 2,
            "uptodate": [lambda: _up_to_date(plan)],
            "doc": "git backup branch + tag, stack state, and every volume that changed, as one snapshot set"
                   + options.doc("backup")}


def _up_to_date(plan: Plan) -> bool:
    """doit's "up to date", said in words: which set stands for the stack as it is."""
    from ..backup import backup as backups
    from ..store import snapshots as sets

    if not backups.up_to_date(plan):
        return False
    latest = sets.latest_complete(plan.snapshots_dir, plan.project_name, kind="backup")
    print(f"backup: unchanged since set {latest.id} (its HEAD and every volume are as they are now): no new set",
          flush=True)
    return True


def _backup(plan: Plan, args: Args) -> None:
    from ..backup import backup as backups
    from ..offsite import offsite
    from ..rollback import repair
    from ..rollback import rollback as rollbacks
    from ..store import lock

    with lock.held(rollbacks.lock_path(plan), "backup"):
        repair.repair_for(plan)
        backups.backup(plan, include_dirty=args.flag("include_dirty"), strict=args.flag("strict"),
                       save_images=args.flag("save_images"))
    if args.flag("offsite") or (plan.offsite is not None and plan.offsite.after_backup):
        with lock.held(rollbacks.lock_path(plan), "offsite", shared=True):
            offsite.send(plan)


def checkpoint(plan: Plan, args: Args):
    """checkpoint:<phase>: before a phase starts, a tag and a set of what it touches."""
    yield {"basename": "checkpoint", "name": None, "doc": "before starting a phase: tag + snapshot what it touches"}
    for proc in plan.phases:
        yield {"basename": "checkpoint", "name": proc.id, "actions": [action(_checkpoint, plan, proc.id, args)],
               "doc": f"before {proc.id}: tag undoit/{proc.id}/pre, snapshot "
                      f"{', '.join(proc.volumes) or 'no volumes'}" + options.doc("checkpoint"),
               "uptodate": [False], "verbosity": 2}


def _checkpoint(plan: Plan, pid: str, args: Args) -> None:
    from ..backup import backup as backups
    from ..rollback import repair
    from ..rollback import rollback as rollbacks
    from ..store import lock

    with lock.held(rollbacks.lock_path(plan), f"checkpoint {pid}"):
        repair.repair_for(plan)
        print(_rehearsal_gate(plan, pid), flush=True)
        backups.checkpoint(plan, pid, force=args.flag("force"))


def _rehearsal_gate(plan: Plan, pid: str) -> str:
    """When phase pid was last rehearsed; with [rehearse] require, a refusal unless that
    drill passed on the plan as it is and on the set a rollback restores now."""
    from ..backup import cycles
    from ..rollback import rehearsed

    try:
        baseline = cycles.current(plan)[0].baseline
    except UndoitError:  # no cycle: the checkpoint itself says so
        baseline = None
    return "rehearsal: " + rehearsed.gate(plan, pid, baseline.id if baseline else None)


def verify(plan: Plan, args: Args) -> dict:
    """verify: a set re-hashed and read whole."""
    return {"basename": "verify", "actions": [action(_verify, plan, args)], "uptodate": [False], "verbosity": 2,
            "doc": "re-hash and fully read a snapshot set (set=ID; default: the one a rollback restores)"}


def _verify(plan: Plan, args: Args) -> None:
    from ..backup import backup as backups
    from ..rollback import repair

    repair.repair_if_free(plan)
    backups.verify(plan, args.text("set"))


def snapshots(plan: Plan) -> dict:
    """snapshots: the sets by cycle, what they pin, the safety copies, what no set holds."""
    return {"basename": "snapshots", "actions": [action(_show, plan)], "uptodate": [False], "verbosity": 2,
            "doc": "list snapshot sets by change cycle: age, size, volumes, pins, valid, which one a rollback "
                   "restores; the safety copies rollbacks keep"}


def _show(plan: Plan) -> None:
    from ..backup import cycles
    from ..offsite import prune
    from ..rollback import repair
    from ..stack import ignored
    from ..stack.compose import for_plan
    from ..store import restic, snapshots as sets

    repair.repair_if_free(plan)
    try:
        cycle, why = cycles.current(plan)
        restores = cycle.baseline.id
    except UndoitError as err:
        restores, why = None, f"nothing: {err}"
    every = cycles.all_cycles(plan.snapshots_dir, plan.project_name)
    labels = {s.id: cycles.label(c, every) for c in every for s in c.sets}
    rows = sets.describe(plan.snapshots_dir, plan.project_name, restores, lambda s: labels.get(s.id))
    if plan.offsite is not None:  # where copies exist: here, and in the restic repository or not
        try:
            there = restic.Repo(plan).sets()
            for r in rows:
                r["copies"] = "here + offsite" if r["set"] in there else "here only"
        except UndoitError as err:
            print(f"offsite copies unknown: {err}")
    clone_column(plan, rows)
    snapshot_table(rows, why)
    safety_lines([{"set": s.id, "reason": (s.manifest or {}).get("reason", "incomplete"),
                   "parked": prune.parked_bytes(s) if s.complete else 0,
                   "where": next((str(s.parked_path(k).parent) for k in s.volumes if s.parked_path(k)), "")}
                  for s in sets.safety_sets(plan.snapshots_dir)])
    try:
        lines = ignored.uncovered(plan, for_plan(plan).config_json())
    except UndoitError:
        return  # no compose file to read (the project is not there yet): nothing to say
    for line in lines:
        print(f"not in any set: {line}")
