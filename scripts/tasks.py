"""The plan -> doit task dicts. Creators here only build metadata; work happens in actions."""

from __future__ import annotations

from doit import get_var
from doit.exceptions import TaskFailed

from .errors import UndoitError
from .plan import Plan


def action(fn, *args, **kwargs):
    """A doit python-action calling fn; an UndoitError becomes TaskFailed with its one line."""

    def run():
        try:
            result = fn(*args, **kwargs)
        except UndoitError as err:
            return TaskFailed(str(err))
        return result if isinstance(result, dict) else None

    run.__name__ = getattr(fn, "__name__", "action")
    run.__doc__ = getattr(fn, "__doc__", None)
    return run


def not_yet(what: str, issue: int):
    def run():
        return TaskFailed(f"{what} is not built yet (issue #{issue})")

    return run


def images_task() -> dict:
    from . import images

    return {
        "doc": "build the kit's offline images from Debian's packages (only when the recipe changed)",
        "actions": [action(images.build)],
        "uptodate": [images.up_to_date],
        "verbosity": 2,
    }


def demo_tasks(plan: Plan):
    from . import demo

    yield {
        "basename": "demo",
        "name": None,
        "doc": "the bundled demo stack (a miniature of the runbook's system)",
    }
    yield {
        "basename": "demo",
        "name": "init",
        "doc": f"materialize demo/ as a scratch git repository in {plan.root}",
        "actions": [action(demo.materialize, plan.root)],
        "uptodate": [lambda: (plan.root / ".git").exists()],
    }
    yield {
        "basename": "demo",
        "name": "up",
        "doc": "bring the demo stack up healthy and seed its data",
        "actions": [action(demo.up, plan)],
        "task_dep": ["images", "demo:init"],
        "uptodate": [False],
        "verbosity": 2,
    }
    yield {
        "basename": "demo",
        "name": "down",
        "doc": "remove the demo's containers, networks and volumes",
        "actions": [action(demo.down, plan)],
        "uptodate": [False],
        "verbosity": 2,
    }


def rollback_tasks(plan: Plan):
    yield {"basename": "rollback", "name": None, "doc": "roll back one phase, or everything (full)"}
    for proc in (*plan.phases, plan.full):
        yield {
            "basename": "rollback",
            "name": proc.id,
            "doc": f"{proc.title} (risk {proc.risk or '?'}, runbook {proc.duration or '?'})",
            "actions": [not_yet("the rollback engine", 4)],
            "uptodate": [False],
            "verbosity": 2,
        }


def scenario_tasks(plan: Plan):
    yield {"basename": "scenario", "name": None, "doc": "partial rollbacks: keep some phases, undo others"}
    for proc in plan.scenarios:
        yield {
            "basename": "scenario",
            "name": proc.id,
            "doc": proc.title,
            "actions": [not_yet("the rollback engine", 4)],
            "uptodate": [False],
            "verbosity": 2,
        }


def _flag(name: str) -> bool:
    return str(get_var(name, "")).lower() in ("1", "true", "yes", "on")


def backup_tasks(plan: Plan):
    from . import backup, snapshots

    def run_backup():
        backup.backup(plan, include_dirty=_flag("include_dirty"))

    def run_verify():
        backup.verify(plan, get_var("set", None) or None)

    def show_snapshots():
        from .report import snapshot_table

        snapshot_table(snapshots.describe(plan.snapshots_dir, plan.project_name))

    yield {
        "basename": "backup",
        "doc": "git backup branch + tag, stack state, and every volume that changed, as one snapshot set",
        "actions": [action(run_backup)],
        "uptodate": [lambda: backup.up_to_date(plan)],
        "verbosity": 2,
    }
    yield {
        "basename": "verify",
        "doc": "re-hash and fully read a snapshot set (set=ID; default: the baseline)",
        "actions": [action(run_verify)],
        "uptodate": [False],
        "verbosity": 2,
    }
    yield {
        "basename": "snapshots",
        "doc": "list snapshot sets: age, size, volumes, tag, valid, which is the baseline",
        "actions": [action(show_snapshots)],
        "uptodate": [False],
        "verbosity": 2,
    }
