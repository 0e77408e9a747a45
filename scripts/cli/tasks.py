"""The plan -> doit task dicts. Creators here only build metadata; work happens in actions."""

from __future__ import annotations

from doit import get_var
from doit.exceptions import TaskError, TaskFailed

from .. import errors
from . import interrupts
from ..output import redact
from ..errors import UndoitError
from ..plan.plan import Plan
from ..offsite import offsite
from ..store import restic


def _terminated(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


_pending: list[int] = []


def _redeliver(unraisable):
    """A signal's KeyboardInterrupt raised where Python cannot raise (an at-fork hook of
    logging while sh forks, a finaliser) is printed as "Exception ignored" and lost: the
    run would go on as if never interrupted. Raise it again shortly instead, from an
    alarm (a call that cannot block here, where a signal would be lost once more): it
    lands at an ordinary line and the run ends through its finally blocks."""
    import signal
    import sys

    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        text = str(unraisable.exc_value)
        _pending[:] = [int(text.split()[1]) if text.startswith("signal ") else signal.SIGINT]
        try:
            signal.signal(signal.SIGALRM, _alarm)
            signal.setitimer(signal.ITIMER_REAL, 0.001)
            return
        except ValueError:  # not the main thread: nothing to do but say it
            pass
    sys.__unraisablehook__(unraisable)


def _interrupt() -> KeyboardInterrupt:
    """The pending signal as the interruption it would have raised (SIGINT: Python's own)."""
    import signal

    return KeyboardInterrupt(f"signal {_pending[0]}" if _pending and _pending[0] != signal.SIGINT else "")


def _alarm(signum, frame):
    import signal

    f = frame
    while f is not None:  # fired before _redeliver returned (a loaded machine): raised there,
        if f.f_code is _redeliver.__code__:  # it would be "ignored" once more; try again shortly
            signal.setitimer(signal.ITIMER_REAL, 0.001)
            return
        f = f.f_back
    raise _interrupt()


_exit = interrupts.exit_with


def action(fn, *args, **kwargs):
    """A doit python-action calling fn; an UndoitError becomes TaskFailed with its one line.
    Whatever it prints, and that line, is masked by the plan's secrets (redact.mask_tasks).

    SIGTERM (a closed terminal, `docker stop`, systemd) ends it like Ctrl-C: through every
    finally that brings services back, not mid-step with them left stopped."""

    def run():
        import signal
        import sys
        import threading

        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _terminated) if main else None
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler) if main else None
        hook, sys.unraisablehook = sys.unraisablehook, _redeliver
        _pending.clear()
        try:
            with redact.task_output() as mask:
                try:
                    result = fn(*args, **kwargs)
                    if _pending:  # interrupted where it could not be raised, and done before the alarm
                        raise _interrupt()
                except UndoitError as err:
                    if err.exit_code == errors.FAILED:
                        return TaskFailed(mask(str(err)))
                    _exit(mask(str(err)), err.exit_code)
                except Exception:  # a bug: its traceback, masked (doit would print the message as it is)
                    import traceback

                    return TaskError(mask(traceback.format_exc()))
        except KeyboardInterrupt as err:
            # every finally on the way out has run: one line, no traceback
            how = "SIGTERM" if "signal" in str(err) else "Ctrl-C"
            _exit(f"interrupted ({how}); whatever it left unfinished, the next kit command "
                  "(or `doit repair`) puts right first", errors.INTERRUPTED)
        finally:
            if _pending and main:
                signal.setitimer(signal.ITIMER_REAL, 0)
                _pending.clear()
            sys.unraisablehook = hook
            if main:
                signal.signal(signal.SIGTERM, previous)
                signal.signal(signal.SIGINT, previous_int)
        return result if isinstance(result, (dict, TaskFailed)) else None

    run.__name__ = getattr(fn, "__name__", "action")
    run.__doc__ = getattr(fn, "__doc__", None)
    return run


def images_task() -> dict:
    from ..stack import images

    return {
        "doc": "build the kit's offline images from Debian's packages (only when the recipe changed)",
        "actions": [action(images.build)],
        "uptodate": [images.up_to_date],
        "verbosity": 2,
    }


