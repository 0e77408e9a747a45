"""Snapshot sets on disk: immutable folders of volume archives, state files and a manifest.

A set is `snapshots/<id>/` holding one `<volume>.tar.zst` and `<volume>.listing` per
exported volume, the stack's state, and `manifest.json`, written last (temp file,
fsync, rename): no manifest, no set. Unchanged volumes are referenced from the set
that holds them instead of being copied. Files are 0600, folders 0700.

A safety set (`snapshots/safety/<id>/`) may instead keep a volume "parked": the replaced
contents themselves, moved by a rollback's swap (restore.py) into a private folder under
the engine's data root (volumes.park_folder), not copied; the set holds their listing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from .. import __version__
from . import archive, listings
from .entries import Entry, listing_bytes
from ..errors import UndoitError
from .listings import Listing

FORMAT = "undoit-snapshot/1"
MANIFEST = "manifest.json"
SAFETY = "safety"  # safety snapshots live in snapshots/safety/<id>/
RUNS = "runs"  # rollback runs: safety copies of files, the run record
JOURNAL = "journal"  # what unfinished runs meant to do (journal.py)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# the name new_set gives a set: its UTC time to the microsecond, then 4 random hex digits
SET_ID = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{4}")


def new_set(root: Path, kind: str = "backup") -> tuple[str, Path]:
    """Create a fresh, empty set folder (never an existing one) and return (id, path)."""
    base = Path(root) / (SAFETY if kind == SAFETY else "")
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root, 0o700)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    set_id = f"{stamp}-{secrets.token_hex(2)}"
    path = base / set_id
    path.mkdir(mode=0o700)  # raises if it exists: nothing overwrites a set
    return set_id, path


@contextmanager
def writing_set(path: Path):
    """The block writes a new set at path. If it fails in any way the partial set is
    removed (it has no manifest and counts for nothing, but it takes room); a full disk
    (ENOSPC, EDQUOT) is one line naming the place and the room left."""
    import errno
    import shutil

    try:
        yield
    except BaseException as err:
        shutil.rmtree(path, ignore_errors=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UndoitError(f"no space left in {path.parent} while writing set {path.name}: the partial set was "
                              f"removed ({_human(shutil.disk_usage(path.parent).free)} free now); make room or "
                              "move [backup] snapshots") from None
        raise


def check_room(path: Path, need: int, what: str) -> None:
    """Refuse before writing when the room known to be needed is not there."""
    import shutil

    free = shutil.disk_usage(path).free
    if need and free < need:
        raise UndoitError(f"not enough room in {path} for {what}: about {_human(need)} needed, {_human(free)} free")


def _human(n: int) -> str:
    from ..output.progress import human

    return human(n)


def private_open(path: Path, mode: str = "xb"):
    """Open a new file readable by its owner only (snapshots may hold secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, mode.replace("x", "w"))


def write_json(path: Path, data) -> None:
    with private_open(path) as f:
        f.write(json.dumps(data, indent=2, sort_keys=True, default=str).encode())


def write_listing(path: Path, entries: Iterable[Entry]) -> str:
    """Write the listing file; return its sha256, which is also the listing's digest."""
    if isinstance(entries, Listing):
        with private_open(path) as f:
            entries.copy_to(f)
        return entries.digest
    data = listing_bytes(entries)
    with private_open(path) as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def read_listing_file(path: Path) -> Listing:
    return Listing.of_file(path)


