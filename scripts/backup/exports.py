"""One volume into a set's archive, with its services held still (stopped or paused, per
its quiesce policy) for as short a time as the volume allows.

Pre-copied (the default where the volume is a folder on this host): the volume is
copied into the set's folder while its services run, they are held still only while
the copy catches up with what changed since (scripts/store/mirror.py), and the archive
is written from the copy once they are back. The archive, its listing, content digests
and the manifest are the same as a direct export's, of the volume as it was held still:
the listing taken while it was held is checked equal to the archive's own. Otherwise
(`precopy = false`, an engine elsewhere, no room for the copy) the archive is written
straight from the volume while they are held.

Cloned (where the volume's filesystem can clone a file's blocks: btrfs, XFS with
reflinks; scripts/stack/clones.py): the services are held still only while the volume
is cloned, which costs no copy; the archive is written from the clone once they are
back, and the clone is kept, sealed with the archive's checksum, for a rollback from
this set to clone from instead of extracting. `precopy = false` opts out of both.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UndoitError
from ..output.progress import human, say, transfer
from ..plan.plan import Volume
from ..stack import clones, events, revive, volumes
from ..stack.compose import Compose
from ..store import archive, durable, gnutar, journal, listings, mirror, snapshots
from ..store.archive import HashingWriter
from ..store.entries import walk

SERVICE_LABEL = "com.docker.compose.service"

# entries written since the fingerprint is the archive's own listing and the probe is
# taken before the export's quiesce; older entries' were taken after the services came
# back, so a write in that gap counted as backed up: they are never trusted to skip
STALENESS = 2

PRECOPY = ".precopy-"  # the copy's folder in the set's, gone before the manifest is written
WRITE_OUT_LIMIT = 5.0  # seconds the dirty pages are written out for before a stop, at most


@dataclass
class Hold:
    """The services a volume's export held still, how, and for how long (from the stop
    or pause until they were back: running, healthy, unpaused)."""

    policy: str
    services: list[str] = field(default_factory=list)
    seconds: float = 0.0


def export_volume(client, compose: Compose | None, vol: Volume, ref: volumes.VolumeRef, set_path: Path,
                  set_id: str, kind_label: str = "", before_quiesce=None, size_hint: int = 0) -> dict:
    """Export one volume under its quiesce policy; the services come back whatever happens.

    before_quiesce() runs before any service is stopped, paused or hooked (the stack's
    state must be recorded as it runs). size_hint: the bytes the volume held last time."""
    start = time.monotonic()
    ident = volumes.identity(client, ref.name)
    label = f"{kind_label}{vol.key} ({ref.name})"
    base = clones.base_of(client, ref.name) if vol.precopy else None
    live = precopy_source(client, vol, ref, set_path, size_hint) if base is None else None
    first = _first_pass(vol, live, set_path, label, size_hint) if live is not None else None
    image = None
    with snapshots.private_open(set_path / f"{vol.key}.tar.zst") as raw:
        out = HashingWriter(raw)
        if base is not None:
            exported, hold, pre, image = _cloned(client, compose, vol, ref, base, set_path, set_id, out, label,
                                                 before_quiesce)
            raw.flush()
        elif first is None:
            with quiesced(client, compose, vol, ref, before_quiesce, journal_dir=set_path.parent) as hold:
                with transfer(label, size_hint) as advance:
                    exported = volumes.export(client, ref.name, out, progress=advance)
                    raw.flush()
            pre = None
        else:
            exported, hold, pre = _precopied(client, compose, vol, ref, live, first, set_path, out, label,
                                             before_quiesce)
            raw.flush()
    say_held(vol.key, hold, pre)
    digest = snapshots.write_listing(set_path / f"{vol.key}.listing", exported)
    entry = {
        "name": ref.name,
        "archive": f"{set_path.name}/{vol.key}.tar.zst",
        "sha256": out.sha.hexdigest(),
        "size": out.count,
        "listing": f"{set_path.name}/{vol.key}.listing",
        "listing_sha256": digest,
        "listing_digest": digest,
        "content_digests": True,
        # what a later backup compares a walk with: the archive's own listing, so a write
        # that missed the archive always makes the volume stale
        "fingerprint": listings.fingerprint(exported),
        "staleness": STALENESS,
        # probes and fingerprints compare only with the same volume of the same engine
        "identity": ident,
        "entries": len(exported),
        "bytes": exported.total,
        "quiesce": hold.policy,
        "held": {"services": hold.services, "seconds": round(hold.seconds, 3)},
        "precopy": pre,
        "seconds": round(time.monotonic() - start, 3),
        "set": set_id,
    }
    if image is not None:
        clones.seal(image, entry)
    return entry


def precopy_source(client, vol: Volume, ref: volumes.VolumeRef, set_path: Path, size_hint: int) -> Path | None:
    """The volume's folder on this host when a pre-copy shortens a hold: the plan allows
    it, a service that mounts the volume runs and will be held, the kit may keep owners
    (root) and the set's folder has room for a copy beside the archive."""
    if not vol.precopy or vol.quiesce not in ("stop", "pause") or gnutar.gnu_tar() is None or os.geteuid() != 0:
        return None
    if not any(c.status in ("running", "paused") for c in volumes.users(client, ref.name)):
        return None
    live = volumes.host_path(client, ref.name)
    if live is None:
        return None  # an engine elsewhere, or a volume with driver options
    # the size the last archive recorded, or (a first backup) what a metadata walk finds
    raw = size_hint or sum(st.st_size for _, st in walk(live) if stat.S_ISREG(st.st_mode))
    if shutil.disk_usage(set_path).free < raw * 1.2 + (64 << 20):
        say(f"{vol.key}: no room in {set_path.parent} for a copy beside the archive: exported with its services "
            "held still throughout")
        return None
    return live


