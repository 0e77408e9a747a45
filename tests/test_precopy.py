"""Pre-copied backups (scripts/backup/exports.py, scripts/store/mirror.py) on a project
unlike the demo: a journal writer that commits numbered files without pause, while a
backup copies its volume, stops it only to catch up, and archives the copy."""

from __future__ import annotations

import pytest

from scripts.backup import backup
from scripts.rollback import restore
from scripts.stack import volumes
from scripts.store import listings, mirror

from .conftest import make_stack, sweep, unique
from .projects import compose_file, healthy_when, image, plan, service, volume

pytestmark = pytest.mark.docker

# a commit: the file written beside, renamed into place, then its number appended to
# `log`; the oldest of 20 files is removed as each new one lands. Resumes after a
# restart; gone at once on SIGTERM (between two commits)
SCRIBE = """\
trap 'exit 0' TERM
i=$$(tail -n 1 /journal/log 2>/dev/null || echo 0)
while true; do
  i=$$((i + 1))
  head -c $$((4096 + i % 7 * 1000)) /dev/urandom > /journal/.next && mv /journal/.next /journal/f$$i
  echo $$i >> /journal/log
  rm -f /journal/f$$((i - 20))
  sleep 0.01
done
"""

COMPOSE = compose_file({
    "scribe": service(image("base"), entrypoint=["bash", "-c"], command=[SCRIBE], volumes=["journal:/journal"],
                      stop_grace_period="5s"),
}, volumes=["journal"])

PLAN = plan(["scribe"], volumes={"journal": volume("scribe", quiesce="stop")})


def scribe_with(check: dict, quiesce: str = "stop", **tables):
    """The scribe with a healthcheck, and its plan."""
    return (compose_file({"scribe": service(image("base"), entrypoint=["bash", "-c"], command=[SCRIBE],
                                            volumes=["journal:/journal"], stop_grace_period="5s",
                                            healthcheck=check)}, volumes=["journal"]),
            plan(["scribe"], volumes={"journal": volume("scribe", quiesce=quiesce)}, **tables))


@pytest.fixture
def scribe(docker_client, kit_images, tmp_path):
    name = unique("pc")
    try:
        yield make_stack(name, tmp_path, COMPOSE, PLAN)
    finally:
        sweep(docker_client, name)


def held_state(client, plan, seen: dict):
    """A catch-up that records the volume as it is while the scribe is stopped: its
    listing and every file's content digest, and the last number the log holds."""
    name = volumes.resolve(client, plan.project_name, ["journal"])["journal"].name
    real = mirror.catch_up

    def catch_up(live, staging, first):
        seen["listing"] = volumes.listing(client, name)
        seen["digests"] = volumes.content_digests(client, name)
        seen["last"] = int((live / "log").read_text().split()[-1])
        return real(live, staging, first)

    return catch_up


def restored(client, s, key: str):
    """The set's volume restored into a scratch volume: its listing and content digests."""
    vol = unique("pcscratch")
    client.volumes.create(vol)
    try:
        restore.restore_volume(client, s, key, target=vol)
        return volumes.listing(client, vol), volumes.content_digests(client, vol), \
            (volumes.host_path(client, vol) / "log").read_text()
    finally:
        client.volumes.get(vol).remove(force=True)


