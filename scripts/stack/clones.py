"""A set's copy-on-write clone of a volume, kept on the engine's own disk where the
volume's filesystem can clone (btrfs, XFS with reflinks): what lets a backup hold its
services still only for a clone, and a rollback from that set skip the extraction.

Layout, beside the engine's volumes (`<data root>/undoit-cow/`, which `docker volume rm`
and `down -v` leave alone): one folder per folder of sets (a hash of its path:
snapshots/ and snapshots/safety/ apart, and a sandbox's, a test's or another checkout's
sets never meet), then per set, per
volume key: `<set>/<key>/` the clone, `<set>/<key>.json` its seal, written once the
set's archive was written from that clone and compared with it. The seal holds the
archive's checksum and listing digest: a clone is used only for the very archive it
made, never for another set that happens to share an id, and never unsealed (a backup
that died while cloning or archiving). Everything else found there is released.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..store import cow
from ..store.durable import sync_dir, sync_filesystem
from . import volumes

FOLDER = "undoit-cow"
SEAL = ".json"
KEEP = 3  # sets whose clones stay, newest first (beside the newest baseline's)


def base_of(client, volume: str) -> Path | None:
    """The clone store for this volume's engine, where the volume's folder can be cloned
    into it; None anywhere else (an engine elsewhere, a bind folder, a volume with driver
    options, a filesystem without reflinks, not root), and nothing changes there."""
    if os.geteuid() != 0 or shutil.which("cp") is None or volumes.is_bind(volume):
        return None
    live = volumes.host_path(client, volume)
    if live is None or live.name != "_data" or live.parents[1].name != "volumes" or not live.is_dir():
        return None
    if cow.filesystem(live) not in cow.REFLINK_TYPES.values():
        return None  # no folder made in the engine's data root where no clone can be
    base = live.parents[2] / FOLDER
    try:
        base.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        return None
    return base if cow.reflinks(live.parent, base) else None


def _owner(base: Path, snapshots_dir: Path) -> Path:
    return base / hashlib.sha256(os.fsencode(Path(snapshots_dir).resolve())).hexdigest()[:16]


def _root(client) -> Path | None:
    """The clone store of the engine the client talks to, on this host; None elsewhere."""
    from .engine import on_this_host

    if not on_this_host():
        return None
    return Path(client.info()["DockerRootDir"]) / FOLDER


def path_of(base: Path, snapshots_dir: Path, set_id: str, key: str) -> Path:
    return _owner(base, snapshots_dir) / set_id / key


def take(base: Path, snapshots_dir: Path, set_id: str, key: str, live: Path) -> Path:
    """Clone live (held still by the caller) into the set's place; raises with nothing
    left behind."""
    owner = _owner(base, snapshots_dir)
    owner.mkdir(mode=0o700, exist_ok=True)
    note = owner / "owner"
    if not note.exists():  # for whoever looks in the engine's folder: whose clones these are
        note.write_text(f"{Path(snapshots_dir).resolve()}\n")
    image = owner / set_id / key
    image.parent.mkdir(mode=0o700, exist_ok=True)
    try:
        cow.clone_tree(live, image)
    except BaseException:
        shutil.rmtree(image, ignore_errors=True)
        raise
    return image


def seal(image: Path, entry: dict) -> None:
    """The clone made the archive the manifest's entry describes: on the disk first, then
    its seal, the only thing that lets a rollback use it."""
    sync_filesystem(image)
    body = json.dumps({"sha256": entry["sha256"], "listing_digest": entry["listing_digest"]})
    tmp = image.with_name(f".{image.name}{SEAL}")
    tmp.write_text(body)
    os.chmod(tmp, 0o600)
    os.replace(tmp, image.with_name(image.name + SEAL))
    sync_dir(image.parent)


def _sealed_for(image: Path, entry: dict) -> bool:
    try:
        sealed = json.loads(image.with_name(image.name + SEAL).read_text())
    except (OSError, ValueError):
        return False
    return image.is_dir() and (sealed.get("sha256"), sealed.get("listing_digest")) == (
        entry.get("sha256"), entry.get("listing_digest"))


def usable(client, s, key: str, name: str) -> Path | None:
    """Set s's sealed clone of key (or that of the set whose archive s references, the
    volume unchanged since), on the same filesystem as volume name, to clone a restore
    from instead of extracting the archive; None when there is none."""
    entry = s.volumes.get(key) or {}
    if not entry.get("sha256") or entry.get("parked"):
        return None
    base = base_of(client, name)
    if base is None:
        return None
    for set_id in _made_by(s.id, entry):
        image = path_of(base, s.path.parent, set_id, key)
        if _sealed_for(image, entry):
            return image
    return None


def _made_by(set_id: str, entry: dict) -> list[str]:
    """The sets whose clone may hold this entry's archive: its own, and the one it reuses."""
    return [set_id] + ([entry["reused_from"]] if entry.get("reused_from") else [])


