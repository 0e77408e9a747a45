"""The kit's offline images: built from Debian's packages, rebuilt only when the recipe changes."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from .engine import environment
from ..errors import UndoitError
from ..plan import settings

RECIPE_DIR = Path(__file__).resolve().parent / "recipes"
LABEL = "undoit.recipe"


def prefix() -> str:
    """The images' name prefix (UNDOIT_IMAGE_PREFIX, from the environment or the kit's .env)."""
    return settings.current().image_prefix


def names(pfx: str | None = None) -> dict[str, str]:
    """Role -> image reference; compose files (`${UNDOIT_IMAGE_PREFIX}/postgres:15`) and the tests use these names."""
    p = pfx or prefix()
    return {
        "base": f"{p}/base:bookworm",
        "postgres": f"{p}/postgres:15",
        "redis": f"{p}/redis:7",
        "s3": f"{p}/s3:latest",
        "app": f"{p}/app:latest",
    }


def recipe_hash() -> str:
    """sha256 over every file of the recipe (names and contents)."""
    h = hashlib.sha256()
    for path in sorted(RECIPE_DIR.iterdir()):
        if path.is_file():
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def missing_or_outdated() -> list[str]:
    """Images that are absent or carry another recipe's label (empty = up to date)."""
    want = recipe_hash()
    out = []
    for ref in names().values():
        res = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{index .Config.Labels \"%s\"}}" % LABEL, ref],
            capture_output=True,
            text=True,
            env=environment(),
        )
        if res.returncode != 0 or res.stdout.strip() != want:
            out.append(ref)
    return out


def up_to_date() -> bool:
    """doit uptodate: every image exists with this recipe's label."""
    return not missing_or_outdated()


def build() -> None:
    """Run the recipe (mmdebstrap + docker import + docker build -); output streams through."""
    from .engine import client

    client()  # fail in one line before a minute of mmdebstrap, not after
    env = dict(environment(), PREFIX=prefix(), RECIPE=recipe_hash())
    res = subprocess.run(["bash", str(RECIPE_DIR / "build.sh")], env=env)
    if res.returncode != 0:
        raise UndoitError(f"image build failed (exit {res.returncode}); see the output above")
    left = missing_or_outdated()
    if left:
        raise UndoitError(f"image build finished but these are missing or outdated: {', '.join(left)}")
