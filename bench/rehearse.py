"""Recovery time of every drill against the runbook's own estimate for it.

The whole rehearsal of the demo (each phase, the full rollback and each scenario, on a
throwaway copy with its own compose project, removed at the end), in one run: for each
drill, seconds from its first step to its last check, the runbook's estimate, and the
ratio. The target is a tenth of the runbook's estimate or less for every drill.

    .venv/bin/python bench/rehearse.py [--only phase3,full]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))

from demo import kit as demo  # noqa: E402
from scripts.backup import backup
from scripts.rehearse import rehearse
from scripts.stack import engine
from scripts.plan import plan as planmod  # noqa: E402

sys.path.insert(0, str(KIT / "bench"))
from common import remove_demo  # noqa: E402

TARGET = 0.1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=None, help="comma-separated procedures (default: all)")
    args = ap.parse_args()
    name = f"benchreh{uuid.uuid4().hex[:6]}"
    tmp = Path(tempfile.mkdtemp(prefix="undoit-rehearse-"))
    engine.client()  # one line and out if no engine answers
    plan = None
    try:
        demo.materialize(tmp / "demo")
        plan = planmod.load(demo.copy_plan(tmp, name), env={})
        demo.up(plan)
        backup.backup(plan)
        report = rehearse.rehearse(plan, only=args.only)
        timed = [r for r in report["rows"] if r["runbook_minutes"]]
        print(f"{'drill':<14} {'ok':<4} {'seconds':>8} {'runbook':>8} {'ratio':>7}")
        for r in timed:
            print(f"{r['procedure']:<14} {'yes' if r['ok'] else 'NO':<4} {r['seconds']:>8.1f} "
                  f"{r['runbook_minutes']:>6} m {r['ratio']:>7.4f}")
        if timed:
            worst = max(timed, key=lambda r: r["ratio"])
            print(f"median ratio {statistics.median(r['ratio'] for r in timed):.4f}; worst {worst['ratio']:.4f} "
                  f"({worst['procedure']}); target <= {TARGET} for every drill: "
                  f"{'met' if worst['ratio'] <= TARGET else 'NOT met'}")
        if not report["ok"]:
            print(f"the rehearsal failed: {report['path']}")
    finally:
        remove_demo(plan, name, tmp)


if __name__ == "__main__":
    main()
