"""Named volumes through the Docker API: find, fingerprint, export and restore (docker SDK inside).

Export: a created, never-started helper container mounts the volume read-only and
`get_archive` streams it; when the engine is local and the mountpoint readable, the
host path is walked directly instead. Both produce the same archive (scripts/archive.py).
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


from ..store import archive, entries, gnutar
from ..store.entries import Entry
from ..store.listings import Listing, Writer
from ..errors import UndoitError

MOUNT = "/v"
HELPER_LABEL = "undoit.helper"


# a bind-mounted data folder of the plan ([volumes.X] bind = "./data") goes wherever a
# volume goes, under the name "bind:<absolute path>": archived, listed, staged and
# swapped on this host exactly like a local volume's _data
BIND = "bind:"


def is_bind(name: str) -> bool:
    return name.startswith(BIND)


def _local_engine() -> bool:
    """Whether the engine's volumes are folders on this host (engine.on_this_host)."""
    from .engine import on_this_host

    return on_this_host()


@dataclass(frozen=True)
class VolumeRef:
    key: str  # the compose key (postgres_data)
    name: str  # the engine's name (motovault_postgres_data)


def resolve(client, project: str, keys, binds: dict[str, str] | None = None,
            declared: Callable[[], dict[str, str]] | None = None) -> dict[str, VolumeRef]:
    """Compose volume keys -> real volume names, through the compose labels; the plan's
    bind-mounted folders (binds: key -> absolute path) -> "bind:<path>"; what is left
    (an `external: true` volume carries no compose label), through declared(): the names
    compose gives them, asked only when needed.

    Labels, not "<project>_<key>": a volume declared with `name:` or a renamed project
    would otherwise resolve to the wrong volume, or to none.
    """
    binds = binds or {}
    if any(k in binds for k in keys) and not _local_engine():
        from .engine import endpoint

        raise UndoitError("bind-mounted data folders need the Docker engine on this machine; "
                          f"the kit talks to {endpoint()}, whose folders it cannot reach")
    found = {k: BIND + binds[k] for k in keys if k in binds}
    for vol in client.volumes.list(filters={"label": f"com.docker.compose.project={project}"}):
        key = (vol.attrs.get("Labels") or {}).get("com.docker.compose.volume")
        if key:
            found[key] = vol.name
    missing = [k for k in keys if k not in found]
    if missing and declared is not None:
        names = declared()
        for k in missing:
            if names.get(k) and _exists(client, names[k]):
                found[k] = names[k]
        missing = [k for k in keys if k not in found]
    if missing:
        raise UndoitError(
            f"volume(s) {', '.join(missing)} of compose project {project!r} not found; "
            "is the stack created (docker compose up)?"
        )
    return {k: VolumeRef(k, found[k]) for k in keys}


def _exists(client, name: str) -> bool:
    from docker.errors import NotFound  # here: the plan loader imports this module
    try:
        client.volumes.get(name)
        return True
    except NotFound:
        return False


def identity(client, volume: str) -> str:
    """Which volume this is, beyond its name: the engine's ID and where the engine keeps
    it, plus the folder's inode when it is on this host (a volume removed and created
    again gets a new one). A same-named volume of another engine is another volume
    whose probe or fingerprint may match by chance. Not CreatedAt: for a local volume
    the engine reports its folder's mtime, which moves with every file created in it.
    A bind folder: its path, device and inode on this host."""
    if is_bind(volume):
        st = os.stat(volume[len(BIND):])
        return f"bind|{st.st_dev}|{st.st_ino}"
    from .engine import engine_id

    where = client.api.inspect_volume(volume).get("Mountpoint", "")
    path = host_path(client, volume)
    return f"{engine_id(client)}|{where}" + (f"|{path.stat().st_ino}" if path else "")


def helper_image(client) -> str:
    """An image already present to mount volumes in: the kit's base image (never pulled)."""
    from docker.errors import ImageNotFound  # here: the plan loader imports this module
    from .images import names

    ref = names()["base"]
    try:
        client.images.get(ref)
    except ImageNotFound as err:
        raise UndoitError(f"helper image {ref} is missing: run `doit images`") from err
    return ref


@contextmanager
def helper(client, volume: str, read_only: bool = True):
    """A created, never-started container with the volume at /v; removed afterwards."""
    c = client.containers.create(
        helper_image(client),
        command=["true"],
        entrypoint=[],
        volumes={volume: {"bind": MOUNT, "mode": "ro" if read_only else "rw"}},
        network_disabled=True,
        labels={HELPER_LABEL: "1"},
        name=f"undoit-helper-{uuid.uuid4().hex[:10]}",
    )
    try:
        yield c
    finally:
        c.remove(force=True)


