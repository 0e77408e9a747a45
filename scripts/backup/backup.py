"""`doit backup`: git refs, stack state and the volumes that changed, as one immutable set."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from ..repo import gitstate, records
from ..stack import clones, engine, ignored, pins, revive, stackcheck, volumes
from ..store import archive, journal, listings, snapshots
from ..stack.compose import Compose, for_plan
from ..errors import UndoitError
from ..plan.plan import Plan, Volume
from ..output.progress import human, say
from ..store import restic
from .exports import SERVICE_LABEL, STALENESS, export_volume

def restored_paths(plan: Plan) -> list[str]:
    """Every path any procedure restores from git (what a backup must not leave dirty)."""
    paths = []
    for proc in (*plan.phases, plan.full, *plan.scenarios):
        for step in proc.steps:
            if step.do == "restore-files":
                paths += [p for p in step.args["paths"] if p not in paths]
    return paths or ["."]


def probe(client, plan_project: str, vol: Volume) -> str | None:
    """The volume's probe output digest, from its running service (None: no probe, or
    the service is not running, so the metadata walk decides)."""
    if not vol.probe:
        return None
    import hashlib

    service = vol.hook_service or vol.services[0]
    cs = client.containers.list(filters={"label": [f"com.docker.compose.project={plan_project}",
                                                   f"{SERVICE_LABEL}={service}"], "status": "running"})
    if not cs:
        return None
    code, out = cs[0].exec_run(list(vol.probe), stdout=True, stderr=False)
    if code != 0:
        return None
    return hashlib.sha256(out).hexdigest()




def volume_state(client, plan: Plan, key: str, name: str, prev: dict | None = None) -> dict:
    """What staleness is judged on: the probe where there is one (it decides alone when
    the previous entry has one too: no walk), else a metadata walk's fingerprint."""
    p = probe(client, plan.project_name, plan.volumes[key])
    ident = volumes.identity(client, name)
    if p and prev and prev.get("probe"):
        return {"probe": p, "fingerprint": None, "identity": ident}
    return {"probe": p, "fingerprint": listings.fingerprint(volumes.listing(client, name)), "identity": ident}


def unchanged(prev: dict | None, now: dict, name: str) -> bool:
    """The volume still holds exactly what prev's archive holds (when in doubt: no)."""
    if not prev or prev.get("name") != name or prev.get("staleness") != STALENESS:
        return False
    if prev.get("identity") != now["identity"]:
        return False  # another engine's volume of that name, or one removed and created again
    if now["probe"] and prev.get("probe"):
        return now["probe"] == prev["probe"]
    return now["fingerprint"] is not None and now["fingerprint"] == prev.get("fingerprint")


def comparable(plan: Plan, latest: snapshots.SnapshotSet | None, key: str, name: str) -> dict | None:
    """latest's entry for a volume, when a later backup may compare the volume with it:
    never after the kit restored the volume since (a restore can rewind a probe's counter
    to a value that later writes reach again with other contents)."""
    prev = (latest.volumes.get(key) if latest else None) or None
    if prev is None or prev.get("name") != name:
        return None
    if snapshots.restored_since(plan.snapshots_dir, name, latest.manifest.get("started", "")):
        return None
    return prev


def up_to_date(plan: Plan) -> bool:
    """doit uptodate: the latest set already holds this HEAD and every volume as it is now."""
    latest = snapshots.latest_complete(plan.snapshots_dir, plan.project_name, kind="backup")
    if latest is None or not gitstate.in_repo(plan.root):
        return False
    if journal.unfinished(plan.snapshots_dir, plan.project_name, live_rehearsals=False) or \
            any(not s.complete for s in snapshots.all_sets(plan.snapshots_dir)):
        return False  # a dead run left something to repair: the backup runs, and repairs first
    git = latest.manifest.get("git") or {}
    if git.get("head") != gitstate.head(plan.root) or gitstate.dirty(plan.root, restored_paths(plan)):
        return False
    if sorted(latest.volumes) != sorted(plan.volumes):
        return False
    if plan.include_ignored and (latest.manifest.get("ignored") or {}).get("files", {}) != ignored.digests(plan):
        return False  # an env file or secret the set keeps changed
    try:
        client = engine.client()
        refs = stackcheck.refs(plan, client)

        def same(k: str) -> bool:
            prev = comparable(plan, latest, k, refs[k].name)
            return prev is not None and unchanged(prev, volume_state(client, plan, k, refs[k].name, prev), refs[k].name)

        # probes wait on docker exec, walks on the disk: one thread a volume
        with ThreadPoolExecutor(min(4, len(refs)) or 1) as pool:
            return all(pool.map(same, refs))
    except UndoitError:
        return False


