"""undoit: rehearsed, verified rollbacks for a Docker Compose project (`doit list`)."""

import sys

from scripts.cli import interrupts as _interrupts

_interrupts.quiet()  # before the rest of the kit loads: a Ctrl-C while loading is one line, not a traceback

from doit import get_var  # noqa: E402

from scripts.cli import params as _params  # noqa: E402
from scripts.cli import tasks as _tasks  # noqa: E402
from scripts.plan import plan as _plan  # noqa: E402
from scripts.output import redact as _redact  # noqa: E402
from scripts.errors import UndoitError  # noqa: E402

DOIT_CONFIG = {
    # a bare `doit` changes nothing: it says what the plan holds and what a rollback restores
    "default_tasks": ["status"],
    # sqlite3, not dbm: dbm breaks when two doit processes touch it at once
    "backend": "sqlite3",
    # a dry run keeps its own state: it must never mark anything up to date for the real run
    "dep_file": ".doit-dry-run.sqlite3" if get_var("dry_run", "") not in ("", "0") else ".doit.sqlite3",
    "verbosity": 2,
}
if get_var("format", "") == "json":
    # machine-readable output: no task titles around the JSON
    DOIT_CONFIG["reporter"] = "zero"

try:
    _params.check(_params.given())
    # None only while there is no plan file yet and `plan:init` is what was asked for
    PLAN = _plan.load_for(sys.argv)
except UndoitError as _err:
    print(f"undoit: {_err}", file=sys.stderr)
    sys.exit(_err.exit_code)
_redact.mask_tasks(PLAN)  # every task's output, masked by the plan's secrets


def task_plan():
    """write a starter plan, or check the plan against the stack"""
    yield from _tasks.plan_tasks(PLAN, _plan.plan_path())


if PLAN is None:
    DOIT_CONFIG["default_tasks"] = ["plan:init"]


if PLAN is not None:  # every other task is about a plan

    def task_status():
        """the plan, and which set a rollback would restore"""
        return _tasks.status_task(PLAN)

    def task_images():
        """build the kit's offline images"""
        return _tasks.images_task()

    def task_demo():
        """the bundled demo stack"""
        yield from _tasks.demo_tasks(PLAN)

    def task_backup():
        """back up the project: git refs, stack state, volume snapshots"""
        yield from _tasks.backup_tasks(PLAN)

    def task_rollback():
        """roll back one phase, or everything"""
        yield from _tasks.rollback_tasks(PLAN)

    def task_scenario():
        """partial rollback scenarios"""
        yield from _tasks.scenario_tasks(PLAN)

    def task_safety():
        """verification, checkpoints and undo"""
        yield from _tasks.safety_tasks(PLAN)

    def task_offsite():
        """sets offsite through restic: send (offsite), bring back (fetch)"""
        yield from _tasks.offsite_tasks(PLAN)

    def task_decide():
        """failure type -> recommended rollback scope"""
        return _tasks.decide_task(PLAN)

    def task_rehearse():
        """the whole drill in a sandbox"""
        return _tasks.rehearse_task(PLAN)