def demo_tasks(plan: Plan):
    from .. import demo

    def only_demo(fn, task):
        def run(*args):
            demo.require_demo(plan, task)
            return fn(*args)

        run.__name__ = fn.__name__
        return run

    yield {
        "basename": "demo",
        "name": None,
        "doc": "the bundled demo stack (a miniature of the runbook's system); refuses on any other plan",
    }
    yield {
        "basename": "demo",
        "name": "init",
        "doc": f"materialize demo/ as a scratch git repository in {plan.root}",
        "actions": [action(only_demo(demo.materialize, "demo:init"), plan.root)],
        "uptodate": [lambda: (plan.root / ".git").exists()],
    }
    yield {
        "basename": "demo",
        "name": "up",
        "doc": "bring the demo stack up healthy and seed its data",
        "actions": [action(only_demo(demo.up, "demo:up"), plan)],
        "task_dep": ["images", "demo:init"],
        "uptodate": [False],
        "verbosity": 2,
    }
    yield {
        "basename": "demo",
        "name": "down",
        "doc": "remove the demo's containers, networks and volumes",
        "actions": [action(only_demo(demo.down, "demo:down"), plan)],
        "uptodate": [False],
        "verbosity": 2,
    }


def plan_tasks(plan: Plan | None, plan_path):
    """plan:init writes a starter plan; plan:check validates the plan against the running
    stack, touching nothing."""
    from ..stack import starter

    def init():
        project = get_var("project", None) or (plan.env.get("UNDOIT_PROJECT_DIR") if plan else None)
        if not project:
            raise UndoitError("plan:init needs the compose project's folder: project=DIR")
        path = starter.init(plan_path, project)
        print(f"wrote {path}: edit its phases, then `doit plan:check`")

    def check():
        from ..backup import cycles
        from ..repo import gitstate
        from ..stack import engine, stackcheck

        gitstate.require_repo(plan.root)
        client = engine.client()
        stackcheck.check(plan, client)
        stackcheck.refs(plan, client)
        print(f"plan {plan.path}: {len(plan.services)} service(s), {len(plan.volumes)} volume(s), "
              f"{len(plan.networks)} network(s) as compose and the engine have them; "
              f"{len(plan.phases)} phase(s), {len(plan.scenarios)} scenario(s)")
        try:
            print(f"a rollback restores {cycles.current(plan)[1]}")
        except UndoitError as err:
            print(f"a rollback restores nothing yet ({err})")

    yield {"basename": "plan", "name": None, "doc": "write a starter plan, or check the plan against the stack"}
    yield {"basename": "plan", "name": "init", "actions": [action(init)], "uptodate": [False], "verbosity": 2,
           "doc": "write a starter phases.toml (at UNDOIT_PLAN) for a compose project: project=DIR"}
    if plan is not None:
        yield {"basename": "plan", "name": "check", "actions": [action(check)], "uptodate": [False],
               "verbosity": 2, "doc": "check the plan against the running stack and git (changes nothing)"}


def status_task(plan: Plan) -> dict:
    """What a bare `doit` shows: the plan, and what a rollback would restore. Changes nothing."""

    def run():
        from ..backup import cycles
        from ..repo import gitstate
        from ..rollback import repair

        repair.repair_if_free(plan)
        print(f"plan {plan.path}: project {plan.project_name} at {plan.root}")
        print(f"  {len(plan.phases)} phase(s), a full rollback, {len(plan.scenarios)} scenario(s); "
              f"volumes: {', '.join(plan.volumes) or 'none'}")
        if not gitstate.in_repo(plan.root):
            print("  the project is not there yet" + (" (`doit demo:up` brings the demo)" if _is_demo(plan) else ""))
        else:
            try:
                _, why = cycles.current(plan)
                print(f"  a rollback restores {why}")
            except UndoitError as err:
                print(f"  a rollback restores nothing yet: {err}")
        print("tasks: `doit list` (all of them: `doit list --all`); before a change: `doit backup`")

    return {
        "basename": "status",
        "doc": "the plan, and which set a rollback would restore (what a bare `doit` runs; changes nothing "
               "but what a killed run left)",
        "actions": [action(run)],
        "uptodate": [False],
        "verbosity": 2,
    }


