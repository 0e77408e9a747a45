"""Killed runs: a backup killed while it holds services stopped leaves a record, and the
next kit command starts them again and says so, never taking "stopped" for normal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from scripts import journal, snapshots

from .conftest import KIT, volume_path

pytestmark = pytest.mark.docker


def status(client, plan, service) -> str:
    cs = client.containers.list(all=True, filters={"label": [f"com.docker.compose.project={plan.project_name}",
                                                             f"com.docker.compose.service={service}"]})
    return cs[0].status if cs else "none"


def doit(plan, *args, **kw):
    env = dict(os.environ, UNDOIT_PLAN=str(plan.path), CI="true")
    return subprocess.Popen([sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "-d", str(KIT), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_backup_killed_with_services_stopped_is_repaired_by_the_next(docker_client, mini, sig):
    data = volume_path(docker_client, mini, "data")
    with open(data / "bulk.bin", "wb") as f:  # an export that takes a moment
        f.write(os.urandom(160 << 20))
    proc = doit(mini, "backup")
    deadline = time.monotonic() + 60
    while status(docker_client, mini, "store") != "exited":
        assert time.monotonic() < deadline and proc.poll() is None, "the backup never stopped the store"
        time.sleep(0.02)
    proc.send_signal(sig)
    killed_out, _ = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:
        # killed outright: the store stays down, the record of why stays too
        assert status(docker_client, mini, "store") == "exited"
        assert journal.unfinished(mini.snapshots_dir, mini.project_name)
    else:
        # asked to stop: it brings the store back on its way out (its record stays, for
        # the next run to check: there is nothing left to do)
        assert status(docker_client, mini, "store") == "running", killed_out[-2000:]
    assert not [s for s in snapshots.all_sets(mini.snapshots_dir) if s.complete]  # no set counted
    res = doit(mini, "backup")
    out, _ = res.communicate(timeout=300)
    assert res.returncode == 0, out[-3000:]
    assert ("repaired: started store again" in out) == (sig == signal.SIGKILL), out[-3000:]
    assert status(docker_client, mini, "store") == "running"
    assert journal.unfinished(mini.snapshots_dir, mini.project_name) == []
    assert [s for s in snapshots.all_sets(mini.snapshots_dir) if s.complete]
