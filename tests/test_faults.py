"""Killed runs: a backup killed while it holds services stopped leaves a record, and the
next kit command starts them again and says so, never taking "stopped" for normal."""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from scripts import errors
from scripts.backup import backup
from scripts.repo import gitstate
from scripts.rollback import repair, rollback, runlog
from scripts.stack import volumes
from scripts.store import journal, listings, lock, snapshots

from .conftest import KIT, make_stack, sweep, unique, volume_path, wait_health
from .projects import MINI_COMPOSE, MINI_PLAN, check, do, healthy_when, mini_compose, more, phase, refill, volume

pytestmark = pytest.mark.docker


def status(client, plan, service) -> str:
    cs = client.containers.list(all=True, filters={"label": [f"com.docker.compose.project={plan.project_name}",
                                                             f"com.docker.compose.service={service}"]})
    return cs[0].status if cs else "none"


def doit(plan, *args, env=None, **kw):
    env = dict(env or os.environ, UNDOIT_PLAN=str(plan.path), CI="true")
    return subprocess.Popen([sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "-d", str(KIT), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def store_stopped_by(client, plan, *args) -> subprocess.Popen:
    """`doit <args>` started on a stack whose store holds 160 MiB more (its export takes a
    moment), once it has stopped the store for that export. The plan's `data` gets
    precopy = false: a pre-copied export stops the store for well under a second, too
    short to be cut there for sure (the sweeps below cut pre-copied backups anywhere)."""
    text = plan.path.read_text()
    if "precopy = false" not in text:
        plan.path.write_text(text.replace("[volumes.data]\n", "[volumes.data]\nprecopy = false\n", 1))
    with open(volume_path(client, plan, "data") / "bulk.bin", "wb") as f:
        f.write(os.urandom(160 << 20))
    proc = doit(plan, *args)
    deadline = time.monotonic() + 60
    while status(client, plan, "store") != "exited":
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.02)
    return proc


SIGNALS = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]  # killed; a closed terminal; Ctrl-C
BY_NAME = {"ids": lambda s: s.name}


@pytest.mark.parametrize("sig", SIGNALS, **BY_NAME)
def test_a_backup_killed_with_services_stopped_is_repaired_by_the_next(docker_client, mini, sig):
    proc = store_stopped_by(docker_client, mini, "backup")
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


DB_PLAN = more(MINI_PLAN, phase("db", "store rollback", refill(["data"], ["store"]), volumes=["data"]))


@pytest.mark.parametrize("sig", SIGNALS, **BY_NAME)
def test_a_checkpoint_killed_with_services_stopped_is_repaired_by_the_next(docker_client, kit_images, tmp_path, sig):
    name = unique()
    try:
        plan = make_stack(name, tmp_path, MINI_COMPOSE, DB_PLAN)
        backup.backup(plan)
        proc = store_stopped_by(docker_client, plan, "checkpoint:db")
        proc.send_signal(sig)
        killed, _ = proc.communicate(timeout=120)
        if sig == signal.SIGKILL:
            assert status(docker_client, plan, "store") == "exited"
        else:
            said_so(killed)
            everything_runs(docker_client, plan, killed)
        assert not [s for s in snapshots.all_sets(plan.snapshots_dir) if s.complete and s.manifest["kind"] == "checkpoint"]
        out = finish(plan, "checkpoint:db", "force=1")  # its tag was moved before the kill
        assert ("repaired: started store again" in out) == (sig == signal.SIGKILL), out[-3000:]
        everything_runs(docker_client, plan, out)
        assert journal.unfinished(plan.snapshots_dir, plan.project_name) == []
        assert [s for s in snapshots.all_sets(plan.snapshots_dir) if s.complete and s.manifest["kind"] == "checkpoint"]
    finally:
        sweep(docker_client, name)


def test_a_second_ctrl_c_skips_bringing_services_back_says_so_and_the_next_run_does_it(docker_client, mini):
    proc = store_stopped_by(docker_client, mini, "backup")
    proc.send_signal(signal.SIGINT)
    said = []
    for line in proc.stdout:  # the first Ctrl-C: it says it is bringing the store back, and how to skip
        said.append(line)
        if "Ctrl-C again skips it" in line:
            proc.send_signal(signal.SIGINT)
            break
    out = "".join(said) + proc.communicate(timeout=60)[0]
    assert "interrupted: bringing store back first (Ctrl-C again skips it)" in out, out[-3000:]
    assert "interrupted again: bringing store back skipped" in out, out[-3000:]
    assert proc.returncode == errors.INTERRUPTED and "Traceback" not in out, out[-3000:]
    assert journal.unfinished(mini.snapshots_dir, mini.project_name)  # kept for the next run
    left_down = status(docker_client, mini, "store") != "running"
    res = doit(mini, "backup")
    nxt, _ = res.communicate(timeout=300)
    assert res.returncode == 0, nxt[-3000:]
    assert ("repaired: started store again" in nxt) == left_down, nxt[-3000:]
    assert status(docker_client, mini, "store") == "running"
    assert journal.unfinished(mini.snapshots_dir, mini.project_name) == []


# --- killed rollbacks and undos ---------------------------------------------------------