def host_path(client, volume: str) -> Path | None:
    """The volume's directory on this host when the engine is local and we may read it.

    Only for a plain local volume: one with driver options (a bind of another path, a
    tmpfs, NFS) is mounted on its Mountpoint only while a container uses it, so the
    directory there may be empty while the data lives elsewhere.
    """
    from docker.errors import NotFound  # here: the plan loader imports this module
    if is_bind(volume):
        return Path(volume[len(BIND):])
    if not _local_engine():
        return None
    try:
        attrs = client.api.inspect_volume(volume)
    except NotFound:
        return None
    if attrs.get("Driver") != "local" or attrs.get("Options"):
        return None
    mp = Path(attrs["Mountpoint"])
    return mp if mp.is_dir() and os.access(mp, os.R_OK | os.X_OK) else None


def _run_helper(client, volume: str, script: str, read_only: bool = True):
    """Run a shell script as root in a short-lived helper with the volume at /v.

    Returns the stopped container (caller removes it): output that matters is written
    to a file in the container and fetched with get_archive, because the log driver
    mangles bytes that are not UTF-8.
    """
    c = client.containers.create(
        helper_image(client),
        entrypoint=["sh", "-c", script],
        volumes={volume: {"bind": MOUNT, "mode": "ro" if read_only else "rw"}},
        network_disabled=True,
        labels={HELPER_LABEL: "1"},
        user="0",
        name=f"undoit-helper-{uuid.uuid4().hex[:10]}",
    )
    try:
        c.start()
        if c.wait()["StatusCode"] != 0:
            err = c.logs(stdout=False, stderr=True).decode(errors="replace").strip()[-200:]
            raise UndoitError(f"helper on volume {volume} failed: {err}")
    except BaseException:
        c.remove(force=True)
        raise
    return c


def _fetch_file(container, path: str) -> bytes:
    import tarfile

    with archive_stream(container, path) as stream:
        tar = tarfile.open(fileobj=archive.IterReader(stream), mode="r|")
        for m in tar:
            return tar.extractfile(m).read()
    return b""


def run_listing(client, volume: str) -> Listing:
    """The listing made inside a short-lived container (when the host cannot read the volume)."""
    fmt = r"%y\t%s\t%m\t%U\t%G\t%T@\t%P\t%l\0"
    c = _run_helper(client, volume, f"find {MOUNT} -printf '{fmt}' > /tmp/listing")
    try:
        out = _fetch_file(c, "/tmp/listing")
    finally:
        c.remove(force=True)
    kinds = {b"d": "d", b"f": "f", b"l": "l", b"p": "p", b"c": "c", b"b": "b"}
    found = Writer()  # not `entries`: that is the module parse_ns comes from
    for rec in out.split(b"\0"):
        if not rec.strip():
            continue
        y, size, mode, uid, gid, mtime, path, target = rec.split(b"\t", 7)
        kind = kinds.get(y)
        if kind is None:
            continue  # sockets
        found.add(Entry(path or b".", kind, int(size) if kind == "f" else 0,
                        int(mode, 8) if kind != "l" else 0, int(uid), int(gid),
                        entries.parse_ns(mtime.decode()), target if kind == "l" else b""))
    return found.finish()


def listing(client, volume: str) -> Listing:
    """The volume's file listing: a metadata walk of the host path, or made in a container."""
    path = host_path(client, volume)
    return archive.listing(path) if path else run_listing(client, volume)


def content_digests(client, volume: str) -> dict[bytes, str]:
    """sha256 of every regular file in the volume (path -> hex): read on the host when the
    engine is local, else in a short-lived helper container."""
    import hashlib

    path = host_path(client, volume)
    out: dict[bytes, str] = {}
    if path:
        root = os.fsencode(path)
        for rel, st in entries.walk(path):
            if stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(os.path.join(root, rel), "rb") as f:
                    while chunk := f.read(archive.CHUNK):
                        h.update(chunk)
                out[rel] = h.hexdigest()
        return out
    c = _run_helper(client, volume, f"cd {MOUNT} && find . -type f -exec sha256sum -z {{}} + > /tmp/sums")
    try:
        data = _fetch_file(c, "/tmp/sums")
    finally:
        c.remove(force=True)
    for rec in data.split(b"\0"):
        if rec:
            digest, _, name = rec.partition(b"  ")
            out[name[2:] if name.startswith(b"./") else name] = digest.decode()
    return out