# verified:<id>'s answer, for rollback:<id>, which doit runs right after it in the same
# process: the set, the cycle and the checksums are not worked out twice (a tenth of a
# second of a files rollback). Taken once, by that task only; any other caller works
# them out itself.
_checked: dict[tuple, object] = {}


def _run_procedure(plan: Plan, pid: str):
    from ..rollback import rollback

    def run():
        set_id = get_var("set", None) or None
        rec = rollback.execute(plan, pid, dry_run=_flag("dry_run"), yes=_flag("yes"),
                               reason=str(get_var("reason", "")), set_id=set_id,
                               checked=_checked.pop((str(plan.root), pid, set_id), None))
        return _conclude(plan, rec)

    run.__name__ = f"rollback_{pid}"
    return action(run)


def _conclude(plan: Plan, rec: dict):
    """The end of a rollback's output: what next, and on failure who to call."""
    from ..output.progress import say

    if rec["outcome"] == "dry-run":
        return None
    say(f"outcome: {rec['outcome']} in {rec['seconds']} s (log: {plan.log_path}, report: "
        f"{plan.reports_dir / (rec['run'] + '.json')})")
    for line in plan.next_steps:
        say(f"next: {line}")
    if rec.get("file_restores"):
        say("restored files are staged in the project's git index (`git status` shows them): commit them "
            f"(git commit -m \"rollback {rec['procedure']}\") to record the rollback; until then `doit backup` "
            "refuses the uncommitted changes")
    if rec["outcome"] == "success":
        return None
    failed = rec.get("failed_step")
    if failed:
        say(f"FAILED at step {failed['n']} ({failed['do']}): {failed['detail']}")
        say(f"services: {rec['services']}")
    else:
        bad = [c for c in rec["checks"] if not c["ok"]]
        say(f"{len(bad)} check(s) failed: " + "; ".join(f"{c['name']}: {c['reason']}" for c in bad))
    say("try next: fix the cause and run the same task again, or `doit undo` to put back the state "
        "from before this rollback")
    for who, contact in plan.contacts.items():
        say(f"contact: {who}: {contact}")
    what = f"step {failed['n']} ({failed['do']}) failed" if failed else "checks failed"
    raise UndoitError(f"rollback {rec['procedure']}: {what}; see {plan.log_path}", exit_code=errors.ROLLBACK_FAILED)


def _verified(plan: Plan, pid: str) -> dict:
    from ..rollback import rollback

    def run():
        set_id = get_var("set", None) or None
        _checked.clear()
        try:
            choice = rollback.verified_choice(plan, pid, set_id)
        except UndoitError as err:
            raise UndoitError(str(err), exit_code=max(err.exit_code, errors.NO_BACKUP)) from None
        _checked[(str(plan.root), pid, set_id)] = choice
        restored = rollback.restored_volumes(plan.procedure(pid))
        others = len([k for k in choice.set.volumes if k not in restored])
        print(f"{pid}: restores set {choice.set.id} ({choice.set_source}) and files from {choice.ref} "
              f"({choice.ref_source}): manifest, listings and state match"
              + (f"; the {len(restored)} archive(s) it restores are read to the end before its first step"
                 if restored else "")
              + (f"; {others} archive(s) it does not restore not read (`doit verify` reads them)" if others else ""))

    return {
        "basename": "verified",
        "name": pid,
        "doc": f"the snapshot set {pid} restores exists and is sound (never takes a new backup)",
        "actions": [action(run)],
        "uptodate": [False],
        "verbosity": 2,
    }


def _procedure_task(plan: Plan, basename: str, proc, doc: str) -> dict:
    return {
        "basename": basename,
        "name": proc.id,
        "doc": doc,
        "actions": [_run_procedure(plan, proc.id)],
        # a verified existing set, never a fresh backup: that would snapshot the broken stack
        "task_dep": [f"verified:{proc.id}"],
        "uptodate": [False],
        "verbosity": 2,
    }


