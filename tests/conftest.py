"""Fixtures: a real engine, the kit's images, throwaway compose projects and git repos.

Everything a test creates in Docker carries a unique prefix and is removed at teardown,
pass or fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from demo import kit as demo
from scripts.repo import gitstate
from scripts.stack import engine, images
from scripts.plan import plan as planmod
from scripts.stack.compose import for_plan

from .projects import MINI_COMPOSE, MINI_PLAN, lay_out, write_plan

KIT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items):
    """The tests marked long first, longest first (a stable sort: otherwise in order).
    With two workers (pytest.ini's -n 2) the short ones fill in around them instead of a
    long test starting last and running on alone."""
    def minutes(item) -> float:
        mark = item.get_closest_marker("long")
        return -(mark.args[0] if mark.args else 1) if mark else 0

    items.sort(key=minutes)


def _parked_folders() -> set[Path]:
    """The folders safety sets keep swapped-out volumes in, under the engine's data root
    (scripts/volumes.park_folder)."""
    from scripts.stack import volumes

    try:
        root = Path(engine.client().info()["DockerRootDir"]) / volumes.PARKED
        return set(root.iterdir()) if root.is_dir() else set()
    except Exception:
        return set()


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # once, in the process that outlives the workers
        session.config.parked_before = _parked_folders()


def pytest_sessionfinish(session):
    """Every test's rollbacks parked what they replaced outside its tmp_path: removed once
    all workers are done (a worker's own teardown could take a folder another still uses).
    Only this session's: a folder is named for its safety set, and that set lies in this
    session's temporary folders (another pytest on the same engine, a CI run beside a
    developer's, parks its own meanwhile, and its undo needs them)."""
    before = getattr(session.config, "parked_before", None)
    if before is None:
        return
    new = _parked_folders() - before
    if not new:
        return
    base = session.config._tmp_path_factory.getbasetemp()
    ours = {child.name for safety in base.rglob("safety") if safety.is_dir() for child in safety.iterdir()}
    for folder in new:
        if folder.name in ours:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_client():
    """The engine's client; in CI a missing engine fails the test instead of skipping it."""
    if not engine.engine_available():
        msg = "no Docker engine answers (start one: bash .ci/docker-engine.sh)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return engine.client()


@pytest.fixture(scope="session")
def kit_images(docker_client):
    """The kit's images, built once per session when missing or outdated."""
    if not images.up_to_date():
        images.build()
    return images.names()


def unique(prefix: str = "ut") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def sweep(client, project: str) -> None:
    """Remove every container, volume and network of a compose project or with its prefix."""
    label = {"label": f"com.docker.compose.project={project}"}
    for c in client.containers.list(all=True, filters=label) + client.containers.list(
        all=True, filters={"name": project}
    ):
        try:
            c.remove(force=True, v=True)
        except Exception:  # already gone
            pass
    for n in client.networks.list(filters=label) + client.networks.list(names=[project]):
        if n.name.startswith(project):
            try:
                n.remove()
            except Exception:
                pass
    for image in client.images.list(name=f"undoit-pin/{project.lower()}"):  # the kit's pins of its images
        for tag in image.tags:
            if tag.startswith(f"undoit-pin/{project.lower()}:"):
                try:
                    client.images.remove(tag)
                except Exception:
                    pass
    doomed = client.volumes.list(filters=label) + [v for v in client.volumes.list() if v.name.startswith(project)]
    for v in doomed:  # the kit's helper containers a killed run left on them would block the removal
        for c in client.containers.list(all=True, filters={"label": "undoit.helper", "volume": v.name}):
            try:
                c.remove(force=True)
            except Exception:
                pass
    for v in doomed:
        try:
            v.remove(force=True)
        except Exception:
            pass


@pytest.fixture
def scratch_repo(tmp_path) -> Path:
    """A real git repository with one commit, in tmp_path."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "README.md").write_text("scratch\n")
    gitstate.init(root, "initial")
    return root


@pytest.fixture
def demo_plan(docker_client, kit_images, tmp_path):
    """The plan pointed at a fresh copy of the demo with a unique compose project name."""
    name = unique("utdemo")
    root = tmp_path / "demo"
    demo.materialize(root)
    plan = planmod.load(KIT / "phases.toml", env={})
    plan = replace(plan, root=root, project_name=name, snapshots_dir=tmp_path / "snapshots")
    yield plan
    sweep(docker_client, name)
    shutil.rmtree(root, ignore_errors=True)


def make_stack(name: str, tmp_path: Path, compose_yaml: str, plan: dict, files: dict | None = None):
    """A compose project (tmp_path/project, with a config.txt) in a fresh git repo plus its
    plan (tests/projects.plan), up and healthy; returns the loaded plan.

    The caller sweeps the project `name` at teardown, whatever happened (see `mini`).
    """
    root = lay_out(tmp_path / "project", {"docker-compose.yml": compose_yaml, "config.txt": "v1\n", **(files or {})})
    plan = planmod.load(write_plan(tmp_path / "phases.toml", plan, name, root, kept=tmp_path), env={})
    for_plan(plan).up(wait_timeout=60)
    return plan


@pytest.fixture
def mini(docker_client, kit_images, tmp_path):
    """A two-service stack (redis with `data`, an idle app with `files`) in a git repo, up."""
    name = unique()
    try:
        yield make_stack(name, tmp_path, MINI_COMPOSE, MINI_PLAN)
    finally:
        sweep(docker_client, name)


def doit(plan, *args, timeout=300) -> subprocess.CompletedProcess:
    """`doit <args>` on plan as a user runs it (CI=true: never asks), its output captured."""
    env = dict(os.environ, UNDOIT_PLAN=str(plan.path), CI="true")
    return subprocess.run([sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "-d", str(KIT), *args],
                          env=env, capture_output=True, text=True, timeout=timeout)


def volume_path(client, plan, key) -> Path:
    """Host directory of a plan volume (tests write into volumes directly)."""
    from scripts.stack import volumes

    ref = volumes.resolve(client, plan.project_name, [key])[key]
    return Path(client.api.inspect_volume(ref.name)["Mountpoint"])


def health(client, plan, service) -> str | None:
    """The health status of a plan's service (its one container)."""
    cs = client.containers.list(all=True, filters={"label": [
        f"com.docker.compose.project={plan.project_name}", f"com.docker.compose.service={service}"]})
    assert len(cs) == 1, cs
    cs[0].reload()
    return (cs[0].attrs["State"].get("Health") or {}).get("Status")


def wait_health(client, plan, service, want, timeout=30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if health(client, plan, service) == want:
            return True
        time.sleep(0.5)
    return False


def demo_plan_file(tmp: Path, name: str) -> Path:
    return demo.copy_plan(tmp, name)


@contextlib.contextmanager
def live_demo(client, tmp: Path, prefix: str):
    """A demo of its own, up, seeded, settled and backed up; swept afterwards."""
    from scripts.backup import backup

    name = unique(prefix)
    demo.materialize(tmp / "demo")
    plan = planmod.load(demo_plan_file(tmp, name), env={})
    try:
        demo.up(plan)
        # settle the databases: autovacuum analysing the fresh seed would otherwise
        # change the live volumes during a test, on its own
        compose = for_plan(plan)
        compose.exec("mvp-postgres", "psql", "-U", "postgres", "-d", "app", "-qc", "VACUUM ANALYZE")
        compose.exec("mvp-platform-vehicles-db", "psql", "-U", "postgres", "-d", "vehicles", "-qc", "VACUUM ANALYZE")
        backup.backup(plan)
        yield plan
    finally:
        sweep(client, name)
        shutil.rmtree(tmp / "demo", ignore_errors=True)


def replaced_contents_gone(folder: Path, timeout: float = 60) -> list[str]:
    """The names in a volume's folder once what a restore replaced is deleted: that runs
    in a process of its own (volumes.discard_later), so wait for it, within reason. A
    staging folder is never waited for: none may be left at all."""
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if "undoit-staging-" in n], names
    deadline = time.monotonic() + timeout
    while any(n.startswith("undoit-discard-") for n in names) and time.monotonic() < deadline:
        time.sleep(0.1)
        names = sorted(p.name for p in folder.iterdir())
    return names


@contextlib.contextmanager
def ssh_server(extra_config: str = ""):
    """OpenSSH (Debian's sshd) on 127.0.0.1 with a throwaway host key and client key,
    for root; yields (port, a folder to put first on PATH whose `ssh` uses the throwaway
    client config: the user's own ~/.ssh is never read or changed). Stopped and removed
    afterwards."""
    import socket
    import subprocess
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="ussh", dir="/tmp"))
    for key in ("host_key", "id"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", base / key], check=True)
    shutil.copy(base / "id.pub", base / "authorized_keys")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base}/host_key\nPidFile {base}/sshd.pid\n"
        f"AuthorizedKeysFile {base}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n" + extra_config)
    (base / "ssh_config").write_text(
        f"Host 127.0.0.1\n  Port {port}\n  IdentityFile {base}/id\n  IdentitiesOnly yes\n  BatchMode yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n")
    (base / "bin").mkdir()
    (base / "bin" / "ssh").write_text(f"#!/bin/sh\nexec /usr/bin/ssh -F {base}/ssh_config \"$@\"\n")
    (base / "bin" / "ssh").chmod(0o755)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    with open(base / "sshd.log", "wb") as log:
        proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", base / "sshd_config"],
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline and proc.poll() is None, (base / "sshd.log").read_text()
            time.sleep(0.1)
        yield port, str(base / "bin")
    finally:
        proc.terminate()
        proc.wait(20)
        shutil.rmtree(base, ignore_errors=True)