VOL_PLAN = more(MINI_PLAN, phase("vol", "files volume rollback", refill(["files"], ["app"])),
                phase("volbad", "files volume rollback whose check fails", refill(["files"], ["app"]),
                      [check("command", argv=["false"])]))

POINTS = 10  # kill points per run kind and signal, spread over the run's measured length


@pytest.fixture
def filled(docker_client, kit_images, tmp_path):
    """The mini stack with a phase that refills `files` (32 MiB in 512 files, so a restore
    takes long enough to be cut), backed up."""
    name = unique()
    try:
        plan = make_stack(name, tmp_path, MINI_COMPOSE, VOL_PLAN)
        files = volume_path(docker_client, plan, "files")
        for i in range(512):
            (files / f"f{i:04d}.bin").write_bytes(os.urandom(64 << 10))
        backup.backup(plan)
        yield plan
    finally:
        sweep(docker_client, name)


def state(client, plan) -> tuple:
    """The files volume exactly: every entry's metadata and every file's content."""
    name = volumes.resolve(client, plan.project_name, ["files"])["files"].name
    entries = tuple(sorted((e.path, e.mode, e.uid, e.gid, e.size, e.mtime_ns) for e in volumes.listing(client, name)
                           if e.path != b"."))
    return entries, volumes.content_digests(client, name)


def finish(plan, *args, env=None) -> str:
    proc = doit(plan, *args, env=env)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"doit {' '.join(args)}: {out[-3000:]}"
    return out


def cut(plan, sig, after: float, *args, env=None) -> str:
    proc = doit(plan, *args, env=env)
    time.sleep(after)
    proc.send_signal(sig)
    # asked to stop, it stops: no compose child or engine call left to run out its timeout
    out, _ = proc.communicate(timeout=600 if sig == signal.SIGKILL else 30)
    return out


@functools.cache
def before_quiet() -> list[str]:
    """Where a traceback may point before the kit's quiet handler is in place: dodo.py's
    line that imports it (its first import of the kit), and the kit's files that this
    import loads, found by making it in a fresh interpreter (wherever they live)."""
    lines = (KIT / "dodo.py").read_text().splitlines()
    n, module = next((n, m.group(1)) for n, line in enumerate(lines, 1)
                     if (m := re.match(r"from (\S+) import interrupts\b", line)))
    code = f"import sys, {module}.interrupts; print(*(getattr(m, '__file__', '') for m in sys.modules.values()))"
    files = subprocess.run([sys.executable, "-c", code], cwd=KIT, capture_output=True, text=True, check=True).stdout
    return [f'{KIT / "dodo.py"}", line {n}',
            *(f for f in files.split() if f.startswith(str(KIT)) and "/site-packages/" not in f)]


def said_so(killed: str) -> None:
    """Asked to stop, the kit says so in one line. Only a signal that lands while Python
    and doit are still starting, before the kit's quiet handler is loaded and with nothing
    done, can end in Python's own KeyboardInterrupt traceback."""
    if "Traceback" in killed:
        kit = [line for line in killed.splitlines() if (str(KIT / "scripts") in line or str(KIT / "dodo.py") in line)
               and not any(where in line for where in before_quiet())]
        assert not kit and killed.rstrip().endswith("KeyboardInterrupt"), killed[-3000:]


def everything_runs(client, plan, said: str = "") -> None:
    assert [status(client, plan, s) for s in ("store", "app")] == ["running", "running"], said[-3000:]


def diverge(client, plan, i: int) -> tuple:
    """Make the volume differ from the set (this round's "old" contents); returns them."""
    files = volume_path(client, plan, "files")
    (files / f"round{i}.txt").write_text(f"written in round {i}\n")
    (files / "f0000.bin").write_bytes(os.urandom(64 << 10))
    return state(client, plan)


def timed(plan, *args, env=None) -> float:
    t0 = time.monotonic()
    finish(plan, *args, env=env)
    return time.monotonic() - t0


def test_a_rollback_interrupted_between_two_steps_brings_the_app_back(docker_client, kit_images, tmp_path,
                                                                    monkeypatch):
    """A signal that lands after one step finished and before the next began (local CI:
    SIGTERM after the volume was refilled, the app left stopped) is the run's too."""
    name = unique()
    try:
        plan = make_stack(name, tmp_path, MINI_COMPOSE, VOL_PLAN)
        backup.backup(plan)
        before = state(docker_client, plan)
        saved = rollback.Run.persist
        calls = []

        def persist(run):  # kept at the start, as step 1 begins, after step 1 (`stop app`): then the signal
            calls.append(1)
            saved(run)
            if len(calls) == 3:
                raise KeyboardInterrupt(f"signal {signal.SIGTERM}")

        monkeypatch.setattr(rollback.Run, "persist", persist)
        with pytest.raises(KeyboardInterrupt):
            rollback.execute(plan, "vol", yes=True)
        everything_runs(docker_client, plan)
        rec = runlog.last_record(plan, kinds=("phase",))
        # the run changed something (it stopped app): it puts back the state from before it
        assert rec["outcome"] == "interrupted" and rec["put_back"]["ok"], rec
        assert "put back" in rec["services"], rec
        assert rec["failed_step"]["n"] == 2 and "before it began" in rec["failed_step"]["detail"], rec
        assert state(docker_client, plan) == before  # the refill never began
    finally:
        sweep(docker_client, name)


