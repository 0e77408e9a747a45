"""git for the project under rollback: repos, refs, commits.

git runs through subprocess, not sh: a rollback runs about thirty git commands, and
sh's own start-up cost 7 ms more per command than git itself (rev-parse: 9.7 ms
against 2.4 ms here), a fifth of a files rollback's time of its own.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ..store import durable
from ..errors import PLAN, UndoitError

# an identity, so commits and tags work on a bare machine; no signing prompt
_IDENTITY = ("-c", "user.name=undoit", "-c", "user.email=undoit@localhost",
             "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false")


def git(root: Path, *args: str, stdin: str | None = None, env: dict | None = None) -> str:
    """One git command in root; its whole stdout (names that are not UTF-8 kept as
    surrogates); UndoitError with git's own last words on failure."""
    data = stdin.encode(errors="surrogateescape") if stdin is not None else None
    # stdin closed unless given: git never waits on the kit's terminal (a push asks through /dev/tty)
    proc = subprocess.run(["git", "-C", str(root), *_IDENTITY, *args], capture_output=True, env=env, input=data,
                          stdin=subprocess.DEVNULL if data is None else None)
    if proc.returncode:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise UndoitError(f"git {' '.join(args)} failed in {root}: {msg[-1] if msg else proc.returncode}")
    return proc.stdout.decode(errors="surrogateescape")


def run(root: Path, *args: str) -> str:
    """One git command; stdout stripped."""
    return git(root, *args).strip()


def is_repo(root: Path) -> bool:
    """Whether root is the top of a repository of its own (not a folder inside one)."""
    return (Path(root) / ".git").exists()


def init(root: Path, message: str) -> str:
    """A new repository at root with everything in it committed on `main`; returns the commit."""
    run(root, "init", "-q", "-b", "main")
    run(root, "add", "-A")
    run(root, "commit", "-q", "-m", message)
    return run(root, "rev-parse", "HEAD")


def head(root: Path) -> str:
    return run(root, "rev-parse", "HEAD")


def dirty(root: Path, paths=(".",)) -> list[str]:
    """Uncommitted changes (tracked or untracked, not ignored) under paths: the paths.

    -z, because the plain porcelain output's leading status space is lost to the strip
    that every other git output gets (it turned `proxy/nginx.conf` into `roxy/...`)."""
    records = _z(root, "status", "--porcelain", "-z", "--untracked-files=all", "--", *paths)
    out, skip = [], False
    for rec in records:
        if skip:  # the source path of a rename or copy: not a change of its own
            skip = False
            continue
        out.append(rec[3:])
        skip = rec[:1] in ("R", "C")
    return out


def refs_at(root: Path, commit: str, kind: str) -> list[str]:
    """Names of tags (kind='tags') or branches (kind='heads') that point at commit."""
    out = run(root, "for-each-ref", f"--points-at={commit}", "--format=%(refname:short)", f"refs/{kind}/")
    return out.split()


def ref_exists(root: Path, ref: str) -> bool:
    try:
        run(root, "rev-parse", "--verify", "--quiet", ref)
        return True
    except UndoitError:
        return False


def ignored(root: Path, rels) -> set[str]:
    """The paths of rels (relative to root) that git ignores; tracked ones never are."""
    if not rels:
        return set()
    proc = subprocess.run(["git", "-C", str(root), "check-ignore", "-z", "--stdin"], capture_output=True,
                          input=b"".join(os.fsencode(r) + b"\0" for r in rels))
    if proc.returncode not in (0, 1):  # 1: none of them is ignored
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise UndoitError(f"git check-ignore failed in {root}: {msg[-1] if msg else proc.returncode}")
    return {os.fsdecode(p) for p in proc.stdout.split(b"\0") if p}


def template_regex(template: str):
    """A regex matching names the template makes ({date}, {timestamp} are digits)."""
    import re

    parts = re.split(r"(\{date\}|\{timestamp\})", template)
    rx = "".join(
        r"\d{8}" if p == "{date}" else r"\d{8}-\d{6}" if p == "{timestamp}" else re.escape(p)
        for p in parts
    )
    return re.compile(rx + r"(-\d+)?$")


