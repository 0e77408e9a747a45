"""A second dockerd on this host whose data root is a loop-mounted copy-on-write
filesystem (btrfs, or XFS made with reflink=1): the engine the copy-on-write tests and
bench/cow.py run the kit against (`../shared/reference/cow.md`'s recipe).

It runs in this process's own mount namespace, on a socket of its own, off the host's
network (no bridge, no iptables), so the kit reads its volumes' folders directly, as it
would on a machine whose /var/lib/docker is btrfs or XFS. The images it needs are
copied in from the host's engine (nothing is ever pulled).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker

MKFS = {"btrfs": ["mkfs.btrfs", "-q"], "xfs": ["mkfs.xfs", "-q", "-m", "reflink=1"]}


class Unavailable(Exception):
    """This machine cannot make such an engine (no mkfs, no loop device)."""


@dataclass
class LoopEngine:
    fs: str
    base: Path
    client: docker.DockerClient
    host: str  # unix://<socket>
    root: Path  # the engine's data root, on the copy-on-write filesystem


@contextmanager
def loop_engine(fs: str, gib: float, images: list[str]):
    """The engine, up, with `images` loaded from the host's; removed whole at the end
    (dockerd stopped, which stops its containers; the filesystem unmounted)."""
    if shutil.which(MKFS[fs][0]) is None:
        raise Unavailable(f"no {MKFS[fs][0]} (apt-get install btrfs-progs xfsprogs)")
    base = Path(tempfile.mkdtemp(prefix=f"uc{fs[0]}", dir="/tmp"))  # short: a unix socket's path
    mnt, sock = base / "mnt", base / "docker.sock"
    mnt.mkdir()
    proc = None
    try:
        with open(base / "fs.img", "wb") as f:
            f.truncate(int(gib * (1 << 30)))
        subprocess.run([*MKFS[fs], str(base / "fs.img")], check=True, capture_output=True)
        mounted = subprocess.run(["mount", "-o", "loop", str(base / "fs.img"), str(mnt)], capture_output=True,
                                 text=True)
        if mounted.returncode:
            raise Unavailable(f"no loop mount here: {mounted.stderr.strip()}")
        with open(base / "dockerd.log", "wb") as log:
            proc = subprocess.Popen(["dockerd", "--host", f"unix://{sock}", "--data-root", str(mnt / "docker"),
                                     "--exec-root", str(base / "exec"), "--pidfile", str(base / "dockerd.pid"),
                                     "--bridge=none", "--iptables=false", "--ip-masq=false"],
                                    stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        client = _answering(proc, sock, base)
        for image in images:
            _copy_image(image, sock)
        yield LoopEngine(fs, base, client, f"unix://{sock}", mnt / "docker")
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _unmount(mnt)
        shutil.rmtree(base, ignore_errors=True)


def _answering(proc, sock: Path, base: Path) -> docker.DockerClient:
    deadline = time.monotonic() + 60
    while True:
        try:
            client = docker.DockerClient(base_url=f"unix://{sock}", timeout=120)
            client.ping()
            return client
        except Exception as err:  # noqa: BLE001 -- not up yet: no socket, or not answering
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the loop-mounted dockerd did not answer: "
                                   f"{(base / 'dockerd.log').read_text()[-800:]}") from err
            time.sleep(0.2)


def _copy_image(image: str, sock: Path) -> None:
    saver = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    loaded = subprocess.run(["docker", "-H", f"unix://{sock}", "load", "-q"], stdin=saver.stdout,
                            capture_output=True, text=True, timeout=600)
    saver.stdout.close()
    if saver.wait() != 0 or loaded.returncode != 0:
        raise RuntimeError(f"copying {image} into the loop-mounted engine failed: {loaded.stderr.strip()}")


def _unmount(mnt: Path) -> None:
    for _ in range(10):
        if not os.path.ismount(mnt) or subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0:
            return
        time.sleep(1)
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@contextmanager
def as_the_engine(engine: LoopEngine):
    """This process's DOCKER_HOST is the loop engine for the block (and the kit's cached
    client follows): compose, the SDK and the kit's own runs all talk to it."""
    from scripts.stack import engine as kit_engine

    saved = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = engine.host
    kit_engine.client.cache_clear()
    try:
        yield engine
    finally:
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved
        kit_engine.client.cache_clear()
