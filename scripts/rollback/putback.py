"""A failed rollback undoes itself: the state from just before it, put back and proven.

When a step or a check of a rollback fails (or it is interrupted), the half-rolled-back
stack is the worst place to leave someone at 3 a.m. So the run puts back, by itself and
in the same lock, what `doit undo` would (volumes from its safety copies, files and the
index, services on the images they ran), then proves it against what it recorded just
before its first step: each volume against its safety copy's listing (content compared
where the copy is an archive), the project's files against their fingerprint
(repo/worktree.py), the services running and on the same images. `keep=1` skips this and
leaves the half state for inspection; `doit undo` then still works.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import UndoitError
from ..output.progress import say
from ..repo import worktree
from ..stack import events, pins, volumes
from ..store import journal
from . import checks, repair, runlog, undo
from .checks.volumes import compare
from .context import Run


def record_before(run: Run) -> None:
    """What the put-back proves against, on the run's record before its first step."""
    ctx = run.ctx
    run.record.images_before = services_now(run)
    run.record.files_before = worktree.fingerprint(ctx.plan.root, ctx.plan.kit_paths())


def services_now(run: Run) -> dict[str, dict]:
    """The project's running services: service -> its image's name and id, its health."""
    running = [c for c in checks.project_containers(run.ctx) if c.labels.get(checks.SERVICE_LABEL)]
    images = pins.images_of(running)
    for c in running:
        images[c.labels[checks.SERVICE_LABEL]]["health"] = ((c.attrs.get("State") or {}).get("Health")
                                                            or {}).get("Status", "none")
    return images


def put_back(run: Run) -> dict:
    """The state from before the run, put back and proven: {ok, detail, seconds}. Never
    raises for a failure of its own (that is its answer); a Ctrl-C goes through, with its
    progress on the record for `doit undo`."""
    ctx, t0 = run.ctx, time.monotonic()
    say("putting back the state from before the rollback (keep=1 would have left it for inspection)")
    run.persist()
    if run.started_at:  # a service the engine is still stopping is not running: wait for it first
        events.stops_under_way(ctx.client, ctx.plan.project_name, run.started_at, ctx.plan.timeouts["stop"])
    problems, proven = [], []

    def prove(s, key, name):  # each volume, before a service starts on it
        differences, files = compare(ctx.client, s.listing(key), name)
        if differences:
            problems.append(f"{key}: differs from its safety copy {s.id}: {'; '.join(differences)}")
        else:
            proven.append(f"{key} ({files} file(s))")  # as its safety copy holds it

    unwell = ""
    try:
        _finish_cut(run)
        rec = runlog.record(ctx.plan, ctx.run_id)
        try:
            unwell = undo.put_back(ctx.plan, rec, prove=prove).get("unwell")
        finally:
            run.record.undo, run.record.undone = rec.get("undo"), bool(runlog.record(ctx.plan, ctx.run_id).get(
                "undone"))
        problems += _files_differ(run) + _services_differ(run)
    except UndoitError as err:
        problems.append(ctx.redact(str(err)))
    except OSError as err:
        problems.append(f"{err.strerror or err}: {err.filename or ''}".rstrip(": "))
    seconds = round(time.monotonic() - t0, 2)
    if problems:
        where = (f"the safety copies are in set(s) {', '.join(run.record.safety_sets) or '(none made)'}, HEAD "
                 f"before the run is tag {run.record.pre_rollback_tag}; `doit undo` tries again")
        return {"ok": False, "seconds": seconds, "detail": ctx.redact("; ".join(problems)) + f" ({where})"}
    services = ", ".join(sorted(run.record.images_before)) or "none running"
    return {"ok": True, "seconds": seconds,
            "detail": (f"the state from before the run is back: volumes equal to their safety copies "
                       f"({', '.join(proven) or 'none replaced'}), files and git index as before, services as "
                       f"before ({services}) on the same images" + (f"; {unwell}" if unwell else ""))}


def _finish_cut(run: Run) -> None:
    """A swap or refill the failure cut short, finished first as the next command's repair
    would: the volume whole from the set, what it held in the safety set (put back from
    there next). Never a put-back over half a swap: the contents swapped out would be
    taken for a dead restore's leftovers."""
    ctx = run.ctx
    cut = (run.journal.data.get("replacing") if run.journal is not None else None) or {}
    if not cut:
        return
    for line in repair.finish_replace(ctx.plan, ctx.client, ctx.compose, run.journal.data):
        say(line.replace("repaired: ", "put back, first: "))
    parking = cut.get("parking") or {}
    live = volumes.host_path(ctx.client, cut["name"])
    built = Path(parking["from"]) if parking else None
    if built is not None and built.is_dir() and live is not None and live.stat().st_ino == parking["inode"]:
        volumes.discard(built)  # never swapped in: the set's contents built for the swap, not the volume's
    journal.replaced(run.journal)


def _files_differ(run: Run) -> list[str]:
    before = run.record.files_before
    if not before:
        return []
    now = worktree.fingerprint(run.ctx.plan.root, run.ctx.plan.kit_paths())
    differ = worktree.differences(run.ctx.plan.root, before, now)
    commands = [f"{i} {s.do}" for i, s in enumerate(run.proc.steps, 1) if s.do in ("run", "exec")]
    why = f" (what a command wrote is not taken back: step {', '.join(commands)})" if commands and differ else ""
    return [f"{d} from before the run{why}" for d in differ]


def _services_differ(run: Run) -> list[str]:
    before, now = run.record.images_before, services_now(run)
    problems = []
    gone = sorted(set(before) - set(now))
    extra = sorted(set(now) - set(before))
    if gone:
        problems.append(f"not running as before: {', '.join(gone)}")
    if extra:
        problems.append(f"running, and were not before: {', '.join(extra)}")
    moved = sorted(s for s in set(before) & set(now) if before[s]["id"] != now[s]["id"])
    if moved:
        problems.append(f"on another image than before: {', '.join(moved)}")
    return problems
