"""`doit undo`: the state from before the last rollback, from the safety copies it made.

Undo reads the rollback's record and the journal, not only a finished run: a rollback
that finished, one killed midway (its record is kept from before its first step), one
killed before it changed anything (nothing to undo, and no older rollback is undone),
and an undo that was itself killed (its progress is in the rollback's record, so the
next undo skips what the dead one put back). Its first line says which it found.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

from ..repo import gitstate
from . import checks, restore, runlog
from ..stack import engine, volumes
from ..store import journal, lock, snapshots
from ..stack.compose import Compose, for_plan
from ..errors import UndoitError
from ..plan.plan import Plan
from ..output.progress import say
from ..stack import events, revive
from . import repair


def last_record(plan: Plan) -> dict | None:
    return runlog.last_record(plan, kinds=("phase", "full", "scenario"))


def undo(plan: Plan) -> dict:
    """Put back the state from before the last rollback: its volumes from the safety
    snapshots, its files from the safety copies, its services as they were. A rollback
    that died midway is undone too, from the safety copies it had made: its record is
    kept from before its first step (one that died before it is said to have changed
    nothing, and no older one is undone). Killed itself, undo leaves a journal and its
    progress in the rollback's record; the next kit command finishes the volume it was
    refilling, and `doit undo` again completes it, skipping what it had put back."""
    with lock.held(lock.path_of(plan.snapshots_dir), "undo"):
        repair.repair_for(plan)  # first: it closes the record of a rollback that died
        rec = last_record(plan)
        if rec is None:
            raise UndoitError("no rollback to undo")
        if rec.get("undone"):
            raise UndoitError(f"the last rollback ({rec['run']}) was already undone")
        if not runlog.changed_anything(rec):
            say(f"nothing to undo: {rec['kind']} {rec['procedure']} ({rec['run']}) was interrupted before it "
                "changed anything, so the stack is as it was before it; an earlier rollback is not undone")
            return {"undone": None, "volumes": [], "files": 0}
        say(_found(rec))
        return put_back(plan, rec)


def put_back(plan: Plan, rec: dict, prove=None) -> dict:
    """Undo's work on a rollback's record (the caller holds the lock and has repaired):
    volumes, files, services and their images as before it. prove(set, key, name), when
    given, is called on each volume as soon as it is back, before any service starts on
    it, services still stopped (a failed rollback's own put-back proves each one: putback.py)."""
    since = time.time()
    with journal.intent(plan.snapshots_dir, plan.project_name, "undo", undoing=rec["run"],
                        running_before=rec.get("running_before") or []) as entry:
        # on record before anything is put back: a second undo skips what this one did
        rec["undo"] = {"pid": os.getpid(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "volumes": [], "putting": None, "files": [],
                       **{k: v for k, v in (rec.get("undo") or {}).items() if k in ("volumes", "putting", "files")}}
        runlog.save(plan, rec)
        try:
            return _undo(plan, rec, entry, prove)
        except KeyboardInterrupt:
            journal.cleanup(lambda: say(_services_back(plan, entry, since)), "bringing services back")
            raise


def _found(rec: dict) -> str:
    """What undo found, in one line: a finished rollback, one that died, or an undo that died."""
    what = f"{rec['kind']} {rec['procedure']} of {rec['started']} ({rec['run']}"
    before = rec.get("undo")
    if before:
        return (f"finishing the undo of {what}) that died (pid {before.get('pid')}, {before.get('started')}): "
                f"{len(before.get('volumes') or [])} volume(s) and {len(before.get('files') or [])} file "
                "restore(s) it had put back are skipped")
    if rec.get("outcome") == "interrupted":
        at = rec.get("failed_step") or {}
        return (f"undoing {what}, interrupted at step {at.get('n', '?')} ({at.get('do', '?')}): "
                f"{at.get('detail', '')}), from the safety copies it had made")
    return f"undoing {what}, {rec['outcome']})"


def _services_back(plan: Plan, entry: journal.Entry, since: float) -> str:
    """An interrupted undo: the services that ran before the rollback run again, except
    on a volume left half refilled (the next kit command refills it, then starts them)."""
    client, compose = engine.client(), for_plan(plan)
    events.stops_under_way(client, plan.project_name, since, plan.timeouts["stop"])
    half = entry.data.get("replacing") or {}
    held = {c.labels.get(checks.SERVICE_LABEL) for c in volumes.users(client, half["name"])} if half else set()
    running = {c.labels.get(checks.SERVICE_LABEL) for c in client.containers.list(
        filters={"label": f"com.docker.compose.project={plan.project_name}"})}
    missing = [s for s in entry.data.get("running_before") or [] if s not in running and s not in held]
    if missing:
        compose("up", "--detach", "--no-recreate", *missing)
    return (f"interrupted: brought back {', '.join(missing) or 'nothing (all running)'}"
            + (f"; {', '.join(sorted(held - {None}))} wait for {half['name']} to be refilled by the next kit command"
               if held else ""))


def _undo(plan: Plan, rec: dict, entry: journal.Entry, prove=None) -> dict:
    client = engine.client()
    compose = for_plan(plan)
    restored = []
    for set_id in reversed(rec.get("safety_sets") or []):
        s = snapshots.get_set(plan.snapshots_dir, set_id)
        for key, vol in s.volumes.items():
            if _put_back(plan, client, compose, rec, s, key, entry):
                restored.append(key)
            if prove is not None:  # every one, put back now or not: none may be left as the rollback made it
                prove(s, key, vol["name"])
    files = 0
    progress = rec["undo"]
    for i, fr in reversed(list(enumerate(rec.get("file_restores") or []))):
        if i in progress["files"]:
            say(f"files of step {fr.get('step', i) + 1}: already put back by the undo that died")
            continue
        files += _undo_files(plan.root, fr)
        progress["files"].append(i)
        runlog.save(plan, rec)
    before = rec.get("running_before") or []
    images = rec.get("images_before") or {}
    retagged = images_back(client, images)
    if retagged:
        say(f"images as before: {', '.join(retagged)}")
    unwell = ""
    if before:
        # with what the run recorded of each service: only those healthy before are waited for
        unwell = recreate(compose, before, healthy=[s for s in before
                                                    if (images.get(s) or {}).get("health") == "healthy"]
                          if images else None)
    now = sorted({c.labels.get(checks.SERVICE_LABEL) for c in client.containers.list(
        filters={"label": f"com.docker.compose.project={plan.project_name}"})} - {None})
    extra = [s for s in now if s not in before]
    if extra:
        compose.stop(extra)
    runlog.mark_undone(plan, rec["run"])
    summary = (f"undone: {len(restored)} volume(s) restored from safety snapshots, {files} file(s) put back, "
               f"services as before ({', '.join(before) or 'none running'})" + (f"; {unwell}" if unwell else ""))
    say(summary)
    return {"undone": rec["run"], "volumes": restored, "files": files, "unwell": unwell}


def _put_back(plan: Plan, client, compose: Compose, rec: dict, s: snapshots.SnapshotSet, key: str,
              entry: journal.Entry) -> bool:
    """One volume of a safety set back in place, its progress on record before and after;
    whether it was put back now (not: by the undo that died, or never swapped out)."""
    progress, vol, done = rec["undo"], s.volumes[key], f"{s.id}/{key}"
    parked = s.parked_path(key)
    if done in progress["volumes"]:
        say(f"{key}: already put back by the undo that died")
        return False
    if parked is not None and not parked.exists():
        if progress.get("putting") != done:
            say(f"{key}: {vol['name']} left as it is: the rollback died before it swapped the volume's "
                "contents out")
            return False
        # the undo that died had swapped them in (or the repair finished its swap)
        say(f"{key}: already put back by the undo that died (its swap was under way)")
        progress["volumes"].append(done)
        runlog.save(plan, rec)
        return False
    progress["putting"] = done
    runlog.save(plan, rec)
    users = [c for c in volumes.users(client, vol["name"]) if c.status in ("running", "paused")]
    services = sorted({c.labels.get(checks.SERVICE_LABEL) for c in users} - {None})
    if services:
        compose.stop(services)
    # what the rollback restored is replaced in turn: keep a copy of it too
    snapshots.note_restored(plan.snapshots_dir, vol["name"])
    restore.restore_volume(client, s, key, target=vol["name"], safety_dir=plan.snapshots_dir,
                           project=plan.project_name, devices=plan.allows_devices(key), intent=entry)
    progress["volumes"].append(done)
    progress["putting"] = None
    runlog.save(plan, rec)
    return True


def recreate(compose: Compose, services: list[str], healthy: list[str] | None = None) -> str:
    """Bring services up as the compose file now on disk describes them: containers whose
    configuration differs are recreated and missing networks made (undo has just put an
    older compose file back; --no-recreate would leave the rollback's containers).
    A network compose refuses to reuse as it is gets the project taken down (volumes
    kept) and brought up again. healthy: the services to wait for (None: every one); a
    service that was unhealthy before the rollback is put back running, as it was. What
    did not get healthy again is said (not raised: everything else is back)."""
    wait = healthy is None
    try:
        compose.up(services, options=("--remove-orphans",), wait=wait)
    except UndoitError as err:
        if "network" not in str(err).lower():
            raise
        say(f"networks differ from the compose file ({err}): recreating the project's containers and networks")
        compose.down(volumes=False)
        compose.up(services, wait=wait)
    if healthy:
        # counted back when their own healthcheck passes, run by the kit: the engine's
        # status changes only at its next interval, and compose's --wait looks every 500 ms
        try:
            revive.wait_back(engine.client(), compose.project, healthy, compose.timeouts["up"])
        except UndoitError as err:  # running as before, its data as before: what it reads decides its health
            return f"not healthy again ({err}), though healthy before the rollback"
    return ""


def images_back(client, images: dict) -> list[str]:
    """Each service's image name pointed again at the image it ran before the rollback
    (a build step moved the tag), where that image is still in the engine: the names
    moved back."""
    from docker.errors import ImageNotFound

    moved = []
    for info in images.values():
        name, image_id = info.get("image"), info.get("id")
        if not name or not image_id or name.startswith("sha256:"):
            continue
        try:
            if client.images.get(name).id == image_id:
                continue
        except ImageNotFound:
            pass
        try:
            old = client.images.get(image_id)
        except ImageNotFound:
            continue  # gone from the engine: the proof of the services says so
        repo, colon, tag = name.rpartition(":")
        if not colon or "/" in tag:  # no tag, or the colon is a registry's port
            repo, tag = name, "latest"
        old.tag(repo, tag)
        moved.append(name)
    return moved


def _undo_files(root: Path, fr: dict) -> int:
    import shutil

    step_dir = Path(fr["dir"])
    n = 0
    for rel in fr.get("missing", []):  # files the rollback created: they did not exist before
        p = root / rel
        if p.exists() or p.is_symlink():
            p.unlink()
            n += 1
    saved = step_dir / gitstate.SAVED
    if saved.exists():
        n += gitstate.put_back(root, fr.get("changed", []), saved)
    # no archive (or only its .part): the rollback was killed before git overwrote anything
    for rel in fr.get("changed", []) if (step_dir / "files").is_dir() else ():
        # a safety folder of a kit before files.tar: one copy per file
        src, dst = step_dir / "files" / rel, root / rel
        if not (src.exists() or src.is_symlink()):
            continue  # a rollback killed before it copied this file never overwrote it
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        if src.is_symlink():
            dst.symlink_to(src.readlink())
        else:
            shutil.copy2(src, dst)
        n += 1
    for rel in fr.get("move", []):
        src, dst = step_dir / "moved" / rel, root / rel
        if not (src.exists() or src.is_symlink()):
            continue  # never moved: the rollback died first
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            dst.unlink()
        shutil.move(str(src), dst)
        n += 1
    touched = sorted(set(fr.get("missing", [])) | set(fr.get("changed", [])) | set(fr.get("remove", [])))
    if touched:
        # the index goes back to HEAD for these paths, as it was before the rollback staged them
        for i in range(0, len(touched), 200):
            gitstate.run(root, "reset", "-q", "HEAD", "--", *touched[i:i + 200])
    return n
