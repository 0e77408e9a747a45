"""Rollbacks restore the right point in time, on a project that is not the demo: a
Postgres ledger with a writer, over several change cycles and many backups."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from scripts.backup import backup, cycles
from scripts.repo import gitstate
from scripts.rollback import restore, rollback, undo
from scripts.store import snapshots

from .conftest import doit, make_stack, sweep, unique
from .projects import (app, check, compose_file, do, full, healthy_when, image, phase, plan, postgres, refill, service,
                       volume)

pytestmark = pytest.mark.docker

# through the shared socket: a row every ~50 ms while /tmp/go exists; while /tmp/burst
# exists, 3 rows right after each restart of the server (a write in the moment a backup
# brings it back, before anything else looks at it)
CLERK = """\
q() { psql -h /run/postgresql -U postgres -d ledger -qAtc "$$1" 2>/dev/null; }
last=""
while true; do
  [ -f /tmp/go ] && q "insert into entries(note) values ('w')"
  if [ -f /tmp/burst ]; then
    st=$$(q "select pg_postmaster_start_time()")
    if [ -n "$$st" ] && [ -n "$$last" ] && [ "$$st" != "$$last" ]; then
      q "insert into entries(note) select 'gap' from generate_series(1, 3)"
    fi
    [ -n "$$st" ] && last=$$st
  fi
  sleep 0.05
