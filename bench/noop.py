"""The no-op backup of an idle, unchanged demo stack: `doit backup` when nothing changed.

A throwaway copy of the demo (its own compose project, removed at the end) is brought
up, settled and backed up; then `doit backup` is timed N times against `doit list`
(the floor: Python, doit and the plan, no engine at all), in one run, alternated.
Prints the medians and the ratio; the target is < 1 s.

    .venv/bin/python bench/noop.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))

from demo import kit as demo  # noqa: E402
from scripts.backup import backup
from scripts.stack import engine
from scripts.plan import plan as planmod  # noqa: E402
from scripts.stack.compose import for_plan  # noqa: E402

sys.path.insert(0, str(KIT / "bench"))
from common import remove_demo  # noqa: E402


def timed(argv, env) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv[3:])} failed: {res.stdout[-500:]}{res.stderr[-500:]}")
    return took, res.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    engine.client()  # one line and out if no engine answers
    name, tmp, plan = f"benchnoop{uuid.uuid4().hex[:6]}", Path(tempfile.mkdtemp(prefix="undoit-noop-")), None
    try:
        demo.materialize(tmp / "demo")
        path = demo.copy_plan(tmp, name)
        plan = planmod.load(path, env={})
        demo.up(plan)
        compose = for_plan(plan)
        for svc, db in (("mvp-postgres", "app"), ("mvp-platform-vehicles-db", "vehicles")):
            compose.exec(svc, "psql", "-U", "postgres", "-d", db, "-qc", "VACUUM ANALYZE")
        backup.backup(plan)
        env = dict(os.environ, UNDOIT_PLAN=str(path))
        # as a user's Python runs: bytecode cached after the first run (a shell that sets
        # PYTHONDONTWRITEBYTECODE recompiles every module on every command, ~0.1 s here)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        doit = [sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "-d", str(KIT)]
        timed(doit + ["backup"], env)  # settles: the first backup after the seed may export once
        noop, floor = [], []
        for _ in range(args.runs):
            took, out = timed(doit + ["backup"], env)
            if "-- backup" not in out:
                raise SystemExit(f"not a no-op: {out[-800:]}")
            noop.append(took)
            floor.append(timed(doit + ["list"], env)[0])
        n, f = statistics.median(noop), statistics.median(floor)
        print(f"no-op backup of the idle demo (7 containers, 4 volumes, 2 Postgres probes): "
              f"median {n:.2f} s over {args.runs} runs (target < 1 s)")
        print(f"doit list (the floor: Python, doit, the plan): median {f:.2f} s; no-op / floor = {n / f:.2f}x")
    finally:
        remove_demo(plan, name, tmp)


if __name__ == "__main__":
    main()
