"""The restore primitive: put a volume back exactly as a snapshot set holds it.

Order matters and is the point: refuse a bad archive before touching anything, take a
safety snapshot of what is about to be destroyed, only then empty and refill the volume,
and finally prove the result equals the snapshot's listing.
"""

from __future__ import annotations

import os
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from docker.errors import NotFound

from ..stack import clones, volumes
from ..store import archive, cow, journal, listings, snapshots
from ..backup.exports import export_volume
from ..errors import UndoitError
from ..store.listings import Listing
from ..plan.plan import Volume
from ..output.progress import human, say, transfer


# archives proven in this process: (path, size, mtime, sha256, devices). A rollback proves
# each archive it restores once (verified:*), then extracts it, re-hashing as it streams:
# two reads, where verified:*, the runner's own check and the in-place path made five
_PROVEN: set[tuple] = set()


def check_listing(s: snapshots.SnapshotSet, key: str) -> Listing:
    """The volume's listing file against its checksum and the manifest, without reading
    the archive (restores read it to the end before they touch anything: check_restorable,
    or a build beside the live volume)."""
    snapshots.verify_archive(s, key, archive_too=False)
    return _matching_manifest(s, key, s.listing(key))


def check_restorable(s: snapshots.SnapshotSet, key: str, devices: bool = False) -> Listing:
    """Checksums, then every member header, in one read of the archive (none when this
    process proved the same file already): raises before any live change; returns the
    listing (from the set's listing file, which must match the manifest)."""
    listed = check_listing(s, key)
    path, vol = s.archive_path(key), s.volumes[key]
    st = path.stat()
    proof = (str(path), st.st_size, st.st_mtime_ns, vol["sha256"], devices)
    if proof not in _PROVEN:
        # no file's data is hashed here: the archive's checksum, checked in the same pass,
        # says its bytes are the ones the backup wrote and took the listing's digests from;
        # its members must still be the listing's, entry for entry. The extraction hashes
        # every file again and compares with the listing as it streams
        if archive.prove(path, vol["sha256"], devices=devices, digests=False).fingerprint != listed.fingerprint:
            raise UndoitError(f"{path}: contents differ from the manifest's listing; refusing")
        _PROVEN.add(proof)
    return listed


def _matching_manifest(s: snapshots.SnapshotSet, key: str, entries: Listing) -> Listing:
    """entries, the listing read from an archive, if it is the one the manifest recorded."""
    if snapshots.listing_digest(s.volumes[key], entries) != s.volumes[key]["listing_digest"]:
        raise UndoitError(f"{s.archive_path(key)}: contents differ from the manifest's listing; refusing")
    return entries


def safety_snapshot(client, snapshots_dir: Path, project: str, targets: dict[str, str],
                    reason: str, park=()) -> snapshots.SnapshotSet:
    """Keep the volumes about to be replaced (key -> real name) in snapshots/safety/<id>:
    exported into archives, or, for the keys in park where the host allows it
    (volumes.park_folder), as the contents themselves, which the restore's swap then
    moves into the set's folder beside the engine's volumes (restore_volume(park=...)):
    a rename instead of a copy. The set records their listing now, while the services
    are stopped and nothing changes them until the swap."""
    set_id, path = snapshots.new_set(snapshots_dir, kind=snapshots.SAFETY)
    folders: list[Path] = []
    try:
        with snapshots.writing_set(path):
            manifest = snapshots.manifest_skeleton(set_id, snapshots.SAFETY, project)
            manifest["reason"] = reason
            for key, name in targets.items():
                folder = volumes.park_folder(client, name, set_id) if key in park else None
                if folder is not None:
                    folders.append(folder)
                    manifest["volumes"][key] = _parked_entry(client, set_id, key, name, path, folder / key)
                    continue
                ref = volumes.VolumeRef(key, name)
                # services are already stopped by the caller: no quiesce of our own
                vol = Volume(key=key, services=(), quiesce="none")
                manifest["volumes"][key] = export_volume(client, None, vol, ref, path, set_id, "safety: ")
                # references inside a safety set are relative to snapshots/safety/
            manifest["finished"] = snapshots.now_iso()
            snapshots.write_manifest(path, manifest)
    except BaseException:
        for folder in folders:  # still empty: nothing was swapped out into them yet
            volumes.discard(folder)
        raise
    return snapshots.load_set(path)


