"""What the rehearsal reports say of a procedure: when it was last drilled, on which set
and plan, whether it passed, and how long its services were down; and the gate that
`[rehearse] require` puts before `checkpoint:<phase>`.

Read from the reports `doit rehearse` writes (reports/rehearsal-*.json, rehearse.py);
nothing here touches the engine. Here, not in rehearse/: the rollback reads them
(its first lines, its preview), and rehearse/ already imports rollback/.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UndoitError
from ..plan.plan import Plan

# the steps that take services down, and those that bring them back (steps/services.py)
STOPS = ("stop", "down")
STARTS = ("up", "restart")


def plan_digest(plan: Plan) -> str:
    """sha256 of the plan file as it is: a drill proves the plan it ran, not a later edit."""
    return hashlib.sha256(Path(plan.path).read_bytes()).hexdigest()


@dataclass(frozen=True)
class Drill:
    """One procedure's row of a rehearsal report, with the report's set and plan digest."""

    procedure: str
    started: str
    set_id: str
    digest: str | None  # None: a report from before digests were recorded
    ok: bool
    failed: tuple[str, ...]
    steps: tuple[dict, ...]  # n, do, seconds, ok (none: a report from before they were recorded)

    @property
    def downtime(self) -> float | None:
        return downtime(self.steps)


def reports(plan: Plan) -> list[dict]:
    """Every readable rehearsal report, oldest first (a report's name is its start time)."""
    out = []
    for path in sorted(Path(plan.reports_dir).glob("rehearsal-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("rows"), list):
            out.append(data)
    return out


def last_drill(plan: Plan, pid: str) -> Drill | None:
    """The newest drill of procedure pid (an archive's proof is no drill); None: never."""
    for report in reversed(reports(plan)):
        for row in report["rows"]:
            if row.get("procedure") == pid and row.get("kind") != "proof":
                return Drill(pid, report.get("started", "?"), report.get("set", "?"), report.get("plan_digest"),
                             bool(row.get("ok")), tuple(row.get("failed") or ()), tuple(row.get("steps") or ()))
    return None


def downtime(steps) -> float | None:
    """Seconds from the start of the first step that stops services to the end of the
    last step after it that starts them (to the last step when none does); None when no
    step stops any. The same sum for a drill's rows and a run record's steps."""
    rows = list(steps)
    first = next((i for i, s in enumerate(rows) if s["do"] in STOPS), None)
    if first is None:
        return None
    last = max((i for i, s in enumerate(rows) if s["do"] in STARTS and i > first), default=len(rows) - 1)
    return round(sum(float(s.get("seconds") or 0) for s in rows[first:last + 1]), 3)


def said(plan: Plan, pid: str, drill: Drill | None = None) -> str:
    """One line: when pid was last rehearsed, on which set and plan, and whether it passed."""
    drill = drill or last_drill(plan, pid)
    if drill is None:
        return f"{pid}: never rehearsed (`{rehearse_command(pid)}`)"
    plan_now = "the plan as it is now" if drill.digest == plan_digest(plan) else (
        "a plan since changed" if drill.digest else "a plan of unknown digest")
    outcome = "passed" if drill.ok else "FAILED" + (f" ({drill.failed[0]})" if drill.failed else "")
    return (f"{pid}: last rehearsed {drill.started} on set {drill.set_id}, plan digest "
            f"{(drill.digest or '-')[:12]} ({plan_now}): {outcome}")


def rehearse_command(pid: str) -> str:
    return f"doit rehearse only={pid}"


def gate(plan: Plan, pid: str, set_id: str | None) -> str:
    """The line said() gives; with `[rehearse] require`, an UndoitError instead unless pid's
    last drill passed on the plan as it is now and on set_id (the current cycle's set)."""
    drill = last_drill(plan, pid)
    line = said(plan, pid, drill)
    if not plan.rehearse_require:
        return line
    if drill is None:
        why = "it was never rehearsed"
    elif not drill.ok:
        why = f"its last drill ({drill.started}) failed"
    elif drill.digest != plan_digest(plan):
        why = f"its last drill ({drill.started}) ran another plan (digest {(drill.digest or '-')[:12]})"
    elif set_id is not None and drill.set_id != set_id:
        why = f"its last drill rehearsed set {drill.set_id}, not the current cycle's {set_id}"
    else:
        return line
    raise UndoitError(f"[rehearse] require: {why}; run `{rehearse_command(pid)}` first")