def test_a_set_taken_while_the_scribe_writes_is_the_volume_as_it_was_stopped(docker_client, scribe, monkeypatch,
                                                                             capsys):
    live = volumes.host_path(docker_client, volumes.resolve(docker_client, scribe.project_name,
                                                              ["journal"])["journal"].name)
    seen, dropped = {}, []
    real_first = mirror.first_pass

    def first_pass(src, staging, progress=None):
        first = real_first(src, staging, progress)
        # a file the first pass copied, gone before the stop: the scribe removes its
        # oldest files too, this one is removed here to be sure of one
        victim = sorted(p for p in src.glob("f*"))[0]
        victim.unlink()
        dropped.append(victim.name.encode())
        assert (staging / victim.name).exists()
        return first

    monkeypatch.setattr(mirror, "first_pass", first_pass)
    monkeypatch.setattr(mirror, "catch_up", held_state(docker_client, scribe, seen))
    before = int((live / "log").read_text().split()[-1])
    s = backup.backup(scribe)
    out = capsys.readouterr().out
    entry = s.volumes["journal"]
    assert entry["precopy"]["copied"] >= 2, entry  # the scribe went on writing during the first pass
    assert entry["held"]["services"] == ["scribe"] and 0 < entry["held"]["seconds"] < 30, entry
    assert f"journal: scribe stopped {entry['held']['seconds']:.2f} s (pre-copied " in out, out
    # the set is the volume as the stop found it: metadata, then every file's content
    assert listings.diff(seen["listing"], s.listing("journal")) == []
    assert {e.path: e.digest for e in s.listing("journal") if e.type == "f"} == seen["digests"]
    assert dropped[0] not in {e.path for e in s.listing("journal")}
    # restored, it holds every commit made before the stop, and none after
    listing, digests, log = restored(docker_client, s, "journal")
    assert listings.diff(seen["listing"], listing) == [] and digests == seen["digests"]
    assert [int(n) for n in log.split()] == list(range(1, seen["last"] + 1)) and seen["last"] > before
    kept = {e.path for e in listing}
    assert all(f"f{n}".encode() in kept for n in range(seen["last"] - 18, seen["last"] + 1)
               if f"f{n}".encode() != dropped[0])


def test_precopy_false_exports_with_the_scribe_stopped_throughout(docker_client, scribe, monkeypatch, capsys):
    from dataclasses import replace

    off = replace(scribe, volumes={"journal": replace(scribe.volumes["journal"], precopy=False)})
    seen = {}
    name = volumes.resolve(docker_client, scribe.project_name, ["journal"])["journal"].name
    real_export = volumes.export

    def export(client, volume, out, **kwargs):
        seen["listing"] = volumes.listing(client, volume)
        return real_export(client, volume, out, **kwargs)

    def never(*args, **kwargs):
        raise AssertionError("pre-copied with precopy = false")

    monkeypatch.setattr(mirror, "first_pass", never)
    monkeypatch.setattr(volumes, "export", export)
    s = backup.backup(off)
    entry = s.volumes["journal"]
    assert entry["precopy"] is None and entry["quiesce"] == "stop" and entry["held"]["services"] == ["scribe"]
    assert f"journal: scribe stopped {entry['held']['seconds']:.2f} s (the whole export)" in capsys.readouterr().out
    assert listings.diff(seen["listing"], s.listing("journal")) == []
    assert name == entry["name"]


def test_a_copy_that_fails_before_the_stop_falls_back_to_the_slow_export(docker_client, scribe, monkeypatch, capsys):
    import errno

    def full(live, staging, progress=None):
        (staging / "partial").write_text("x")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mirror, "first_pass", full)
    s = backup.backup(scribe)
    out = capsys.readouterr().out
    assert "journal: the copy while running failed ([Errno 28] No space left on device)" in out, out
    assert "journal: scribe stopped " in out and "(the whole export)" in out, out
    assert s.volumes["journal"]["precopy"] is None and not list(s.path.glob(".precopy-*"))