def _first_pass(vol: Volume, live: Path, set_path: Path, label: str, size_hint: int):
    """The copy made while the services run, into the set's folder; None when it failed
    (no room after all, a folder it cannot read): nothing is held yet, so the export is
    made the slow way instead."""
    staging = set_path / f"{PRECOPY}{vol.key}"
    staging.mkdir(mode=0o700)
    try:
        with transfer(f"{label}, copied while running", size_hint) as advance:
            return mirror.first_pass(live, staging, advance)
    except (UndoitError, OSError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        say(f"{vol.key}: the copy while running failed ({err}): exported with its services held still throughout")
        return None


def _precopied(client, compose, vol, ref, live: Path, first: mirror.FirstPass, set_path: Path, out, label: str,
               before_quiesce):
    """The catch-up while the services are held, then the archive from the copy once
    they are back; (the archive's listing, the hold, what was copied)."""
    staging = set_path / f"{PRECOPY}{vol.key}"
    try:
        try:
            with quiesced(client, compose, vol, ref, before_quiesce, journal_dir=set_path.parent) as hold:
                done = mirror.catch_up(live, staging, first)
        finally:
            first.close()
        at_hold = done.listing.finish()
        with transfer(label, first.bytes) as advance:
            exported = archive.write_host_archive(staging, out, advance)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if listings.fingerprint(exported) != at_hold.fingerprint:
        raise UndoitError(f"the archive of {vol.key} differs from the volume as it was held still "
                          f"({'; '.join(listings.diff(at_hold, exported, 2))}): nothing was backed up")
    return exported, hold, {"bytes": first.bytes, "copied": done.copied, "gone": done.gone,
                            "copied_bytes": done.bytes}


def _cloned(client, compose, vol, ref, base: Path, set_path: Path, set_id: str, out, label: str, before_quiesce):
    """The clone while the services are held (with a metadata walk of the volume, the
    proof the clone is the volume as held), then the archive from the clone once they
    are back; (the archive's listing, the hold, what was cloned, the clone)."""
    live = volumes.host_path(client, ref.name)
    image = None
    try:
        with quiesced(client, compose, vol, ref, before_quiesce, journal_dir=set_path.parent) as hold:
            began = time.monotonic()
            image = clones.take(base, set_path.parent, set_id, vol.key, live)
            at_hold = archive.listing(live)
            cloned = time.monotonic() - began
        with transfer(label, at_hold.total) as advance:
            exported = archive.write_host_archive(image, out, advance)
        if listings.fingerprint(exported) != at_hold.fingerprint:
            raise UndoitError(f"the archive of {vol.key} differs from the volume as it was held still "
                              f"({'; '.join(listings.diff(at_hold, exported, 2))}): nothing was backed up")
    except BaseException:
        if image is not None:
            shutil.rmtree(image, ignore_errors=True)
        raise
    return exported, hold, {"bytes": at_hold.total, "cloned": True, "clone_seconds": round(cloned, 3)}, image


def say_held(key: str, hold: Hold, pre: dict | None) -> None:
    """One line: how long the volume's services were stopped or paused, and why that long."""
    if hold.policy not in ("stop", "pause") or not hold.services:
        return
    how = "stopped" if hold.policy == "stop" else "paused"
    if pre and pre.get("cloned"):
        why = f"a copy-on-write clone of {human(pre['bytes'])} in {pre['clone_seconds']:.2f} s while held"
    elif pre:
        why = f"pre-copied {human(pre['bytes'])}, {pre['copied']} file(s) copied again and {pre['gone']} gone while held"
    else:
        why = "the whole export"
    say(f"{key}: {', '.join(hold.services)} {how} {hold.seconds:.2f} s ({why})")


@contextmanager
def quiesced(client, compose: Compose, vol: Volume, ref: volumes.VolumeRef, before_quiesce=None,
             journal_dir: Path | None = None):
    """Hold the volume still while it is exported, per its policy; yields the Hold, whose
    seconds are set once the services are back.

    `stop` stops the running services that mount it (compose stops them in reverse
    dependency order) and, in a finally, brings them back in dependency order and waits
    until each is back (its own healthcheck passing), even when the export failed.
    `pause` freezes them and thaws them.
    """
    running = [c for c in volumes.users(client, ref.name) if c.status in ("running", "paused")]
    services = sorted({c.labels.get(SERVICE_LABEL) for c in running} - {None})
    hook_service = vol.hook_service or (vol.services[0] if vol.services else None)
    if before_quiesce and services and (vol.pre or vol.quiesce != "none"):
        before_quiesce()
    if vol.pre and services:
        compose.exec(hook_service, *vol.pre)
    hold = Hold(vol.quiesce if services else "none", services)
    if hold.policy == "stop":
        # a stopped container's filesystems are unmounted, and an unmount writes out the
        # host's dirty pages first (the pre-copy's, measured 0.8 s inside the hold for 1 GB):
        # written out here, while the services still run: the volume's filesystem and the
        # sets' (the pre-copy's), not every filesystem of the host
        durable.write_out([p for p in (volumes.host_path(client, ref.name), journal_dir) if p is not None],
                          WRITE_OUT_LIMIT)
    # the intent first: a run killed while they are down leaves a record the next run
    # acts on (starting them again), never a stack that looks stopped on purpose
    record = journal.intent(journal_dir, compose.project, "backup", volume=ref.name,
                            **{"stopped" if hold.policy == "stop" else "paused": services}) \
        if journal_dir is not None and hold.policy in ("stop", "pause") else nullcontext()
    with record:
        yield from _quiesced_body(client, compose, vol, hold, hook_service,
                                  [c for c in running if c.labels.get(SERVICE_LABEL) in services])


def _quiesced_body(client, compose: Compose, vol: Volume, hold: Hold, hook_service, held: list):
    failed, policy, services = None, hold.policy, hold.services
    since, began = time.time(), time.monotonic()
    try:
        # inside the try: a stop interrupted halfway still brings back what it stopped
        if policy == "stop":
            compose.stop(services)
        elif policy == "pause":
            held = [c for c in held if c.status == "running"]  # one paused before stays paused after
            if held:
                compose("pause", *sorted({c.labels[SERVICE_LABEL] for c in held}))
        yield hold
    except BaseException as err:
        failed = err
        raise
    finally:
        def bring_back():
            if policy == "stop" and failed is not None:  # a stop cut short: the engine finishes it first
                events.stops_under_way(client, compose.project, since, compose.timeouts["stop"])
            if policy == "stop":
                # started by compose without its --wait: counted back when their own
                # healthcheck passes, not at the engine's next interval
                compose.up(services, options=("--no-recreate", "--no-deps"), wait=False)
                revive.wait_back(client, compose.project, services, compose.timeouts["up"])
            elif policy == "pause":
                revive.unpause(held)
            hold.seconds = time.monotonic() - began
            if vol.post and services:
                compose.exec(hook_service, *vol.post)

        try:
            journal.cleanup(bring_back, f"bringing {', '.join(services)} back",
                            interrupted=isinstance(failed, KeyboardInterrupt))
        except UndoitError as err:
            if failed is None:
                raise
            raise UndoitError(f"{failed}; and bringing {', '.join(services)} back failed too: {err}") from failed
