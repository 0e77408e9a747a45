"""Run a procedure of the plan (a phase, full, a scenario) as a checked, recorded rollback.

Order of business: resolve where to go back to and from which snapshot set (choice.py);
refuse before any live change if that set is not there or not sound; take the lock;
record the state and tag HEAD; run the steps (safety copies before anything
destructive); run every check; bring services back if a step failed; write the log and
the report (runlog.py). Each step and check is run by its type (plan/registry.py), with
the run's context (context.py).
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from contextlib import nullcontext
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from .. import errors
from ..errors import UndoitError
from ..output.progress import say
from ..plan.plan import Plan
from ..repo import gitstate
from ..stack import engine, events, pins, stackcheck, volumes
from ..store import journal, lock, snapshots
from . import checks, preview, putback, repair, restore, runlog, steps
from .choice import (NO_BACKUP, Choice, choose, files_of, restored_volumes, same_volume, verified_choice,
                     verified_set)
from .context import Run, RunContext

__all__ = ["Choice", "Run", "RunContext", "bring_back", "checkpoint_tag", "choose", "describe", "execute",
           "files_of", "lock_path", "prepare", "restored_volumes", "runs_dir", "running_services",
           "verified_choice", "verified_set"]


def checkpoint_tag(pid: str) -> str:
    return f"undoit/{pid}/pre"


def lock_path(plan: Plan) -> Path:
    return lock.path_of(plan.snapshots_dir)


def runs_dir(plan: Plan) -> Path:
    return plan.snapshots_dir / snapshots.RUNS


def prepare(plan: Plan, pid: str, dry_run: bool = False, yes: bool = False, reason: str = "",
            set_id: str | None = None, source: snapshots.SnapshotSet | None = None,
            sandbox: bool = False, checked: Choice | None = None, up_timeout: int | None = None) -> Run:
    """Everything a run needs, resolved and checked; raises before anything changes.

    source/sandbox: a rehearsal passes the live set to restore from, and runs in a
    sandbox plan (its own project, worktree and snapshots folder). checked: what
    verified_choice answered for the same arguments an instant ago (the verified:* task).
    up_timeout: how long `up`/`restart` steps and the healthy check wait (default: the
    plan's [timeouts] up for the steps, 60 s for the check)."""
    proc = plan.procedure(pid)
    gitstate.require_repo(plan.root)
    # no check of the plan against today's compose file here: the change being undone
    # may have removed a service or a volume from it; backup and rehearse check it
    choice = checked if checked is not None and source is None else verified_choice(plan, pid, set_id, given=source)
    snap = choice.set
    if not gitstate.ref_exists(plan.root, choice.ref):
        raise UndoitError(f"ref {choice.ref} ({choice.ref_source}) does not exist in {plan.root}")
    client = engine.client()
    if not sandbox and any(step.type.runs_images for step in proc.steps):
        pins.check(client, snap)
    names = {}
    for key in restored_volumes(proc):
        try:
            names[key] = stackcheck.refs(plan, client, [key])[key].name
        except UndoitError:
            # removed by the change: recreated under its old name (a sandbox's own name)
            names[key] = f"{plan.project_name}_{key}" if sandbox else snap.volumes[key]["name"]
        if not sandbox and source is None and not same_volume(plan, key, snap.volumes[key], names[key]):
            raise UndoitError(f"set {snap.id} holds volume {key} as {snap.volumes[key]['name']}, but the project's "
                              f"{key} is {names[key]}: refusing to restore one into the other (name the set of "
                              "this project with set=ID)")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"{stamp}-{proc.id}" + ("-dry-run" if dry_run else "")
    interactive = not yes and os.environ.get("CI", "").lower() not in ("1", "true", "yes") and os.isatty(0)
    waits = {"up_timeout": up_timeout, "health_wait": up_timeout} if up_timeout else {}
    return Run(RunContext.of(
        plan, proc, ref=choice.ref, ref_source=choice.ref_source, snapshot=snap, snapshot_source=choice.set_source,
        volume_names=names, run_id=run_id, run_dir=runs_dir(plan) / run_id, dry_run=dry_run,
        interactive=interactive, reason=reason, sandbox=sandbox, **waits))


def describe(run: Run) -> list[str]:
    """The whole plan of a run, as printed by a dry run and before a real one."""
    ctx, p = run.ctx, run.proc
    lines = [f"{p.kind} {p.id}: {p.title}" + (f" (risk {p.risk}, runbook estimate {p.duration})" if p.risk else ""),
             *preview.rehearsal(run),
             f"  files go back to {ctx.ref} ({ctx.ref_source}); volumes come from set "
             f"{ctx.snapshot.id if ctx.snapshot else '-'} ({ctx.snapshot_source})",
             f"  engine: {engine.endpoint()}; volumes "
             + ("read and written in place on this host" if engine.on_this_host() else "streamed through the engine"),
             "  before any destructive step: HEAD tagged undoit/pre-rollback/<time>, safety copies of "
             f"what is overwritten or removed (in {ctx.run_dir})"]
    for i, step in enumerate(p.steps, 1):
        mark = "!" if step.type.destructive else " "
        lines.append(f" {mark}{i:2d}. {ctx.redact(steps.describe(run, step))}")
    for check in p.checks:
        lines.append(f"   check: {check.name}: {ctx.redact(checks.describe(ctx, check))}")
    if not ctx.sandbox:
        lines.append("  if a step or check fails: " + _on_failure(run))
    run.cost = preview.estimate(run)  # after the steps: their file plans are made
    return lines + [ctx.redact(line) for line in preview.lines(run, run.cost)]


def _on_failure(run: Run) -> str:
    """What a failure of the run would do, in words (the dry run's and the run's own)."""
    p = run.proc
    said = ("the half state is left as it is (keep=1; `doit undo` puts it back)" if run.keep
            else "the state from before the run is put back and proven (keep=1 leaves it)")
    if p.on_failure:
        said += f"; then {p.on_failure} " + ("runs (escalate)" if run.escalate else "is advised (escalate=1 runs it)")
    return said


def execute(plan: Plan, pid: str, dry_run: bool = False, yes: bool = False, reason: str = "",
            set_id: str | None = None, stop_after_step: int | None = None,
            source: snapshots.SnapshotSet | None = None, sandbox: bool = False,
            up_timeout: int | None = None, checked: Choice | None = None,
            keep: bool = False, escalate: bool | None = None) -> dict:
    """Run (or, with dry_run, only print) a procedure; returns the run record.

    up_timeout: how long `up`/`restart` steps wait for health (default: the plan's [timeouts] up).
    checked: see prepare. keep: a failed run leaves its half state (a rehearsal's sandbox
    always does: it is thrown away). escalate: a failed run, put back, runs its
    procedure's on_failure next (default: the plan's [rollback] escalate)."""
    run = prepare(plan, pid, dry_run, yes, reason, set_id, source, sandbox, checked, up_timeout)
    run.keep = keep or sandbox
    run.escalate = bool(plan.escalate if escalate is None else escalate) and not sandbox
    for line in describe(run):
        say(line)
    preview.refuse_if_short(run.cost)  # before anything changes; a dry run says it too
    if dry_run:
        prove_restored(run, restored_volumes(run.proc))
        say("dry run: nothing was changed")
        return {"outcome": "dry-run", "run": run.ctx.run_id, "preview": run.cost.as_dict()}
    with lock.held(lock_path(plan), f"rollback {pid}"):
        if not sandbox:
            repair.repair_for(plan)
        rec = _execute(run, stop_after_step)
        if run.escalating:
            return _escalate(run, rec, yes, set_id)
        return rec


def _escalate(run: Run, rec: dict, yes: bool, set_id: str | None) -> dict:
    """The procedure's on_failure, run after it failed and was put back, in the same lock;
    one log entry names both runs (the wider one's record is this one's escalation)."""
    plan, target = run.ctx.plan, run.proc.on_failure
    say(f"escalating: {run.proc.kind} {run.proc.id} failed and was put back; running {target}, as the plan says")
    try:
        wider = prepare(plan, target, yes=yes, reason=f"escalated from {run.proc.id} ({run.ctx.run_id})"
                        + (f": {run.ctx.reason}" if run.ctx.reason else ""), set_id=set_id)
    except UndoitError as err:
        rec["escalation"] = {"kind": plan.procedure(target).kind, "procedure": target, "run": "-",
                             "outcome": f"refused: {err}", "steps": [], "checks": []}
    else:
        wider.keep, wider.escalated_from = run.keep, run.ctx.run_id
        for line in describe(wider):
            say(line)
        rec["escalation"] = _execute(wider, None)
    runlog.write(plan, rec, run.ctx.redact)
    return rec


def _confirm(run: Run) -> None:
    if not run.ctx.interactive or not any(s.type.destructive for s in run.proc.steps):
        return
    import multiprocessing

    if multiprocessing.current_process().name != "MainProcess":
        # under `doit -n N` a task runs in a worker whose stdin is gone: the question
        # would vanish (or be answered by nobody)
        raise UndoitError("this rollback asks before it destroys data, and `doit -n` runs it where nobody can "
                          "answer: run it alone, or pass yes=1; nothing was changed")
    answer = input(f"This replaces data of project {run.ctx.plan.project_name} (safety copies are kept). "
                   "Type 'yes' to go on: ")
    if answer.strip().lower() != "yes":
        raise UndoitError("not confirmed: nothing was changed")


def _execute(run: Run, stop_after_step: int | None) -> dict:
    """The run, on record (its journal entry, its run record) before anything of it may
    change the stack: killed while it builds ahead, it is found by the next command as a
    run that changed nothing, and `doit undo` says so instead of undoing an older one."""
    _confirm(run)
    if run.ctx.interactive:
        run.file_plans.clear()  # the files may have changed while the question waited
    running_before = running_services(run)
    _open_record(run, running_before)
    plan = run.ctx.plan
    intent = nullcontext() if run.ctx.sandbox else journal.intent(
        plan.snapshots_dir, plan.project_name, "rollback", run=run.ctx.run_id, running_before=running_before)
    with intent as run.journal:
        run.persist()
        try:
            _before_steps(run)
        except UndoitError as err:  # refused before its first step: no run to record, repair or undo
            refused = err
            shutil.rmtree(run.ctx.run_dir, ignore_errors=True)
        else:
            return _run_steps(run, running_before, stop_after_step)
        finally:
            for staged in run.staged.values():  # not swapped in: the run failed before their step
                volumes.discard(staged.path)
    raise refused


def _before_steps(run: Run) -> None:
    """What a run does before its first step, changing nothing of the stack: the kit's
    files hidden from git, the set's images loaded, the volumes built ahead."""
    from ..backup.backup import hide_kit_state

    ctx = run.ctx
    if not ctx.sandbox:
        hide_kit_state(ctx.plan)
        loaded = pins.ensure(ctx.client, ctx.snapshot, ctx.plan.project_name) if ctx.snapshot else []
        if loaded:
            say(f"images of set {ctx.snapshot.id} loaded from the set: {', '.join(loaded)}")
    prestage(run)


def prestage(run: Run) -> None:
    """Build every volume the run restores beside its live contents, and check it, before
    any step: the services stay up meanwhile, and are later down only for the safety copy
    and the swap. A bad archive refuses the run here, with nothing changed yet; a volume
    that cannot be staged ahead (restore.stage_volume) is restored at its step."""
    ctx = run.ctx
    if ctx.snapshot is None:
        return
    keys = restored_volumes(run.proc)
    for key in keys if engine.on_this_host() else ():
        name = ctx.volume_names[key]
        if not restore.volume_exists(ctx.client, name):  # removed by the change: recreated at its step
            continue
        t0 = time.monotonic()
        try:
            staged = _refusing(run, lambda: restore.stage_volume(ctx.client, ctx.snapshot, key, name,
                                                                      ctx.plan.allows_devices(key)))
        except OSError as err:  # a full disk, say: restored at its step, which says so if it fails too
            say(f"{key}: not staged ahead ({err.strerror or err}); restored at its step")
            continue
        if staged is not None:
            run.staged[key] = staged
            run.record.prestaged[key] = round(time.monotonic() - t0, 3)
            say(f"{key}: built beside {name} from set {ctx.snapshot.id} and checked ({len(staged.expected)} "
                "entries); swapped in at its step")
    prove_restored(run, [k for k in keys if k not in run.staged])


def prove_restored(run: Run, keys) -> None:
    """Each archive of keys read to the end and checked (restores extract them later):
    `verified:*` checked everything but these, and a bad one is refused here, before any
    step. Each is read once in this process (restore.check_restorable)."""
    ctx = run.ctx
    for key in keys if ctx.snapshot is not None else ():
        _refusing(run, lambda: restore.check_restorable(ctx.snapshot, key, ctx.plan.allows_devices(key)))


def _refusing(run: Run, prove):
    """prove(), where a bad archive is the refusal `verified:*` gives for any bad set."""
    try:
        return prove()
    except UndoitError as err:
        raise UndoitError(f"{NO_BACKUP} (the set {run.ctx.snapshot.id}, {run.ctx.snapshot_source}: {err})",
                          exit_code=errors.NO_BACKUP) from None


def _open_record(run: Run, running_before: list[str]) -> None:
    """The run's folder and record, "running" and at no step yet (at_step: the step begun)."""
    ctx = run.ctx
    ctx.run_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    n = 1
    while True:  # a run in the same second as the one before (its id is its second)
        run_id = ctx.run_id if n == 1 else f"{ctx.run_id}-{n}"
        try:
            (ctx.run_dir.parent / run_id).mkdir(mode=0o700)
            break
        except FileExistsError:
            n += 1
    run.ctx = replace(ctx, run_id=run_id, run_dir=ctx.run_dir.parent / run_id)
    run.record = runlog.opened(run.ctx, running_before)


def _run_steps(run: Run, running_before: list[str], stop_after_step: int | None) -> dict:
    t0 = time.monotonic()
    started = datetime.now(timezone.utc)
    run.record.started = started.isoformat(timespec="seconds")
    run.ctx = replace(run.ctx, since=run.record.started)
    run.started_at = started.timestamp()
    if not run.ctx.sandbox:  # the worktree shares the live repository's tags
        run.record.pre_rollback_tag = f"undoit/pre-rollback/{started.strftime('%Y%m%dT%H%M%SZ')}"
        gitstate.tag(run.ctx.plan.root, run.record.pre_rollback_tag, run.record.head_before)
    if not run.keep:
        putback.record_before(run)
    return _steps_and_checks(run, running_before, stop_after_step, t0)


def _steps_and_checks(run: Run, running_before: list[str], stop_after_step: int | None, t0: float) -> dict:
    record = run.record
    try:
        failed, interrupted = _steps(run, stop_after_step)
    except KeyboardInterrupt as err:  # between two steps (a step's own work catches its own)
        interrupted, done = err, record.steps
        if done and not done[-1]["ok"]:
            failed = {k: done[-1][k] for k in ("n", "do", "detail")}
        else:
            n = len(done) + 1
            failed = {"n": n, "do": run.proc.steps[n - 1].do if n <= len(run.proc.steps) else "checks",
                      "detail": f"interrupted ({err or 'Ctrl-C'}) before it began"}
    if failed:
        record.checks = []
    else:
        results = checks.run_all(run.ctx, run.proc.checks)
        record.checks = [asdict(r) for r in results]
        for r in results:
            say(f"  {'PASS' if r.ok else 'FAIL'}  {r.name}: {r.reason}")
    ok = failed is None and all(c["ok"] for c in record.checks)
    if ok:
        services = "as the plan left them"
    elif not run.keep and runlog.changed_anything(record.as_dict()):
        services, interrupted = _put_back(run, running_before, interrupted)
    elif failed:
        services = journal.cleanup(lambda: bring_back(run, running_before), "bringing services back",
                                   interrupted=interrupted is not None)
    else:
        services = "as the plan left them"
    escalating = bool(not ok and interrupted is None and run.escalate and run.proc.on_failure
                      and record.put_back and record.put_back["ok"])
    record.close(outcome=("success" if ok else "interrupted" if interrupted else
                          "step failed" if failed else "checks failed"),
                 services=services, failed_step=failed, seconds=round(time.monotonic() - t0, 2),
                 next_steps=run.ctx.plan.next_steps)
    run.escalating = escalating  # execute runs it, then writes the one log entry naming both
    runlog.write(run.ctx.plan, record, run.ctx.redact, log=not escalating and run.escalated_from is None)
    if interrupted is not None:
        say(f"services: {record.services}")  # what the way out did (no conclusion follows)
        raise interrupted  # the journal stays: the next run finishes what this one left
    return record.as_dict()


def _put_back(run: Run, running_before: list[str], interrupted) -> tuple[str, BaseException | None]:
    """The failed run's own put-back (putback.py); if it fails, the services that ran
    before are brought back at least. Returns what the services are, and the interrupt
    (a Ctrl-C during the put-back leaves the rest to `doit undo`)."""
    try:
        result = journal.cleanup(lambda: putback.put_back(run), "putting back the state from before the rollback",
                                 interrupted=interrupted is not None)
    except KeyboardInterrupt as err:
        run.record.put_back = {"ok": False, "seconds": 0, "detail": "interrupted: `doit undo` finishes it"}
        return "as the interrupted put-back left them (the next kit command repairs)", interrupted or err
    run.record.put_back = result
    say(f"put back: {'proven' if result['ok'] else 'FAILED'} in {result['seconds']} s: {result['detail']}")
    if result["ok"]:
        return "as before the run (put back)", interrupted
    return bring_back(run, running_before), interrupted


def _steps(run: Run, stop_after_step: int | None) -> tuple[dict | None, BaseException | None]:
    """The plan's steps in order, up to the first that fails: (failed, interrupted)."""
    failed = interrupted = None
    redact = run.ctx.redact
    for i, step in enumerate(run.proc.steps, 1):
        s0 = time.monotonic()
        # described before it runs: afterwards, restored files no longer count as overwritten
        what = redact(steps.describe(run, step))
        say(f"[{i}/{len(run.proc.steps)}] {step.do} ...")
        try:
            if stop_after_step is not None and i > stop_after_step:
                raise UndoitError(f"injected failure at step {i}")
            run.record.at_step = i
            run.persist()  # a run killed from here on may have changed something: undo looks
            detail = steps.execute(run, step)
            ok = True
            if step.type.changes_files:
                run.file_plans.clear()  # later restores are planned again, on the files as they are now
        except UndoitError as err:
            detail, ok = str(err), False
        except KeyboardInterrupt as err:  # Ctrl-C, SIGTERM: recorded, services back, then out
            detail, ok, interrupted = f"interrupted ({err or 'Ctrl-C'})", False, err
        except OSError as err:  # a full disk, a permission: the world, not a bug
            detail, ok = f"{err.strerror or err}: {err.filename or ''}".rstrip(": "), False
        except Exception as err:  # a bug, or the engine falling over: still recorded, still cleaned up
            detail, ok = f"{type(err).__name__}: {err}", False
            traceback.print_exc()
        detail = redact(detail)
        run.record.steps.append({"n": i, "do": step.do, "what": what,
                                 "ok": ok, "detail": detail, "seconds": round(time.monotonic() - s0, 3)})
        say(f"      {'ok' if ok else 'FAILED'} in {time.monotonic() - s0:.1f} s: {detail}")
        if not ok:
            failed = {"n": i, "do": step.do, "detail": detail}
            break
        run.persist()
    return failed, interrupted


def running_services(run: Run) -> list[str]:
    return sorted({c.labels.get(checks.SERVICE_LABEL) for c in checks.project_containers(run.ctx)} - {None})


def bring_back(run: Run, running_before: list[str]) -> str:
    """After a failed step: every service that ran before runs again (the state it was
    in), never left stopped by accident. Says what it did. Not onto a volume whose refill
    was cut short: its services wait for the next run, which refills it first."""
    ctx = run.ctx
    if run.started_at:  # first: a service the engine is still stopping is not running
        events.stops_under_way(ctx.client, ctx.plan.project_name, run.started_at, ctx.plan.timeouts["stop"])
    now = set(running_services(run))
    missing = [s for s in running_before if s not in now]
    half = (run.journal.data.get("replacing") if run.journal else None) or {}
    held = sorted({c.labels.get(checks.SERVICE_LABEL) for c in volumes.users(ctx.client, half["name"])}
                  - {None}) if half else []
    missing = [s for s in missing if s not in held]
    note = (f"; {', '.join(held)} left stopped: {half['name']} is half refilled, the next kit command refills it "
            "from its set and starts them") if held else ""
    if not missing:
        return "every service that was running is still running" + note
    try:
        ctx.compose("up", "--detach", "--no-recreate", *missing)
        return f"brought back {', '.join(missing)} (stopped by the failed rollback){note}"
    except UndoitError as err:
        return f"could NOT bring back {', '.join(missing)}: {ctx.redact(err)}{note}"
