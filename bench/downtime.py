#!/usr/bin/env python3
"""How long a backup keeps the database stopped, measured from the engine's own events.

    .venv/bin/python bench/downtime.py [--gib 1] [--repeat 1] [--skip-runbook]

Builds a compose project of its own: Postgres (the kit's image) with a --gib volume of
table data, and a writer that commits one row every ~100 ms through the shared socket,
each row stamped by the server's clock. Then, in one run, while the writer goes on:
  backup      `doit backup` (the writer's rows make every backup export the volume)
  checkpoint  `doit checkpoint:db force=1`
  rollback    `doit rollback:db yes=1` of the set the backup took
  runbook     `docker compose stop db`, `docker run busybox tar czf` of the volume,
              `docker compose start db` (the runbook's method)
For each it prints, from the engine's events (subscribed before the command starts:
the engine replays only its last 256), how long each service was stopped
(kill/die/stop -> start) or paused (pause -> unpause), the command's wall time, the
longest gap between two of the writer's committed rows (what a client saw), and for a
backup or checkpoint the hold the kit itself recorded in the set's manifest (from the
stop until the database was back, its healthcheck passing: `held.seconds`). For the
backup it also proves that every row committed before the quiesce began is in the set:
the rollback restores that set, and the rows stamped before the first stop event must
all be there.
Everything it creates carries the prefix `undoitbench` and is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))

from scripts.stack import images  # noqa: E402

from common import busybox_image, remove_pins, begin  # noqa: E402
from tests.projects import (check, compose_file, do, full, healthy_when, image, lay_out, phase, plan,  # noqa: E402
                            postgres, refill, service, volume, write_plan)

# one row every ~100 ms through the shared socket, stamped by the server's clock
WRITER = """\
while true; do
  psql -h /run/postgresql -U postgres -d bench -qAtc "insert into writes default values" 2>/dev/null
  sleep 0.1
done
"""


def stack(prefix: str) -> str:
    """Postgres (stopped with the engine's SIGTERM) and its writer."""
    return compose_file({
        "db": postgres("bench", prefix, command=["-c", "autovacuum=off", "-c", "fsync=on"], stop_signal=None,
                       volumes=["pgdata:/var/lib/postgresql/data", "sock:/run/postgresql"], stop_grace_period="30s",
                       healthcheck=healthy_when("pg_isready", "-q", "-U", "postgres", "-d", "bench", retries=120)),
        "writer": service(image("postgres", prefix), entrypoint=["bash", "-c"], command=[WRITER],
                          volumes=["sock:/run/postgresql"], stop_grace_period="1s"),
    }, volumes=["pgdata", "sock"])


PLAN = plan(["db", "writer"], volumes={"pgdata": volume("db", quiesce="stop")},
            phases=[phase("db", "the database back", refill(["pgdata"], ["db"]), [check("healthy", services=["db"])],
                          volumes=["pgdata"])],
            full=full([do("stop"), do("restore-volumes", volumes=["pgdata"]), do("up")]))


class Events:
    """The engine's container events for one project, collected from before a command
    starts until after it ends."""

    def __init__(self, client, project: str):
        self.client, self.project, self.seen = client, project, []

    def __enter__(self):
        self.since = time.time()
        self.stream = self.client.events(decode=True, since=self.since, filters={
            "type": "container", "label": f"com.docker.compose.project={self.project}"})
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self):
        try:
            for ev in self.stream:
                attrs = (ev.get("Actor") or {}).get("Attributes") or {}
                self.seen.append((ev.get("timeNano", 0) / 1e9, ev.get("Action") or ev.get("status"),
                                  attrs.get("com.docker.compose.service")))
        except Exception:  # the stream closed
            pass

    def __exit__(self, *exc):
        time.sleep(0.5)  # the last start's event
        self.stream.close()
        self.thread.join(5)

    def windows(self) -> dict[str, list[tuple[float, float]]]:
        """service -> [(down from, down until)], stopped or paused."""
        out: dict[str, list] = {}
        down: dict[str, float] = {}
        for t, action, svc in sorted(self.seen, key=lambda e: e[0]):
            if svc is None:
                continue
            if action in ("kill", "stop", "die", "pause") and svc not in down:
                down[svc] = t
            elif action in ("start", "unpause", "restart") and svc in down:
                out.setdefault(svc, []).append((down.pop(svc), t))
        for svc, t in down.items():  # never came back while watched
            out.setdefault(svc, []).append((t, float("inf")))
        return out