def hide_kit_state(plan: Plan) -> None:
    """The kit's snapshots, reports and log, and the plan's bind-mounted data folders,
    when they live inside the project, are never part of its files: not a dirty tree,
    never moved aside by a restore of files (the data is restored as a volume)."""
    gitstate.ignore_privately(plan.root, [p for p in plan.kit_paths() if p != plan.path])


def backup(plan: Plan, include_dirty: bool = False, export_hook=None, strict: bool = False,
           save_images: bool = False) -> snapshots.SnapshotSet:
    """`doit backup`: git branch and tag, then a set of every volume of the plan.

    strict: state that no backup covers (uncovered) is an error, not a warning."""
    gitstate.require_repo(plan.root)
    hide_kit_state(plan)
    when = datetime.now(timezone.utc)
    # every name checked and every volume found before a ref is made: a failed backup
    # leaves no tag behind that would open an empty cycle
    client = engine.client()
    config = stackcheck.check(plan, client)
    gaps = stackcheck.uncovered(plan, client, config) + ignored.uncovered(plan, config)
    for gap in gaps:
        say(f"WARNING: {gap}")
    down = stopped_services(plan, client)
    if down:
        # a set of a stopped stack is a set of its files at rest: fine, but rarely meant
        say(f"WARNING: {', '.join(down)} not running at backup time: the set holds their volumes as they were "
            "left, and a rollback to it starts them")
    if gaps and strict:
        raise UndoitError(f"strict=1: {len(gaps)} place(s) keep state no backup covers (first: {gaps[0]}); "
                          "nothing was backed up")
    stackcheck.refs(plan, client)
    git = gitstate.backup_refs(
        plan.root, plan.backup_branch, plan.backup_tag, restored_paths(plan), include_dirty,
        plan.env.get("UNDOIT_GIT_REMOTE"), when, taken=lambda: tag_names_in_use(plan),
    )
    say(f"git: branch {git['branch']}, tag {git['tag']}" + (" (reused: HEAD unchanged)" if git["reused"] else ""))
    return take_set(plan, list(plan.volumes), git, "backup", export_hook=export_hook, save_images=save_images)


def stopped_services(plan: Plan, client) -> list[str]:
    """The plan's services that have no running container now."""
    running = {c.labels.get(SERVICE_LABEL) for c in client.containers.list(
        filters={"label": f"com.docker.compose.project={plan.project_name}"})}
    return [svc for svc in plan.services if svc not in running]


def tag_names_in_use(plan: Plan) -> set[str]:
    """Backup tag names no new cycle may take: those the sets here carry, those of the
    offsite repository's sets and the remote's tags. A fresh clone has no backup tags;
    a name made again would be two cycles' (cycles are told apart by commit too, and
    this keeps the names a person reads apart as well)."""
    names = set()
    for s in snapshots.all_sets(plan.snapshots_dir, plan.project_name):
        names |= {n for n in ((s.manifest or {}).get("cycle"), s.tag) if n}
    remote = plan.env.get("UNDOIT_GIT_REMOTE")
    if remote:
        try:
            out = gitstate.run(plan.root, "ls-remote", "--tags", "--refs", remote)
            names |= {line.split("refs/tags/", 1)[1] for line in out.splitlines() if "refs/tags/" in line}
        except UndoitError as err:
            say(f"WARNING: the remote's tags are unknown ({err}): a new tag's name is checked here only")
    if plan.offsite is not None:
        try:
            names |= restic.Repo(plan).tag_names()
        except UndoitError as err:
            say(f"WARNING: the offsite repository's cycles are unknown ({err}): a new tag's name is checked "
                "here only")
    return names


def checkpoint(plan: Plan, pid: str, force: bool = False) -> snapshots.SnapshotSet:
    """`doit checkpoint:<phase>`: tag undoit/<phase>/pre at HEAD and snapshot the volumes the
    phase touches, before the phase starts. A rollback of that phase goes back here."""
    proc = plan.procedure(pid)
    hide_kit_state(plan)
    tag = f"undoit/{pid}/pre"
    if gitstate.ref_exists(plan.root, f"refs/tags/{tag}") and not force:
        raise UndoitError(f"{tag} exists already (a checkpoint taken after the phase began would "
                          f"capture the change): pass force=1 to move it to HEAD")
    changes = gitstate.dirty(plan.root, restored_paths(plan))
    if changes:
        raise UndoitError(f"uncommitted changes ({changes[0]}, ...): commit before the checkpoint")
    from . import cycles

    try:
        cycle, _ = cycles.current(plan)
    except UndoitError as err:
        raise UndoitError(f"a checkpoint belongs to a backup cycle: {err}") from None
    head = gitstate.head(plan.root)
    gitstate.tag(plan.root, tag, head, message=f"undoit checkpoint before {pid}", force=force)
    git = {"head": head, "commit": head, "tag": tag, "branch": None, "reused": False}
    say(f"git: tag {tag} at {head[:12]} (cycle {cycle.tag})")
    return take_set(plan, list(proc.volumes), git, "checkpoint", phase=pid, cycle=cycle.key)


