"""The plan -> doit task dicts. Creators here only build metadata; work happens in actions."""

from __future__ import annotations

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
