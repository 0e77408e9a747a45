#!/usr/bin/env python3
"""Peak memory of a backup and a volume rollback on a volume of many small files.

    .venv/bin/python bench/many_files.py [--files 1000000]

Builds a compose project of its own (one `store` service on the kit's base image, no
network) whose volume holds --files small files (100-300 bytes, 1,000 per folder), takes
`doit backup`, changes 1% of the files (rewrites, deletions, additions), then runs
`doit rollback:blobs` (verified set, safety copy, restore, compare, checks). Prints each
command's time and peak RSS (the largest process of its tree) against the target
(< 300 MiB). Everything it creates carries the prefix `undoitmany` and is removed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))

from scripts.rollback import restore  # noqa: E402
from scripts.stack import images

from common import remove_pins, begin, timed  # noqa: E402
from tests.projects import (check, compose_file, do, full, lay_out, phase, plan, refill, volume, waiter,  # noqa: E402
                            write_plan)

PLAN = plan(["store"], volumes={"blobs": volume("store", quiesce="stop")}, phases=[
    phase("blobs", "object store", refill(["blobs"], ["store"]), [check("healthy", services=["store"])])],
            full=full([do("down"), do("restore-volumes", volumes=["blobs"]), do("up")], [check("healthy")]))


def fill(mp: Path, n: int, rng: random.Random) -> None:
    for i in range(n):
        if i % 1000 == 0:
            d = mp / f"{i // 100_000:02d}" / f"{i // 1000 % 100:02d}"
            d.mkdir(parents=True, exist_ok=True)
        (d / f"obj{i:07d}").write_bytes(rng.randbytes(rng.randint(100, 300)))


def change(mp: Path, n: int, rng: random.Random) -> None:
    for i in rng.sample(range(n), n // 100):
        f = mp / f"{i // 100_000:02d}" / f"{i // 1000 % 100:02d}" / f"obj{i:07d}"
        if i % 3:
            f.write_bytes(b"changed")
        else:
            f.unlink()
    extra = mp / "added"
    extra.mkdir()
    for i in range(n // 300):
        (extra / f"new{i}").write_bytes(b"new")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1_000_000)
    args = ap.parse_args()
    client, name, work = begin("undoitmany")
    root = work / "project"
    compose = ["docker", "compose", "--project-name", name, "--project-directory", str(root)]
    try:
        store = waiter(images.prefix(), volumes=["blobs:/blobs"])
        lay_out(root, {"docker-compose.yml": compose_file({"store": store}, volumes=["blobs"])}, "bench project")
        write_plan(work / "phases.toml", PLAN, name, root, kept=work)
        subprocess.run([*compose, "up", "--detach", "--wait"], check=True, capture_output=True)
        mp = Path(client.api.inspect_volume(f"{name}_blobs")["Mountpoint"])
        rng = random.Random(5)
        t0 = time.perf_counter()
        fill(mp, args.files, rng)
        print(f"{args.files} files written in {time.perf_counter() - t0:.0f} s", flush=True)
        env = dict(os.environ, UNDOIT_PLAN=str(work / "phases.toml"), CI="true")
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        doit = [sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "--dir", str(KIT)]
        results = []
        for label, argv, before in (("backup", [*doit, "backup"], None),
                                    ("rollback", [*doit, "rollback:blobs", "yes=1"], lambda: change(mp, args.files, rng))):
            if before:
                before()
            with open(work / f"{label}.log", "w") as log:
                try:
                    t, peak = timed(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
                except SystemExit:
                    print((work / f"{label}.log").read_text()[-3000:])
                    raise
            results.append((label, t, peak))
            print(f"{label:9s} {t:7.1f} s   peak RSS {peak / 1024:6.0f} MiB   (target < 300 MiB)", flush=True)
    finally:
        subprocess.run([*compose, "down", "--volumes", "--remove-orphans"], capture_output=True)
        for v in client.volumes.list(filters={"name": name}):
            v.remove(force=True)
        remove_pins(client, name)
        restore.discard_safety_sets(work / "snapshots")  # what rollbacks parked beside the engine's volumes
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