def take_set(plan: Plan, keys: list[str], git: dict, kind: str, phase: str | None = None,
             export_hook=None, cycle: tuple[str, str] | None = None,
             save_images: bool = False) -> snapshots.SnapshotSet:
    """A snapshot set of the given volumes; volumes unchanged since the latest set are
    referenced, not copied. export_hook(key) runs just before each export (tests use it)."""
    client = engine.client()
    compose = for_plan(plan)
    refs = stackcheck.refs(plan, client, keys)
    latest = snapshots.latest_complete(plan.snapshots_dir, plan.project_name)
    set_id, path = snapshots.new_set(plan.snapshots_dir)
    with snapshots.writing_set(path):
        try:
            result = _fill_set(plan, client, compose, refs, latest, set_id, path, git, kind, phase, export_hook,
                               cycle, save_images)
        finally:
            # a held service was counted back when its own healthcheck passed; the engine's
            # status follows at its next interval (mostly while the archives were written):
            # the kit returns with the stack as healthy as the engine says, failed or not
            revive.settled(client, plan.project_name, plan.timeouts["up"])
    release_clones(client, plan)  # the set is complete: a failure here must not undo it
    return result


def release_clones(client, plan: Plan) -> None:
    """The copy-on-write clones no set keeps any more, released, one line each."""
    try:
        gone = clones.tidy(client, plan.snapshots_dir)
    except OSError as err:
        say(f"WARNING: copy-on-write clones not released ({err}); the next backup tries again")
        return
    for set_id in gone:
        say(f"released the copy-on-write clone(s) of set {set_id} (no longer among the sets that keep one)")


def _fill_set(plan, client, compose, refs, latest, set_id, path, git, kind, phase, export_hook, cycle,
              save_images=False):
    manifest = snapshots.manifest_skeleton(set_id, kind, plan.project_name)
    manifest["engine"] = {"id": engine.engine_id(client), "host": engine.endpoint().host}
    manifest["git"] = git
    manifest["project_root"] = str(plan.root)
    # the cycle is its tag's name and its commit: names alone collide across machines
    manifest["cycle"], manifest["cycle_commit"] = cycle or (git["tag"], git["commit"])
    if phase:
        manifest["phase"] = phase
    # the stack's state is recorded in the background (it waits on compose and the
    # engine) while volumes are walked and exported, but always before a service is
    # stopped, paused or hooked for an export
    with ThreadPoolExecutor(1) as pool:
        recorded = pool.submit(record_state, client, compose, plan, path)
        for key, ref in refs.items():
            prev = comparable(plan, latest, key, ref.name)
            if prev is not None:
                state = volume_state(client, plan, key, ref.name, prev)
                if unchanged(prev, state, ref.name):
                    entry = dict(prev, reused_from=prev.get("reused_from") or latest.id)
                    manifest["volumes"][key] = entry
                    say(f"{key}: unchanged since set {entry['reused_from']}, archive referenced")
                    continue
                hint = state["probe"]
            else:
                hint = probe(client, plan.project_name, plan.volumes[key])
            if export_hook:
                export_hook(key)
            # the last archive of the volume is the best guess of the room this one needs
            snapshots.check_room(path, int((prev or {}).get("size", 0) * 1.1), f"the archive of {key}")
            entry = export_volume(client, compose, plan.volumes[key], ref, path, set_id,
                                  before_quiesce=recorded.result, size_hint=(prev or {}).get("bytes", 0))
            if plan.volumes[key].bind:  # where it lies in the project: a clone elsewhere restores it there
                entry["bind"] = os.path.normpath(plan.volumes[key].bind)
            # taken before the services were quiesced: every write it reflects is in the
            # archive; one made after it moves the probe, and the next backup exports
            entry["probe"] = hint
            manifest["volumes"][key] = entry
        manifest["state"] = recorded.result()
        kept = ignored.save(plan, path)  # [backup] include_ignored: the .env and secrets compose reads
        if kept:
            manifest["ignored"] = kept
            say(f"git-ignored files kept in the set (owner only): {', '.join(kept['files'])}")
        # the images the stack ran: pinned so a rollback can run them again (and saved)
        images = pins.recorded(path)
        pins.pin(client, plan.project_name, images)
        if save_images:
            manifest["images"] = pins.save(client, images, path)
            say(f"images saved in the set: {', '.join(sorted({i['image'] for i in images.values()}))}")

    fetched = snapshots.fetched(plan.snapshots_dir)
    sets_with_tag = [s for s in snapshots.all_sets(plan.snapshots_dir, plan.project_name)
                     if s.complete and s.tag == git["tag"] and s.manifest.get("kind") == kind
                     and (s.manifest.get("git") or {}).get("commit") == git["commit"] and s.id not in fetched
                     and snapshots.same_engine(s, manifest["engine"]["id"])]
    manifest["baseline"] = kind == "backup" and not sets_with_tag
    manifest["finished"] = snapshots.now_iso()
    manifest["recorded"] = True  # in git too: see records.py
    snapshots.write_manifest(path, manifest)
    result = snapshots.load_set(path)
    records.record(plan.root, result)
    say(f"snapshot set {set_id}" + (f" (baseline of a new cycle, tag {git['tag']})" if manifest["baseline"]
                                    else f" (cycle {manifest['cycle']})"))
    return result