@pytest.mark.long
@pytest.mark.parametrize("sig", SIGNALS, **BY_NAME)
@pytest.mark.parametrize("path", ["atomic", "in place"])
def test_a_rollback_killed_anywhere_leaves_old_or_new_never_a_mix(docker_client, filled, path, sig):
    plan, client = filled, docker_client
    env = dict(os.environ, UNDOIT_ENGINE="remote") if path == "in place" else None
    new = state(client, plan)
    diverge(client, plan, 0)
    length = timed(plan, "rollback:vol", "yes=1", env=env)
    assert state(client, plan) == new
    seen = {"old": 0, "new": 0}
    for i in range(1, POINTS + 1):
        old = diverge(client, plan, i)
        killed = cut(plan, sig, length * (i - 0.5) / POINTS, "rollback:vol", "yes=1", env=env)
        if sig != signal.SIGKILL:  # asked to stop: one line, and it brought the app back itself
            said_so(killed)
            if "refilled" not in killed:  # (not onto a volume the next run refills first)
                everything_runs(client, plan, killed)
        out = finish(plan, "repair", env=env)
        vol = volumes.resolve(client, plan.project_name, ["files"])["files"].name
        assert not client.containers.list(all=True, filters={"label": volumes.HELPER_LABEL, "volume": vol}), \
            f"round {i} ({sig.name}): a helper container left on the volume\n{out[-2000:]}"
        staged = list(volume_path(client, plan, "files").parent.glob(f"{volumes.STAGING_PREFIX}*"))
        assert not staged, f"round {i} ({sig.name}): contents built ahead left beside the volume: {staged}"
        now = state(client, plan)
        assert now in (old, new), f"round {i} ({sig.name}): a mix of old and new\n{killed[-2000:]}\n{out[-2000:]}"
        seen["old" if now == old else "new"] += 1
        everything_runs(client, plan)
        assert journal.unfinished(plan.snapshots_dir, plan.project_name) == []
        assert "running" not in {r.get("outcome") for r in runlog.records(plan)}
    # killed outright, early and late alike: both outcomes were met; asked to stop, the run
    # puts back the state from before it (new only if the signal lands during its checks)
    assert seen["old"] and (seen["new"] or sig != signal.SIGKILL), seen
    finish(plan, "rollback:vol", "yes=1", env=env)
    assert state(client, plan) == new
    everything_runs(client, plan)


@pytest.mark.long
# SIGKILL: test_an_undo_killed_at_any_state_change_is_finished_and_said_so, at each state change
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], **BY_NAME)
def test_an_undo_killed_anywhere_is_finished_by_the_next(docker_client, filled, sig):
    plan, client = filled, docker_client
    new = state(client, plan)
    diverge(client, plan, 0)
    finish(plan, "rollback:vol", "yes=1")
    length = timed(plan, "undo")
    for i in range(1, POINTS + 1):
        old = diverge(client, plan, i)
        rollback.execute(plan, "vol", yes=True)  # in this process: only the undo is cut
        assert state(client, plan) == new
        killed = cut(plan, sig, length * (i - 0.5) / POINTS, "undo")
        if sig != signal.SIGKILL:
            said_so(killed)
            if "refilled" not in killed:
                everything_runs(client, plan, killed)
        out = finish(plan, "repair")
        assert state(client, plan) in (old, new), out[-2000:]
        everything_runs(client, plan)
        rec = runlog.last_record(plan, kinds=("phase",))
        if not rec.get("undone"):
            finish(plan, "undo")
        assert state(client, plan) == old
        everything_runs(client, plan)


def test_a_rollback_killed_after_its_safety_copy_is_undone_from_it(docker_client, filled):
    """The run record is on disk from the first step: `doit undo` after a killed rollback
    undoes that rollback, not the one before."""
    plan, client = filled, docker_client
    new = state(client, plan)
    diverge(client, plan, 0)
    finish(plan, "rollback:vol", "yes=1")  # an earlier, finished rollback
    old = diverge(client, plan, 1)
    proc = doit(plan, "rollback:vol", "yes=1")
    deadline = time.monotonic() + 120
    while not [r for r in runlog.records(plan) if r.get("outcome") == "running" and r.get("safety_sets")]:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.01)
    proc.kill()
    proc.communicate()
    out = finish(plan, "undo")
    assert "recorded rollback" in out and "interrupted" in out, out[-3000:]
    assert state(client, plan) == old
    assert new != old
    everything_runs(client, plan)
    assert "INTERRUPTED" in plan.log_path.read_text()


HANG_COMPOSE = mini_compose(healthcheck=healthy_when("test", "!", "-f", "/files/broken"))
HANG_PLAN = more(MINI_PLAN, phase("hang", "restart into a health check that never passes",
                                  [do("restart", services=["app"])]), timeouts={"up": 4})


