"""What a rollback will cost, said before it begins (its dry run, a real run's first
lines): the bytes each volume gets back and from which set, the files it overwrites,
deletes and moves aside, the services it stops and for how long its last drill had
them down, the room on disk it needs against the room there is; and the refusal,
before anything changes, of a run that would not fit.

The figures are the run's own: the file counts from the restore plans the steps then
carry out (steps/files.py), the bytes from the set's manifest, which the restore
compares with what it wrote. The run record's `restored` holds the same figures counted
as the steps did it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import UndoitError
from ..output.progress import human
from ..stack import clones, engine, pins, volumes
from ..store import archive, snapshots
from . import rehearsed
from .choice import restored_volumes

FIRST = 3  # the paths shown of each kind of file change
SAID = {"overwritten": "overwritten", "deleted": "deleted", "moved": "moved aside"}


@dataclass
class Cost:
    """A run's figures, before it runs (estimate)."""

    volumes: dict[str, dict] = field(default_factory=dict)  # key -> name, bytes, set, taken, current
    files: dict[str, list[str]] = field(default_factory=dict)  # overwritten, deleted, moved -> paths
    stopped: list[str] = field(default_factory=list)  # the services a step stops ("all services": every one)
    downtime: float | None = None  # seconds, as the last drill measured them
    drilled: str | None = None  # when the last drill with step times ran
    room: list[dict] = field(default_factory=list)  # place, need, free, what: one per filesystem

    def as_dict(self) -> dict:
        """The figures a run record's `restored` holds, and the rest."""
        return {"volumes": {k: v["bytes"] for k, v in self.volumes.items()},
                "files": {k: len(v) for k, v in self.files.items()}, "downtime": self.downtime,
                "room": self.room, "detail": asdict(self)}


def free_space(path: Path) -> int:
    """Bytes free for the kit on path's filesystem (tests put a small figure here)."""
    return shutil.disk_usage(path).free


def estimate(run) -> Cost:
    """The figures of run (rollback/context.py's Run), changing nothing."""
    ctx, cost = run.ctx, Cost()
    s = ctx.snapshot
    for key in restored_volumes(run.proc) if s is not None else ():
        entry = s.volumes.get(key)
        if entry is not None:
            name = ctx.volume_names.get(key, "?")
            # a set from before sizes were recorded: its listing's sum, which the restore compares with
            size = entry["bytes"] if "bytes" in entry else s.listing(key).total
            cost.volumes[key] = {"name": name, "bytes": int(size), "set": entry.get("set") or s.id,
                                 "taken": _taken(s, entry.get("set")), "current": _current(ctx.client, name)}
    cost.files = {"overwritten": [], "deleted": [], "moved": []}
    for step in run.proc.steps:
        if step.do == "restore-files":
            try:
                p = step.type.planned(run, step)
            except UndoitError:  # its description says why: "cannot plan"
                continue
            removed = set(p["remove"])
            cost.files["overwritten"] += [f for f in p["changed"] if f not in removed]
            cost.files["deleted"] += [f for f in p["changed"] if f in removed]
            cost.files["moved"] += list(p["move"])
        if step.do in rehearsed.STOPS:
            named = step.args.get("services") or ["all services"]
            cost.stopped += [svc for svc in named if svc not in cost.stopped]
    drill = None if ctx.sandbox else rehearsed.last_drill(ctx.plan, run.proc.id)
    if drill is not None and drill.steps:  # a failed drill's steps stop short: no figure
        cost.downtime, cost.drilled = drill.downtime if drill.ok else None, drill.started
    cost.room = _room(run, cost)
    return cost


def _taken(s: snapshots.SnapshotSet, holder: str | None) -> str:
    """When the set that holds a volume's archive was taken (an unchanged volume's archive
    is an older set's)."""
    if holder and holder != s.id:
        try:
            return snapshots.get_set(s.path.parent, holder).created
        except UndoitError:
            pass
    return s.created


def _current(client, name: str) -> int | None:
    """The bytes a volume holds now (a metadata walk); None where the kit cannot read it."""
    path = volumes.host_path(client, name) if engine.on_this_host() else None
    if path is None or not path.is_dir():
        return None
    return archive.listing(path).total