@dataclass
class Held:
    """One set's clones on the engine's disk: the volumes, their bytes, and what they pin
    (what removing them would free now)."""
    set_id: str
    keys: list[str]
    bytes: int
    pinned: int


def inventory(client, snapshots_dir: Path, sets) -> dict[str, Held]:
    """The sealed clones of the given sets (id -> Held), measured from the extent map."""
    root = _root(client)
    owner = _owner(root, snapshots_dir) if root is not None else None
    found: dict[str, Held] = {}
    if owner is None or not owner.is_dir():
        return found
    for s in sets:
        for key, entry in sorted(s.volumes.items()):
            image = owner / s.id / key
            if _sealed_for(image, entry):
                total, alone = cow.pinned_bytes(image)
                held = found.setdefault(s.id, Held(s.id, [], 0, 0))
                held.keys.append(key)
                held.bytes += total
                held.pinned += alone
    return found


def release(client, sets_dir: Path, keep) -> list[str]:
    """Remove every clone of this folder of sets but the sealed ones the sets in keep
    (complete sets) restore from: unsealed ones (a backup that died), those of sets
    pruned or gone, and the sets' beyond keep. Returns the set ids whose clones went."""
    root = _root(client)
    owner = _owner(root, sets_dir) if root is not None else None
    if owner is None or not owner.is_dir():
        return []
    wanted = {(set_id, key): entry for s in keep for key, entry in s.volumes.items()
              for set_id in _made_by(s.id, entry)}
    gone = []
    for folder in sorted(p for p in owner.iterdir() if p.is_dir()):
        for item in sorted(folder.iterdir()):
            key = item.name[:-len(SEAL)] if item.name.endswith(SEAL) else item.name
            entry = wanted.get((folder.name, key.lstrip(".")))
            if entry is not None and not key.startswith(".") and _sealed_for(folder / key, entry):
                continue
            _remove(item)
            if folder.name not in gone:
                gone.append(folder.name)
        try:
            folder.rmdir()  # only once empty
        except OSError:
            pass
    return gone


def tidy(client, snapshots_dir: Path) -> list[str]:
    """Keep the clones a rollback is likeliest to use, release the rest (each pins the
    disk its volume has rewritten since): those of the newest KEEP complete sets and
    of the newest baseline (rollback:full's), and of every safety set (`doit undo`'s,
    gone with the set at prune). Returns the set ids whose clones went."""
    from ..store import snapshots

    root = _root(client)
    if root is None or not (_owner(root, snapshots_dir).is_dir()
                            or _owner(root, Path(snapshots_dir) / snapshots.SAFETY).is_dir()):
        return []  # nothing cloned here: no set is read
    done = [s for s in snapshots.all_sets(snapshots_dir) if s.complete]
    baselines = [s for s in done if s.manifest.get("baseline")]
    keep = done[-KEEP:] + baselines[-1:]
    safety = [s for s in snapshots.safety_sets(snapshots_dir) if s.complete]
    return release(client, snapshots_dir, keep) + release(client, Path(snapshots_dir) / snapshots.SAFETY, safety)


def release_all(client, snapshots_dir: Path) -> None:
    """Every clone of this snapshots folder, before the folder itself goes (a sandbox's)."""
    root = _root(client)
    if root is not None:
        shutil.rmtree(_owner(root, snapshots_dir), ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