def volume_exists(client, name: str) -> bool:
    """Whether the volume (or bind folder) is there to be copied or replaced."""
    if volumes.is_bind(name):
        return volumes.host_path(client, name).is_dir()
    try:
        client.volumes.get(name)
        return True
    except NotFound:
        return False


def discard_safety_sets(snapshots_dir: Path) -> None:
    """Remove the folders the safety sets under snapshots_dir keep parked volumes in (they
    lie outside it, under the engine's data root): before snapshots_dir itself goes
    (a rehearsal's sandbox, a test's or a benchmark's project)."""
    base = Path(snapshots_dir) / snapshots.SAFETY
    for s in (snapshots.load_set(p) for p in sorted(base.iterdir())) if base.is_dir() else ():
        for key in s.volumes if s.complete else ():
            parked = s.parked_path(key)
            if parked is not None:
                volumes.discard(parked.parent)


def _parked_entry(client, set_id: str, key: str, name: str, path: Path, parked: Path) -> dict:
    entries = archive.listing(volumes.host_path(client, name))  # a metadata walk: no file is read
    digest = snapshots.write_listing(path / f"{key}.listing", entries)
    say(f"safety: {key} ({name}): {len(entries)} entries, {human(entries.total)}, kept as they are "
        f"(moved at the swap to {parked}, not copied)")
    return {"name": name, "set": set_id, "parked": str(parked), "listing": f"{set_id}/{key}.listing",
            "listing_sha256": digest, "listing_digest": digest, "content_digests": False,
            "entries": len(entries), "bytes": entries.total}


@dataclass
class Staged:
    """A set's contents of one volume, built beside the live ones and checked: swapping
    them in is all that is left (restore_volume(staged=...))."""
    key: str
    name: str
    set_id: str
    path: Path
    expected: Listing


def stage_volume(client, s: snapshots.SnapshotSet, key: str, name: str, devices: bool = False) -> Staged | None:
    """Build and check the set's contents of key beside volume name's live contents, while
    the services still run: a rollback then stops them for a safety copy and a rename,
    not for the extraction too. None where that cannot be done ahead (a bind folder: the
    staging would lie in the project's tree while its files are restored; a remote
    engine; no room for the copy and a safety copy of the same size): the restore then
    happens at its step, as before. Raises on a bad archive, with nothing left behind."""
    if volumes.is_bind(name):
        return None
    vol = s.volumes[key]
    snapshots.verify_archive(s, key, archive_too=False)
    image = clones.usable(client, s, key, name)
    # a clone takes no room, and its safety copy is parked (moved), not copied
    staging = volumes.stage(client, name, 0 if image else 2 * vol.get("bytes", 0))
    if staging is None:
        return None
    return Staged(key, name, s.id, staging,
                  _build(s, key, name, staging, devices, f"stage {key} beside {name}", image))


def usable(client, staged: Staged, s: snapshots.SnapshotSet, key: str, name: str) -> bool:
    """The staged contents are still there, beside the volume as it is now (a step may
    have removed and recreated it), and of this set."""
    if (staged.key, staged.name, staged.set_id) != (key, name, s.id):
        return False
    live = volumes.host_path(client, name)
    return live is not None and staged.path.parent == live.parent and staged.path.is_dir()


