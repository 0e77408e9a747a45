"""The runbook's validation lists, made executable: each check returns pass/fail and one line.

A check never raises for an expected failure: it reports it. All checks of a procedure
run, so a failed rollback tells everything that is wrong at once.

The check types, one class each, register themselves in plan/registry.py's CHECKS as
this package imports its modules (a family each); a new type is a class in one of them,
or a module of its own imported here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from ...errors import UndoitError
# the modules whose check types this package registers by importing them, in the order
# a plan's error lists the known types
from . import services, networks, volumes, files, commands  # noqa: I001
from .services import SERVICE_LABEL, project_containers

FAMILIES = (services, networks, volumes, files, commands)
__all__ = ["Result", "run_all", "run_now", "run_one", "describe", "SERVICE_LABEL", "project_containers"]


@dataclass(frozen=True)
class Result:
    name: str
    check: str
    ok: bool
    reason: str
    seconds: float = 0.0


def describe(ctx, check) -> str:
    """One line: what the check compares (ctx: a rollback's RunContext)."""
    return check.type.describe(ctx, check)


def run_one(ctx, check) -> tuple[bool, str]:
    """The check, by its type: (passed, why); a refusal it raises is a failure."""
    try:
        return check.type.run(ctx, check)
    except UndoitError as err:
        return False, str(err)


def run_all(ctx, checks) -> list[Result]:
    results = []
    for check in checks:
        start = time.monotonic()
        ok, reason = run_one(ctx, check)
        results.append(Result(check.name, check.check, ok, ctx.redact(reason), round(time.monotonic() - start, 3)))
    return results


def run_now(ctx, checks) -> list[Result]:
    """The checks on the stack as it is this instant (what a change broke): no wait for
    health to settle, the logs read from the start."""
    return run_all(replace(ctx, health_wait=0, since="1970-01-01T00:00:00Z"), checks)