def write_manifest(set_path: Path, manifest: dict) -> None:
    """The last write of a set: its archives and listings flushed to disk, then the
    manifest to a temp file, fsync, rename, fsync the folder."""
    from .durable import sync_filesystem

    sync_filesystem(set_path)
    tmp = set_path / (MANIFEST + ".tmp")
    with private_open(tmp) as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, set_path / MANIFEST)
    fd = os.open(set_path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class SnapshotSet:
    id: str
    path: Path
    manifest: dict | None  # None: incomplete (no manifest) or unreadable

    @property
    def complete(self) -> bool:
        return self.manifest is not None

    @property
    def created(self) -> str:
        return (self.manifest or {}).get("finished", "")

    @property
    def tag(self) -> str | None:
        return ((self.manifest or {}).get("git") or {}).get("tag")

    @property
    def volumes(self) -> dict:
        return (self.manifest or {}).get("volumes", {})

    def archive_path(self, key: str) -> Path:
        return self.path.parent / self.volumes[key]["archive"]

    def listing_path(self, key: str) -> Path:
        return self.path.parent / self.volumes[key]["listing"]

    def listing(self, key: str) -> Listing:
        return read_listing_file(self.listing_path(key))

    def parked_path(self, key: str) -> Path | None:
        """Where a safety set keeps a volume's replaced contents as they were (None: as an
        archive). The folder is absent while the rollback that made the set has not
        swapped that volume yet, and for good if it died before."""
        where = self.volumes[key].get("parked")
        return Path(where) if where else None


def load_set(path: Path) -> SnapshotSet:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        if manifest.get("format") != FORMAT:
            manifest = None
    except (OSError, ValueError):
        manifest = None
    return SnapshotSet(path.name, path, manifest)


def all_sets(root: Path, project: str | None = None) -> list[SnapshotSet]:
    """Every set folder under root, oldest first (incomplete ones included)."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.iterdir()):
        if p.is_dir() and p.name not in (SAFETY, RUNS, JOURNAL) and not p.name.startswith("."):
            s = load_set(p)
            if project is None or s.manifest is None or s.manifest.get("project") == project:
                out.append(s)
    return out


def safety_sets(root: Path) -> list[SnapshotSet]:
    """The safety sets of rollbacks and undos (snapshots/safety/<id>), oldest first."""
    base = Path(root) / SAFETY
    if not base.is_dir():
        return []
    return [load_set(p) for p in sorted(base.iterdir()) if p.is_dir() and not p.name.startswith(".")]


def get_set(root: Path, set_id: str) -> SnapshotSet:
    for base in (Path(root), Path(root) / SAFETY):
        if (base / set_id).is_dir():
            return load_set(base / set_id)
    raise UndoitError(f"no snapshot set {set_id!r} in {root}")


def same_engine(s: SnapshotSet, engine_id: str | None) -> bool:
    """Whether set s was taken on engine engine_id (None: any engine; a set from before
    engines were recorded counts as the engine's own)."""
    taken = ((s.manifest or {}).get("engine") or {}).get("id")
    return engine_id is None or taken is None or taken == engine_id


def latest_complete(root: Path, project: str, kind: str | None = None) -> SnapshotSet | None:
    sets = [s for s in all_sets(root, project) if s.complete and (kind is None or s.manifest.get("kind") == kind)]
    return sets[-1] if sets else None


# --- verification -------------------------------------------------------------


# checksums this process computed, by file identity: a rollback checks its set in
# verified:* and again when it starts, and a 1 GiB archive it does not restore cost a
# second read each time (a files rollback's largest part after git)
_SUMS: dict[tuple, str] = {}


def _summed(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _SUMS:
        _SUMS[key] = archive.sha256_file(path)
    return _SUMS[key]


def check_set(s: SnapshotSet, deep: bool = True, archives: bool = True) -> list[str]:
    """Problems with a set (empty list = valid): checksums always, full read when deep.
    archives=False: the archives are only looked for, not hashed (a rollback proves those
    it restores itself, in one read, and has no use for the others)."""
    if not s.complete:
        return [f"{s.id}: no manifest (incomplete or interrupted set)"]
    problems = [f"{s.id}: {p}" for p in _fields(s)]
    if problems:
        return problems
    for key, vol in sorted(s.volumes.items()):
        parked = s.parked_path(key)
        if parked is not None and not parked.is_dir():
            problems.append(f"{parked}: missing (never swapped out by its rollback, or put back by undo)")
            continue
        for what, digest in _checksummed(vol):
            if what == "archive" and not archives:
                if not (s.path.parent / vol[what]).exists():
                    problems.append(f"{s.path.parent / vol[what]}: missing")
                continue
            p = s.path.parent / vol[what]
            try:
                actual = _summed(p)
            except OSError as err:
                problems.append(f"{p}: {err.strerror}")
                continue
            if actual != vol[digest]:
                problems.append(f"{p}: checksum mismatch (manifest {vol[digest][:12]}, file {actual[:12]})")
        if parked:  # the contents themselves: deep, their metadata against the listing
            if deep and not problems and listings.diff(s.listing(key), archive.listing(parked)):
                problems.append(f"{parked}: contents differ from the set's listing of them")
            continue
        if deep and not problems:
            try:
                entries = archive.read_listing(s.archive_path(key), devices=True)  # integrity; restores apply the policy
            except UndoitError as err:
                problems.append(f"{s.archive_path(key)}: {err}")
                continue
            except Exception as err:  # zstd or tar decoding errors: the file is damaged
                problems.append(f"{s.archive_path(key)}: unreadable ({type(err).__name__}: {err})")
                continue
            if listing_digest(vol, entries) != vol["listing_digest"]:
                problems.append(f"{s.archive_path(key)}: contents differ from the manifest's listing")
    for image in s.manifest.get("images") or []:  # saved with save_images=1
        p = s.path / image["file"]
        if not p.exists() or archive.sha256_file(p) != image["sha256"]:
            problems.append(f"{p}: saved image missing or changed")
    kept = s.manifest.get("ignored")  # [backup] include_ignored
    if kept:
        p = s.path / kept["file"]
        if not p.exists() or archive.sha256_file(p) != kept["sha256"]:
            problems.append(f"{p}: the git-ignored files' archive is missing or changed")
    for name, digest in sorted((s.manifest.get("state") or {}).items()):
        p = s.path / name
        if not p.exists() or archive.sha256_file(p) != digest:
            problems.append(f"{p}: state file missing or changed")
    return problems


def _checksummed(vol: dict) -> tuple[tuple[str, str], ...]:
    """A volume entry's files and the manifest field of each one's checksum (a parked
    volume: only its listing; its contents are a folder, not an archive)."""
    if vol.get("parked"):
        return (("listing", "listing_sha256"),)
    return (("archive", "sha256"), ("listing", "listing_sha256"))


def _fields(s: SnapshotSet) -> list[str]:
    """The manifest's fields against each other and the files: an entry names the archive
    of its own key, in the set that wrote it, with that file's size."""
    m, out = s.manifest, []
    if m.get("set") != s.id:
        out.append(f"the manifest names set {m.get('set')!r}")
    for key, vol in sorted(s.volumes.items()):
        src = vol.get("set")
        names = (("listing", f"{src}/{key}.listing"),) if vol.get("parked") else (
            ("archive", f"{src}/{key}.tar.zst"), ("listing", f"{src}/{key}.listing"))
        if vol.get("parked") and Path(vol["parked"]).parts[-2:] != (s.id, key):
            out.append(f"volume {key}: kept parked at {vol['parked']!r}, not in a folder of set {s.id}")
        for what, name in names:
            if vol.get(what) != name:
                out.append(f"volume {key}: its {what} is {vol.get(what)!r}, not {name!r}")
        try:
            size = (s.path.parent / vol["archive"]).stat().st_size
        except (OSError, KeyError, TypeError):
            size = None
        if size is not None and size != vol.get("size"):
            out.append(f"volume {key}: size {vol.get('size')} recorded, the archive has {size} bytes")
        if vol.get("content_digests") and vol.get("listing_digest") != vol.get("listing_sha256"):
            out.append(f"volume {key}: its two listing digests differ")
    return out


def listing_digest(vol: dict, entries) -> str:
    """A listing's digest the way the set recorded it (older sets: without content digests)."""
    return listings.listing_digest(entries, content=bool(vol.get("content_digests")))


# --- ledgers: what the kit did to volumes and sets, outside the immutable sets ----------
# A restore can rewind a volume (and a probe's counter) to an older point; a later
# backup must not compare it with a set taken before the restore.
RESTORED = "restored.json"
# Sets brought back from the offsite repository: history, never what a rollback restores
# unless named (a set from before a loss must not rewind the stack taken since).
FETCHED = "fetched.json"


def _ledger(root: Path, name: str) -> dict:
    try:
        return json.loads((Path(root) / name).read_text())
    except (OSError, ValueError):
        return {}


def note(root: Path, name: str, key: str, value=None) -> None:
    """One entry of a ledger file in the snapshots folder (value: default, now)."""
    _note(root, name, key, value or now_iso())


def _note(root: Path, name: str, key: str, value) -> None:
    path = Path(root) / name
    ledger = _ledger(root, name)
    ledger[key] = value
    Path(root).mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with private_open(tmp) as f:
        f.write(json.dumps(ledger, indent=2, sort_keys=True).encode())
    os.replace(tmp, path)


def note_restored(root: Path, volume: str) -> None:
    _note(root, RESTORED, volume, now_iso())


def restored_since(root: Path, volume: str, iso: str) -> bool:
    """Whether the kit restored the volume at or after iso (same second counts: when in
    doubt, the volume is exported again)."""
    when = _ledger(root, RESTORED).get(volume)
    return bool(when) and (not iso or when >= iso)


def note_fetched(root: Path, set_id: str) -> None:
    _note(root, FETCHED, set_id, now_iso())


def fetched(root: Path) -> set[str]:
    """Ids of the sets `doit fetch` brought here (not taken on this machine since)."""
    return set(_ledger(root, FETCHED))


def verify_archive(s: SnapshotSet, key: str, archive_too: bool = True) -> None:
    """Refuse (UndoitError) unless the volume's archive and listing match the manifest
    (archive_too=False: the listing only; the caller hashes the archive as it reads it)."""
    vol = s.volumes.get(key)
    if vol is None:
        raise UndoitError(f"set {s.id} holds no volume {key!r}")
    for what, digest in _checksummed(vol):
        p = s.path.parent / vol[what]
        if not p.exists():
            raise UndoitError(f"{p} is missing: set {s.id} cannot be restored")
        if (archive_too or what != "archive") and archive.sha256_file(p) != vol[digest]:
            raise UndoitError(f"{p} fails its checksum: refusing to restore from set {s.id}")


def describe(root: Path, project: str, restores: str | None = None, cycle_of=None) -> list[dict]:
    """One row per set for `doit snapshots` (checksums checked, archives not decompressed),
    grouped by change cycle; `restores` is the set a rollback would restore."""
    rows = []
    fetched_ids = fetched(root)
    for s in all_sets(root, project):
        problems = check_set(s, deep=False)
        size = sum(f.stat().st_size for f in s.path.iterdir() if f.is_file())
        created = s.created or datetime.fromtimestamp(s.path.stat().st_mtime, timezone.utc).isoformat()
        rows.append({
            "set": s.id,
            "cycle": (cycle_of(s) if cycle_of and s.complete else None) or "-",
            "age": _age(created),
            "size": size,
            "volumes": ", ".join(sorted(s.volumes)) or "-",
            "reused": sum(1 for v in s.volumes.values() if v.get("reused_from")),
            "tag": s.tag or "-",
            "valid": not problems,
            "problem": problems[0] if problems else "",
            "baseline": bool((s.manifest or {}).get("baseline")),
            "restores": s.id == restores,
            "kind": (s.manifest or {}).get("kind", "?"),
            "fetched": s.id in fetched_ids,
            # the images the set ran, pinned on the engine while the set stays (pins.py)
            "pins": sorted({i.get("image", "?") for i in _images_ran(s)}),
        })
    order = list(dict.fromkeys(r["cycle"] for r in rows))  # cycles in the order they began
    return sorted(rows, key=lambda r: order.index(r["cycle"]))


def _images_ran(s: SnapshotSet) -> list[dict]:
    try:
        return list(json.loads((s.path / "images.json").read_text()).values())
    except (OSError, ValueError, AttributeError):
        return []


def _age(iso: str) -> str:
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return "?"
    secs = max(0, time.time() - then.timestamp())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{int(secs // size)}{unit}"
    return f"{int(secs)}s"


def manifest_skeleton(set_id: str, kind: str, project: str) -> dict:
    return {
        "format": FORMAT,
        "kit_version": __version__,
        "set": set_id,
        "kind": kind,
        "project": project,
        "started": now_iso(),
        "volumes": {},
        "state": {},
    }


def referenced(s: SnapshotSet) -> set[str]:
    """Ids of the other sets whose archives s uses (`unchanged since set X`)."""
    out = set()
    for entry in (s.manifest or {}).get("volumes", {}).values():
        for key in ("archive", "listing"):
            folder = str(entry.get(key) or "").split("/", 1)[0]
            if folder and folder != s.id:
                out.add(folder)
    return out
