#!/usr/bin/env python3
"""Downtime on a copy-on-write engine: bench/downtime.py's Postgres and writer, on a
second dockerd whose data root is a loop-mounted btrfs or XFS (reflink=1).

    .venv/bin/python bench/cow.py [--fs btrfs|xfs|both] [--gib 8] [--quiesce pause|stop] [--skip-runbook]

For each filesystem, in one run, while the writer commits a row every ~100 ms:
  backup      `doit backup`: the database held still for a clone, not for a copy
  checkpoint  `doit checkpoint:db force=1`
  rollback    `doit rollback:db yes=1 set=<the backup's>`: the set's clone cloned back
  undo        `doit undo`: the parked contents swapped back
  extraction  the same rollback with the clones moved aside: the archive extracted
              (the kit's path on any other filesystem: the baseline)
  runbook     stop, `tar czf`, start (unless --skip-runbook)
It prints, from the engine's own events, how long the database was stopped or paused
during each, each command's wall time, and the rows committed before the backup's
quiesce against those in the restored set (nothing may be missing); then each figure
against the issue's target (a quiesce of at most 0.3 s; a rollback and an undo of at
most 2 s end to end) and the rollback against the extraction's.
Everything it creates carries the prefix `undoitbench` and is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))

from scripts.stack import clones, images  # noqa: E402

import downtime  # noqa: E402
from common import begin, busybox_image, remove_pins  # noqa: E402
from tests.cowengine import as_the_engine, loop_engine  # noqa: E402
from tests.projects import check, do, full, lay_out, phase, plan, refill, volume, write_plan  # noqa: E402

QUIESCE_MAX, ROLLBACK_MAX = 0.3, 2.0  # the targets, in seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fs", choices=["btrfs", "xfs", "both"], default="both")
    ap.add_argument("--gib", type=float, default=8.0)
    ap.add_argument("--quiesce", choices=["pause", "stop"], default="pause")
    ap.add_argument("--skip-runbook", action="store_true")
    args = ap.parse_args()
    import docker

    needed = [images.names()["postgres"], busybox_image(docker.from_env())]
    verdicts = []
    for fs in (["btrfs", "xfs"] if args.fs == "both" else [args.fs]):
        _, name, work = begin("undoitbench")  # on the host's engine: the images are there
        # the data, its WAL, the images, what the writer adds, and room for the extraction
        # baseline to build a whole copy beside the volume (the kit refuses it otherwise)
        with loop_engine(fs, max(12.0, args.gib * 4 + 8), needed) as eng, as_the_engine(eng):
            print(f"\n== {fs}: the engine's data root on a loop-mounted {fs} ({eng.root})", flush=True)
            verdicts += one_filesystem(eng, name, work, fs, args)
    print()
    for line in verdicts:
        print(line)


def one_filesystem(eng, name: str, work: Path, fs: str, args) -> list[str]:
    client = eng.client
    root = work / "project"
    root.mkdir()
    lay_out(root, {"docker-compose.yml": downtime.stack(images.prefix())}, "bench")
    write_plan(work / "phases.toml", plan(
        ["db", "writer"], volumes={"pgdata": volume("db", quiesce=args.quiesce)},
        phases=[phase("db", "the database back", refill(["pgdata"], ["db"]), [check("healthy", services=["db"])],
                      volumes=["pgdata"])],
        full=full([do("stop"), do("restore-volumes", volumes=["pgdata"]), do("up")])), name, root, kept=work)
    env = dict(os.environ, UNDOIT_PLAN=str(work / "phases.toml"), CI="true")
    compose = ["docker", "compose", "--project-name", name, "--project-directory", str(root)]
    try:
        return measure(eng, client, name, root, work, env, compose, fs, args)
    finally:
        import subprocess

        subprocess.run([*compose, "down", "--volumes", "--remove-orphans"], capture_output=True)
        remove_pins(client, name)
        import shutil

        shutil.rmtree(work, ignore_errors=True)  # the clones and parked copies go with the engine


def measure(eng, client, name, root, work, env, compose, fs: str, args) -> list[str]:
    downtime.fill_database(compose, root, args.gib)
    doit = [sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "-d", str(KIT)]
    run = {}
    run["backup"] = downtime.measured(client, name, compose, "doit backup", lambda: downtime.sh([*doit, "backup"],
                                                                                                 env=env))
    backup_set = max(p.name for p in (work / "snapshots").iterdir() if p.name[0].isdigit())
    run["checkpoint"] = downtime.measured(client, name, compose, "doit checkpoint:db", lambda: downtime.sh(
        [*doit, "checkpoint:db", "force=1"], env=env))
    quiesced = min((w[0] for w in run["backup"]["windows"].get("db", [])), default=None)
    before = int(downtime.psql(compose, f"select count(*) from writes where ts < to_timestamp({quiesced})"))
    run["rollback"] = downtime.measured(client, name, compose, "doit rollback:db (clone)", lambda: downtime.sh(
        [*doit, "rollback:db", "yes=1", f"set={backup_set}"], env=env))
    after = int(downtime.psql(compose, f"select count(*) from writes where ts < to_timestamp({quiesced})"))
    print(f"rows committed before the backup's quiesce: {before}; in the restored set: {after}"
          + ("" if after == before else "  <-- ROWS MISSING"), flush=True)
    run["undo"] = downtime.measured(client, name, compose, "doit undo", lambda: downtime.sh([*doit, "undo"], env=env))
    store = clones.path_of(eng.root / clones.FOLDER, work / "snapshots", backup_set, "pgdata").parent
    # out of the clone store (whose tidying would take it for a dead backup's), on its disk
    aside = eng.root / f"undoitbench-aside-{backup_set}"
    store.rename(aside)  # no clone of that set: the rollback extracts its archive, as on any other filesystem
    try:
        run["extraction"] = downtime.measured(client, name, compose, "doit rollback:db (extraction)",
                                              lambda: downtime.sh([*doit, "rollback:db", "yes=1",
                                                                   f"set={backup_set}"], env=env))
    finally:
        aside.rename(store)
    if not args.skip_runbook:
        run["runbook"] = downtime.runbook(client, name, compose, work)
    return verdicts(fs, args, run, before, after)


def held(r: dict) -> float:
    return max((b - a for a, b in r["windows"].get("db", [])), default=0.0)


def verdicts(fs: str, args, run: dict, before: int, after: int) -> list[str]:
    how = "paused" if args.quiesce == "pause" else "stopped"
    out = [f"{fs}, {args.gib:g} GiB, quiesce={args.quiesce}:"]
    for what in ("backup", "checkpoint"):
        out.append(f"  {what}: db {how} {held(run[what]):.2f} s (target <= {QUIESCE_MAX} s: "
                   f"{'met' if held(run[what]) <= QUIESCE_MAX else 'NOT met'}), command {run[what]['wall']:.2f} s")
    for what in ("rollback", "undo"):
        out.append(f"  {what}: {run[what]['wall']:.2f} s end to end (target <= {ROLLBACK_MAX} s: "
                   f"{'met' if run[what]['wall'] <= ROLLBACK_MAX else 'NOT met'}), db down {held(run[what]):.2f} s")
    ext = run["extraction"]["wall"]
    out.append(f"  rollback from the clone {run['rollback']['wall']:.2f} s vs from the archive {ext:.2f} s: "
               f"{run['rollback']['wall'] / ext:.2f}x")
    if "runbook" in run:
        out.append(f"  runbook stop/tar/start: db down {held(run['runbook']):.2f} s; the backup's "
                   f"{held(run['backup']) / max(held(run['runbook']), 1e-9):.3f}x of it")
    out.append(f"  rows committed before the backup's quiesce {before}, in the restored set {after}"
               + ("" if before == after else "  <-- ROWS MISSING"))
    return out


if __name__ == "__main__":
    main()
