"""Sets copied offsite through restic, and brought back on a machine that lost them.

restic is the store (deduplicated, encrypted, authenticated; local path, sftp:, rest:,
s3: ...): the kit only decides what to send and checks what comes back. One restic
snapshot holds one set folder exactly, tagged project=, set=, cycle= and git=; a set
whose archive is another set's ("unchanged since set X") needs X, which is older and
so sent first, and fetched with it.

The password comes from a file or an environment variable the plan names; it is handed
to restic in its environment and never printed: restic's own messages are redacted
before the kit repeats them."""

from __future__ import annotations

import json
import os
import shutil

from ..repo import gitstate, records
from ..store import restic, snapshots
from ..errors import UndoitError
from ..output.progress import say
from ..store.snapshots import SnapshotSet


def send(plan, only: str | None = None) -> dict:
    """`doit offsite`: every complete set of the project not yet in the repository (or
    only the set `only`), oldest first; then a check that reads a subset of the data."""
    repo = restic.Repo(plan)
    there = repo.sets()
    local = [s for s in snapshots.all_sets(plan.snapshots_dir, plan.project_name)
             if s.complete and s.manifest.get("kind") in ("backup", "checkpoint")]
    todo = [s for s in local if s.id not in there and (only is None or s.id == only)]
    if only is not None and only not in there and not todo:
        raise UndoitError(f"set {only} is not a complete backup or checkpoint set of {plan.project_name} here")
    sent, added, skipped = [], 0, []
    for s in todo:
        problems = snapshots.check_set(s, deep=False) or [p for p in [records.problem(plan.root, s)] if p]
        if problems:
            skipped.append(s.id)
            say(f"offsite: {s.id} not sent: {problems[0]}")
            continue
        missing = sorted(r for r in snapshots.referenced(s) if r not in there and r not in sent)
        if missing:
            skipped.append(s.id)
            say(f"offsite: {s.id} not sent: it uses archives of set(s) {', '.join(missing)}, which are "
                "neither in the repository nor sent now")
            continue
        m = s.manifest
        tags = ["undoit", f"project={plan.project_name}", f"set={s.id}", f"kind={m.get('kind')}",
                f"cycle={m.get('cycle') or ''}", f"cycle_commit={m.get('cycle_commit') or ''}",
                f"git={(m.get('git') or {}).get('tag') or ''}"]
        out = repo.run("backup", "--json", "--host", "undoit", *[a for t in tags for a in ("--tag", t)], str(s.path))
        summary = next((json.loads(ln) for ln in reversed(out.splitlines())
                        if ln.startswith("{") and '"summary"' in ln), {})
        got = int(summary.get("data_added", 0))
        added += got
        sent.append(s.id)
        there[s.id] = {"snapshot": summary.get("snapshot_id", "?"), "path": str(s.path)}
        say(f"offsite: {s.id} sent ({snapshots._human(got)} added to the repository for "
            f"{snapshots._human(int(summary.get('total_bytes_processed', 0)))} of set; snapshot "
            f"{str(summary.get('snapshot_id', '?'))[:8]})")
    if sent:
        repo.run("check", f"--read-data-subset={repo.o.check_subset}")
        say(f"offsite: repository checked, {repo.o.check_subset} of its data read back: no errors")
    elif not skipped:
        say(f"offsite: every set is already in {repo.o.repository} ({len(there)} of {plan.project_name})")
    if skipped:
        raise UndoitError(f"{len(skipped)} set(s) not sent: {', '.join(skipped)} (reasons above); "
                          f"{len(sent)} sent")
    return {"sent": sent, "bytes_added": added, "repository": repo.o.repository}


