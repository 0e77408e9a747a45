"""git for the project under rollback: repos, refs, commits (sh.git inside)."""

from __future__ import annotations

from pathlib import Path

import sh

from .errors import UndoitError


def git(root: Path):
    """sh.git baked for one repository, identity set so commits work on a bare machine."""
    return sh.git.bake(
        "-C", str(root),
        "-c", "user.name=undoit", "-c", "user.email=undoit@localhost",
        "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false",
        _tty_out=False,
    )


def run(root: Path, *args: str) -> str:
    """One git command; stdout stripped; UndoitError with git's own words on failure."""
    try:
        return str(git(root)(*args)).strip()
    except sh.ErrorReturnCode as err:
        msg = err.stderr.decode(errors="replace").strip().splitlines()
        raise UndoitError(f"git {' '.join(args)} failed in {root}: {msg[-1] if msg else err.exit_code}") from None


def is_repo(root: Path) -> bool:
    return (Path(root) / ".git").exists()


def init(root: Path, message: str) -> str:
    """A new repository at root with everything in it committed on `main`; returns the commit."""
    run(root, "init", "-q", "-b", "main")
    run(root, "add", "-A")
    run(root, "commit", "-q", "-m", message)
    return run(root, "rev-parse", "HEAD")
