"""The kit's own settings, read once: the environment, then the kit's `.env`.

`.env` is read, never loaded into os.environ (python-dotenv's dotenv_values): a value
keeps where it came from, and nothing the kit starts inherits the file by accident.
The environment wins. Every key the kit reads is listed here and in `.env.example`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from dotenv import dotenv_values

KIT_ROOT = Path(__file__).resolve().parents[2]

KEYS = {
    "UNDOIT_PLAN": "path of the plan file",
    "UNDOIT_PROJECT_DIR": "the project the plan is about (overrides [project] root)",
    "UNDOIT_PROJECT_NAME": "compose project name (overrides [project] name)",
    "UNDOIT_IMAGE_PREFIX": "prefix of the images the kit builds",
    "UNDOIT_GIT_REMOTE": "git remote that backups are pushed to; unset = never push",
    "UNDOIT_ENGINE": '"remote": reach a local engine only through its API, as if it were another host\'s',
    "DOCKER_HOST": "the Docker engine to talk to (docker's own variable)",
    "DOCKER_CONTEXT": "the docker context to talk to, when DOCKER_HOST is not set (docker's own variable)",
}


class Settings(dict):
    """The settings as a mapping (key -> value, only those set), with a name for each."""

    @property
    def plan_path(self) -> Path:
        return Path(self.get("UNDOIT_PLAN") or KIT_ROOT / "phases.toml")

    @property
    def image_prefix(self) -> str:
        return self.get("UNDOIT_IMAGE_PREFIX") or "undoit"

    @property
    def git_remote(self) -> str | None:
        return self.get("UNDOIT_GIT_REMOTE") or None

    @property
    def engine_remote(self) -> bool:
        return self.get("UNDOIT_ENGINE") == "remote"


def read(kit_root: Path | None = None, environ=None) -> Settings:
    """The settings from kit_root/.env (default: the kit's), the environment (default
    os.environ) winning."""
    environ = os.environ if environ is None else environ
    values = {k: v for k, v in dotenv_values(Path(kit_root or KIT_ROOT) / ".env").items() if v is not None}
    values.update({k: v for k, v in environ.items() if k in KEYS})
    return Settings(values)


@lru_cache(maxsize=1)
def current() -> Settings:
    """This process's settings, read on first use (current.cache_clear() reads them again)."""
    return read()
