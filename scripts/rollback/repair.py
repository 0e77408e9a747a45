"""Repair: what a dead run left unfinished is put right by the next kit command.

Every run records its intent in the journal (store/journal.py) before it changes
anything. A run killed outright (SIGKILL, a reboot, a closed terminal) leaves the
record; the next task that reads or writes sets finds it here and finishes the job, one
line each: services the run stopped are started again, a half-refilled volume is
refilled from its set, a rollback's or undo's record says it was interrupted, a dead
rehearsal's sandbox is removed, and partial sets and staging folders are swept.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from datetime import datetime
from pathlib import Path

from docker.errors import NotFound

from ..errors import UndoitError
from ..output.progress import say
from ..stack import clones, engine, sandboxes, stackcheck, volumes
from ..stack.compose import for_plan
from ..stack.events import stops_under_way
from ..store import archive, listings, lock, snapshots
from ..store.journal import owner_alive, unfinished
from . import restore, runlog


def repair(plan, client, compose) -> list[str]:
    """Finish what dead runs left: services they stopped are started again, half-refilled
    volumes refilled, a dead rehearsal's sandbox and partial sets removed, staging folders
    of killed restores removed. One line for each thing done."""
    said = []
    for path, data in unfinished(plan.snapshots_dir, plan.project_name):
        if data.get("what") == "rehearsal":
            said += _dead_sandbox(client, path, data)
            continue
        said += _repair_entry(plan, client, compose, data)
        path.unlink(missing_ok=True)

    for rec in runlog.records(plan):  # the caller holds the lock: no living run is "running"
        if rec.get("outcome") == "running" and runlog.close_interrupted(plan, rec["run"], None):
            said.append(f"repaired: recorded {rec.get('kind')} {rec['run']} as interrupted")
    said += _partial_sets(plan, client)
    # a backup that died while cloning or archiving left an unsealed clone (its set is gone)
    said += [f"repaired: released the copy-on-write clone(s) of set {gone}, which no complete set keeps"
             for gone in clones.tidy(client, plan.snapshots_dir)]
    return said + _beside_volumes(plan, client)


def _repair_entry(plan, client, compose, data: dict) -> list[str]:
    """What one dead backup, rollback or undo left, put right."""

    said = []
    if data.get("replacing"):
        said += finish_replace(plan, client, compose, data)
    if data.get("run"):
        said += _close_run(plan, data)
    if data.get("undoing"):
        said += _dead_undo(plan, data)
    if data.get("started"):  # a stop the dead run had asked for may still be under way
        since = datetime.fromisoformat(data["started"]).timestamp()
        stops_under_way(client, plan.project_name, since, plan.timeouts["stop"])
    services = [svc for svc in (data.get("stopped") or []) + (data.get("running_before") or [])
                if not _running(client, plan.project_name, svc)]
    if services:
        try:
            compose.up(services, options=("--no-recreate", "--no-deps"))
            said.append(f"repaired: started {', '.join(services)} again, stopped by a {data.get('what')} that "
                        f"died (pid {data.get('pid')}, {data.get('started')})")
        except UndoitError as err:
            raise UndoitError(f"a {data.get('what')} that died (pid {data.get('pid')}) left {', '.join(services)} "
                              f"stopped, and starting them failed: {err}") from None
    paused = data.get("paused") or []
    if paused:
        try:
            compose("unpause", *paused)
            said.append(f"repaired: unpaused {', '.join(paused)}, paused by a {data.get('what')} that died")
        except UndoitError:
            pass  # no longer paused (restarted since): nothing to put right
    return said


def _dead_sandbox(client, path: Path, data: dict) -> list[str]:
    """The sandbox of a rehearsal whose process is gone, removed (one of a living one is
    its own: rehearsals run side by side)."""

    if owner_alive(data):
        return []
    gone = sandboxes.remove(client, data["sandbox"])
    path.unlink(missing_ok=True)
    return [f"repaired: removed {part}, left by a rehearsal that died (pid {data.get('pid')}, {data.get('started')})"
            for part in gone]


def remove_dead_sandboxes(plan) -> list[str]:
    """What rehearsals that died left of their sandboxes, removed: for a rehearsal, which
    holds the lock only shared, so it leaves a living one's alone. One line each."""

    said = []
    for path, data in unfinished(plan.snapshots_dir, plan.project_name):
        if data.get("what") == "rehearsal":
            said += _dead_sandbox(engine.client(), path, data)
    for line in said:
        say(line)
    return said