def export(client, volume: str, out, progress: Callable[[int], None] | None = None,
           use_host: bool = True) -> list[Entry]:
    """Stream the volume as tar.zst into out; return the listing of what the archive holds
    (read from the archive's own stream, content digests included)."""
    path = host_path(client, volume) if use_host else None
    if path:
        return archive.write_host_archive(path, out, progress)
    mtimes = {e.path: e.mtime_ns for e in run_listing(client, volume)}
    import tarfile

    with helper(client, volume) as c, archive_stream(c, MOUNT + "/.") as stream:
        tar = tarfile.open(fileobj=archive.IterReader(stream), mode="r|", encoding="utf-8", errors="surrogateescape")
        return archive.repack(tar, out, strip=".", mtimes=mtimes, progress=progress)


@contextmanager
def archive_stream(container, path: str):
    """get_archive's chunks, the connection closed on the way out however it is left.

    A reader that stops early (Ctrl-C, a bad member) must hang up: otherwise the engine
    stays blocked writing the rest, holding the container, and removing the helper
    waits on it until the client's read timeout (minutes)."""
    api = container.client.api
    res = api._get(api._url("/containers/{0}/archive", container.id), params={"path": path}, stream=True)
    try:
        api._raise_for_status(res)
        yield res.iter_content(archive.CHUNK, decode_unicode=False)
    finally:
        res.close()


def empty(client, volume: str) -> None:
    """Delete everything inside the volume (the volume itself stays, with its labels)."""
    path = host_path(client, volume)
    if path:
        for child in os.scandir(path):
            if child.is_dir(follow_symlinks=False):
                shutil.rmtree(child.path)
            else:
                os.unlink(child.path)
        return
    _run_helper(client, volume, f"find {MOUNT} -mindepth 1 -delete", read_only=False).remove(force=True)


def put(client, volume: str, archive_path: Path, root: Entry | None,
        progress: Callable[[int], None] | None = None) -> None:
    """Extract an archive into the (empty) volume: on the host when the engine is local,
    else through the API, streamed from a generator (memory stays flat either way)."""
    path = host_path(client, volume)
    if path and gnutar.gnu_tar() and os.access(path, os.W_OK):
        archive.extract_host(archive_path, path, progress)
    else:
        with helper(client, volume, read_only=False) as c:
            ok = c.put_archive(MOUNT, archive.stream_decompressed(archive_path, progress))
            if not ok:
                raise UndoitError(f"the engine refused to extract {archive_path.name} into {volume}")
    if root is not None:
        set_root(client, volume, root)


STAGING_PREFIX = "undoit-staging-"


def stage(client, volume: str, need: int) -> Path | None:
    """A fresh private directory beside the volume's live contents, to build a restore in
    and swap in with one rename; None when the volume cannot be staged.

    Only a local-driver volume without options qualifies (its contents are a plain
    `_data` directory in the volume's own folder, which `docker volume rm` removes
    whole), on this host, with room for a second copy: the live contents stay
    untouched until the new ones are complete and checked.
    """
    path = host_path(client, volume)
    if path is None or not (path.name == "_data" or is_bind(volume)) or not gnutar.gnu_tar():
        return None
    if not path.is_dir() or os.stat(path.parent).st_dev != os.stat(path).st_dev:
        return None  # a bind folder that is a mount point of its own: no rename across
    if not os.access(path.parent, os.W_OK) or shutil.disk_usage(path).free < need * 1.05 + (64 << 20):
        return None
    # beside a bind folder, hidden: it lies in the user's project for a moment
    staging = path.parent / f"{'.' if is_bind(volume) else ''}{STAGING_PREFIX}{uuid.uuid4().hex[:10]}"
    staging.mkdir(mode=0o700)
    return staging


def swap_in(client, volume: str, staging: Path, park: Path | None = None) -> None:
    """Make staging the volume's contents (one atomic exchange where the kernel offers
    it). The contents it replaced are moved to park (a safety set's folder from
    park_folder), or else deleted."""
    from ..store.durable import sync_dir, sync_filesystem

    live = host_path(client, volume)
    if live is None:
        raise UndoitError(f"volume {volume} has no host path any more: restore not swapped in")
    sync_filesystem(staging)  # the new contents are on the disk before the old may go
    try:
        _exchange(staging, live)
        old = staging
    except OSError:
        # no RENAME_EXCHANGE here: two renames, with no container using the volume between
        old = park or live.parent / f"{STAGING_PREFIX}old-{uuid.uuid4().hex[:10]}"
        os.rename(live, old)
        try:
            os.rename(staging, live)
        except OSError as err:
            os.rename(old, live)  # put the live contents back before reporting
            if staging.name.startswith(STAGING_PREFIX):  # built for this swap (parked contents stay)
                discard(staging)
            raise UndoitError(f"could not swap the restored contents into {volume}: {err}") from err
    if park is not None:
        if old != park:
            # a run killed right before this rename leaves them at `old`: the journal
            # knows that folder's inode, and the next kit command moves them (journal.repair)
            os.rename(old, park)
        sync_dir(park.parent)
    sync_dir(live.parent)  # the swap itself is on the disk before the old contents are deleted
    if park is not None:
        return
    if is_bind(volume):
        discard(old)  # in the user's own folder: gone before the restore says it is done
    else:
        discard_later(old)


