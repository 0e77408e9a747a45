"""The record of every rollback: ROLLBACK-LOG.md for people, reports/<run>.json for CI.

Both pass through the run's redactor: no value from .env or secrets/ is ever written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..plan.plan import Plan
from ..store.snapshots import RUNS

RECORD = "record.json"
NO_REASON = '(none given: pass reason="...")'


def _private_write(path: Path, text: str, append: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def markdown(rec: dict) -> str:
    lines = [
        f"## {rec['started']} - {rec['kind']} {rec['procedure']}: {rec['outcome'].upper()}",
        "",
        f"- **Rollback performed:** {rec['started']} on {rec['host']} by {rec['user']} ({rec['seconds']} s)",
        f"- **Reason:** {rec['reason'] or NO_REASON}",
        f"- **Phases rolled back:** {', '.join(rec['rolls_back'])}" + (f" (kept: {', '.join(rec['keeps'])})" if rec["keeps"] else ""),
        f"- **Procedure:** {rec['title']}",
        f"- **Files from:** {rec['ref']} ({rec['ref_source']}); HEAD was {rec['head_before'][:12]}" + (f", tagged {rec['pre_rollback_tag']}" if rec["pre_rollback_tag"] else ""),
        f"- **Volumes from:** set {rec['snapshot_set']} ({rec['snapshot_source']})"
        + (f"; safety snapshots {', '.join(rec['safety_sets'])}" if rec["safety_sets"] else ""),
        "",
        "| # | step | result | seconds |",
        "|---|------|--------|---------|",
    ]
    for s in rec["steps"]:
        lines.append(f"| {s['n']} | {s['what'].replace('|', '/')} | {'ok' if s['ok'] else 'FAILED: '}{'' if s['ok'] else s['detail'].replace('|', '/')} | {s['seconds']} |")
    if rec["checks"]:
        lines += ["", "| check | result |", "|-------|--------|"]
        for c in rec["checks"]:
            lines.append(f"| {c['name']} | {'pass' if c['ok'] else 'FAIL'}: {c['reason'].replace('|', '/')} |")
    if rec.get("failed_step"):
        lines += ["", f"Failed at step {rec['failed_step']['n']} ({rec['failed_step']['do']}). Services: {rec['services']}."]
    lines += ["", "Next steps: " + " ".join(rec.get("next_steps") or []), "", ""]
    return "\n".join(lines)


def write(plan: Plan, rec: dict, redact) -> None:
    """Append to the log, write the JSON report and the run's own record (for undo)."""
    clean = redact.data(json.loads(json.dumps(rec, default=str)))
    text = json.dumps(clean, indent=2, sort_keys=True)
    if not plan.log_path.exists():
        _private_write(plan.log_path, "# Rollback log\n\nOne entry per rollback, newest last (written by undoit).\n\n")
    _private_write(plan.log_path, redact(markdown(clean)), append=True)
    _private_write(plan.reports_dir / f"{rec['run']}.json", text + "\n")
    try:
        save(plan, clean)  # whole or not at all: undo reads it
    except OSError as err:  # a full snapshots disk: the log and the report above still tell
        print(f"could not keep the run's record for undo in {plan.snapshots_dir}: {err.strerror}", flush=True)


def keep(plan: Plan, rec: dict, redact) -> None:
    """The run's own record as it stands, durably (renamed into place, synced): what a
    run killed at any moment has done so far, for `doit undo`."""
    save(plan, redact.data(json.loads(json.dumps(rec, default=str))))


def save(plan: Plan, rec: dict) -> None:
    """A run record, already masked, in place durably: a kill leaves the old or the new."""
    from ..store.durable import write_json

    write_json(plan.snapshots_dir / RUNS / rec["run"] / RECORD, rec)


def changed_anything(rec: dict) -> bool:
    """Whether a run began a step, or made a safety copy (a run killed before its first
    step left everything as it was)."""
    return bool(rec.get("at_step") or rec.get("steps") or rec.get("safety_sets") or rec.get("file_restores"))


def close_interrupted(plan: Plan, run_id: str, pid) -> bool:
    """A record a dead run left "running" becomes "interrupted", in the log and a report
    too. False when there is nothing to close."""
    from datetime import datetime, timezone

    from ..output.redact import Redactor

    rec = record(plan, run_id)
    if rec is None or rec.get("outcome") != "running":
        return False
    rec.update(outcome="interrupted", finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
               services=f"the process (pid {pid}) died mid-run; the next kit command repaired what it left",
               failed_step={"n": len(rec.get("steps") or []) + 1, "do": "?", "detail": "the process died" + (
                   "" if changed_anything(rec) else " before its first step: nothing was changed")},
               seconds=rec.get("seconds", 0), next_steps=rec.get("next_steps") or [])
    write(plan, rec, Redactor.shared(plan))
    return True


def record(plan: Plan, run_id: str) -> dict | None:
    """One run's record (None: there is none, or it is unreadable)."""
    try:
        return json.loads((plan.snapshots_dir / RUNS / run_id / RECORD).read_text())
    except (OSError, ValueError):
        return None


def records(plan: Plan) -> list[dict]:
    base = plan.snapshots_dir / RUNS
    if not base.is_dir():
        return []
    out = []
    for d in sorted(base.iterdir()):
        p = d / RECORD
        if p.exists():
            try:
                out.append(json.loads(p.read_text()))
            except ValueError:
                continue
    return out


def last_record(plan: Plan, kinds) -> dict | None:
    recs = [r for r in records(plan) if r.get("kind") in kinds]
    return recs[-1] if recs else None


def mark_undone(plan: Plan, run_id: str) -> None:
    p = plan.snapshots_dir / RUNS / run_id / RECORD
    rec = json.loads(p.read_text())
    rec["undone"] = True
    save(plan, rec)