def restore_volume(client, s: snapshots.SnapshotSet, key: str, target: str | None = None,
                   safety_dir: Path | None = None, project: str = "", devices: bool = False,
                   intent=None, staged: Staged | None = None, park: Path | None = None) -> dict:
    """Restore volume `key` of set s into `target` (default: the volume it came from).

    With safety_dir, a safety snapshot of the target's current contents is taken first.
    Returns what was done; raises UndoitError (with nothing changed) on a bad archive or
    a volume that a running container still uses. devices: the plan allows device nodes
    in this volume (refused otherwise, on both paths, before a byte is written).
    intent: the run's journal entry; it records the replace from the first destructive
    act until the volume is whole and checked (journal.replacing).
    staged: stage_volume's answer for this volume, taken earlier in the run; its
    contents are swapped in (unless they are gone: then restored here as usual).
    park: where the swap moves the contents it replaces (a safety set made with
    safety_snapshot(park=...)); only with staged contents, which must still be usable.
    A safety set that keeps a volume parked is put back by moving those contents in.
    """
    vol = s.volumes[key]
    name = target or vol["name"]
    if vol.get("parked"):
        return _put_back_parked(client, s, key, name, safety_dir, project, intent)
    try:
        snapshots.verify_archive(s, key, archive_too=False)  # the listing file; the archive below
        _refuse_if_used(client, name)
        safety = None
        if safety_dir is not None:
            safety = safety_snapshot(client, safety_dir, project, {key: name}, f"before restoring {key} from {s.id}")
        if staged is not None and not usable(client, staged, s, key, name):
            volumes.discard(staged.path)
            staged = None
        if park is not None and staged is None:
            # its safety copy was to be these contents, moved aside by the swap: without the
            # swap, there is none, and nothing may be destroyed
            raise UndoitError(f"what was built ahead for {key} is gone, and {name}'s safety copy was to be its "
                              "contents moved aside by the swap: nothing was changed; run the rollback again")
    except BaseException:
        if staged is not None:  # never swapped in: nothing else removes it
            volumes.discard(staged.path)
        raise
    image = None if staged else clones.usable(client, s, key, name)
    staging = staged.path if staged else volumes.stage(client, name, 0 if image else vol.get("bytes", 0))
    if staging is not None:
        entries = staged.expected if staged else _build(s, key, name, staging, devices, f"restore {key} -> {name}",
                                                         image)
        _swap(client, key, name, s, devices, intent, staging, park)
    else:
        entries = _restore_in_place(client, s, key, name, devices,
                                    lambda: journal.replacing(intent, key, name, s, devices))
    journal.replaced(intent)
    say(f"{key}: restored into {name} from set {s.id}, {len(entries)} entries match the manifest")
    return {"volume": key, "name": name, "set": s.id, "safety_set": safety.id if safety else None,
            "entries": len(entries), "bytes": entries.total, "staged": staging is not None}


def _refuse_if_used(client, name: str) -> None:
    running = [c.name for c in volumes.users(client, name) if c.status in ("running", "paused", "restarting")]
    if running:
        raise UndoitError(f"volume {name} is in use by running container(s) {', '.join(running)}: stop them first")


def _swap(client, key: str, name: str, s, devices: bool, intent, staging: Path, park: Path | None) -> None:
    """Swap staging in; with park, the journal first learns the inode of the contents it
    replaces, so that the next kit command can finish moving them there if this run dies
    between the swap and that move."""
    parking = None
    if park is not None:
        parking = {"from": str(staging), "to": str(park), "inode": volumes.host_path(client, name).stat().st_ino}
    journal.replacing(intent, key, name, s, devices, parking=parking)
    volumes.swap_in(client, name, staging, park=park)


def _put_back_parked(client, s: snapshots.SnapshotSet, key: str, name: str, safety_dir: Path | None,
                     project: str, intent) -> dict:
    """A safety set's parked contents back into the volume, by the same swap that parked
    them (`doit undo`): checked first against the listing the set took of them; what they
    replace is kept in a safety set of its own (parked too where it can be)."""
    src = s.parked_path(key)
    live = volumes.host_path(client, name)
    if not src.is_dir():
        raise UndoitError(f"{src} is missing: set {s.id} cannot put {key} back")
    if live is None or not live.is_dir() or os.stat(src).st_dev != os.stat(live).st_dev:
        raise UndoitError(f"set {s.id} keeps {key} as a folder on this host's disk, and {name} is not a local volume "
                          "on the same filesystem: it cannot be put back here")
    snapshots.verify_archive(s, key, archive_too=False)
    expected = s.listing(key)
    _compare(archive.listing(src), expected, str(src), s.id)
    _refuse_if_used(client, name)
    park, safety = None, None
    if safety_dir is not None:
        safety = safety_snapshot(client, safety_dir, project, {key: name}, f"before putting {key} back from {s.id}",
                                 park={key})
        park = safety.parked_path(key)
    _swap(client, key, name, s, False, intent, src, park)
    if expected.root is not None:
        # moved between folders twice: XFS sets a folder's mtime when its ".." changes
        archive.set_root_attrs(live, expected.root)
    journal.replaced(intent)
    with suppress(OSError):
        src.parent.rmdir()  # the set's folder, now empty (unless the set parked other volumes)
    say(f"{key}: put back into {name} from safety set {s.id}, {len(expected)} entries as the set listed them")
    return {"volume": key, "name": name, "set": s.id, "safety_set": safety.id if safety else None,
            "entries": len(expected), "staged": True}