def test_a_health_check_that_never_passes_times_out_and_frees_the_lock(docker_client, kit_images, tmp_path):
    name = unique()
    try:
        plan = make_stack(name, tmp_path, HANG_COMPOSE, HANG_PLAN)
        backup.backup(plan)
        (volume_path(docker_client, plan, "files") / "broken").write_text("")  # never healthy again
        t0 = time.monotonic()
        rec = rollback.execute(plan, "hang", yes=True)
        took = time.monotonic() - t0
        assert rec["outcome"] == "step failed"
        assert "not healthy after 4 s" in rec["failed_step"]["detail"], rec["failed_step"]
        assert took < 120, took  # bounded by the plan's limit, not the engine's patience
        everything_runs(docker_client, plan)
        with lock.held(rollback.lock_path(plan), "the next run"):  # released: the next run goes
            pass
        assert journal.unfinished(plan.snapshots_dir, plan.project_name) == []
    finally:
        sweep(docker_client, name)


# an app that stops slowly: its stop signal is one it ignores, so the engine waits 4 s;
# its volume is quiesced by stopping it, so a backup stops it too
SLOW_COMPOSE = mini_compose(stop_grace_period="4s", stop_signal="SIGWINCH")
SLOW_PLAN = more(MINI_PLAN, phase("slow", "stop a slow service, then start it",
                                  [do("stop", services=["app"]), do("up", services=["app"])]),
                 volumes={**MINI_PLAN["volumes"], "files": volume("app", quiesce="stop")})


def asked_to_stop(client, plan, service: str, since: float) -> bool:
    """The engine was sent the app's stop signal (it then waits out the grace period)."""
    labels = [f"com.docker.compose.project={plan.project_name}", f"com.docker.compose.service={service}"]
    for _ in client.events(since=f"{since:.6f}", until=f"{time.time() + 60:.6f}", decode=True,
                           filters={"type": "container", "event": "kill", "label": labels}):
        return True
    return False


@pytest.mark.parametrize("task,sig", [("rollback:slow", signal.SIGTERM), ("backup", signal.SIGTERM),
                                      ("rollback:slow", signal.SIGKILL)], ids=["rollback", "backup", "killed"])
def test_a_run_cut_during_a_stop_waits_for_the_engine_then_brings_the_service_back(
        docker_client, kit_images, tmp_path, task, sig):
    # compose dies with the run, its stop request does not: the app still shows as running
    # for a few seconds, then exits. Counted as running then, it would stay stopped (by the
    # run on its way out, or by the repair of the next, for a run killed outright).
    assert "stop_signal: SIGWINCH" in SLOW_COMPOSE
    assert [v["quiesce"] for v in SLOW_PLAN["volumes"].values()] == ["stop", "stop"]
    name = unique()
    try:
        plan = make_stack(name, tmp_path, SLOW_COMPOSE, SLOW_PLAN)
        backup.backup(plan)
        (volume_path(docker_client, plan, "files") / "new.txt").write_text("a change to back up\n")
        since = time.time()
        proc = doit(plan, task, *(["yes=1"] if task.startswith("rollback") else []))  # backup asks nothing
        assert asked_to_stop(docker_client, plan, "app", since), proc.communicate(timeout=60)[0][-3000:]
        time.sleep(0.5)  # compose is waiting on the engine, which waits on the app
        assert status(docker_client, plan, "app") == "running"
        proc.send_signal(sig)
        cut_at = time.monotonic()
        out = proc.communicate(timeout=60)[0]
        if sig == signal.SIGKILL:
            out = finish(plan, "repair")  # at once, while the engine still stops the app
            assert "repaired: started app again" in out, out[-3000:]
        elif task == "backup":
            assert proc.returncode == errors.INTERRUPTED, out[-3000:]
            assert "interrupted: bringing app back first" in out, out[-3000:]
        else:
            assert proc.returncode == errors.INTERRUPTED, out[-3000:]
            # it waited for the engine's stop, then put back the state from before the run
            assert "services: as before the run (put back)" in out, out[-3000:]
        time.sleep(max(0.0, cut_at + 5 - time.monotonic()))  # past the engine's 4 s
        everything_runs(docker_client, plan, out)
    finally:
        sweep(docker_client, name)


# a healthcheck that reads a file live, every 3 s, unhealthy after one failure
LIVE_COMPOSE = mini_compose(healthcheck=healthy_when("test", "!", "-f", "/files/broken", interval="3s", retries=1))
LIVE_PLAN = more(MINI_PLAN, phase("fixed", "the cause of an unhealthy service is gone: up",
                                  [do("up", services=["app"])]))


