"""The rollback task families: verified:<id>, rollback:<id>, scenario:<id>, undo, repair.

A rollback depends on verified:<id>, which proves the set it restores is there and
sound (never a fresh backup: that would snapshot the broken stack), and hands its
answer over through doit's own task values (getargs), so the run does not work it out
again. The kit's work is imported inside each action (see backups.py)."""

from __future__ import annotations

from pathlib import Path

from .. import errors
from ..errors import UndoitError
from ..output.progress import say
from ..plan.plan import Plan, Procedure
from . import options
from .action import action
from .options import Args
from ..plan.decide import command_for


def verified(plan: Plan, args: Args):
    """verified:<id>: the set each procedure restores exists and is sound."""
    yield {"basename": "verified", "name": None, "doc": "verification of the set each rollback restores"}
    for proc in (*plan.phases, plan.full, *plan.scenarios):
        yield {"basename": "verified", "name": proc.id, "actions": [action(_verify, plan, proc.id, args.text("set"))],
               "doc": f"the snapshot set {proc.id} restores exists and is sound (never takes a new backup)",
               "uptodate": [False], "verbosity": 2}


def _verify(plan: Plan, pid: str, set_id: str | None) -> dict:
    from ..rollback import rollback as rollbacks

    try:
        choice = rollbacks.verified_choice(plan, pid, set_id)
    except UndoitError as err:
        raise UndoitError(str(err), exit_code=max(err.exit_code, errors.NO_BACKUP)) from None
    restored = rollbacks.restored_volumes(plan.procedure(pid))
    others = len([k for k in choice.set.volumes if k not in restored])
    cloned = _cloned(plan, choice.set, restored)
    read = len(restored) - len(cloned)
    print(f"{pid}: restores set {choice.set.id} ({choice.set_source}) and files from {choice.ref} "
          f"({choice.ref_source}): manifest, listings and state match"
          + (f"; the {read} archive(s) it restores are read to the end before its first step" if read else "")
          + (f"; {', '.join(cloned)} cloned from the set's copy-on-write clone(s) and compared with the listing "
             "instead" if cloned else "")
          + (f"; {others} archive(s) it does not restore not read (`doit verify` reads them)" if others else ""))
    # rollback:<id> takes this answer (getargs) instead of working it out again
    return {"set": str(choice.set.path), "set_source": choice.set_source, "ref": choice.ref,
            "ref_source": choice.ref_source}


def _cloned(plan: Plan, s, keys) -> list[str]:
    """The volumes of keys whose set keeps a sealed copy-on-write clone here (the rollback
    clones them back; where that fails after all, it reads the archive and says so)."""
    from ..stack import clones, engine, stackcheck

    keys = [k for k in keys if k in s.volumes]
    if not keys or not engine.on_this_host():
        return []
    client = engine.client()
    refs = stackcheck.refs(plan, client, keys)
    return [k for k, ref in refs.items() if clones.usable(client, s, k, ref.name) is not None]


def rollback(plan: Plan, args: Args):
    """rollback:<id> for every phase and the full rollback."""
    yield {"basename": "rollback", "name": None, "doc": "roll back one phase, or everything (full)"}
    for proc in (*plan.phases, plan.full):
        yield _procedure(plan, args, "rollback", proc,
                         f"{proc.title} (risk {proc.risk or '?'}, runbook {proc.duration or '?'})")


def scenario(plan: Plan, args: Args):
    """scenario:<id>: the partial rollbacks."""
    yield {"basename": "scenario", "name": None, "doc": "partial rollbacks: keep some phases, undo others"}
    for proc in plan.scenarios:
        yield _procedure(plan, args, "scenario", proc, f"{proc.title} (keeps {', '.join(proc.keeps) or '-'})")


def _procedure(plan: Plan, args: Args, basename: str, proc: Procedure, doc: str) -> dict:
    return {
        "basename": basename,
        "name": proc.id,
        "doc": doc + options.doc(basename),
        "actions": [action(_run, plan, proc.id, args)],
        # a verified existing set, never a fresh backup: that would snapshot the broken stack
        "task_dep": [f"verified:{proc.id}"],
        "getargs": {"verified": (f"verified:{proc.id}", None)},
        "uptodate": [False],
        "verbosity": 2,
    }


