"""`doit decide`: a failure described in words -> the plan's decision matrix row(s) and the
command to run. Pure: the matrix and the phases' triggers are all it reads."""

from __future__ import annotations

import re

from .plan import MatrixRow, Plan


# words every failure has: they would match every row
GENERIC = {"error", "errors", "fail", "fails", "failed", "failing", "failure", "failures", "issue",
           "issues", "problem", "problems", "the", "and", "with", "not", "after", "broken", "won"}


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) >= 3 and w not in GENERIC]


def _hits(query: str, text: str) -> int:
    """How many query words the text holds, matching on a 5-letter stem ("containers"
    finds "Container", "failing" finds "fails")."""
    if query.strip() and query.strip().lower() in text.lower():
        return 100
    stems = {w[:5] if len(w) > 5 else w for w in _words(text)}
    return sum(1 for w in _words(query) if (w[:5] if len(w) > 5 else w) in stems
               or any(s.startswith(w) for s in stems))


def command_for(plan: Plan, target: str | None) -> str:
    if target is None:
        return "investigate first (doit list --all shows every phase and scenario), then roll back what it names"
    if target == plan.full.id:
        return "doit rollback:full reason=\"...\""
    if any(s.id == target for s in plan.scenarios):
        return f"doit scenario:{target} reason=\"...\""
    return f"doit rollback:{target} reason=\"...\""


def decide(plan: Plan, failure: str) -> dict:
    """Rows matching the failure, best first (all rows when nothing matches)."""
    scored = [(_hits(failure, row.failure), i, row) for i, row in enumerate(plan.matrix)] if failure else []
    matched = [row for score, _, row in sorted(scored, key=lambda t: (-t[0], t[1])) if score > 0]
    phases = []
    if failure:
        for proc in (*plan.phases, plan.full):
            best = max((_hits(failure, t) for t in proc.triggers), default=0)
            if best:
                phases.append((best, proc))
        phases.sort(key=lambda t: -t[0])
    return {
        "failure": failure,
        "matched": bool(matched),
        "rows": [_row(plan, r) for r in (matched or plan.matrix)],
        "phases_with_matching_triggers": [
            {"id": p.id, "title": p.title, "risk": p.risk, "duration": p.duration,
             "command": command_for(plan, p.id)} for _, p in phases[:3]
        ],
    }


def chain(plan: Plan, target: str | None) -> list[str]:
    """The procedure and what it escalates to when it fails, in order (on_failure)."""
    out = []
    while target is not None and target not in out:
        out.append(target)
        target = plan.procedure(target).on_failure
    return out


def _row(plan: Plan, row: MatrixRow) -> dict:
    return {"failure": row.failure, "scope": row.scope, "risk": row.risk, "duration": row.duration,
            "command": command_for(plan, row.target), "escalation": chain(plan, row.target)}