def test_up_waits_for_the_next_healthcheck_of_a_service_unhealthy_from_before(docker_client, kit_images, tmp_path):
    # compose's `up --wait` gives up at once on a container that is unhealthy when it looks,
    # though its cause is gone (a config read live, restored a moment before): the step
    # waits for the engine's next healthcheck instead of failing the rollback
    assert "interval: 3s" in LIVE_COMPOSE
    name = unique()
    try:
        plan = make_stack(name, tmp_path, LIVE_COMPOSE, LIVE_PLAN)
        backup.backup(plan)
        broken = volume_path(docker_client, plan, "files") / "broken"
        broken.write_text("")
        assert wait_health(docker_client, plan, "app", "unhealthy", timeout=30)
        broken.unlink()  # right after a check: the next one is ~3 s away
        rec = rollback.execute(plan, "fixed", yes=True)
        assert rec["outcome"] == "success", rec["steps"]
        assert "next healthcheck" in rec["steps"][0]["detail"], rec["steps"][0]
        # still refused when the service stays unhealthy
        broken.write_text("")
        assert wait_health(docker_client, plan, "app", "unhealthy", timeout=30)
        rec = rollback.execute(plan, "fixed", yes=True, up_timeout=5)
        assert rec["outcome"] == "step failed" and "unhealthy" in rec["failed_step"]["detail"], rec["failed_step"]
    finally:
        sweep(docker_client, name)


@pytest.mark.long
@pytest.mark.parametrize("sig", SIGNALS, **BY_NAME)
def test_a_backup_killed_anywhere_counts_no_partial_set_and_the_next_repairs(docker_client, filled, sig):
    """SIGKILL, SIGTERM and SIGINT at points spread over `doit backup` (the store is stopped
    for its export): no partial set is ever counted, the newest complete one still
    verifies, and the next backup repairs, runs everything and holds what was written."""
    plan, client = filled, docker_client
    data = volume_path(client, plan, "data")

    def change(i: int) -> None:
        (data / "bulk.bin").write_bytes(os.urandom(48 << 20))  # the stopped export takes a moment
        diverge(client, plan, i)

    change(0)
    length = timed(plan, "backup")
    for i in range(1, POINTS + 1):
        change(i)
        before = snapshots.latest_complete(plan.snapshots_dir, plan.project_name)
        killed = cut(plan, sig, length * (i - 0.5) / POINTS, "backup")
        if sig != signal.SIGKILL:  # the store it stopped for its export is back
            said_so(killed)
            everything_runs(client, plan, killed)
        newest = snapshots.latest_complete(plan.snapshots_dir, plan.project_name)
        for key in newest.volumes:  # the newest set counted is whole, whichever it is
            snapshots.verify_archive(newest, key)
        assert newest.id >= before.id
        finish(plan, "backup")
        everything_runs(client, plan)
        assert journal.unfinished(plan.snapshots_dir, plan.project_name) == []
        latest = snapshots.latest_complete(plan.snapshots_dir, plan.project_name)
        name = volumes.resolve(client, plan.project_name, ["files"])["files"].name
        assert f"round{i}.txt".encode() in {e.path for e in latest.listing("files")}  # this round's write is in
        assert listings.diff(latest.listing("files"), volumes.listing(client, name)) == []


def test_replaced_contents_left_by_a_dead_deleter_go_with_the_next_command(docker_client, mini):
    folder = volume_path(docker_client, mini, "files").parent
    doomed = folder / "undoit-discard-0123456789"
    (doomed / "deep" / "er").mkdir(parents=True)
    (doomed / "deep" / "er" / "old.bin").write_bytes(b"replaced contents")
    live = state_of(docker_client, mini)
    repair.repair_for(mini)
    assert sorted(p.name for p in folder.iterdir()) == ["_data"]
    assert state_of(docker_client, mini) == live  # the volume itself untouched


def state_of(client, plan):
    name = volumes.resolve(client, plan.project_name, ["files"])["files"].name
    return volumes.listing(client, name)


def test_a_task_that_reads_sets_repairs_first_unless_another_run_holds_the_lock(docker_client, mini):
    """`doit snapshots` (like `doit verify` and a bare `doit`) repairs first; while another
    run holds the lock it says so in one line and lists the sets all the same."""
    from scripts.stack.compose import for_plan

    journal.begin(mini.snapshots_dir, mini.project_name, "backup", stopped=["store"])  # a backup that died
    for_plan(mini).stop(["store"])
    left = {name: mini.snapshots_dir / name for name in (  # by a dead backup, safety copy, fetch and prune
        "20261207T060000123456Z-0a1b", "safety/20261207T060001123456Z-2c3d", ".fetch-20261101T000000000000Z-4e5f",
        ".prune-20261001T000000000000Z-6a7b", "not-a-set")}
    for folder in left.values():
        (folder / "part").mkdir(parents=True)
    with lock.held(rollback.lock_path(mini), "backup"):
        out = finish(mini, "snapshots")
        assert "not repaired now: another backup holds the lock" in out and "a rollback restores nothing" in out, out
        assert status(docker_client, mini, "store") == "exited"
    out = finish(mini, "snapshots")
    assert "repaired: started store again, stopped by a backup that died" in out, out
    everything_runs(docker_client, mini, out)
    assert [name for name, folder in left.items() if folder.exists()] == ["not-a-set"]  # never a folder of the user's
    assert out.count("repaired: removed ") == 4, out
    assert journal.unfinished(mini.snapshots_dir, mini.project_name) == []


# --- SIGKILL at each state change (tests/killpoints.py) -----------------------------------