PROC_PARAMS = '; parameters: dry_run=1 yes=1 reason="..." set=ID'


def rollback_tasks(plan: Plan):
    yield {"basename": "rollback", "name": None, "doc": "roll back one phase, or everything (full)"}
    for proc in (*plan.phases, plan.full):
        yield _procedure_task(plan, "rollback", proc,
                              f"{proc.title} (risk {proc.risk or '?'}, runbook {proc.duration or '?'}){PROC_PARAMS}")


def scenario_tasks(plan: Plan):
    yield {"basename": "scenario", "name": None, "doc": "partial rollbacks: keep some phases, undo others"}
    for proc in plan.scenarios:
        yield _procedure_task(plan, "scenario", proc,
                              f"{proc.title} (keeps {', '.join(proc.keeps) or '-'}){PROC_PARAMS}")


def safety_tasks(plan: Plan):
    from ..backup import backup
    from ..rollback import rollback, undo
    from ..rollback import repair
    from ..store import lock

    yield {"basename": "verified", "name": None, "doc": "verification of the set each rollback restores"}
    for proc in (*plan.phases, plan.full, *plan.scenarios):
        yield _verified(plan, proc.id)
    yield {"basename": "checkpoint", "name": None, "doc": "before starting a phase: tag + snapshot what it touches"}
    for proc in plan.phases:

        def run(pid=proc.id):
            with lock.held(rollback.lock_path(plan), f"checkpoint {pid}"):
                repair.repair_for(plan)
                backup.checkpoint(plan, pid, force=_flag("force"))

        yield {
            "basename": "checkpoint",
            "name": proc.id,
            "doc": f"before {proc.id}: tag undoit/{proc.id}/pre, snapshot {', '.join(proc.volumes) or 'no volumes'}",
            "actions": [action(run)],
            "uptodate": [False],
            "verbosity": 2,
        }

    def run_repair():
        with lock.held(rollback.lock_path(plan), "repair"):
            if not repair.repair_for(plan):
                from ..output.progress import say

                say("nothing to repair: no run died leaving work unfinished")

    yield {
        "basename": "repair",
        "doc": "finish what a killed run left (every kit command does this first, then its own work)",
        "actions": [action(run_repair)],
        "uptodate": [False],
        "verbosity": 2,
    }
    yield {
        "basename": "undo",
        "doc": "put back the state from before the last rollback (volumes, files, services)",
        "actions": [action(undo.undo, plan)],
        "uptodate": [False],
        "verbosity": 2,
    }


def _flag(name: str) -> bool:
    return str(get_var(name, "")).lower() in ("1", "true", "yes", "on")


