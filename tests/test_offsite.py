"""Sets offsite through restic, on a project that is not the demo: a local-path
repository (and the disaster-recovery drill from it), a REST repository served by
`rclone serve restic` on 127.0.0.1 (deduplication over a change cycle), and faults.

The repository password is a canary: it must appear in no output and no file the kit
writes."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.backup import backup
from scripts.offsite import offsite
from scripts.store import restic
from scripts.repo import gitstate
from scripts.plan import plan as planmod
from scripts.stack.compose import Compose

from .conftest import KIT, ssh_server, sweep, unique
from .projects import keeper_project, lay_out, more, write_plan

pytestmark = pytest.mark.docker

CANARY = "canary-Zq7-offsite-pw-4711"

# one service keeping blobs in its volume, healthy once they are all there (`ready`)
COMPOSE, PLAN = keeper_project("vault", "blobs", "ready", "put the blobs back")


def vault_plan(tmp: Path, name: str, root: Path, repo: str) -> Path:
    (tmp / "restic-password").write_text(CANARY + "\n")
    (tmp / "restic-password").chmod(0o600)
    offsite = {"repository": repo, "password_file": f"{tmp}/restic-password", "check_subset": "50%"}
    return write_plan(tmp / "phases.toml", more(PLAN, offsite=offsite), name, root, kept=tmp)


def vault_stack(docker_client, tmp: Path, repo: str, mib: int = 2):
    """The project in a git repo, up, its volume holding `mib` MiB of incompressible
    files (1 MiB each) and a `ready` marker; returns (plan, compose, volume folder)."""
    name = unique("vault")
    root = lay_out(tmp / "vault", {"docker-compose.yml": COMPOSE, "app.conf": "v1\n"}, "vault")
    path = vault_plan(tmp, name, root, repo)
    compose = Compose(root, name)
    compose("create")
    folder = Path(docker_client.api.inspect_volume(f"{name}_blobs")["Mountpoint"])
    rng = random.Random(5)
    for i in range(mib):
        (folder / f"blob{i:03d}").write_bytes(rng.randbytes(1 << 20))
    (folder / "ready").write_text("yes\n")
    compose.up(wait_timeout=60)
    return planmod.load(path, env={}), compose, folder


def doit(plan_path: Path, *args, ok=True, path_first=None, timeout=600):
    env = dict(os.environ, UNDOIT_PLAN=str(plan_path), CI="true")
    if path_first:
        env["PATH"] = f"{path_first}:{env['PATH']}"
    res = subprocess.run([sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "-d", str(KIT), *args],
                         env=env, capture_output=True, text=True, timeout=timeout)
    out = res.stdout + res.stderr
    assert (res.returncode == 0) == ok, out[-3000:]
    assert CANARY not in out
    return out


def no_canary_in(*folders: Path) -> None:
    for folder in folders:
        for p in folder.rglob("*"):
            if p.is_file() and p.name != "restic-password" and not p.is_relative_to(folder / "repo"):
                assert CANARY.encode() not in p.read_bytes(), p


def test_offsite_then_disaster_recovery_on_an_empty_snapshots_folder(docker_client, kit_images, tmp_path):
    repo = tmp_path / "repo"
    plan, compose, folder = vault_stack(docker_client, tmp_path, str(repo))
    name = plan.project_name
    try:
        doit(plan.path, "backup")
        out = doit(plan.path, "offsite", ok=False)  # no repository yet: one line, nothing sent
        assert "no restic repository at" in out and "doit offsite init=1" in out and "Traceback" not in out
        out = doit(plan.path, "offsite", "init=1")
        assert "sent (" in out and "no errors" in out
        assert "every set is already in" in doit(plan.path, "offsite")
        assert "here + offsite" in doit(plan.path, "snapshots")
        # a second cycle: a committed change and a new backup; only the new set is sent
        (plan.root / "app.conf").write_text("v2\n")
        gitstate.run(plan.root, "commit", "-qam", "v2")
        (folder / "blob000").write_bytes(b"cycle two\n")
        doit(plan.path, "backup")
        out = doit(plan.path, "offsite")
        assert out.count("sent (") == 1
        want = {p.name: p.read_bytes() for p in folder.iterdir()}

        # the disaster: the host's snapshots and volumes are gone; a fresh folder holds a
        # clone of the project and the repository's settings only
        compose("down", "--volumes")
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        subprocess.run(["git", "clone", "-q", str(plan.root), str(fresh / "vault")], check=True)
        # a plan whose project folder is not there yet: one line, and no set is left behind
        path = vault_plan(fresh, name, fresh / "not-cloned", str(repo))
        out = doit(path, "fetch", "set=latest", ok=False)
        assert "is not in a git repository" in out and not list((fresh / "snapshots").glob("2*"))
        path = vault_plan(fresh, name, fresh / "vault", str(repo))
        out = doit(path, "recover", "yes=1")
        assert "verified" in out and "recorded in git" in out
        assert "outcome: success" in out and "recovered: the stack is now set" in out
        folder = Path(docker_client.api.inspect_volume(f"{name}_blobs")["Mountpoint"])
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == want
        assert (fresh / "vault" / "app.conf").read_text() == "v2\n"
        no_canary_in(tmp_path)
    finally:
        sweep(docker_client, name)


def test_an_sftp_repository_through_openssh(docker_client, kit_images, tmp_path):
    """restic's sftp: backend through Debian's sshd on 127.0.0.1: sent, checked, fetched
    back into an empty snapshots folder and verified."""
    with ssh_server("Subsystem sftp internal-sftp\n") as (_port, shim):
        plan, _compose, _folder = vault_stack(docker_client, tmp_path, f"sftp:root@127.0.0.1:{tmp_path}/sftp-repo")
        try:
            doit(plan.path, "backup")
            out = doit(plan.path, "offsite", "init=1", path_first=shim)
            assert "sent (" in out and "no errors" in out
            assert (tmp_path / "sftp-repo" / "config").is_file()
            shutil.rmtree(plan.snapshots_dir)
            out = doit(plan.path, "fetch", "set=latest", path_first=shim)
            assert "verified" in out
        finally:
            sweep(docker_client, plan.project_name)


@pytest.fixture
def rest_server(tmp_path):
    """`rclone serve restic` on 127.0.0.1, its data in tmp_path; stopped afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "rest-data"
    data.mkdir()
    proc = subprocess.Popen(["rclone", "serve", "restic", "--addr", f"127.0.0.1:{port}", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline and proc.poll() is None, "rclone serve restic did not start"
            time.sleep(0.1)
        yield f"rest:http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_second_cycle_sends_little_more_than_what_changed(docker_client, kit_images, tmp_path, rest_server):
    # 128 MiB: restic cuts its chunks at 0.5-8 MiB (1 MiB on average), and a changed
    # region costs the chunks around it too (about 3 MiB here); on a small volume that alone
    # would pass 5%
    plan, compose, folder = vault_stack(docker_client, tmp_path, rest_server, mib=128)
    try:
        restic.Repo(plan).init()
        backup.backup(plan)
        first = offsite.send(plan)
        assert len(first["sent"]) == 1 and first["bytes_added"] > 120 << 20
        # 1% of the volume changes in place: the end of one blob and the start of the next
        # (neighbours in the archive), as a database rewrites a run of pages
        new = random.Random(9).randbytes(1310 << 10)
        with open(folder / "blob011", "r+b") as f:
            f.seek(300 << 10)
            f.write(new[:724 << 10])
        with open(folder / "blob012", "r+b") as f:
            f.write(new[724 << 10:])
        (plan.root / "app.conf").write_text("v2\n")
        gitstate.run(plan.root, "commit", "-qam", "v2")
        backup.backup(plan)
        second = offsite.send(plan)
        assert len(second["sent"]) == 1
        ratio = second["bytes_added"] / first["bytes_added"]
        assert ratio <= 0.05, (second["bytes_added"], first["bytes_added"])
    finally:
        sweep(docker_client, plan.project_name)


def test_faults_are_one_line_and_leave_the_local_sets_alone(docker_client, kit_images, tmp_path):
    repo = tmp_path / "repo"
    plan, _compose, _folder = vault_stack(docker_client, tmp_path, str(repo))
    try:
        doit(plan.path, "backup")
        doit(plan.path, "offsite", "init=1")
        local = sorted(p.name for p in plan.snapshots_dir.iterdir())
        (tmp_path / "restic-password").write_text("not-the-password\n")
        out = doit(plan.path, "offsite", ok=False)
        assert "wrong password for the restic repository" in out and "local sets are untouched" in out
        (tmp_path / "restic-password").write_text(CANARY + "\n")
        text = plan.path.read_text()
        plan.path.write_text(text.replace(str(repo), "rest:http://127.0.0.1:9/"))
        out = doit(plan.path, "offsite", ok=False)
        assert "cannot reach the restic repository at rest:http://127.0.0.1:9/" in out
        plan.path.write_text(text.replace('password_file = "%s/restic-password"' % tmp_path, 'password = "x"'))
        out = doit(plan.path, "offsite", ok=False)
        assert "a password never goes in the plan" in out
        # another restic holds an exclusive lock: the check after sending is refused, in one line
        plan.path.write_text(text)
        env = dict(os.environ, RESTIC_REPOSITORY=str(repo), RESTIC_PASSWORD=CANARY)
        holder = subprocess.Popen(["restic", "backup", "--stdin", "--stdin-filename", "held"], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(2)  # its lock is taken
            (plan.root / "app.conf").write_text("v2\n")
            gitstate.run(plan.root, "commit", "-qam", "v2")
            doit(plan.path, "backup")
            local = sorted(p.name for p in plan.snapshots_dir.iterdir())
            out = doit(plan.path, "offsite", ok=False)
            assert "another restic holds a lock on" in out, out[-1500:]
        finally:
            holder.stdin.close()
            holder.wait(30)
        assert sorted(p.name for p in plan.snapshots_dir.iterdir()) == local
        no_canary_in(tmp_path)
    finally:
        sweep(docker_client, plan.project_name)
        shutil.rmtree(tmp_path / "repo", ignore_errors=True)


def test_a_full_repository_is_one_line(docker_client, kit_images, tmp_path):
    """The repository's disk fills while a set is sent: one line, the local set intact."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        plan, _compose, _folder = vault_stack(docker_client, tmp_path, str(small / "repo"), mib=3)
        try:
            doit(plan.path, "backup")
            local = {p.name: p.stat().st_size for p in next(plan.snapshots_dir.glob("2*")).iterdir()}
            out = doit(plan.path, "offsite", "init=1", ok=False)
            assert "restic repository at %s is full" % (small / "repo") in out, out[-1500:]
            assert "local sets are untouched" in out and "Traceback" not in out
            assert {p.name: p.stat().st_size for p in next(plan.snapshots_dir.glob("2*")).iterdir()} == local
        finally:
            sweep(docker_client, plan.project_name)
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_prune_here_and_offsite_keeps_what_rollbacks_need(docker_client, kit_images, tmp_path):
    from scripts.store import snapshots

    plan, _compose, folder = vault_stack(docker_client, tmp_path, str(tmp_path / "repo"))

    def sets():
        return {s.id: s for s in snapshots.all_sets(plan.snapshots_dir, plan.project_name) if s.complete}

    def commit(text):
        (plan.root / "app.conf").write_text(text)
        gitstate.run(plan.root, "commit", "-qam", text)

    try:
        doit(plan.path, "backup")  # b1: baseline of cycle 1
        (b1,) = sets()
        (folder / "blob000").write_bytes(b"later in cycle one\n")
        doit(plan.path, "backup")  # n1: same HEAD, the volume changed: joins cycle 1
        (n1,) = set(sets()) - {b1}
        commit("v2")
        assert "unchanged since set %s" % n1 in doit(plan.path, "backup")  # b2 uses n1's archive
        (b2,) = set(sets()) - {b1, n1}
        commit("v3")
        (folder / "blob001").write_bytes(b"cycle three\n")
        doit(plan.path, "backup")  # b3: the current cycle
        (b3,) = set(sets()) - {b1, n1, b2}
        doit(plan.path, "offsite", "init=1")
        out = doit(plan.path, "prune", "keep_last=1", "dry_run=1")
        assert "dry run: nothing was removed (3 of 4" in out and len(sets()) == 4
        assert f"keep   {b3} (backup, here + offsite" in out and "in the current cycle" in out
        out = doit(plan.path, "prune", "keep_last=2", "dry_run=1")
        assert f"remove {b1}" in out and "(1 of 4 set(s)" in out and len(sets()) == 4
        out = doit(plan.path, "prune", "keep_last=2")
        assert f"keep   {n1}" in out and f"holds archives set {b2} uses" in out
        assert "removed 1 set(s)" in out and "1 forgotten offsite" in out
        assert set(sets()) == {n1, b2, b3}
        assert set(restic.Repo(plan).sets()) == {n1, b2, b3}
        doit(plan.path, "verify", f"set={b2}")  # its archive, in n1, is whole (exit 0)
        out = doit(plan.path, "rollback:blobs", "yes=1", f"set={b2}")
        assert "outcome: success" in out
        assert (folder / "blob000").read_bytes() == b"later in cycle one\n"
    finally:
        sweep(docker_client, plan.project_name)