done
"""

COMPOSE = compose_file({
    # no autovacuum: it writes on its own schedule, and these tests count exports
    "books": postgres("ledger", command=["-c", "autovacuum=off"], stop_grace_period="30s",
                      volumes=["pgdata:/var/lib/postgresql/data", "sock:/run/postgresql"]),
    "clerk": service(image("postgres"), entrypoint=["bash", "-c"], command=[CLERK], volumes=["sock:/run/postgresql"],
                     stop_grace_period="1s", healthcheck=healthy_when("true")),
}, volumes=["pgdata", "sock"])

PROBE = ("sh", "-c", "for d in $(psql -U postgres -Atc 'select datname from pg_database where datallowconn "
         "order by 1'); do psql -U postgres -d \"$d\" -Atc 'select pg_current_snapshot(), (select sum(last_value) "
         "from pg_sequences)'; done")

PLAN = plan(["books", "clerk"], backup={"branch": "keep-{timestamp}", "tag": "before-{date}"},
            volumes={"pgdata": volume("books", probe=list(PROBE))},
            phases=[phase("schema", "schema change", refill(["pgdata"], ["books"]))],
            full=full([do("stop", services=["books"]), do("restore-files", paths=["."]),
                       do("restore-volumes", volumes=["pgdata"]), do("up")], [check("healthy")]))


@pytest.fixture
def ledger(docker_client, kit_images, tmp_path):
    name = unique("led")
    try:
        plan = make_stack(name, tmp_path, COMPOSE, PLAN, files={"app.conf": "v1\n"})
        sql(plan, "create table entries(id serial primary key, note text)")
        yield plan
    finally:
        sweep(docker_client, name)


def sql(plan, query: str, service: str = "books") -> str:
    from scripts.stack.compose import for_plan

    return for_plan(plan).exec(service, "psql", "-U", "postgres", "-d", "ledger", "-Atc", query).strip()


def commit(root, message: str) -> None:
    gitstate.run(root, "add", "-A")
    gitstate.run(root, "commit", "-q", "-m", message)



def rows_in_set(client, s, plan, below: int) -> int:
    """Restore the set's pgdata into a scratch volume, start a throwaway Postgres on it
    and count the rows with id <= below."""
    vol = unique(f"{plan.project_name}scratch")
    client.volumes.create(vol)
    c = None
    try:
        restore.restore_volume(client, s, "pgdata", target=vol)
        c = client.containers.run(f"{os.environ.get('UNDOIT_IMAGE_PREFIX', 'undoit')}/postgres:15",
                                  detach=True, network_disabled=True, name=vol,
                                  volumes={vol: {"bind": "/var/lib/postgresql/data", "mode": "rw"}})
        for _ in range(120):
            code, _ = c.exec_run(["pg_isready", "-q", "-U", "postgres", "-d", "ledger"])
            if code == 0:
                break
            time.sleep(0.25)
        code, out = c.exec_run(["psql", "-U", "postgres", "-d", "ledger", "-Atc",
                                f"select count(*) from entries where id <= {below}"])
        assert code == 0, out
        return int(out.decode().strip())
    finally:
        if c is not None:
            c.remove(force=True)
        client.volumes.get(vol).remove(force=True)


def test_two_cycles_restore_the_second_cycles_rows_and_files(docker_client, ledger):
    sql(ledger, "insert into entries(note) select 'cycle 1' from generate_series(1, 5)")
    first = backup.backup(ledger)
    # more work is committed and written, then backed up before the next change
    (ledger.root / "app.conf").write_text("v2\n")
    commit(ledger.root, "work between the two changes")
    sql(ledger, "insert into entries(note) select 'cycle 2' from generate_series(1, 7)")
    second = backup.backup(ledger)
    assert second.manifest["baseline"] and second.tag != first.tag
    cycle, why = cycles.current(ledger)
    assert cycle.baseline.id == second.id and second.tag in why
    # the change breaks things: bad rows and a bad config, committed
    sql(ledger, "insert into entries(note) select 'broken' from generate_series(1, 100)")
    (ledger.root / "app.conf").write_text("broken\n")
    commit(ledger.root, "the change")
    rec = rollback.execute(ledger, "full", yes=True)
    assert rec["outcome"] == "success", rec
    assert rec["snapshot_set"] == second.id and second.tag in rec["snapshot_source"]
    assert sql(ledger, "select note, count(*) from entries group by 1 order by 1") == "cycle 1|5\ncycle 2|7"
    assert (ledger.root / "app.conf").read_text() == "v2\n"
    # set=ID takes the files of that set's own point in time too
    rec = rollback.execute(ledger, "full", yes=True, set_id=first.id)
    assert rec["outcome"] == "success", rec
    assert sql(ledger, "select count(*) from entries") == "5"
    assert (ledger.root / "app.conf").read_text() == "v1\n"


def test_no_silent_fallback_to_an_older_cycle(docker_client, ledger):
    backup.backup(ledger)
    (ledger.root / "app.conf").write_text("v2\n")
    commit(ledger.root, "next")
    second = backup.backup(ledger)
    manifest = second.path / snapshots.MANIFEST
    manifest.write_text("{not json")  # the current cycle's baseline is unreadable
    with pytest.raises(Exception, match=f"backup tag {re.escape(second.tag)} is newer"):
        rollback.prepare(ledger, "full")


def test_a_backup_tag_that_moved_stops_the_run_naming_both_commits(docker_client, ledger):
    """Another cycle may have made the same name again (a fresh clone has no backup tags):
    the kit does not guess which point in time the name means."""
    s = backup.backup(ledger)
    (ledger.root / "app.conf").write_text("v2\n")
    commit(ledger.root, "next")
    other = gitstate.head(ledger.root)
    gitstate.run(ledger.root, "tag", "-f", "-a", "-m", "moved", s.tag, other)
    with pytest.raises(Exception, match=f"tag {re.escape(s.tag)} has moved: it points at {other[:12]}, and set "
                                        f"{s.id} was taken at {s.manifest['git']['commit'][:12]}"):
        rollback.verified_choice(ledger, "full")
    named = rollback.verified_choice(ledger, "full", s.id)  # named: its own commit, said
    assert named.ref == s.manifest["git"]["commit"] and f"tag {s.tag} has moved" in named.ref_source


@pytest.mark.long
def test_a_continuous_writer_loses_no_row_over_ten_backups(docker_client, ledger):
    from scripts.stack.compose import for_plan

    compose = for_plan(ledger)

    def writer(mode: str, on: bool) -> None:
        compose.exec("clerk", "sh", "-c", f"touch /tmp/{mode}" if on else f"rm -f /tmp/{mode}")
        if not on:
            time.sleep(0.5)  # an insert already under way lands first

    # before each backup: what happens (the writer runs during backups 0-2 and 7)
    schedule = {0: [("go", True)], 3: [("go", False), ("burst", True)], 5: [("burst", False)],
                7: ["rollback", ("go", True)], 8: [("go", False)]}
    taken = []  # (set id, highest id committed before the backup started, rows up to it)
    noops = []
    for i in range(10):
        for action in schedule.get(i, []):
            if action == "rollback":
                rec = rollback.execute(ledger, "full", yes=True)
                assert rec["outcome"] == "success", rec
            else:
                writer(*action)
        top, count = sql(ledger, "select coalesce(max(id), 0), count(*) from entries").split("|")
        res = doit(ledger, "backup")
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        made = re.search(r"snapshot set (\S+)", res.stdout)
        if made:
            set_id = made.group(1)
        else:  # up to date: the latest set holds the volume as it is
            assert "-- backup" in res.stdout, res.stdout
            noops.append(i)
            set_id = snapshots.latest_complete(ledger.snapshots_dir, ledger.project_name).id
        taken.append((set_id, int(top), int(count)))
    # rows written as the server came back (3, 4) made the next backup export; an idle
    # stack backs up as a no-op, even right after its own export (6, 9)
    assert noops == [6, 9], noops
    for set_id, top, count in taken:
        s = snapshots.get_set(ledger.snapshots_dir, set_id)
        assert rows_in_set(docker_client, s, ledger, top) == count, (set_id, top, count)


def test_the_demo_tasks_refuse_on_a_user_project(docker_client, ledger):
    sql(ledger, "insert into entries(note) values ('keep me')")
    res = doit(ledger, "demo:down")
    assert res.returncode != 0
    assert "acts only on the bundled demo" in res.stdout + res.stderr
    assert sql(ledger, "select count(*) from entries") == "1"
    assert docker_client.volumes.list(filters={"label": f"com.docker.compose.project={ledger.project_name}"})
    res = doit(ledger)  # a bare doit changes nothing and says what a rollback would restore
    assert res.returncode == 0 and "a rollback restores nothing yet" in res.stdout, res.stdout
    assert not any(ledger.snapshots_dir.glob("*/manifest.json"))


def web(release: str, *networks: str) -> str:
    """One web service labelled with its release, on internal networks."""
    return compose_file({"web": app(networks=list(networks), labels={"release": release})},
                   networks={n: {"internal": True} for n in networks})


UNDO_COMPOSE = web("1", "front")

UNDO_PLAN = plan(["web"], project={"networks": ["front"]}, phases=[phase(
    "compose", "compose file", [do("restore-files", paths=["docker-compose.yml"]), do("up")], [check("healthy")])])


def dry_run(compose) -> str:
    """What `docker compose up --dry-run` would do (it reports on stderr)."""
    from scripts.stack.compose import compose_argv

    argv = [*compose_argv(), "--project-name", compose.project, "--project-directory", str(compose.root),
            "up", "--dry-run", "--detach"]
    res = subprocess.run(argv, cwd=compose.root, env=compose.env, capture_output=True, text=True, timeout=60)
    return res.stdout + res.stderr


def test_undo_recreates_what_the_compose_file_describes_and_counts_agree(docker_client, kit_images, tmp_path,
                                                                         capsys):
    import json

    from scripts.stack.compose import for_plan

    name = unique("und")
    try:
        plan = make_stack(name, tmp_path, UNDO_COMPOSE, UNDO_PLAN)
        backup.backup(plan)
        # the change: a new release label and a second network, applied
        changed = web("2", "front", "side")
        (plan.root / "docker-compose.yml").write_text(changed)
        commit(plan.root, "release 2")
        compose = for_plan(plan)
        compose.up(wait_timeout=60)
        capsys.readouterr()
        rec = rollback.execute(plan, "compose", yes=True)
        assert rec["outcome"] == "success", rec
        out = capsys.readouterr().out
        # one file overwritten: the console, the log and the JSON report say the same
        assert "1 overwritten or removed" in rec["steps"][0]["what"]
        assert "1 overwritten or removed" in rec["steps"][0]["detail"]
        assert out.count("1 overwritten or removed") >= 2
        assert "1 overwritten or removed" in plan.log_path.read_text()
        report = json.loads((plan.reports_dir / f"{rec['run']}.json").read_text())
        assert "1 overwritten or removed" in report["steps"][0]["what"]
        assert "Running" in dry_run(compose) and "Recreate" not in dry_run(compose)
        undo.undo(plan)
        assert (plan.root / "docker-compose.yml").read_text() == changed
        dry = dry_run(compose)
        assert "Running" in dry and "Recreate" not in dry and "Creat" not in dry, dry
    finally:
        sweep(docker_client, name)


def test_volume_matches_fails_on_same_size_content_changes_and_extra_files(docker_client, mini):
    from scripts.rollback import checks
    from scripts.plan.plan import Check

    from .conftest import volume_path

    doc = volume_path(docker_client, mini, "files") / "doc.txt"
    doc.write_text("aaaa\n")
    backup.backup(mini)
    run = rollback.prepare(mini, "p1", yes=True)
    check = Check("volume-matches", "files back", {"volumes": ["files"]})
    assert checks.run_one(run.ctx, check)[0]
    st = doc.stat()
    doc.write_text("bbbb\n")  # same size...
    os.utime(doc, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and the same mtime
    ok, why = checks.run_one(run.ctx, check)
    assert not ok and "doc.txt: content differs" in why, why
    doc.write_text("aaaa\n")
    os.utime(doc, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert checks.run_one(run.ctx, check)[0]
    (doc.parent / "stray.pid").write_text("1")
    ok, why = checks.run_one(run.ctx, check)
    assert not ok and "unexpected stray.pid" in why, why
    assert checks.run_one(run.ctx, Check("volume-matches", "x", {"volumes": ["files"], "ignore": ["*.pid"]}))[0]
    (doc.parent / "stray.pid").unlink()
    doc.unlink()
    ok, why = checks.run_one(run.ctx, check)
    assert not ok and "missing doc.txt" in why, why