def record_state(client, compose: Compose, plan: Plan, set_path: Path) -> dict:
    """The stack's state next to its volumes: containers, networks, volumes, images, config."""
    from ..output.redact import Redactor

    label = {"label": f"com.docker.compose.project={plan.project_name}"}
    files = {}
    # three compose processes at once: they wait on the engine, not on each other
    with ThreadPoolExecutor(3) as pool:
        ps_json = pool.submit(compose.ps)
        ps_text = pool.submit(compose, "ps", "--all")
        raw_config = pool.submit(compose.config_json)
        ps_json, ps_text, raw_config = ps_json.result(), ps_text.result(), raw_config.result()
    # every state file is masked: a secret interpolated into a command, a healthcheck or
    # a label is stored there too, not only in `environment:`
    redact = Redactor.for_plan(plan, raw_config)

    def put(name: str, data, masked: bool = True) -> None:
        p = set_path / name
        if isinstance(data, str):
            with snapshots.private_open(p) as f:
                f.write((redact(data) if masked else data).encode())
        else:
            snapshots.write_json(p, redact.data(data) if masked else data)
        files[name] = archive.sha256_file(p)

    put("containers.json", ps_json)
    put("containers.txt", ps_text)
    config = redact_config(raw_config)
    nets = client.networks.list(filters=label)
    put("networks.json", {
        "list": [{"name": n.name, "id": n.id, "driver": n.attrs.get("Driver")} for n in nets],
        "inspect": [_redact_network(n.attrs) for n in nets],
    })
    put("volumes.json", [
        {"name": v.name, "labels": v.attrs.get("Labels"), "driver": v.attrs.get("Driver")}
        for v in client.volumes.list(filters=label)
    ])
    # ids and image names, which pins.py reads back
    put("images.json", pins.images_of(client.containers.list(all=True, filters=label)), masked=False)
    put("compose-config.json", config)
    return files


def redact_config(config: dict) -> dict:
    """compose config without environment values: they come from .env and secrets/."""
    config = json.loads(json.dumps(config))
    for svc in (config.get("services") or {}).values():
        env = svc.get("environment")
        if isinstance(env, dict):
            svc["environment"] = {k: "<redacted>" for k in env}
    return config


def _redact_network(attrs: dict) -> dict:
    return {k: v for k, v in attrs.items() if k != "Containers"} | {
        "Containers": sorted((c or {}).get("Name", "") for c in (attrs.get("Containers") or {}).values())
    }


def verify(plan: Plan, set_id: str | None = None) -> list[str]:
    """`doit verify`: re-hash and fully read a set (default: the one a rollback restores,
    the current cycle's baseline; never silently another)."""
    from . import cycles

    if set_id:
        s = restic.find(plan, set_id)
    else:
        cycle, why = cycles.current(plan)
        s = cycle.baseline
        say(why)
    problems = snapshots.check_set(s, deep=True)
    if s.complete and records.problem(plan.root, s):
        problems.insert(0, records.problem(plan.root, s))
    if not problems:  # read whole with device nodes let through: the plan's policy is judged here
        problems = refused_devices(plan, s)
    if problems:
        raise UndoitError(f"set {s.id} is NOT valid: " + "; ".join(problems))
    size = sum(v["size"] for v in s.volumes.values())
    say(f"set {s.id}: valid ({len(s.volumes)} volume archive(s), {human(size)}, every checksum matches)")
    return []


def refused_devices(plan: Plan, s: snapshots.SnapshotSet) -> list[str]:
    """Device nodes in the archive of a volume the plan does not allow them in: every
    restore refuses such an archive, so the set is not valid either (one verdict). The
    listing says what the archive holds: the full read above proved them the same."""
    found = []
    for key in sorted(s.volumes):
        vol = plan.volumes.get(key)
        if vol is not None and vol.devices:
            continue
        nodes = [e.path.decode("utf-8", "replace") for e in s.listing(key) if e.type in ("c", "b")]
        if nodes:
            found.append(f"volume {key} holds {len(nodes)} device node(s) (first: {nodes[0]}), which every restore "
                         f"refuses: set devices = true under [volumes.{key}] in the plan if they belong there")
    return found