def killed(plan, point: int, *args, sig: str = "KILL", whole: int = 0) -> tuple[int, str, int]:
    """`doit <args>` killed at its point-th state change (0: run whole, ending with exit code
    `whole`; sig="INT": a Ctrl-C there instead): its exit code, its output and how many
    state changes it had made."""
    count = plan.path.parent / "killpoints.count"
    count.unlink(missing_ok=True)
    env = dict(os.environ, UNDOIT_PLAN=str(plan.path), CI="true")
    res = subprocess.run([sys.executable, "-m", "tests.killpoints", f"{point}:{sig}", str(count),
                          "-f", str(KIT / "dodo.py"), "-d", str(KIT), *args],
                         cwd=KIT, env=env, capture_output=True, text=True, timeout=600)
    want = whole if not point else -signal.SIGKILL if sig == "KILL" else errors.INTERRUPTED
    assert res.returncode == want, (point, (res.stdout + res.stderr)[-3000:])
    return res.returncode, res.stdout + res.stderr, int(count.read_text()) if count.exists() else point


def spread(total: int, n: int) -> list[int]:
    """n kill points spread over a run of total state changes, early and late alike."""
    return sorted({max(1, round(total * (i - 0.5) / n)) for i in range(1, n + 1)})


def ran(plan, *args) -> tuple[int, str]:
    proc = doit(plan, *args)
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def partial_sets(plan) -> list[str]:
    """What no set may leave on disk: a set folder without its manifest, a scratch folder."""
    base = plan.snapshots_dir
    return [p.name for folder in (base, base / snapshots.SAFETY) if folder.is_dir() for p in folder.iterdir()
            if p.name.startswith((".fetch-", ".prune-"))
            or (snapshots.SET_ID.fullmatch(p.name) and not (p / snapshots.MANIFEST).exists())]


@pytest.mark.long
def test_a_backup_killed_at_any_state_change_is_repaired_by_doit_snapshots(docker_client, filled):
    """SIGKILL at 10 points of `doit backup`, then `doit snapshots` (which only reads sets):
    every service runs again and no partial set is left on disk."""
    plan, client = filled, docker_client
    data = volume_path(client, plan, "data")

    def change(i: int) -> None:
        (data / "bulk.bin").write_bytes(os.urandom(4 << 20))
        diverge(client, plan, i)

    change(0)
    total = killed(plan, 0, "backup")[2]
    seen = {"stopped": 0, "partial": 0}
    for i, point in enumerate(spread(total, POINTS), 1):
        change(i)
        killed(plan, point, "backup")
        stopped, partial = status(client, plan, "store") != "running", partial_sets(plan)
        seen["stopped"] += stopped
        seen["partial"] += bool(partial)
        code, out = ran(plan, "snapshots")
        assert code == 0, out[-3000:]
        everything_runs(client, plan, out)
        assert partial_sets(plan) == [], (point, out[-3000:])
        for name in partial:
            assert f"repaired: removed set {name}, left without its manifest" in out, (point, out[-3000:])
        if stopped:
            assert "repaired: started store again" in out, (point, out[-3000:])
        assert journal.unfinished(plan.snapshots_dir, plan.project_name) == []
    assert seen["stopped"] and seen["partial"], seen  # the points reached both states


def test_a_backup_killed_while_its_pre_copy_catches_up_is_repaired_by_doit_snapshots(docker_client, mini):
    """SIGKILL with the store stopped for a pre-copied export, its copy in the set's folder
    (the point right before compose brings the store back): `doit snapshots` starts it
    again and removes the partial set, copy and all; the next backup is whole."""
    data = volume_path(docker_client, mini, "data")

    def change(i: int) -> None:
        (data / "bulk.bin").write_bytes(os.urandom(8 << 20))
        (data / f"round{i}").mkdir()

    for i in range(2):  # the second: a backup like the one cut below (HEAD reused, a set before it)
        change(i)
        killed(mini, 0, "backup")
    said = (mini.path.parent / "killpoints.count.events").read_text().splitlines()
    stop = next(i for i, line in enumerate(said) if line.startswith("subprocess.Popen") and " stop store" in line)
    up = next(i for i, line in enumerate(said) if i > stop and line.startswith("subprocess.Popen") and " up " in line)
    assert any(".precopy-data" in line for line in said[:stop]), said[:stop]  # copied before the stop
    change(2)
    killed(mini, up + 1, "backup")
    assert status(docker_client, mini, "store") == "exited"
    partial = partial_sets(mini)
    assert len(partial) == 1 and (mini.snapshots_dir / partial[0] / ".precopy-data").is_dir(), partial
    code, out = ran(mini, "snapshots")
    assert code == 0, out[-3000:]
    assert f"repaired: removed set {partial[0]}, left without its manifest" in out, out[-3000:]
    assert "repaired: started store again" in out, out[-3000:]
    everything_runs(docker_client, mini, out)
    assert partial_sets(mini) == [] and journal.unfinished(mini.snapshots_dir, mini.project_name) == []
    finish(mini, "backup")
    latest = snapshots.latest_complete(mini.snapshots_dir, mini.project_name)
    assert b"round2" in {e.path for e in latest.listing("data")}


