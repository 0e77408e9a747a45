"""The task families about the plan and the whole project: status (a bare `doit`),
plan:init / plan:check, images, decide, rehearse.

The kit's work is imported inside each action (see backups.py: `doit list` stays fast)."""

from __future__ import annotations

import json

from .. import errors
from ..errors import UndoitError
from ..plan.decide import decide as matrix
from ..plan.plan import Plan
from . import options
from .action import action
from .options import Args
from .report import decision_table, rehearsal_table


def status(plan: Plan, not_there: str = "") -> dict:
    """status: what a bare `doit` shows (not_there: what to say when the project is not there yet)."""
    return {"basename": "status", "actions": [action(_status, plan, not_there)], "uptodate": [False],
            "verbosity": 2, "doc": "the plan, and which set a rollback would restore (what a bare `doit` runs; "
                                   "changes nothing but what a killed run left)"}


def _status(plan: Plan, not_there: str) -> None:
    from ..backup import cycles
    from ..repo import gitstate
    from ..rollback import rehearsed, repair

    repair.repair_if_free(plan)
    print(f"plan {plan.path}: project {plan.project_name} at {plan.root}")
    print(f"  {len(plan.phases)} phase(s), a full rollback, {len(plan.scenarios)} scenario(s); "
          f"volumes: {', '.join(plan.volumes) or 'none'}")
    if not gitstate.in_repo(plan.root):
        print("  the project is not there yet" + (f" ({not_there})" if not_there else ""))
    else:
        try:
            print(f"  a rollback restores {cycles.current(plan)[1]}")
        except UndoitError as err:
            print(f"  a rollback restores nothing yet: {err}")
    for proc in (*plan.phases, plan.full, *plan.scenarios):
        print(f"  rehearsal of {proc.kind} {rehearsed.said(plan, proc.id)}")
    print("tasks: `doit list` (all of them: `doit list --all`); before a change: `doit backup`")


def plan(plan: Plan | None, path, args: Args):
    """plan:init writes a starter plan; plan:check checks the plan against the stack."""
    yield {"basename": "plan", "name": None, "doc": "write a starter plan, or check the plan against the stack"}
    yield {"basename": "plan", "name": "init", "actions": [action(_init, plan, path, args)], "uptodate": [False],
           "verbosity": 2, "doc": "write a starter phases.toml (at UNDOIT_PLAN) for a compose project"
                                  + options.doc("plan")}
    if plan is not None:
        yield {"basename": "plan", "name": "check", "actions": [action(_check, plan)], "uptodate": [False],
               "verbosity": 2, "doc": "check the plan against the running stack and git (changes nothing)"}


def _init(plan: Plan | None, path, args: Args) -> None:
    from ..stack import starter

    project = args.text("project") or (plan.env.get("UNDOIT_PROJECT_DIR") if plan else None)
    if not project:
        raise UndoitError("plan:init needs the compose project's folder: project=DIR")
    found = starter.init(path, project, _client())
    for line in starter.summary(found):
        print(line)
    print(f"wrote {path}: edit its phases, then `doit plan:check`")


def _client():
    """The engine, to ask images for their healthchecks (None when none answers: the plan
    is still written, and says which it could not ask)."""
    from ..errors import UndoitError
    from ..stack import engine

    try:
        return engine.client()
    except UndoitError:
        return None


def _check(plan: Plan) -> None:
    from ..backup import cycles
    from ..repo import gitstate
    from ..stack import engine, ignored, stackcheck, starter

    gitstate.require_repo(plan.root)
    client = engine.client()
    config = stackcheck.check(plan, client)
    stackcheck.refs(plan, client)
    print(f"plan {plan.path}: {len(plan.services)} service(s), {len(plan.volumes)} volume(s), "
          f"{len(plan.networks)} network(s) as compose and the engine have them; "
          f"{len(plan.phases)} phase(s), {len(plan.scenarios)} scenario(s)")
    # what a backup would warn about, said before the first one
    for gap in stackcheck.uncovered(plan, client, config) + ignored.uncovered(plan, config):
        print(f"not covered: {gap}")
    for svc, profiles in sorted(starter.survey(starter.every_profile(plan.root), plan.root).profiled.items()):
        if svc not in plan.services:
            print(f"profile service {svc} ({', '.join(profiles)}): not in the plan; a rollback leaves it as it is")
    try:
        print(f"a rollback restores {cycles.current(plan)[1]}")
    except UndoitError as err:
        print(f"a rollback restores nothing yet ({err})")


def images() -> dict:
    """images: the kit's offline images, built when their recipe changed."""
    from ..stack import images as kit_images  # light: no engine SDK

    return {"basename": "images", "actions": [action(kit_images.build)], "uptodate": [kit_images.up_to_date],
            "verbosity": 2, "doc": "build the kit's offline images from Debian's packages (only when the recipe "
                                   "changed)"}


def decide(plan: Plan, args: Args) -> dict:
    """decide: failure -> the decision matrix's row and the command to run."""
    return {"basename": "decide", "actions": [action(_decide, plan, args)], "uptodate": [False], "verbosity": 2,
            "doc": 'failure="..." -> the decision matrix row, risk, duration and the command to run (format=json)'}


def _decide(plan: Plan, args: Args) -> None:
    result = matrix(plan, args.text("failure", ""))
    if (args.text("format") or "").lower() == "json":
        print(json.dumps(result, indent=2))
    else:
        decision_table(result)


def rehearse(plan: Plan, args: Args, task_dep=()) -> dict:
    """rehearse: every rollback drilled in a sandbox; the live stack untouched. No backup
    here: a backup may stop live services (quiesce), and a rehearsal must leave the live
    stack as it was; it rehearses the baseline that exists (task_dep: what prepares it)."""
    return {"basename": "rehearse", "actions": [action(_rehearse, plan, args)], "task_dep": list(task_dep),
            "uptodate": [False], "verbosity": 2,
            "doc": "drill every rollback in a sandbox (worktree, compose project, scratch volumes)"
                   + options.doc("rehearse")}


def _rehearse(plan: Plan, args: Args) -> None:
    from ..rehearse import rehearse as drills
    from ..rollback import repair
    from ..rollback import rollback as rollbacks
    from ..store import lock

    repair.repair_if_free(plan)
    # shared: no live backup or rollback may change what the sandbox copies meanwhile
    with lock.held(rollbacks.lock_path(plan), "rehearse", shared=True):
        report = drills.rehearse(plan, only=args.text("only"), set_id=args.text("set"))
    rehearsal_table(report)
    if not report["ok"]:
        bad = [r["procedure"] for r in report["rows"] if not r["ok"]]
        raise UndoitError(f"rehearsal failed for {', '.join(bad)}; see {report['path']} (JUnit: {report['junit']})",
                          exit_code=errors.DRILL_FAILED)
