"""The record of every rollback: ROLLBACK-LOG.md for people, reports/<run>.json for CI.

Both pass through the run's redactor: no value from .env or secrets/ is ever written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..plan.plan import Plan
from ..repo import gitstate
from ..stack import engine
from ..store.snapshots import RUNS

RECORD = "record.json"
NO_REASON = '(none given: pass reason="...")'
# the keys a record has once its run ended (Record.close)
CLOSING = ("services", "failed_step", "seconds", "finished", "next_steps")


@dataclass
class Record:
    """A rollback's record, as reports/<run>.json, the log and `doit undo` read it (its
    keys are the JSON's). Kept on disk as the run goes (keep), written whole at its end
    (write), both through _masked."""

    run: str
    kind: str
    procedure: str
    title: str
    reason: str
    host: str
    user: str
    started: str  # when the run was opened; when its steps began, once they do
    project: str
    engine: str
    ref: str
    ref_source: str
    snapshot_set: str | None
    snapshot_source: str
    head_before: str
    running_before: list[str]
    rolls_back: list[str]
    keeps: list[str]
    runbook_minutes: int | None
    pre_rollback_tag: str | None = None
    steps: list[dict] = field(default_factory=list)  # n, do, what, ok, detail, seconds
    at_step: int = 0  # the step begun (0: none yet)
    checks: list[dict] = field(default_factory=list)  # name, check, ok, reason, seconds
    safety_sets: list[str] = field(default_factory=list)
    file_restores: list[dict] = field(default_factory=list)  # what each restore-files step saved (undo)
    prestaged: dict[str, float] = field(default_factory=dict)  # volume key -> seconds its building took
    # the stack just before the first step (putback.py): service -> image name, id, health;
    # and the project's files' fingerprint (repo/worktree.py)
    images_before: dict[str, dict] = field(default_factory=dict)
    files_before: dict = field(default_factory=dict)
    put_back: dict | None = None  # a failed run's own put-back: ok, detail, seconds
    undo: dict | None = None  # an undo's progress (undo.py)
    undone: bool = False
    escalation: dict | None = None  # the wider procedure run after this one failed: its record
    # what the steps did, counted as they did it (the preview's figures, after the fact):
    # volumes: key -> bytes of the files restored; files: overwritten, deleted, moved -> count
    restored: dict = field(default_factory=dict)
    outcome: str = "running"  # success, checks failed, step failed, interrupted
    # the run's end (close): a record without them is of a run under way, or one that died
    services: str | None = None
    failed_step: dict | None = None
    seconds: float | None = None
    finished: str | None = None
    next_steps: list[str] = field(default_factory=list)

    def close(self, outcome: str, services: str, failed_step: dict | None, seconds: float,
              next_steps) -> None:
        self.outcome, self.services, self.failed_step, self.seconds = outcome, services, failed_step, seconds
        self.next_steps = list(next_steps)
        self.finished = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        if self.finished is None:
            for key in CLOSING:
                del data[key]
        return data


def opened(ctx, running_before: list[str]) -> Record:
    """The record of a rollback (ctx: its RunContext) about to begin: at no step yet."""
    proc = ctx.proc
    return Record(
        run=ctx.run_id, kind=proc.kind, procedure=proc.id, title=proc.title, reason=ctx.redact(ctx.reason),
        host=socket.gethostname(), user=_user(), started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        project=ctx.plan.project_name, engine=engine.endpoint().host, ref=ctx.ref, ref_source=ctx.ref_source,
        snapshot_set=ctx.snapshot.id if ctx.snapshot else None, snapshot_source=ctx.snapshot_source,
        head_before=gitstate.head(ctx.plan.root), running_before=running_before,
        rolls_back=list(proc.rolls_back) or ([proc.id] if proc.kind == "phase" else ["all"]),
        keeps=list(proc.keeps), runbook_minutes=proc.minutes)


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


def _masked(rec: Record | dict, redact) -> dict:
    """The one way a record is written: as JSON data, every value masked."""
    data = rec.as_dict() if isinstance(rec, Record) else rec
    return redact.data(json.loads(json.dumps(data, default=str)))


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
        *_restored(rec.get("restored") or {}),
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
    put = rec.get("put_back")
    if put:
        lines += ["", f"**Put back:** {'proven' if put['ok'] else 'FAILED'} in {put['seconds']} s: {put['detail']}"]
    esc = rec.get("escalation")
    if esc:
        lines += ["", f"### Escalated to {esc['kind']} {esc['procedure']} ({esc['run']}): {esc['outcome'].upper()}",
                  ""] + markdown(esc).split("\n")[2:-4]  # its heading and its next steps are this one's
    lines += ["", "Next steps: " + " ".join(rec.get("next_steps") or []), "", ""]
    return "\n".join(lines)


def _restored(figures: dict) -> list[str]:
    """The log's line of what the steps put back (the record's `restored`), if any."""
    from ..output.progress import human

    said = [f"{key} {human(n)}" for key, n in (figures.get("volumes") or {}).items()]
    said += [f"{n} file(s) {kind}{' aside' if kind == 'moved' else ''}"
             for kind, n in (figures.get("files") or {}).items() if n]
    return [f"- **Restored:** {', '.join(said)}"] if said else []


def write(plan: Plan, rec: Record | dict, redact, log: bool = True) -> None:
    """Append to the log (log=False: not yet, an escalation's entry names both runs),
    write the JSON report and the run's own record (for undo)."""
    clean = _masked(rec, redact)
    text = json.dumps(clean, indent=2, sort_keys=True)
    if log and not plan.log_path.exists():
        _private_write(plan.log_path, "# Rollback log\n\nOne entry per rollback, newest last (written by undoit).\n\n")
    if log:
        _private_write(plan.log_path, redact(markdown(clean)), append=True)
    _private_write(plan.reports_dir / f"{clean['run']}.json", text + "\n")
    try:
        save(plan, clean)  # whole or not at all: undo reads it
    except OSError as err:  # a full snapshots disk: the log and the report above still tell
        print(f"could not keep the run's record for undo in {plan.snapshots_dir}: {err.strerror}", flush=True)


def keep(plan: Plan, rec: Record | dict, redact) -> None:
    """The run's own record as it stands, durably (renamed into place, synced): what a
    run killed at any moment has done so far, for `doit undo`."""
    save(plan, _masked(rec, redact))


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
