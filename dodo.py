"""undoit: rehearsed, verified rollbacks for a Docker Compose project (`doit list`)."""

import sys

from scripts.cli import interrupts as _interrupts

_interrupts.quiet()  # before the rest of the kit loads: a Ctrl-C while loading is one line, not a traceback

from doit import get_var  # noqa: E402

from demo import kit as _demo  # noqa: E402
from scripts.cli import backups as _backups  # noqa: E402
from scripts.cli import copies as _copies  # noqa: E402
from scripts.cli import project as _project  # noqa: E402
from scripts.cli import rollbacks as _rollbacks  # noqa: E402
from scripts.cli.options import Args  # noqa: E402
from scripts.errors import UndoitError  # noqa: E402
from scripts.output import redact as _redact  # noqa: E402
from scripts.plan import plan as _plan  # noqa: E402

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
    ARGS = Args.read(sys.argv[1:])  # the parameters, checked against the tasks named, read once
    # None only while there is no plan file yet and `plan:init` is what was asked for
    PLAN = _plan.load_for(sys.argv)
except UndoitError as _err:
    print(f"undoit: {_err}", file=sys.stderr)
    sys.exit(_err.exit_code)
_redact.mask_tasks(PLAN)  # every task's output, masked by the plan's secrets


def task_plan():
    """write a starter plan, or check the plan against the stack"""
    yield from _project.plan(PLAN, _plan.plan_path(), ARGS)


if PLAN is None:
    DOIT_CONFIG["default_tasks"] = ["plan:init"]


if PLAN is not None:  # every other task is about a plan

    def task_status():
        """the plan, and which set a rollback would restore"""
        return _project.status(PLAN, "`doit demo:up` brings the demo" if _demo.is_bundled(PLAN) else "")

    def task_images():
        """build the kit's offline images"""
        return _project.images()

    def task_demo():
        """the bundled demo stack"""
        yield from _demo.tasks(PLAN)

    def task_backup():
        """back up the project: git refs, stack state, volume snapshots"""
        return _backups.backup(PLAN, ARGS)

    def task_checkpoint():
        """before a phase: tag + snapshot what it touches"""
        yield from _backups.checkpoint(PLAN, ARGS)

    def task_verify():
        """re-hash and fully read a snapshot set"""
        return _backups.verify(PLAN, ARGS)

    def task_snapshots():
        """the snapshot sets by change cycle"""
        return _backups.snapshots(PLAN)

    def task_verified():
        """the set each rollback restores, checked"""
        yield from _rollbacks.verified(PLAN, ARGS)

    def task_rollback():
        """roll back one phase, or everything"""
        yield from _rollbacks.rollback(PLAN, ARGS)

    def task_scenario():
        """partial rollback scenarios"""
        yield from _rollbacks.scenario(PLAN, ARGS)

    def task_undo():
        """the state from before the last rollback"""
        return _rollbacks.undo(PLAN)

    def task_repair():
        """what a killed run left, finished"""
        return _rollbacks.repair(PLAN)

    def task_offsite():
        """sets sent to the plan's restic repository"""
        return _copies.offsite(PLAN, ARGS)

    def task_fetch():
        """a set brought back from the restic repository"""
        return _copies.fetch(PLAN, ARGS)

    def task_recover():
        """a lost machine's newest point in time, back"""
        return _copies.recover(PLAN, ARGS)

    def task_prune():
        """old sets removed, here and offsite"""
        return _copies.prune(PLAN, ARGS)

    def task_release():
        """what the kit keeps on the engine, released"""
        return _copies.release(PLAN, ARGS)

    def task_decide():
        """failure type -> recommended rollback scope"""
        return _project.decide(PLAN, ARGS)

    def task_rehearse():
        """the whole drill in a sandbox"""
        # the bundled demo is brought up and backed up first; any other project is
        # rehearsed as it is
        return _project.rehearse(PLAN, ARGS, ["demo:ready"] if _demo.is_bundled(PLAN) else [])