@pytest.mark.long(2)
def test_a_rollback_killed_at_any_state_change_is_undone_by_doit_undo(docker_client, filled):
    """SIGKILL at 10 points of a rollback, then `doit undo` (no repair first): the volume as
    it was before the killed run, every service running, and a first line that says what
    undo found: the killed run undone, a run that changed nothing, or no run at all (the
    earlier rollback, undone already, is never undone twice)."""
    plan, client = filled, docker_client
    new = state(client, plan)
    diverge(client, plan, 0)
    total = killed(plan, 0, "rollback:vol", "yes=1")[2]
    assert state(client, plan) == new
    finish(plan, "undo")
    seen = {"undone": 0, "nothing": 0, "no record": 0}
    for i, point in enumerate(spread(total, POINTS), 1):
        old = diverge(client, plan, i)
        before = {r["run"] for r in runlog.records(plan)}
        killed(plan, point, "rollback:vol", "yes=1")
        mine = [r for r in runlog.records(plan) if r["run"] not in before]
        code, out = ran(plan, "undo")
        if not mine:  # killed before its record existed: before it could change anything
            assert code == errors.FAILED and "was already undone" in out, (point, out[-3000:])
            seen["no record"] += 1
        elif not runlog.changed_anything(mine[0]):
            assert code == 0 and "nothing to undo" in out and "before it changed anything" in out, out[-3000:]
            seen["nothing"] += 1
        else:
            assert code == 0 and f"undoing phase vol of {mine[0]['started']} ({mine[0]['run']}" in out, out[-3000:]
            assert "interrupted at step" in out or "success" in out, out[-3000:]
            seen["undone"] += 1
        assert state(client, plan) == old, (point, out[-3000:])
        everything_runs(client, plan, out)
        assert journal.unfinished(plan.snapshots_dir, plan.project_name) == []
    assert seen["undone"] and seen["nothing"], seen


@pytest.mark.long(2)
def test_an_undo_killed_at_any_state_change_is_finished_and_said_so(docker_client, filled):
    """SIGKILL at 10 points of `doit undo`: `doit repair` says what the dead undo left (never
    "nothing to repair"), and `doit undo` finishes it, skipping what it had put back and
    saying so, to the state from before the rollback."""
    plan, client = filled, docker_client
    new = state(client, plan)
    diverge(client, plan, 0)
    rollback.execute(plan, "vol", yes=True)
    total = killed(plan, 0, "undo")[2]
    seen = {"finished": 0, "midway": 0, "done": 0}
    for i, point in enumerate(spread(total, POINTS), 1):
        old = diverge(client, plan, i)
        run = rollback.execute(plan, "vol", yes=True)["run"]  # in this process: only the undo is killed
        assert state(client, plan) == new
        _, story, _ = killed(plan, point, "undo")
        entry = [d for _, d in journal.unfinished(plan.snapshots_dir, plan.project_name) if d.get("undoing") == run]
        story = f"POINT {point}/{total} KILLED:\n{story}\nREC {runlog.record(plan, run).get('undo')}\nJOURNAL {entry}\n"
        out = finish(plan, "repair")
        story += f"REPAIR:\n{out}\n"
        rec = runlog.record(plan, run)
        if entry:
            said = (f"the undo of {run} that died (pid {entry[0]['pid']}" if rec.get("undone")
                    else f"an undo of {run} died midway (pid {entry[0]['pid']}")
            assert said in out and "nothing to repair" not in out, (point, out[-3000:])
        code, out = ran(plan, "undo")
        if rec.get("undone"):  # killed once its work was done
            assert code == errors.FAILED and f"the last rollback ({run}) was already undone" in out, out[-3000:]
            seen["done"] += 1
        elif rec.get("undo"):
            assert code == 0 and f"finishing the undo of phase vol of {rec['started']} ({run}) that died" in out
            seen["midway"] += 1
        else:  # killed before it began
            assert code == 0 and f"undoing phase vol of {rec['started']} ({run}, success)" in out, out[-3000:]
            seen["finished"] += 1
        assert "left as it is: the rollback died before" not in out, story + out[-3000:]
        assert state(client, plan) == old, (point, out[-3000:])
        everything_runs(client, plan, out)
        assert journal.unfinished(plan.snapshots_dir, plan.project_name) == []
    assert seen["midway"], seen


def sandbox_left(client, plan, rec: dict | None) -> list[str]:
    """What is left of a rehearsal's sandbox: any engine object of the project's sandboxes,
    and the worktree, scratch folder and parked copies its journal record names."""
    prefix = f"{plan.project_name}-rehearsal-"
    left = [c.name for c in client.containers.list(all=True, filters={"name": prefix}) if c.name.startswith(prefix)]
    left += [v.name for v in client.volumes.list() if v.name.startswith(prefix)]
    left += [n.name for n in client.networks.list() if n.name.startswith(prefix)]
    left += [line for line in gitstate.run(plan.root, "worktree", "list", "--porcelain").splitlines()
             if line.startswith("worktree ") and line != f"worktree {os.path.realpath(plan.root)}"]
    if rec is not None:
        left += [p for p in (rec["work"], *rec.get("parked", ())) if Path(p).exists()]
    return left


def live_of(client, plan) -> tuple:
    label = {"label": f"com.docker.compose.project={plan.project_name}"}
    return (sorted((c.id, c.status) for c in client.containers.list(all=True, filters=label)),
            state(client, plan), gitstate.head(plan.root))


