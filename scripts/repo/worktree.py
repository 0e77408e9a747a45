"""The project's files as one fingerprint: what a put-back proves it restored.

A rollback that fails is put back to the state from just before it (rollback/putback.py).
"Put back" is proven, not assumed: HEAD, the index and every file of the project folder
(tracked or not, ignored ones aside) are fingerprinted before the first step and again
after the put-back, and must be equal.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from . import gitstate


def fingerprint(root: Path, keep=()) -> dict:
    """HEAD, the index's tree, and the files under root as git would stage them (keep:
    the kit's own paths, left out: its log, reports and snapshots change as it runs, and
    bind-mounted data is proven as a volume). A fixed number of git processes: tracked
    files are hashed only where their stat data changed (git's index cache), untracked
    ones are read (hash-object without -w: nothing is written into the repository)."""
    specs = [".", *(f":(exclude,literal){k}" for k in gitstate.kept_inside(root, keep))]
    index = Path(gitstate.run(root, "rev-parse", "--git-path", "index"))
    index = index if index.is_absolute() else Path(root) / index
    with tempfile.TemporaryDirectory(prefix="undoit-index-") as tmp:
        scratch = Path(tmp) / "index"
        if index.exists():
            shutil.copy2(index, scratch)
        env = {**os.environ, "GIT_INDEX_FILE": str(scratch)}
        gitstate.git(root, "add", "--update", "--", *specs, env=env)
        tracked = gitstate.git(root, "write-tree", env=env).strip()
    untracked = [p for p in gitstate.git(root, "ls-files", "-z", "--others", "--exclude-standard", "--",
                                         *specs).split("\0") if p]
    return {"head": gitstate.head(root), "index": _index_tree(root), "tracked": tracked,
            "untracked": _untracked(root, sorted(untracked))}


def _index_tree(root: Path) -> str:
    try:
        return gitstate.run(root, "write-tree")
    except Exception:  # unmerged entries: no tree; their listing stands for them
        return "unmerged:" + hashlib.sha256(gitstate.git(root, "ls-files", "-s", "-z").encode(
            errors="surrogateescape")).hexdigest()


def _untracked(root: Path, rels: list[str]) -> dict[str, str]:
    """Each untracked file: its mode and content's id (a symlink's target, not what it
    points to)."""
    files = [r for r in rels if not os.path.islink(Path(root) / r)]
    blobs = dict(zip(files, gitstate.git(root, "hash-object", "--no-filters", "--stdin-paths",
                                         stdin="\n".join(files) + "\n").split())) if files else {}
    out = {}
    for rel in rels:
        path = Path(root) / rel
        content = os.readlink(path) if path.is_symlink() else blobs.get(rel, "")
        out[rel] = f"{path.lstat().st_mode:o} {content}"
    return out


def differences(root: Path, before: dict, after: dict, limit: int = 5) -> list[str]:
    """What differs between two fingerprints, in words, naming the first paths."""
    out = []
    if before.get("head") != after.get("head"):
        out.append(f"HEAD is {after.get('head', '?')[:12]}, was {before.get('head', '?')[:12]}")
    for key, what in (("index", "the git index"), ("tracked", "tracked files")):
        if before.get(key) != after.get(key):
            try:
                paths = gitstate.git(root, "diff", "--name-only", "-z", before[key], after[key]).split("\0")
            except Exception:  # a tree no longer there (gc), or an unmerged index: no names
                paths = []
            out.append(f"{what} differ{_named([p for p in paths if p], limit)}")
    was, now = before.get("untracked") or {}, after.get("untracked") or {}
    changed = sorted(p for p in set(was) | set(now) if was.get(p) != now.get(p))
    if changed:
        out.append(f"untracked files differ{_named(changed, limit)}")
    return out


def _named(paths: list[str], limit: int) -> str:
    if not paths:
        return ""
    return ": " + ", ".join(paths[:limit]) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")