def _run(plan: Plan, pid: str, args: Args, verified: dict | None = None):
    from ..rollback import rollback as rollbacks
    from ..store import snapshots

    checked = None
    if verified and verified.get("set"):
        checked = rollbacks.Choice(snapshots.load_set(Path(verified["set"])), verified["set_source"],
                                   verified["ref"], verified["ref_source"])
    rec = rollbacks.execute(plan, pid, dry_run=args.flag("dry_run"), yes=args.flag("yes"),
                            reason=args.text("reason", ""), set_id=args.text("set"), checked=checked,
                            keep=args.flag("keep"),
                            escalate=args.flag("escalate") if args.text("escalate") is not None else None)
    return conclude(plan, rec)


def conclude(plan: Plan, rec: dict):
    """The end of a rollback's output: what next, and on failure who to call."""
    if rec["outcome"] == "dry-run":
        return None
    say(f"outcome: {rec['outcome']} in {rec['seconds']} s (log: {plan.log_path}, report: "
        f"{plan.reports_dir / (rec['run'] + '.json')})")
    for line in plan.next_steps:
        say(f"next: {line}")
    if rec["outcome"] == "success":
        if rec.get("file_restores"):
            say("restored files are staged in the project's git index (`git status` shows them): commit them "
                f"(git commit -m \"rollback {rec['procedure']}\") to record the rollback; until then `doit backup` "
                "refuses the uncommitted changes")
        return None
    _failure(rec)
    esc = rec.get("escalation")
    if isinstance(esc, dict):
        say(f"escalated to {esc['kind']} {esc['procedure']} ({esc['run']}): {esc['outcome']}")
        if esc["outcome"] == "success":
            return None
        if esc["run"] != "-":  # it ran (else its line above says why it was refused)
            _failure(esc)
    put = rec.get("put_back")
    if put and put["ok"] and not isinstance(esc, dict):
        target = plan.procedure(rec["procedure"]).on_failure
        say("try next: fix the cause and run the same task again"
            + (f", or the wider procedure the plan names: {command_for(plan, target)} (escalate=1 runs it "
               "after a failure)" if target else ""))
    elif not put:
        say("try next: fix the cause and run the same task again, or `doit undo` to put back the state "
            "from before this rollback")
    for who, contact in plan.contacts.items():
        say(f"contact: {who}: {contact}")
    failed = rec.get("failed_step")
    what = f"step {failed['n']} ({failed['do']}) failed" if failed else "checks failed"
    if put and not put["ok"]:
        raise UndoitError(f"rollback {rec['procedure']}: {what}, and putting back the state from before it failed "
                          f"too: {put['detail']}", exit_code=errors.PUT_BACK_FAILED)
    back = "; the state from before it is back (proven)" if put else ""
    raise UndoitError(f"rollback {rec['procedure']}: {what}{back}; see {plan.log_path}",
                      exit_code=errors.ROLLBACK_FAILED)


def _failure(rec: dict) -> None:
    """What failed in a run, and what its put-back did."""
    failed = rec.get("failed_step")
    if failed:
        say(f"FAILED at step {failed['n']} ({failed['do']}): {failed['detail']}")
    else:
        bad = [c for c in rec.get("checks") or [] if not c["ok"]]
        say(f"{len(bad)} check(s) failed: " + "; ".join(f"{c['name']}: {c['reason']}" for c in bad))
    put = rec.get("put_back")
    if put:
        say(f"put back {'and proven' if put['ok'] else 'FAILED'}: {put['detail']}")
    say(f"services: {rec.get('services')}")


def undo(plan: Plan) -> dict:
    """undo: the state from before the last rollback."""
    return {"basename": "undo", "actions": [action(_undo, plan)], "uptodate": [False], "verbosity": 2,
            "doc": "put back the state from before the last rollback (volumes, files, services)"}


def repair(plan: Plan) -> dict:
    """repair: what a killed run left, finished."""
    return {"basename": "repair", "actions": [action(_repair, plan)], "uptodate": [False], "verbosity": 2,
            "doc": "finish what a killed run left (every task that reads or writes sets does this first)"}


def _undo(plan: Plan) -> dict:
    from ..rollback import undo as undos

    return undos.undo(plan)


def _repair(plan: Plan) -> None:
    from ..rollback import repair as repairs
    from ..rollback import rollback as rollbacks
    from ..store import lock

    with lock.held(rollbacks.lock_path(plan), "repair"):
        if not repairs.repair_for(plan):
            say("nothing to repair: no run died leaving work unfinished")
