"""A rehearsal's sandbox as the journal records it, and its removal.

A sandbox is a compose project `<project>-rehearsal-<id>` (containers, volumes,
networks), a git worktree of the live repository, a scratch folder holding that
worktree and the sandbox's sets, and the contents its drills' swaps parked under the
engine's data root. A rehearsal records all of it in the journal before it creates any
of it; a rehearsal killed outright (SIGKILL, a reboot) leaves the record, and the next
rehearsal (for a dead owner) or `doit repair` removes what the record names. The
removal is the rehearsal's own teardown too: one way out, whoever takes it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from ..repo import gitstate
from ..stack import clones, volumes
from ..store import snapshots
from ..errors import UndoitError


def record(name: str, work: Path, tree: Path, repo: Path) -> dict:
    """What a sandbox is made of, for the journal: enough to remove it with no other help."""
    return {"name": name, "work": str(work), "tree": str(tree), "repo": str(repo)}


def sweep(client, name: str) -> dict[str, int]:
    """Remove the sandbox project's containers, volumes and networks (also a helper
    container a killed copy left on one of its volumes); how many of each went."""
    label = {"label": f"com.docker.compose.project={name}"}
    gone = {"container(s)": 0, "volume(s)": 0, "network(s)": 0}
    mine = {v.name: v for v in client.volumes.list(filters=label)}
    mine.update({v.name: v for v in client.volumes.list() if v.name.startswith(f"{name}_")})
    for c in client.containers.list(all=True, filters=label):
        gone["container(s)"] += _removed(c, force=True)
    for v in mine:  # a helper container a killed copy left on a volume would keep it
        for helper in client.containers.list(all=True, filters={"label": volumes.HELPER_LABEL, "volume": v}):
            _removed(helper, force=True)
    for v in mine.values():
        gone["volume(s)"] += _removed(v, force=True)
    for n in client.networks.list(filters=label):
        gone["network(s)"] += _removed(n)
    return gone


def _removed(thing, **how) -> bool:
    """Removed now; False when it was gone already (a rehearsal alongside may remove the
    same dead sandbox)."""
    try:
        thing.remove(**how)
        return True
    except Exception:  # noqa: BLE001 -- docker's NotFound or a conflict with that removal
        return False


def remove(client, rec: dict) -> list[str]:
    """Remove everything rec names that still exists; what went, one part a line (none:
    nothing was left). Safe to run twice, and on a sandbox only half made."""
    said = []
    gone = sweep(client, rec["name"])
    if any(gone.values()):
        said.append(", ".join(f"{n} {what}" for what, n in gone.items() if n) + f" of {rec['name']}")
    if _remove_worktree(Path(rec["repo"]), Path(rec["tree"])):
        said.append(f"the git worktree {rec['tree']}")
    work = Path(rec["work"])
    parked = _unpark(client, work / "snapshots" / snapshots.SAFETY)
    if parked:
        said.append(f"{parked} parked copy(ies) under the engine's {volumes.PARKED}/")
    if work.exists():
        clones.release_all(client, work / "snapshots")
        clones.release_all(client, work / "snapshots" / snapshots.SAFETY)
        shutil.rmtree(work, ignore_errors=True)
        said.append(f"the scratch folder {work}")
    return said


def _remove_worktree(repo: Path, tree: Path) -> bool:
    """The worktree, and git's own note of it; whether there was one."""
    try:
        lines = gitstate.run(repo, "worktree", "list", "--porcelain").splitlines()
    except UndoitError:  # the live repository is gone: nothing of git's to tidy
        return False
    listed = any(line in (f"worktree {tree}", f"worktree {os.path.realpath(tree)}") for line in lines)
    if listed:
        with contextlib.suppress(UndoitError):
            gitstate.run(repo, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(tree, ignore_errors=True)
        gitstate.run(repo, "worktree", "prune")
    return listed


def parked_root(client) -> Path | None:
    """The folder volumes.park_folder makes its folders in on this engine (None: the
    engine's folders are not this host's, and nothing is ever parked)."""
    from ..stack import engine

    if not engine.on_this_host():
        return None
    return Path(client.info()["DockerRootDir"]) / volumes.PARKED


def _unpark(client, safety: Path) -> int:
    """The folders the sandbox's safety sets parked volumes in (beside the engine's, not
    in the scratch folder): one per set, named by it, whether or not the set was finished."""
    root = parked_root(client) if safety.is_dir() else None
    n = 0
    for s in sorted(safety.iterdir()) if root is not None else ():
        folder = root / s.name
        if s.is_dir() and folder.is_dir():
            volumes.discard(folder)
            n += 1
    return n