def sh(cmd: list[str], **kw) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return res.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--skip-runbook", action="store_true")
    args = ap.parse_args()
    client, name, work = begin("undoitbench")
    root = work / "project"
    root.mkdir()
    lay_out(root, {"docker-compose.yml": stack(images.prefix())}, "bench")
    write_plan(work / "phases.toml", PLAN, name, root, kept=work)
    env = dict(os.environ, UNDOIT_PLAN=str(work / "phases.toml"), CI="true")
    compose = ["docker", "compose", "--project-name", name, "--project-directory", str(root)]
    try:
        run(client, name, root, work, env, compose, args)
    finally:
        subprocess.run([*compose, "down", "--volumes", "--remove-orphans"], capture_output=True)
        remove_pins(client, name)
        from scripts.rollback import restore

        restore.discard_safety_sets(work / "snapshots")
        shutil.rmtree(work, ignore_errors=True)


def psql(compose, query: str) -> str:
    return sh([*compose, "exec", "-T", "db", "psql", "-U", "postgres", "-d", "bench", "-qAtc", query]).strip()


def fill_database(compose, root, gib: float) -> None:
    """The database up with gib GiB of table data, then the writer started."""
    sh([*compose, "up", "-d", "--wait", "db"], cwd=root)
    psql(compose, "create table writes(id bigserial primary key, ts timestamptz not null default clock_timestamp());"
                  "create table bulk(id bigserial primary key, payload text)")
    print(f"filling {gib:g} GiB of table data ...", flush=True)
    rows = int(gib * (1 << 30) / 1100)  # ~1.1 KB a row on disk
    step = 200_000
    for start in range(0, rows, step):
        psql(compose, f"insert into bulk(payload) select repeat(md5(random()::text), 32) "
                      f"from generate_series(1, {min(step, rows - start)})")
    psql(compose, "checkpoint")
    size = psql(compose, "select pg_size_pretty(pg_database_size('bench'))")
    sh([*compose, "up", "-d", "writer"], cwd=root)
    time.sleep(3)
    print(f"database: {size}; the writer commits a row every ~100 ms", flush=True)