def _build(s: snapshots.SnapshotSet, key: str, name: str, staging: Path, devices: bool, label: str,
           image: Path | None = None) -> Listing:
    """Build the new contents beside the live ones in one checked pass and compare them
    with the manifest (the caller swaps them in): a bad archive never touches the live
    volume, and leaves no staging behind. image: the set's sealed copy-on-write clone of
    the volume, cloned again instead of extracting the archive (where that fails, the
    archive is extracted after all)."""
    vol = s.volumes[key]
    if image is not None:
        cloned = _clone_in(s, key, name, staging, devices, image)
        if cloned is not None:
            return cloned
    try:
        with transfer(label, vol.get("bytes", 0)) as advance:
            expected = _matching_manifest(
                s, key, archive.extract_checked(s.archive_path(key), vol["sha256"], staging, advance, devices))
        root = expected.root
        if root is not None:
            archive.set_root_attrs(staging, root)
        _compare(archive.listing(staging), expected, name, s.id)
    except BaseException:
        volumes.discard(staging)
        raise
    return expected


def _clone_in(s: snapshots.SnapshotSet, key: str, name: str, staging: Path, devices: bool,
              image: Path) -> Listing | None:
    """The set's clone of key cloned into staging (an empty folder) and compared, entry
    for entry, with the set's listing (checked against the manifest first): the archive
    is not read. None, with staging empty again, where the clone cannot be made here."""
    t0 = time.monotonic()
    try:
        expected = check_listing(s, key)
        nodes = [e for e in expected if e.type in ("c", "b")] if not devices else []
        if nodes:  # the archive's extraction refuses them too: the same verdict, not a way around it
            raise UndoitError(f"{s.archive_path(key)} holds device node(s) "
                              f"({nodes[0].path.decode(errors='replace')}), which the plan does not allow in {key}; "
                              "refusing")
        try:
            cow.clone_tree(image, staging)
            _compare(archive.listing(staging), expected, str(image), s.id)
        except UndoitError as err:  # the archive is the set: the clone only ever a shortcut to it
            volumes.discard(staging)
            staging.mkdir(mode=0o700)
            say(f"{key}: {err}; extracting the archive instead")
            return None
    except BaseException:
        volumes.discard(staging)
        raise
    say(f"{key}: cloned from set {s.id}'s copy-on-write clone in {time.monotonic() - t0:.2f} s "
        f"({len(expected)} entries, {human(expected.total)}; the archive not read)")
    return expected


def _restore_in_place(client, s: snapshots.SnapshotSet, key: str, name: str, devices: bool = False,
                      destroying=lambda: None) -> list:
    """Check the whole archive first, then empty the volume and extract into it (a remote
    engine, a volume with driver options, or no room for a second copy)."""
    expected = check_restorable(s, key, devices)  # all of it proven before the volume is emptied
    destroying()
    volumes.empty(client, name)
    with transfer(f"restore {key} -> {name}", expected.total) as advance:
        volumes.put(client, name, s.archive_path(key), expected.root, progress=advance)
    _compare(volumes.listing(client, name), expected, name, s.id)
    volumes.flush(client, name)  # on the disk before the journal lets the refill go as done
    return expected


def _compare(after: list, expected: list, name: str, set_id: str) -> None:
    differences = listings.diff(expected, after)
    if differences:
        raise UndoitError(f"restored {name} differs from set {set_id}: " + "; ".join(differences))
