"""Rollback steps: each can say exactly what it will do (dry run) and then do it.

A step's description must print what its execution runs: resolved refs, real volume
names, the exact commands. Steps that destroy something (`destructive`) are preceded
by a safety copy of what they destroy, taken by the step or by the runner.

The step types, one class each, register themselves in plan/registry.py's STEPS as this
package imports its modules (a family each); a new type is a class in one of them, or a
module of its own imported here.
"""

from __future__ import annotations

# the modules whose step types this package registers by importing them, in the order
# a plan's error lists the known types
from . import services, files, volumes, networks, commands, note  # noqa: I001

FAMILIES = (services, files, volumes, networks, commands, note)


def describe(run, step) -> str:
    """What the step will do, as the dry run prints it (run: rollback/context.py's Run)."""
    return step.type.describe(run, step)


def execute(run, step) -> str:
    """Do the step in a rollback; one line saying what was done; UndoitError on failure."""
    return step.type.execute(run, step)