def test_a_pre_copied_set_keeps_what_a_naive_copy_loses(docker_client, scribe, monkeypatch):
    """Hard links, symlinks (dangling too), a FIFO, setuid bits, numeric owners, a name
    that is not UTF-8 and nanosecond mtimes, some made before the first pass and the
    same again between it and the stop: the set holds them as the stop found them."""
    import os

    from .test_backup import fill_special

    name = volumes.resolve(docker_client, scribe.project_name, ["journal"])["journal"].name
    live = volumes.host_path(docker_client, name)
    (live / "before").mkdir()
    fill_special(live / "before")
    seen = {}
    real_first = mirror.first_pass

    def first_pass(src, staging, progress=None):
        first = real_first(src, staging, progress)
        (src / "between").mkdir()
        fill_special(src / "between")
        os.chmod(src / "before" / "suid", 0o2750)  # a change only the ctime shows
        return first

    monkeypatch.setattr(mirror, "first_pass", first_pass)
    monkeypatch.setattr(mirror, "catch_up", held_state(docker_client, scribe, seen))
    s = backup.backup(scribe)
    assert s.volumes["journal"]["precopy"]["copied"] >= 9, s.volumes["journal"]
    got = {e.path: e for e in s.listing("journal")}
    for e in seen["listing"]:
        if e.path.startswith((b"before", b"between")):
            assert got[e.path].meta == e.meta, e.path
    assert listings.diff(seen["listing"], s.listing("journal")) == []
    listing, digests, _ = restored(docker_client, s, "journal")
    assert listings.diff(seen["listing"], listing) == [] and digests == seen["digests"]


def test_a_hold_ends_when_the_services_own_healthcheck_passes_not_at_the_engines_next_interval(
        docker_client, kit_images, tmp_path):
    """interval: 15s: the engine's status says healthy 15 s after a start at the earliest;
    the kit runs the check itself and counts the scribe back as soon as it passes (the
    interval is no longer: the stack's first start and the backup's end each wait one)."""
    name = unique("pcslow")
    try:
        stack = make_stack(name, tmp_path, *scribe_with(healthy_when("test", "-s", "/journal/log", interval="15s")))
        s = backup.backup(stack)
        entry = s.volumes["journal"]
        assert entry["held"]["services"] == ["scribe"] and 0 < entry["held"]["seconds"] < 10, entry
        scribe = docker_client.containers.list(filters={"label": f"com.docker.compose.project={name}"})[0]
        assert scribe.status == "running" and scribe.exec_run(["test", "-s", "/journal/log"]).exit_code == 0
    finally:
        sweep(docker_client, name)


def test_a_service_whose_healthcheck_fails_after_the_hold_fails_the_backup_running(docker_client, kit_images,
                                                                                   tmp_path, monkeypatch):
    """Back means healthy: a check that no longer passes once the scribe is started
    again fails the backup within [timeouts] up, the scribe left running for a person
    to look at."""
    from scripts.errors import UndoitError

    name = unique("pcsick")
    try:
        compose, doc = scribe_with(healthy_when("test", "-f", "/journal/log", "-a", "!", "-f", "/journal/sick"),
                                   timeouts={"up": 3})
        stack = make_stack(name, tmp_path, compose, doc)
        live = volumes.host_path(docker_client, volumes.resolve(docker_client, name, ["journal"])["journal"].name)
        real = mirror.catch_up

        def catch_up(src, staging, first):
            done = real(src, staging, first)
            (live / "sick").write_text("")  # while held, after the copy caught up
            return done

        monkeypatch.setattr(mirror, "catch_up", catch_up)
        with pytest.raises(UndoitError, match="healthcheck .* still fails"):
            backup.backup(stack)
        scribe = docker_client.containers.list(filters={"label": f"com.docker.compose.project={name}"})
        assert [c.status for c in scribe] == ["running"]
    finally:
        sweep(docker_client, name)


def test_a_paused_hold_thaws_the_scribe_and_only_it(docker_client, kit_images, tmp_path):
    name = unique("pcpause")
    try:
        stack = make_stack(name, tmp_path, *scribe_with(healthy_when("test", "-s", "/journal/log"), "pause"))
        s = backup.backup(stack)
        entry = s.volumes["journal"]
        assert entry["quiesce"] == "pause" and entry["held"]["services"] == ["scribe"], entry
        assert 0 < entry["held"]["seconds"] < 10, entry
        scribe = docker_client.containers.list(filters={"label": f"com.docker.compose.project={name}"})[0]
        assert scribe.status == "running" and scribe.attrs["State"]["Paused"] is False
    finally:
        sweep(docker_client, name)