PARKED = "undoit-parked"


def park_folder(client, volume: str, set_id: str) -> Path | None:
    """A new private folder for set_id where a swap can move what it replaces in volume
    with one rename, instead of copying it; None where there is none.

    It lies under the engine's data root (`<root>/undoit-parked/<set>/`, beside
    `<root>/volumes/`): the only place a rename from the volume's folder surely reaches
    that `docker volume rm` and `down -v` leave alone. Tried with a rename before it is
    trusted: a data root split over mounts refuses it (EXDEV), and the caller copies.
    """
    live = host_path(client, volume)
    if live is None or is_bind(volume) or live.name != "_data" or live.parents[1].name != "volumes":
        return None
    folder = live.parents[2] / PARKED / set_id  # one per set, shared by its volumes
    probe = live.parent / f"{STAGING_PREFIX}probe-{uuid.uuid4().hex[:10]}"
    try:
        folder.parent.mkdir(mode=0o700, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        probe.mkdir(mode=0o700)
        os.rename(probe, folder / probe.name)
        os.rmdir(folder / probe.name)
        return folder
    except OSError:
        for leftover in (probe, folder / probe.name):
            shutil.rmtree(leftover, ignore_errors=True)
        with suppress(OSError):
            folder.rmdir()  # only if no other volume of the set is parked there
        return None


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


DISCARD_PREFIX = "undoit-discard-"


def discard_later(old: Path) -> None:
    """Delete replaced contents in a process of their own: unlinking 20,000 files takes
    seconds (4 s on ext4 without a journal) that the services would otherwise stay down
    for. Renamed first, so that nothing mistakes them for a restore that died; if the
    deleting process dies too, the next kit command (repair.repair_for) finishes it."""
    import subprocess

    doomed = old.parent / f"{DISCARD_PREFIX}{uuid.uuid4().hex[:10]}"
    os.rename(old, doomed)
    subprocess.Popen(["rm", "-rf", "--one-file-system", "--", str(doomed)], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _exchange(a: Path, b: Path) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise OSError("renameat2 is not available")
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def flush(client, volume: str) -> None:
    """The volume's contents on the disk: syncfs of its filesystem, on the host or, for
    an engine elsewhere, in a helper that mounts it (`sync -f`)."""
    from ..store.durable import sync_filesystem

    path = host_path(client, volume)
    if path is not None:
        sync_filesystem(path)
        return
    _run_helper(client, volume, f"sync -f {MOUNT}", read_only=False).remove(force=True)


def set_root(client, volume: str, root: Entry) -> None:
    """Put the volume root's owner, mode and mtime back: extraction leaves an existing
    root alone (a recreated volume is root:root 0755), and writing into it moves its mtime."""
    path = host_path(client, volume)
    if path:
        archive.set_root_attrs(path, root)
        return
    sec, ns = divmod(root.mtime_ns, 1_000_000_000)
    script = (f"chown {root.uid}:{root.gid} {MOUNT} && chmod {root.mode:o} {MOUNT} && "
              f"touch -m -d @{sec}.{ns:09d} {MOUNT}")
    _run_helper(client, volume, script, read_only=False).remove(force=True)


def users(client, volume: str) -> list:
    """Containers (any state) that mount the volume (or the bind folder), helpers excluded.

    Found in the engine's list itself, then looked up one by one: the SDK's list looks
    up every container it lists, and for a bind folder that is every container of the
    engine, any of which another project may remove meanwhile (a 404 failed a rollback)."""
    from docker.errors import NotFound  # here: the plan loader imports this module
    if is_bind(volume):
        path = volume[len(BIND):]
        ids = [c["Id"] for c in client.api.containers(all=True)
               if any(m.get("Type") == "bind" and m.get("Source") == path for m in c.get("Mounts") or [])]
    else:
        ids = [c["Id"] for c in client.api.containers(all=True, filters={"volume": volume})]
    found = []
    for cid in ids:
        try:
            c = client.containers.get(cid)
        except NotFound:
            continue  # removed since the list: it mounts nothing any more
        if HELPER_LABEL not in (c.labels or {}):
            found.append(c)
    return found