def commit_worktree(root: Path, message: str) -> str:
    """A commit of the working tree (untracked files included) on top of HEAD, made with a
    throwaway index so neither HEAD, the index nor any file changes."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, GIT_INDEX_FILE=os.path.join(tmp, "index"))
        git(root, "read-tree", "HEAD", env=env)
        git(root, "add", "-A", env=env)
        tree = git(root, "write-tree", env=env).strip()
        return git(root, "commit-tree", tree, "-p", "HEAD", "-m", message, env=env).strip()


def backup_refs(root: Path, branch_tpl: str, tag_tpl: str, restored_paths, include_dirty: bool,
                remote: str | None, when, taken=lambda: set()) -> dict:
    """The git half of a backup: a backup branch and an annotated tag at HEAD.

    An unchanged HEAD reuses the tag (and branch) an earlier backup made. Uncommitted
    changes under restored paths are refused unless include_dirty, in which case they
    are committed on the backup branch only. A new tag's name is free here and is none
    of taken() (names other machines' sets carry: a fresh clone has no backup tags).
    """
    source = head(root)
    changes = dirty(root, restored_paths)
    if changes and not include_dirty:
        first = changes[0]
        raise UndoitError(
            f"uncommitted changes in {len(changes)} path(s) a rollback restores (first: {first}); "
            "commit them, or run `doit backup include_dirty=1` to keep them on the backup branch only"
        )
    target = source
    if changes:
        target = commit_worktree(root, f"undoit: uncommitted changes at backup time (on top of {source[:12]})")
    tag_rx, branch_rx = template_regex(tag_tpl), template_regex(branch_tpl)
    tags = [t for t in refs_at(root, target, "tags") if tag_rx.match(t)]
    branches = [b for b in refs_at(root, target, "heads") if branch_rx.match(b)]
    stamp = {"date": when.strftime("%Y%m%d"), "timestamp": when.strftime("%Y%m%d-%H%M%S")}
    created = []
    if branches:
        branch = sorted(branches)[0]
    else:
        branch = _free_name(root, branch_tpl.format(**stamp), "refs/heads/")
        run(root, "branch", branch, target)
        created.append(branch)
    if tags:
        tag = sorted(tags)[0]
    else:
        tag = _free_name(root, tag_tpl.format(**stamp), "refs/tags/", taken())
        run(root, "tag", "-a", tag, target, "-m", f"undoit backup of {source[:12]} ({stamp['timestamp']} UTC)")
        created.append(tag)
    if remote and created:
        run(root, "push", remote, f"refs/heads/{branch}", f"refs/tags/{tag}")
    return {"head": source, "commit": target, "branch": branch, "tag": tag,
            "dirty_included": bool(changes), "pushed_to": remote if remote else None,
            "reused": not created}


def _free_name(root: Path, name: str, namespace: str, taken=frozenset()) -> str:
    candidate, n = name, 1
    while candidate in taken or ref_exists(root, namespace + candidate):
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def _z(root: Path, *args: str, stdin: str | None = None) -> list[str]:
    """A git listing command with -z output, as a list of records."""
    return [p for p in git(root, *args, stdin=stdin).split("\0") if p]


def in_repo(root: Path) -> bool:
    """Whether root lies in a git work tree (its top, or a folder of a monorepo)."""
    try:
        return run(root, "rev-parse", "--is-inside-work-tree") == "true"
    except UndoitError:
        return False


def require_repo(root: Path) -> None:
    if not Path(root).is_dir() or not in_repo(root):
        raise UndoitError(f"{root} is not in a git repository: undoit backs up and restores the project's files "
                          "with git (git init && git add -A && git commit)", exit_code=PLAN)


def _specs(paths) -> list[str]:
    """The plan's paths as git pathspecs relative to the project folder; refused when they
    would reach outside it (a monorepo's other projects are never touched)."""
    out = []
    for p in paths:
        parts = p.strip().split("/")
        if p.startswith("/") or ".." in parts or p.startswith(":"):
            raise UndoitError(f"path {p!r}: paths in the plan are relative to the project folder and stay in it")
        out.append(p.strip() or ".")
    return out or ["."]


def kept_inside(root: Path, keep) -> list[str]:
    """The kit's own files and folders that lie inside the project folder (the plan,
    snapshots/, reports/, the log, bind-mounted data), as paths relative to it: no
    restore of files ever touches them, whatever git's exclude file says (a fresh clone's
    says nothing yet, and the plan itself is usually tracked)."""
    top = Path(os.path.abspath(root))
    out = []
    for p in keep:
        try:
            rel = Path(os.path.abspath(p)).relative_to(top)
        except ValueError:
            continue  # outside the project: no restore reaches it
        if str(rel) != ".":
            out.append(rel.as_posix())
    return sorted(set(out))


def _excluded(rel: str, kept: list[str]) -> bool:
    return any(rel == k or rel.startswith(k + "/") for k in kept)


def restore_plan(root: Path, ref: str, paths, keep=()) -> dict:
    """What a no-overlay restore of paths from ref would do, without doing it; a fixed
    number of git processes whatever the number of files. Every path is relative to the
    project folder (root), which may be a folder of a larger repository. keep: the kit's
    own files and folders (absolute paths), never restored, removed or moved aside.

    checkout: files tracked at ref (restored, deleted ones reappear)
    remove:   tracked files added since ref (they disappear)
    move:     untracked files in those paths (moved aside, never deleted)
    changed:  files whose current content a restore overwrites or removes
    missing:  files at ref that git does not track here (a restore creates them, or
              overwrites an ignored file of that name: it is in changed too)
    """
    root = Path(root)
    kept = kept_inside(root, keep)
    # a plain path the kit keeps names nothing to restore (git refuses a pathspec whose
    # every match is excluded)
    specs = [s for s in _specs(paths) if not _excluded(os.path.normpath(s), kept)]
    if not specs:
        return {"ref": ref, "checkout": [], "remove": [], "move": [], "changed": [], "missing": [], "restore": [],
                "specs": [], "kept": kept}
    specs += [f":(exclude,literal){k}" for k in kept]
    # git run in root: ls-files and diff --relative both list the folder's part of the
    # tree, relative to it. No ls-tree: it takes no wildcards, and a plan's paths may
    # hold them (backend/*/README.md); diff and ls-files match pathspecs as checkout does
    from concurrent.futures import ThreadPoolExecutor

    # three git processes at once (they only read): the index, the working tree against
    # ref, the index against ref
    with ThreadPoolExecutor(3) as pool:
        listed = pool.submit(_z, root, "ls-files", "-z", "-t", "--cached", "--deleted", "--others",
                             "--exclude-standard", "--", *specs)
        diffed = pool.submit(_z, root, "diff", "--no-renames", "--name-status", "--relative", "-z", ref, "--", *specs)
        cached = pool.submit(_z, root, "diff", "--cached", "--no-renames", "--name-only", "--relative", "-z", ref,
                             "--", *specs)
    # -t: "? " untracked, "R " in the index but not on disk, else ("H ", "S " skip-worktree,
    # "M " unmerged) in the index; a file listed R is listed H too
    index, deleted, untracked = set(), set(), set()
    for record in listed.result():
        tag, path = record[:1], record[2:]
        (untracked if tag == "?" else deleted if tag == "R" else index).add(path)
    tracked = index - deleted  # on disk too
    status = diffed.result()
    pairs = list(zip(status[0::2], status[1::2]))
    differ = {path for _, path in pairs}
    # the files at ref: those on disk, less those added since ref, plus those deleted since
    # (diff compares the ref with the working tree: a file on disk and not at ref is A, a
    # file at ref and not on disk is D, a file neither at ref nor on disk is not listed)
    at_ref = (tracked - {path for st, path in pairs if st == "A"}) | {path for st, path in pairs if st == "D"}
    remove = sorted(tracked - at_ref)
    missing = sorted(at_ref - tracked - untracked)
    # an ignored file where ref has one (ls-files lists neither): checkout overwrites it
    ignored = {rel for rel in missing if os.path.islink(root / rel) or os.path.isfile(root / rel)}
    changed = sorted((differ & tracked & at_ref) | set(remove) | ignored)
    # what checkout must touch: files that differ from ref on disk or in the index; the
    # rest already are the ref's (pathspec matching is per file x pathspec: 10,000 files
    # handed to checkout cost seconds where the 1,000 that differ cost a tenth of that)
    staged = set(cached.result())
    restore = sorted(((differ | staged) & (at_ref | set(remove))) | set(missing))
    return {"ref": ref, "checkout": sorted(at_ref), "remove": remove, "move": sorted(untracked),
            "changed": changed, "missing": missing, "restore": restore, "specs": _named(specs, index | at_ref),
            "kept": kept}


def _named(specs, names) -> list[str] | None:
    """The pathspecs that name one of names at least (git refuses one that matches
    nothing), exclusions kept; None when one is not a plain path (a wildcard): only git
    knows its matches."""
    out, excludes = [], [s for s in specs if s.startswith(":(exclude")]
    for spec in specs:
        if spec in excludes:
            continue
        if any(c in spec for c in "*?[\\"):
            return None
        p = os.path.normpath(spec)
        if p == "." or p in names or any(n.startswith(p + "/") for n in names):
            out.append(spec)
    return out + excludes if out else out


SAVED = "files.tar"  # in a restore's safety folder: what it overwrote or removed


def restore_paths(root: Path, ref: str, paths, safety_dir: Path, plan: dict | None = None) -> dict:
    """No-overlay restore of paths from ref (the runbook's `git checkout REF -- PATHS`, minus
    its overlay): tracked-at-ref files come back, files added since are removed, untracked
    files are moved into safety_dir/moved. Everything it overwrites or removes is first
    saved in safety_dir/files.tar, so `doit undo` can put it back bit for bit. One git
    checkout for all files (plan: restore_plan's answer, when the caller has it)."""
    import shutil

    plan = plan or restore_plan(root, ref, paths)
    root = Path(root)
    if plan["changed"]:
        save_files(root, plan["changed"], safety_dir / SAVED)
    made: set[Path] = set()  # one mkdir per folder, not one per file
    for rel in plan["move"]:
        dst = safety_dir / "moved" / rel
        if dst.parent not in made:
            dst.parent.mkdir(parents=True, exist_ok=True)
            made.add(dst.parent)
        shutil.move(str(root / rel), dst)
    files = plan["restore"]
    # checkout.workers=0: one writer per core (git >= 2.32; older ones ignore it)
    if files and plan.get("specs"):
        # the plan's own pathspecs, those restore_plan listed with: git writes the files
        # that differ and skips the rest (10,000 files, 1,100 differing: 0.09 s, where the
        # 1,100 names as pathspecs took 0.25 s, git matching each file against each name)
        git(root, "-c", "checkout.workers=0", "checkout", "--no-overlay", ref, "--", *plan["specs"])
    elif files:
        # a wildcard among them: the exact files, literally (a name may hold * or :), on
        # stdin (no argv limit)
        _z(root, "-c", "checkout.workers=0", "--literal-pathspecs", "checkout", "--no-overlay", ref,
           "--pathspec-from-file=-", "--pathspec-file-nul", stdin="\0".join(files) + "\0")
    return plan


def save_files(root: Path, rels, archive: Path) -> None:
    """The files as they are, in one tar (owner only) that is on the disk before the
    caller overwrites any of them. One file, where a copy per file cost a create per file
    and per folder (a thousand files: about a second on ext4). Written under .part and
    renamed: an archive by this name is whole, so undo never writes back a cut file.

    GNU tar writes it (a thousand small files: 0.02-0.05 s, where Python's tarfile took
    0.09-0.16 s), in PAX (any name length, names that are not UTF-8, mtimes to the
    nanosecond); put_back reads it with tarfile."""
    archive.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    part = archive.with_name(archive.name + ".part")
    names = b"".join(os.fsencode(rel) + b"\0" for rel in rels)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        # --verbatim-files-from: a name that begins with "-" is a name, not an option
        proc = subprocess.run(["tar", "--create", "--format=pax", "--directory", str(root), "--no-recursion", "--null",
                               "--verbatim-files-from", "--files-from=-"], input=names, stdout=f,
                              stderr=subprocess.PIPE)
        if proc.returncode:  # 1: a file changed while it was read; the copy would not be what was there
            msg = proc.stderr.decode(errors="replace").strip().splitlines()
            part.unlink()
            raise UndoitError(f"could not save the files a restore overwrites, in {archive}: "
                              f"{msg[-1] if msg else f'tar exited with {proc.returncode}'}; nothing was restored")
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, archive)
    durable.sync_dir(archive.parent)


def put_back(root: Path, rels, archive: Path) -> int:
    """Write back the files of rels that save_files put in archive, replacing what is
    there now (a symlink is replaced, not followed); how many were put back."""
    import tarfile

    wanted, n = set(rels), 0
    with tarfile.open(archive) as tar:
        for member in tar:
            if member.name not in wanted:
                continue
            dst = root / member.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            # the kit's own archive of the project's own files: extracted as written
            tar.extract(member, root, filter="fully_trusted")
            n += 1
    return n


def differences(root: Path, ref: str, paths, keep=()) -> list[str]:
    """Files under paths whose working-tree state differs from ref (empty: they match);
    keep: the kit's own files, which a restore leaves as they are (restore_plan)."""
    plan = restore_plan(root, ref, paths, keep)
    return sorted(set(plan["changed"]) | set(plan["missing"]) | set(plan["move"]))


def tag(root: Path, name: str, target: str = "HEAD", message: str | None = None, force: bool = False) -> None:
    args = ["tag"] + (["-f"] if force else []) + (["-a", "-m", message] if message else []) + [name, target]
    run(root, *args)


def ignore_privately(root: Path, paths) -> list[str]:
    """Keep the kit's own folders and files (snapshots, reports, the log) that lie inside
    the project's work tree out of git's view: listed in the repository's private ignore
    file (.git/info/exclude, never a tracked file), so they never make the tree dirty and
    a no-overlay restore never moves them aside. Returns the patterns it added."""
    root = Path(root).resolve()
    try:
        top = Path(run(root, "rev-parse", "--show-toplevel")).resolve()
        exclude = Path(run(root, "rev-parse", "--git-path", "info/exclude"))
    except UndoitError:
        return []
    if not exclude.is_absolute():
        exclude = root / exclude
    have = exclude.read_text().splitlines() if exclude.exists() else []
    added = []
    for p in paths:
        p = Path(p).resolve()
        try:
            rel = p.relative_to(top)
        except ValueError:
            continue  # outside the work tree: nothing to hide
        if str(rel) == ".":
            continue
        pattern = "/" + rel.as_posix() + ("/" if p.is_dir() or not p.suffix else "")
        if pattern not in have:
            added.append(pattern)
    if added:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with open(exclude, "a") as f:
            f.write("".join(f"{a}\n" for a in added))
    return added