@pytest.mark.long(3)
def test_a_rehearsal_killed_at_any_state_change_is_cleaned_up_by_the_next(docker_client, kit_images, tmp_path):
    """SIGKILL at 5 points of `doit rehearse`, then `doit rehearse`: nothing of the killed
    sandbox is left (containers, volumes, networks, the worktree, the scratch folder, the
    copies its drill parked), the live stack untouched, and the next says what it removed."""
    from scripts.stack import sandboxes

    name = unique()
    try:
        plan = make_stack(name, tmp_path, MINI_COMPOSE, VOL_PLAN)
        (volume_path(docker_client, plan, "files") / "f.txt").write_text("backed up\n")
        backup.backup(plan)
        (volume_path(docker_client, plan, "files") / "f.txt").write_text("changed since\n")
        before = live_of(docker_client, plan)
        total = killed(plan, 0, "rehearse", "only=vol")[2]
        cleaned = 0
        for point in spread(total, 5):
            killed(plan, point, "rehearse", "only=vol")
            recs = [d["sandbox"] for _, d in journal.unfinished(plan.snapshots_dir, plan.project_name)
                    if d.get("what") == "rehearsal"]
            rec = dict(recs[0]) if recs else None
            if rec is not None:  # the copies its drill's swap parked, beside the engine's volumes
                safety, root = Path(rec["work"]) / "snapshots" / snapshots.SAFETY, sandboxes.parked_root(docker_client)
                rec["parked"] = [str(root / s.name) for s in safety.iterdir()] if safety.is_dir() else []
                assert sandbox_left(docker_client, plan, rec), point  # the kill left something to clean
            code, out = ran(plan, "rehearse", "only=vol")
            assert code == 0, (point, out[-3000:])
            if rec is not None:
                assert "left by a rehearsal that died" in out, (point, out[-3000:])
                cleaned += 1
            assert sandbox_left(docker_client, plan, rec) == [], (point, out[-3000:])
            assert live_of(docker_client, plan) == before, point
            assert journal.unfinished(plan.snapshots_dir, plan.project_name) == []
        assert cleaned >= 3, cleaned  # the points fell where a sandbox existed
        parked = 0
        for point in spread(total, 3):  # Ctrl-C: the rehearsal removes all of it on its way out
            out = killed(plan, point, "rehearse", "only=vol", sig="INT")[1]
            assert "removing the sandbox" in out and "Traceback" not in out, (point, out[-3000:])
            sandbox = re.search(rf"rehearsal {plan.project_name}-rehearsal-(\w+): ", out).group(1)
            log = max(plan.reports_dir.glob("rehearsal-*.log"), key=lambda p: p.stat().st_mtime).read_text()
            rec = {"work": next(Path(tempfile.gettempdir()).glob(f"undoit-rehearsal-{sandbox}-*"), "/nonexistent"),
                   "parked": re.findall(r"moved at the swap to (\S+), not copied", log)}
            assert sandbox_left(docker_client, plan, rec) == [], (point, out[-3000:])
            parked += bool(rec["parked"])
            assert not [d for _, d in journal.unfinished(plan.snapshots_dir, plan.project_name)], point
            assert live_of(docker_client, plan) == before, point
        assert parked, "no Ctrl-C came after the drill parked a copy"
    finally:
        sweep(docker_client, name)


@pytest.mark.long(2)
def test_a_rollback_killed_while_it_puts_itself_back_is_finished_by_repair_and_undo(docker_client, filled):
    """A rollback whose check fails puts itself back; SIGKILL at 4 points of that
    put-back (the state changes past those of the same run with keep=1): `doit repair`
    brings the services back and closes the record, and `doit undo` finishes the
    put-back (or says it was done) to the state from before the rollback."""
    plan, client = filled, docker_client
    diverge(client, plan, 0)
    kept = killed(plan, 0, "rollback:volbad", "yes=1", "keep=1", whole=errors.ROLLBACK_FAILED)
    finish(plan, "undo")
    whole = killed(plan, 0, "rollback:volbad", "yes=1", whole=errors.ROLLBACK_FAILED)
    assert "the state from before it is back (proven)" in whole[1], whole[1][-3000:]
    seen = {"finished": 0, "done": 0}
    for i, point in enumerate((kept[2] + p for p in spread(whole[2] - kept[2], 4)), 1):
        old = diverge(client, plan, i)
        _, story, _ = killed(plan, point, "rollback:volbad", "yes=1")
        out = finish(plan, "repair")
        everything_runs(client, plan, story[-2000:] + out[-2000:])
        code, out = ran(plan, "undo")
        if code == 0:
            seen["finished"] += 1
        else:
            assert code == errors.FAILED and "was already undone" in out, (point, out[-3000:])
            seen["done"] += 1
        assert state(client, plan) == old, (point, story[-2000:], out[-3000:])
        everything_runs(client, plan, out)
        assert journal.unfinished(plan.snapshots_dir, plan.project_name) == []
        assert "running" not in {r.get("outcome") for r in runlog.records(plan)}
    assert seen["finished"], seen
