"""The bundled demo stack: materialized from demo/ into a scratch repository, brought up, seeded."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import gitstate
from .compose import Compose
from .errors import UndoitError
from .plan import KIT_ROOT, Plan

DEMO_SOURCE = KIT_ROOT / "demo"


def compose_for(plan: Plan) -> Compose:
    return Compose(plan.root, plan.project_name, plan.compose_files, env=stack_env(plan))


def stack_env(plan: Plan) -> dict[str, str]:
    """Environment for compose and the demo's scripts: the project name and image prefix."""
    from .images import prefix

    return dict(
        os.environ,
        COMPOSE_PROJECT_NAME=plan.project_name,
        UNDOIT_IMAGE_PREFIX=prefix(),
    )


def materialize(dest: Path, source: Path = DEMO_SOURCE) -> bool:
    """Copy demo/ into dest as a fresh git repository; False when it is already there.

    A scratch repository keeps the kit's branches, tags and checkouts out of this
    repository's own history.
    """
    dest = Path(dest)
    if gitstate.is_repo(dest):
        return False
    if dest.exists() and any(dest.iterdir()):
        raise UndoitError(f"{dest} exists and is not a git repository; move it away first")
    shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
    gitstate.init(dest, "demo: the stack before the simplification")
    return True


def up(plan: Plan) -> None:
    """Bring the demo up healthy and seed its data (idempotent)."""
    materialize(plan.root)
    compose = compose_for(plan)
    compose.up(wait_timeout=180)
    seed = plan.root / "ops" / "seed.sh"
    if seed.exists():
        import sh

        try:
            sh.bash(str(seed), _cwd=str(plan.root), _env=stack_env(plan), _tty_out=False)
        except sh.ErrorReturnCode as err:
            tail = err.stderr.decode(errors="replace").strip().splitlines()[-1:]
            raise UndoitError(f"demo seed failed: {' '.join(tail)}") from None


def down(plan: Plan, volumes: bool = True) -> None:
    """Stop and remove the demo's containers, networks and (by default) its volumes."""
    if not gitstate.is_repo(plan.root):
        return
    compose_for(plan).down(volumes=volumes)