def _beside_volumes(plan, client) -> list[str]:
    """Helper containers left on the plan's volumes, and staging folders beside them."""

    said = []
    for key, ref in _refs(plan, client).items():
        if not volumes.is_bind(ref.name):
            # a run killed while a helper container had the volume mounted left it there
            # (it would block `docker volume rm` for good); the lock says no run uses it now
            for helper in client.containers.list(all=True, filters={"label": volumes.HELPER_LABEL,
                                                                    "volume": ref.name}):
                helper.remove(force=True)
                said.append(f"repaired: removed {helper.name}, left on {key} by a run that died")
        live = volumes.host_path(client, ref.name)
        if live is None:
            continue
        for leftover in live.parent.glob(f"*{volumes.STAGING_PREFIX}*"):
            if leftover.is_dir() and leftover != live:
                volumes.discard(leftover)
                said.append(f"repaired: removed {leftover.name}, left beside {key} by a restore that died")
        for replaced in live.parent.glob(f"{volumes.DISCARD_PREFIX}*"):
            volumes.discard(replaced)  # contents a restore replaced; its deleting process may still run
    return said


def _partial_sets(plan, client) -> list[str]:
    """Set folders a dead backup, checkpoint or safety copy left without a manifest (they
    count for nothing, but take room), and what a dead fetch or prune left in scratch
    folders. The caller holds the lock: no living run is writing any of them."""


    base = Path(plan.snapshots_dir)
    said = []
    for folder in (base, base / snapshots.SAFETY):
        for p in sorted(folder.iterdir()) if folder.is_dir() else ():
            if not p.is_dir():
                continue
            if p.name.startswith((".fetch-", ".prune-")):
                what = f"{p.name}, the scratch folder of a {p.name[1:6]} that died"
            elif snapshots.SET_ID.fullmatch(p.name) and not (p / snapshots.MANIFEST).exists():
                what = f"{'safety ' if folder != base else ''}set {p.name}, left without its manifest by a run that died"
                _unpark(client, p.name)
            else:
                continue
            shutil.rmtree(p, ignore_errors=True)
            said.append(f"repaired: removed {what}")
    for tmp in (base / snapshots.JOURNAL).glob("*.tmp") if (base / snapshots.JOURNAL).is_dir() else ():
        tmp.unlink(missing_ok=True)  # a record torn before its rename: it never took effect
    return said


def _unpark(client, set_id: str) -> None:
    """The folder a safety set that never got its manifest was to park volumes in: empty,
    since a swap moves anything there only after the manifest is written."""


    root = sandboxes.parked_root(client)
    folder = root / set_id if root is not None else None
    if folder is not None and folder.is_dir():
        for empty in [*folder.glob(f"{volumes.STAGING_PREFIX}probe-*"), folder]:  # park_folder's own probe too
            with contextlib.suppress(OSError):
                empty.rmdir()  # never anything in them: left alone if there is


def finish_replace(plan, client, compose, data) -> list[str]:
    """A volume whose contents a dead run was replacing gets them, whole, from the set it
    was restoring (proven again on the way): never a mix of old and new."""

    r = data["replacing"]
    said = []
    if r.get("parking"):
        said, swapped = _finish_parking(client, r)
        if not swapped:
            return said
    s = snapshots.load_set(Path(r["set"]))
    if not s.complete or r["key"] not in s.volumes:
        raise UndoitError(f"a {data.get('what')} that died (pid {data.get('pid')}) was replacing the contents of "
                          f"{r['name']} from {r['set']}, which is no longer a complete set: restore {r['name']} "
                          "by hand (`doit snapshots` lists the sets)")
    live = volumes.host_path(client, r["name"])
    root = s.listing(r["key"]).root if s.parked_path(r["key"]) is not None else None
    if root is not None and live is not None and live.is_dir():
        # swapped in from a parked folder (undo), killed before its root's attributes were
        # set back: XFS sets the mtime of a folder an exchange moves to another parent
        archive.set_root_attrs(live, root)
    try:
        if not listings.diff(s.listing(r["key"]), volumes.listing(client, r["name"])):
            return said + [f"repaired: {r['name']} was already whole from set {s.id} when its {data.get('what')} died"]
    except Exception:  # the volume is gone or unreadable: the restore below says why, if it fails
        pass
    users = [c for c in volumes.users(client, r["name"]) if c.status in ("running", "paused", "restarting")]
    services = sorted({c.labels.get("com.docker.compose.service") for c in users} - {None})
    if services:
        compose.stop(services)
    if not volumes.is_bind(r["name"]):
        try:
            client.volumes.get(r["name"])
        except NotFound:
            client.volumes.create(r["name"], labels={"com.docker.compose.project": plan.project_name,
                                                      "com.docker.compose.volume": r["key"]})
    restore.restore_volume(client, s, r["key"], target=r["name"], devices=bool(r.get("devices")))
    if services:
        compose("up", "--detach", "--no-recreate", "--no-deps", *services)
    return said + [f"repaired: refilled {r['name']} from set {s.id}, whose restore a {data.get('what')} that died "
                   f"(pid {data.get('pid')}) left half done"]