def backup_tasks(plan: Plan):
    from ..backup import backup
    from ..store import snapshots

    def run_backup():
        from ..rollback import rollback
        from ..rollback import repair
        from ..store import lock

        with lock.held(rollback.lock_path(plan), "backup"):
            repair.repair_for(plan)
            backup.backup(plan, include_dirty=_flag("include_dirty"), strict=_flag("strict"),
                          save_images=_flag("save_images"))
        if _flag("offsite") or (plan.offsite is not None and plan.offsite.after_backup):
            from ..rollback import rollback
            from ..store import lock

            with lock.held(rollback.lock_path(plan), "offsite", shared=True):
                offsite.send(plan)

    def run_verify():
        from ..rollback import repair

        repair.repair_if_free(plan)
        backup.verify(plan, get_var("set", None) or None)

    def show_snapshots():
        from ..backup import cycles
        from ..offsite import prune
        from ..rollback import repair
        from .report import safety_lines, snapshot_table

        repair.repair_if_free(plan)
        try:
            cycle, why = cycles.current(plan)
            restores = cycle.baseline.id
        except UndoitError as err:
            restores, why = None, f"nothing: {err}"
        every = cycles.all_cycles(plan.snapshots_dir, plan.project_name)
        labels = {s.id: cycles.label(c, every) for c in every for s in c.sets}
        rows = snapshots.describe(plan.snapshots_dir, plan.project_name, restores, lambda s: labels.get(s.id))
        if plan.offsite is not None:  # where copies exist: here, and in the restic repository or not
            try:
                there = restic.Repo(plan).sets()
                for r in rows:
                    r["copies"] = "here + offsite" if r["set"] in there else "here only"
            except UndoitError as err:
                print(f"offsite copies unknown: {err}")
        snapshot_table(rows, why)
        safety_lines([{"set": s.id, "reason": (s.manifest or {}).get("reason", "incomplete"),
                       "parked": prune.parked_bytes(s) if s.complete else 0,
                       "where": next((str(s.parked_path(k).parent) for k in s.volumes if s.parked_path(k)), "")}
                      for s in snapshots.safety_sets(plan.snapshots_dir)])
        _uncovered_files(plan)

    yield {
        "basename": "backup",
        "doc": "git backup branch + tag, stack state, and every volume that changed, as one snapshot set",
        "actions": [action(run_backup)],
        "uptodate": [lambda: backup.up_to_date(plan)],
        "verbosity": 2,
    }
    yield {
        "basename": "verify",
        "doc": "re-hash and fully read a snapshot set (set=ID; default: the one a rollback restores)",
        "actions": [action(run_verify)],
        "uptodate": [False],
        "verbosity": 2,
    }
    yield {
        "basename": "snapshots",
        "doc": "list snapshot sets by change cycle: age, size, volumes, valid, which one a rollback restores",
        "actions": [action(show_snapshots)],
        "uptodate": [False],
        "verbosity": 2,
    }


def _uncovered_files(plan: Plan) -> None:
    """The git-ignored files compose reads that no set holds (a backup says so too)."""
    from ..stack import ignored
    from ..stack.compose import for_plan

    try:
        lines = ignored.uncovered(plan, for_plan(plan).config_json())
    except UndoitError:
        return  # no compose file to read (the project is not there yet): nothing to say
    for line in lines:
        print(f"not in any set: {line}")


def decide_task(plan: Plan) -> dict:
    def run():
        import json

        from ..plan.decide import decide
        from .report import decision_table

        result = decide(plan, str(get_var("failure", "")))
        if str(get_var("format", "")).lower() == "json":
            print(json.dumps(result, indent=2))
        else:
            decision_table(result)

    return {
        "basename": "decide",
        "doc": 'failure="..." -> the decision matrix row, risk, duration and the command to run (format=json)',
        "actions": [action(run)],
        "uptodate": [False],
        "verbosity": 2,
    }


def _is_demo(plan: Plan) -> bool:
    """The bundled demo in its own place: only there does `doit rehearse` bring it up and
    back it up first (a copy of it is rehearsed like any project: as it is)."""
    from ..demo import DEMO_ROOT

    return plan.root.resolve() == DEMO_ROOT.resolve()


def rehearse_task(plan: Plan) -> dict:
    def run():
        from ..rehearse import rehearse
        from .report import rehearsal_table

        if _is_demo(plan):
            # the demo first comes up and is backed up (task_dep cannot order demo:up
            # before backup, and backup must not depend on demo:up: it stays fast)
            from .. import demo
            from ..backup import backup
            from ..rollback import rollback
            from ..store import lock

            demo.up(plan)
            if not backup.up_to_date(plan):
                with lock.held(rollback.lock_path(plan), "backup"):
                    backup.backup(plan)
        from ..rollback import rollback
        from ..rollback import repair
        from ..store import lock

        repair.repair_if_free(plan)
        # shared: no live backup or rollback may change what the sandbox copies meanwhile
        with lock.held(rollback.lock_path(plan), "rehearse", shared=True):
            report = rehearse.rehearse(plan, only=get_var("only", None) or None,
                                       set_id=get_var("set", None) or None)
        rehearsal_table(report)
        if not report["ok"]:
            bad = [r["procedure"] for r in report["rows"] if not r["ok"]]
            raise UndoitError(f"rehearsal failed for {', '.join(bad)}; see {report['path']} "
                              f"(JUnit: {report['junit']})", exit_code=errors.DRILL_FAILED)
        return None

    # no backup here: a backup may stop live services (quiesce), and a rehearsal must
    # leave the live stack as it was; it rehearses the baseline that exists
    deps = ["images", "demo:init"] if _is_demo(plan) else []
    return {
        "basename": "rehearse",
        "doc": "drill every rollback in a sandbox (worktree, compose project, scratch volumes); only=phase3,full",
        "actions": [action(run)],
        "task_dep": deps,
        "uptodate": [False],
        "verbosity": 2,
    }