def run(client, name, root, work, env, compose, args) -> None:
    fill_database(compose, root, args.gib)
    doit = [sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "-d", str(KIT)]
    results = []
    for _ in range(args.repeat):
        set_before = set_ids(work)
        r = measured(client, name, compose, "doit backup", lambda: sh([*doit, "backup"], env=env))
        took = sorted(set_ids(work) - set_before)
        results.append(with_hold(r, work, took))
        set_before = set_ids(work)
        cp = measured(client, name, compose, "doit checkpoint:db",
                      lambda: sh([*doit, "checkpoint:db", "force=1"], env=env))
        results.append(with_hold(cp, work, sorted(set_ids(work) - set_before)))
        # the rollback restores the backup's set: every row stamped before its quiesce is there
        quiesced = min((w[0] for w in r["windows"].get("db", [])), default=None)
        before = int(psql(compose, f"select count(*) from writes where ts < to_timestamp({quiesced})")) \
            if quiesced else None
        backup_set = [t for t in took if t[0].isdigit()]
        results.append(measured(client, name, compose, "doit rollback:db",
                                lambda: sh([*doit, "rollback:db", "yes=1", f"set={backup_set[-1]}"], env=env)))
        if before is not None:
            after = int(psql(compose, f"select count(*) from writes where ts < to_timestamp({quiesced})"))
            print(f"rows committed before the backup's quiesce: {before}; in the restored set: {after}"
                  + ("" if after == before else "  <-- ROWS MISSING"), flush=True)
        if not args.skip_runbook:
            results.append(runbook(client, name, compose, work))
    print()
    print(f"{'method':<22} {'wall s':>8} {'db down s':>10} {'kit held s':>11} {'longest gap s':>14}")
    for r in results:
        down = max((b - a for a, b in r["windows"].get("db", [])), default=0.0)
        # a rollback takes the rows written since its set away by design: no gap to read
        gap = "-" if "rollback" in r["what"] else f"{r['gap']:.2f}"
        held = "-" if r.get("held") is None else f"{r['held']:.2f}"
        print(f"{r['what']:<22} {r['wall']:>8.2f} {down:>10.2f} {held:>11} {gap:>14}")
    base = [r for r in results if r["what"] == "runbook stop/tar/start"]
    if base:
        ref = max((b - a for a, b in base[0]["windows"].get("db", [])), default=0.0)
        for r in results:
            down = max((b - a for a, b in r["windows"].get("db", [])), default=0.0)
            if r is not base[0] and ref:
                print(f"{r['what']}: db down {down / ref:.2f}x the runbook's")


def set_ids(work: Path) -> set[str]:
    """The sets in the bench's snapshots folder (the kit's own folders left out)."""
    folder = work / "snapshots"
    return {n for n in os.listdir(folder) if n[0].isdigit()} if folder.exists() else set()


def with_hold(result: dict, work: Path, took: list[str]) -> dict:
    """result with the hold the kit recorded for the database's volume in the set it took
    (None: no set, or the volume was referenced, not exported)."""
    import json

    manifests = [json.loads((work / "snapshots" / t / "manifest.json").read_text()) for t in took]
    held = [m["volumes"]["pgdata"]["held"]["seconds"] for m in manifests if "held" in m["volumes"].get("pgdata", {})]
    print(f"{result['what']}: the kit held db {held[-1]:.2f} s (until its healthcheck passed)" if held
          else f"{result['what']}: no hold recorded", flush=True)
    return dict(result, held=held[-1] if held else None)


def runbook(client, name, compose, work) -> dict:
    bb = busybox_image(client)
    out = work / "runbook"
    out.mkdir(exist_ok=True)

    def act():
        sh([*compose, "stop", "db"])
        sh(["docker", "run", "--rm", "--network", "none", "-v", f"{name}_pgdata:/data:ro", "-v", f"{out}:/backup",
            bb, "tar", "czf", "/backup/pgdata.tgz", "-C", "/data", "."])
        sh([*compose, "start", "db"])

    return measured(client, name, compose, "runbook stop/tar/start", act)


def measured(client, name, compose, what: str, act) -> dict:
    with Events(client, name) as ev:
        t0 = time.time()
        act()
        wall = time.time() - t0
    # the longest gap between two committed rows around the command
    gap = float(psql(compose, f"select coalesce(extract(epoch from max(d)), 0) from (select ts - lag(ts) over "
                              f"(order by ts) d from writes where ts >= to_timestamp({t0 - 1}) "
                              f"and ts <= to_timestamp({time.time()})) x"))
    windows = ev.windows()
    print(f"{what}: {wall:.2f} s; " + (", ".join(f"{svc} down " + " + ".join(f"{b - a:.2f} s" for a, b in w)
                                                for svc, w in windows.items()) or "nothing stopped")
          + ("" if "rollback" in what else f"; longest gap between rows {gap:.2f} s"), flush=True)
    return {"what": what, "wall": wall, "windows": windows, "gap": gap,
            "at": datetime.fromtimestamp(t0).isoformat(timespec="seconds")}


if __name__ == "__main__":
    main()