def _finish_parking(client, r: dict) -> tuple[list[str], bool]:
    """A swap that was to move the contents it replaced into a safety set, by a run that
    died around it: the contents (known by their folder's inode) end up in the set, and
    whether the swap happened at all is told. Never swapped: the volume holds its old
    contents, whole, and is left so (the safety set's folder stays absent: nothing was
    replaced)."""

    p = r["parking"]
    src, dst, inode = Path(p["from"]), Path(p["to"]), p["inode"]
    live = volumes.host_path(client, r["name"])
    if live is not None and live.is_dir() and live.stat().st_ino == inode:
        return [f"repaired: {r['name']} keeps its contents: the run died before swapping them out"], False
    said = []
    if not dst.exists() and src.is_dir() and src.stat().st_ino == inode:
        try:
            os.rename(src, dst)  # swapped, then killed before this move
        except OSError as err:  # before anything sweeps the folder as a dead restore's leftover
            raise UndoitError(f"{src} holds what a run that died swapped out of {r['name']}, and moving it to {dst} "
                              f"failed ({err.strerror}): move it there by hand; nothing was deleted") from None
        said.append(f"repaired: moved the contents swapped out of {r['name']} into {dst.parent.name}, as its "
                    "safety copy")
    if live is not None and not live.exists():
        live.mkdir()  # two renames (no exchange on this filesystem), killed between them: refilled below
    return said, True


def _close_run(plan, data) -> list[str]:
    """The run record of a rollback or undo that died says so (`doit undo` then undoes
    the rollback that died, from the safety copies it had made)."""

    if runlog.close_interrupted(plan, data["run"], data.get("pid")):
        nothing = not runlog.changed_anything(runlog.record(plan, data["run"]) or {})
        return [f"repaired: recorded {data.get('what')} {data['run']} as interrupted (pid {data.get('pid')})"
                + (" before it changed anything" if nothing else "")]
    return []


def _dead_undo(plan, data) -> list[str]:
    """An undo that died says so: its progress is in the rollback's record, from which
    `doit undo` finishes it."""

    rec = runlog.record(plan, data["undoing"])
    if rec is None:
        return []
    who = f"(pid {data.get('pid')}, {data.get('started')})"
    if rec.get("undone"):
        return [f"repaired: the undo of {rec['run']} that died {who} had finished its work"]
    done = rec.get("undo") or {}
    return [f"repaired: an undo of {rec['run']} died midway {who} with {len(done.get('volumes') or [])} volume(s) "
            f"and {len(done.get('files') or [])} file restore(s) put back: `doit undo` finishes it"]


def _running(client, project: str, service: str) -> bool:
    cs = client.containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                   f"com.docker.compose.service={service}"]})
    return bool(cs)


def _refs(plan, client) -> dict:

    try:
        return stackcheck.refs(plan, client)
    except UndoitError:
        return {}


def repair_if_free(plan) -> list[str]:
    """repair_for, for a task that only reads sets: under the lock when no one holds it;
    else one line, and the repair is left to the next command."""

    if not Path(plan.snapshots_dir).is_dir():
        return []  # the kit never wrote anything here: nothing a dead run could have left
    with lock.held_if_free(lock.path_of(plan.snapshots_dir), "repair") as busy:
        if busy:
            say(f"not repaired now: {busy.split('; wait')[0]}")
            return []
        try:
            return repair_for(plan)
        except UndoitError as err:  # this task's own work does not depend on it
            say(f"not repaired: {err}")
            return []


class _Compose:
    """The plan's compose, made when a repair first needs it: most find nothing to do, and
    a project that is not there yet (a fetch before the clone) has no compose file."""

    def __init__(self, plan):
        self.plan, self.made = plan, None

    def _get(self):

        if self.made is None:
            self.made = for_plan(self.plan)
        return self.made

    def __call__(self, *args, **kw):
        return self._get()(*args, **kw)

    def __getattr__(self, name):
        return getattr(self._get(), name)


def repair_for(plan) -> list[str]:
    """repair(), for a task that holds the lock: what it did, one line each."""

    said = repair(plan, engine.client(), _Compose(plan))
    for line in said:
        say(line)
    return said
