"""Files the stack reads that git ignores (`.env`, `secrets/`): said at every backup, kept
in the set when the plan asks for them (`[backup] include_ignored`).

A rollback puts files back from git, so a git-ignored env file or secret is in no
commit, and a machine lost with it loses the stack's secrets: after a recovery compose
refuses to start, or starts with other passwords than the restored database holds.
Every backup names each such file compose reads, once; with `include_ignored` the set
holds them in one archive (owner-only here, encrypted at rest offsite by restic), and
`doit recover` writes back the ones that are missing.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

from ..repo import gitstate
from ..store import snapshots
from ..errors import UndoitError

ARCHIVE = "ignored.tar.zst"


def read_by_compose(plan, config: dict) -> dict[Path, str]:
    """Files and folders compose reads for this project -> what reads them: services'
    env_file, the secrets' and configs' files, the project folder's .env (compose's own
    interpolation), the plan's env_files, and read-only bind mounts."""
    root = Path(os.path.abspath(plan.root))
    out: dict[Path, str] = {}

    def add(path, why: str) -> None:
        p = Path(path)
        out.setdefault(Path(os.path.abspath(p if p.is_absolute() else root / p)), why)

    add(root / ".env", "compose's own .env")
    for f in plan.env_files:
        add(f, "the plan's env_files")
    for svc, spec in sorted((config.get("services") or {}).items()):
        for ef in spec.get("env_file") or []:
            add(ef.get("path") if isinstance(ef, dict) else ef, f"env_file of {svc}")
        for m in spec.get("volumes") or []:
            if m.get("type") == "bind" and m.get("read_only") and m.get("source"):
                add(m["source"], f"mounted read-only into {svc}")
    for kind in ("secrets", "configs"):
        for name, spec in sorted((config.get(kind) or {}).items()):
            if (spec or {}).get("file"):
                add(spec["file"], f"{kind[:-1]} {name}")
    return out


def missing(plan, config: dict) -> list[str]:
    """The files compose cannot start the stack without (secrets' and configs' files; a
    required env_file already stops `docker compose config` itself) that are not here:
    one line each."""
    out = []
    for kind in ("secrets", "configs"):
        for name, spec in sorted((config.get(kind) or {}).items()):
            f = (spec or {}).get("file")
            if f and not (Path(plan.root) / f).exists():
                out.append(f"{_shown(plan, f)} ({kind[:-1]} {name})")
    return out


def _shown(plan, path: str) -> str:
    """A path compose gave as absolute, relative to the project where it lies in it."""
    p, root = Path(os.path.abspath(Path(plan.root) / path)), Path(os.path.abspath(plan.root))
    return p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p)


def ignored(plan, config: dict) -> dict[str, str]:
    """The files of read_by_compose that exist, lie in the project and that git ignores:
    relative path -> what reads it."""
    root = Path(os.path.abspath(plan.root))
    rels = {}
    for path, why in read_by_compose(plan, config).items():
        if path.exists() and path.is_relative_to(root) and path != root:
            rels[path.relative_to(root).as_posix()] = why
    return {rel: rels[rel] for rel in sorted(gitstate.ignored(plan.root, list(rels)))}


def included(plan) -> list[str]:
    """The files [backup] include_ignored names, as paths relative to the project (a
    folder: every file in it, sorted)."""
    root = Path(plan.root)
    out = []
    for entry in plan.include_ignored:
        p = root / entry
        if p.is_dir():
            out += sorted(f.relative_to(root).as_posix() for f in p.rglob("*") if f.is_file() or f.is_symlink())
        elif p.is_file():
            out.append(Path(os.path.normpath(entry)).as_posix())
    return sorted(set(out))


def _covered(rel: str, plan) -> bool:
    return any(rel == os.path.normpath(e) or rel.startswith(os.path.normpath(e) + "/") for e in plan.include_ignored)


def uncovered(plan, config: dict) -> list[str]:
    """One line per git-ignored file compose reads that no set holds."""
    return [f"{rel} ({why}) is ignored by git, so no set holds it: a machine lost with it loses it (add it to "
            "[backup] include_ignored to keep it in the set)"
            for rel, why in ignored(plan, config).items() if not _covered(rel, plan)]


def digests(plan) -> dict[str, str]:
    """sha256 of each included file as it is now (a backup is stale when one changed)."""
    root = Path(plan.root)
    return {rel: _sha(root / rel) for rel in included(plan)}


def _sha(path: Path) -> str:
    if path.is_symlink():
        return "link:" + os.readlink(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(plan, set_path: Path) -> dict | None:
    """The included files in one archive of the set (owner only); its manifest entry."""
    import zstandard

    rels = included(plan)
    missing = [e for e in plan.include_ignored if not (Path(plan.root) / e).exists()]
    if missing:
        from ..output.progress import say

        say(f"WARNING: [backup] include_ignored names {', '.join(missing)}, which does not exist: not in the set")
    if not rels:
        return None
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in rels:
            tar.add(Path(plan.root) / rel, arcname=rel, recursive=False)
    data = zstandard.ZstdCompressor().compress(buf.getvalue())
    with snapshots.private_open(set_path / ARCHIVE) as f:
        f.write(data)
    return {"file": ARCHIVE, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "files": digests(plan)}


def put_back(plan, s) -> list[str]:
    """Write back the set's included files that are missing here (a recovery): one line
    each; a file that is here and differs is left as it is, and said."""
    import zstandard

    entry = (s.manifest or {}).get("ignored")
    if not entry:
        return []
    path = s.path / entry["file"]
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise UndoitError(f"{path} fails its checksum: refusing to write its files back")
    root, said = Path(plan.root), []
    with tarfile.open(fileobj=io.BytesIO(zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 30))) \
            as tar:
        for member in tar:
            dst = root / member.name
            if dst.exists() or dst.is_symlink():
                same = _sha(dst) == entry["files"].get(member.name)
                said.append(f"{member.name}: here already" + ("" if same else
                            " and differs from set " + s.id + "'s copy: left as it is"))
                continue
            tar.extract(member, root, filter="data")
            os.chmod(dst, 0o600) if not dst.is_symlink() else None
            said.append(f"{member.name}: written back from set {s.id} (owner only)")
    return said