def _room(run, cost: Cost) -> list[dict]:
    """What the run writes, per filesystem: on this host each volume is built beside the
    live one and swapped in (what a plain volume replaces moved aside whole, not copied);
    elsewhere, and for a bind folder, the replaced contents are first copied into a
    safety set under snapshots/. The files a restore overwrites or deletes are saved in
    the run's folder (snapshots/runs/)."""
    ctx = run.ctx
    wants: list[tuple[Path, int, str]] = []
    here = engine.on_this_host()
    for key, v in cost.volumes.items():
        path = volumes.host_path(ctx.client, v["name"]) if here else None
        if path is not None and path.exists():
            # a clone of the set's clone shares its blocks: it needs no room until written to
            cloned = ctx.snapshot is not None and clones.usable(ctx.client, ctx.snapshot, key, v["name"]) is not None
            wants.append((path.parent.parent if path.name == "_data" else path, 0 if cloned else v["bytes"],
                          "volumes cloned from the set's copy-on-write clones" if cloned
                          else "volumes built beside the live ones"))
        # a plain volume's replaced contents are moved aside (volumes.park_folder); a bind
        # folder's, or any elsewhere, are copied
        if path is None or not path.exists() or path.name != "_data" or path.parents[1].name != "volumes":
            wants.append((ctx.plan.snapshots_dir, v["current"] if v["current"] is not None else v["bytes"],
                          "safety copies of the volumes replaced"))
    root = Path(ctx.plan.root)
    saved = sum(os.lstat(root / f).st_size for f in cost.files["overwritten"] + cost.files["deleted"]
                if os.path.lexists(root / f))
    if saved:
        wants.append((ctx.plan.snapshots_dir, saved, "safety copies of the files replaced"))
    by_fs: dict[int, dict] = {}
    for place, need, what in wants:
        place = _existing(place)
        one = by_fs.setdefault(os.stat(place).st_dev, {"place": str(place), "need": 0, "what": []})
        one["need"] += need
        one["what"] += [what] if what not in one["what"] else []
    return [dict(one, free=free_space(Path(one["place"])), what=" and ".join(one["what"])) for one in by_fs.values()]


def _existing(path: Path) -> Path:
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def refuse_if_short(cost: Cost) -> None:
    """One line, before anything changes, when the run would not fit on a filesystem."""
    for r in cost.room:
        if r["need"] > r["free"]:
            raise UndoitError(f"not enough disk space for this rollback: {human(r['need'])} needed in {r['place']} "
                              f"({r['what']}), {human(r['free'])} free; make room, then run it again: nothing was "
                              "changed")


def lines(run, cost: Cost) -> list[str]:
    """The preview as describe() prints it."""
    ctx, out = run.ctx, []
    for key, v in cost.volumes.items():
        now = "" if v["current"] is None else f", replacing {human(v['current'])}"
        out.append(f"  restores volume {key} ({v['name']}): {human(v['bytes'])} from set {v['set']} "
                   f"(taken {v['taken'] or '?'}){now}")
    if any(cost.files.values()):
        out.append("  files: " + "; ".join(f"{len(paths)} {SAID[kind]}" + _first(paths)
                                           for kind, paths in cost.files.items() if paths))
    if cost.stopped:
        how_long = (f"for about {cost.downtime:.1f} s, as the drill of {cost.drilled} measured it"
                    if cost.downtime is not None else "for as long as the steps take (" + (
                        f"its last drill, of {cost.drilled}, failed)" if cost.drilled else "not rehearsed)"))
        out.append(f"  stops {', '.join(cost.stopped)} {how_long}")
    for r in cost.room:
        out.append(f"  disk: {human(r['need'])} needed in {r['place']} ({r['what']}), {human(r['free'])} free")
    images = pins.recorded(ctx.snapshot.path) if ctx.snapshot and not ctx.sandbox else {}
    if images and any(step.type.runs_images for step in run.proc.steps):
        shown = ", ".join(f"{svc}={pins.pin_name(ctx.plan.project_name, i['id'])}" for svc, i in sorted(images.items()))
        out.append(f"  images: as set {ctx.snapshot.id} ran them, for every `up`: {shown}")
    return out


def rehearsal(run) -> list[str]:
    """When the procedure was last rehearsed, on which set and plan, and whether it
    passed: a run's second line (none in a rehearsal's own sandbox)."""
    return [] if run.ctx.sandbox else ["  rehearsal: " + rehearsed.said(run.ctx.plan, run.proc.id)]


def _first(paths: list[str]) -> str:
    more = f", +{len(paths) - FIRST} more" if len(paths) > FIRST else ""
    return f" ({', '.join(paths[:FIRST])}{more})"