def fetch(plan, set_id: str) -> SnapshotSet:
    """`doit fetch set=ID|latest`: bring a set (and the sets whose archives it uses) back
    from the repository into snapshots/, and verify it fully against its manifest. All or
    nothing: a set that does not verify, or whose record cannot be written, is removed
    again. A fetched set is history: a rollback restores it only when named (set=ID)."""
    gitstate.require_repo(plan.root)  # before a byte is fetched: the record goes there
    repo = restic.Repo(plan)
    there = repo.sets()
    if not there:
        raise UndoitError(f"no set of {plan.project_name} in the restic repository at {repo.o.repository}")
    set_id = newest(there) if set_id == "latest" else set_id
    if set_id not in there and not (plan.snapshots_dir / set_id / snapshots.MANIFEST).is_file():
        raise UndoitError(f"set {set_id} is not in the restic repository at {repo.o.repository} "
                          f"(it holds {len(there)}: `doit snapshots` lists the local ones)")
    plan.snapshots_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    done: list[str] = []
    try:
        s = _bring(repo, plan, set_id, there, done)
    except BaseException:
        for sid in done:  # nothing half-trusted stays behind
            shutil.rmtree(plan.snapshots_dir / sid, ignore_errors=True)
        raise
    say(f"fetch: set {set_id} is here and verified (every archive read and hashed)"
        + (f"; brought back: {', '.join(sorted(done))}" if done else "; it was here already"))
    return s


def newest(there: dict[str, dict], kind: str | None = None) -> str:
    """The newest set the repository holds (of kind): set ids begin with their UTC time."""
    ids = [sid for sid, info in there.items() if kind is None or info["tags"].get("kind") == kind]
    if not ids:
        raise UndoitError(f"the repository holds no {kind or ''} set of this project".replace("  ", " "))
    return max(ids)


def _bring(repo: "restic.Repo", plan, set_id: str, there: dict, done: list[str]) -> SnapshotSet:
    wanted = [set_id]
    while wanted:
        sid = wanted.pop()
        local = snapshots.load_set(plan.snapshots_dir / sid) if (plan.snapshots_dir / sid).is_dir() else None
        if local is None or not local.complete:
            if sid not in there:
                raise UndoitError(f"set {set_id} uses archives of set {sid}, which is neither here nor in "
                                  f"the repository at {repo.o.repository}")
            local = _restore(repo, plan, sid, there[sid])
            done.append(sid)
        wanted += [r for r in snapshots.referenced(local) if r not in done and not (plan.snapshots_dir / r / snapshots.MANIFEST).is_file()]
    s = snapshots.load_set(plan.snapshots_dir / set_id)
    problems = snapshots.check_set(s, deep=True)
    for sid in done:
        if sid != set_id and not problems:
            problems = snapshots.check_set(snapshots.load_set(plan.snapshots_dir / sid), deep=False)
    if problems:
        raise UndoitError(f"set {set_id} from the repository does not verify: {problems[0]}; nothing was kept")
    for sid in done:
        _record(plan, snapshots.load_set(plan.snapshots_dir / sid))
        snapshots.note_fetched(plan.snapshots_dir, sid)
    return s


def _restore(repo: restic.Repo, plan, sid: str, snap: dict) -> SnapshotSet:
    dest = plan.snapshots_dir / sid
    if dest.exists():  # an incomplete folder of that name: kept aside, never merged into
        raise UndoitError(f"{dest} exists but is not a complete set: move it away, then fetch again")
    scratch = plan.snapshots_dir / f".fetch-{sid}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        repo.run("restore", snap["snapshot"], "--target", str(scratch))
        got = scratch / snap["path"].lstrip("/")
        if not (got / snapshots.MANIFEST).is_file():
            raise UndoitError(f"the repository's snapshot of set {sid} holds no manifest at {snap['path']}")
        os.chmod(got, 0o700)
        os.rename(got, dest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    say(f"fetch: set {sid} restored from the repository")
    return snapshots.load_set(dest)


def _record(plan, s: SnapshotSet) -> None:
    """The manifest is trusted against git's record of it; a fresh clone has none (the
    records are local refs), and then the authenticated repository's copy is recorded."""
    ref = records.PREFIX + s.id
    if not gitstate.ref_exists(plan.root, ref):
        records.record(plan.root, s)
        say(f"fetch: set {s.id}'s manifest recorded in git ({ref}) from the repository's authenticated copy")
        return
    problem = records.problem(plan.root, s)
    if problem:
        raise UndoitError(f"the fetched {problem}")
