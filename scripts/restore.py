"""The restore primitive: put a volume back exactly as a snapshot set holds it.

Order matters and is the point: refuse a bad archive before touching anything, take a
safety snapshot of what is about to be destroyed, only then empty and refill the volume,
and finally prove the result equals the snapshot's listing.
"""

from __future__ import annotations

from pathlib import Path

from . import archive, snapshots, volumes
from .backup import export_volume
from .errors import UndoitError
from .plan import Volume
from .progress import say, transfer


def check_restorable(s: snapshots.SnapshotSet, key: str) -> list:
    """Checksums, then every member header: raises before any live change; returns the listing."""
    snapshots.verify_archive(s, key)
    vol = s.volumes[key]
    entries = archive.read_listing(s.archive_path(key))
    if archive.listing_digest(entries) != vol["listing_digest"]:
        raise UndoitError(f"{s.archive_path(key)}: contents differ from the manifest's listing; refusing")
    return entries


def safety_snapshot(client, snapshots_dir: Path, project: str, targets: dict[str, str],
                    reason: str) -> snapshots.SnapshotSet:
    """Export the volumes about to be replaced (key -> real name) into snapshots/safety/<id>."""
    set_id, path = snapshots.new_set(snapshots_dir, kind=snapshots.SAFETY)
    manifest = snapshots.manifest_skeleton(set_id, snapshots.SAFETY, project)
    manifest["reason"] = reason
    for key, name in targets.items():
        ref = volumes.VolumeRef(key, name)
        # services are already stopped by the caller: no quiesce of our own
        vol = Volume(key=key, services=(), quiesce="none")
        manifest["volumes"][key] = export_volume(client, None, vol, ref, path, set_id, "safety: ")
        # references inside a safety set are relative to snapshots/safety/
    manifest["finished"] = snapshots.now_iso()
    snapshots.write_manifest(path, manifest)
    return snapshots.load_set(path)


def restore_volume(client, s: snapshots.SnapshotSet, key: str, target: str | None = None,
                   safety_dir: Path | None = None, project: str = "") -> dict:
    """Restore volume `key` of set s into `target` (default: the volume it came from).

    With safety_dir, a safety snapshot of the target's current contents is taken first.
    Returns what was done; raises UndoitError (with nothing changed) on a bad archive or
    a volume that a running container still uses.
    """
    name = target or s.volumes[key]["name"]
    expected = check_restorable(s, key)
    running = [c.name for c in volumes.users(client, name) if c.status in ("running", "paused", "restarting")]
    if running:
        raise UndoitError(f"volume {name} is in use by running container(s) {', '.join(running)}: stop them first")
    safety = None
    if safety_dir is not None:
        safety = safety_snapshot(client, safety_dir, project, {key: name}, f"before restoring {key} from {s.id}")
    volumes.empty(client, name)
    root = next((e for e in expected if e.path == b"."), None)
    total = sum(e.size for e in expected)
    with transfer(f"restore {key} -> {name}", total) as advance:
        volumes.put(client, name, s.archive_path(key), root, progress=advance)
    after = volumes.listing(client, name)
    differences = archive.diff(expected, after)
    if differences:
        raise UndoitError(f"restored {name} differs from set {s.id}: " + "; ".join(differences))
    say(f"{key}: restored into {name} from set {s.id}, {len(after)} entries match the manifest")
    return {"volume": key, "name": name, "set": s.id, "safety_set": safety.id if safety else None,
            "entries": len(after)}