def offsite_tasks(plan: Plan):
    """`doit offsite` and `doit fetch`: sets to and from the plan's restic repository."""
    def run_offsite():
        from ..rollback import rollback
        from ..rollback import repair
        from ..store import lock

        repair.repair_if_free(plan)
        # shared: a prune (exclusive) must not remove a set while restic reads it; a
        # rehearsal may run alongside
        with lock.held(rollback.lock_path(plan), "offsite", shared=True):
            if _flag("init"):
                restic.Repo(plan).init()
            offsite.send(plan, get_var("set", None) or None)

    def run_fetch():
        from ..rollback import rollback
        from ..rollback import repair
        from ..store import lock

        wanted = get_var("set", None)
        if not wanted:
            raise UndoitError("fetch needs set=ID or set=latest")
        with lock.held(rollback.lock_path(plan), "fetch"):
            repair.repair_for(plan)
            offsite.fetch(plan, wanted)

    def run_prune():
        from ..offsite import prune
        from ..rollback import rollback
        from ..rollback import repair
        from ..store import lock

        def number(name, default, kind):
            raw = get_var(name, None)
            if raw in (None, ""):
                return default
            try:
                return kind(raw)
            except ValueError:
                raise UndoitError(f"{name}={raw}: not a number") from None

        keep_last = number("keep_last", plan.keep_last, int)
        keep_days = number("keep_days", plan.keep_days, float)
        offsite_too = plan.offsite is not None and str(get_var("offsite", "1")).lower() not in ("0", "no", "false")
        with lock.held(rollback.lock_path(plan), "prune"):
            repair.repair_for(plan)
            prune.prune(plan, keep_last, keep_days, _flag("dry_run"), offsite_too)

    def run_release():
        from ..offsite import prune
        from ..rollback import rollback
        from ..rollback import repair
        from ..store import lock

        with lock.held(rollback.lock_path(plan), "release"):
            repair.repair_for(plan)
            prune.release(plan, yes=_flag("yes"))

    def run_recover():
        from ..offsite import recover

        rec = recover.recover(plan, get_var("set", None) or None, yes=_flag("yes"), dry_run=_flag("dry_run"))
        return _conclude(plan, rec)

    yield {"basename": "recover", "doc": "after a lost machine: fetch the newest backup set (or set=ID), put back "
                                         "files, volumes and kept git-ignored files, prove them (yes=1 dry_run=1)",
           "actions": [action(run_recover)], "uptodate": [False], "verbosity": 2}
    yield {"basename": "prune", "doc": "remove old sets by keep_last/keep_days, here and offsite (dry_run=1 lists)",
           "actions": [action(run_prune)], "uptodate": [False], "verbosity": 2}
    # not `forget`: that name is doit's own command
    yield {"basename": "release", "doc": "release what the kit keeps on the engine for this project: every safety "
                                         "set with its parked contents, every pinned image (yes=1); backup sets stay",
           "actions": [action(run_release)], "uptodate": [False], "verbosity": 2}
    yield {"basename": "offsite", "doc": "send every set not yet offsite to the plan's restic repository, and check it",
           "actions": [action(run_offsite)], "uptodate": [False], "verbosity": 2}
    yield {"basename": "fetch", "doc": "bring a set back from the restic repository (set=ID or latest) and verify it",
           "actions": [action(run_fetch)], "uptodate": [False], "verbosity": 2}
