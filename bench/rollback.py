#!/usr/bin/env python3
"""Whole rollbacks, as a user waits for them: undoit vs the runbook's own commands.

    .venv/bin/python bench/rollback.py [--files 10000] [--mib 1024] [--repeat 3] [--settle SECONDS]
                                       [--kinds files,volume,full]

Builds a compose project of its own (an `app` and a `db` service on the kit's base
image, no network) in a git repo with --files tracked files under src/, and a --mib
volume (bench/common.fill: page-like, random and 20,000 small files) that `db` mounts.
`doit backup` takes the baseline, and the runbook's gzip backup of the volume is made
too. The "phase" then commits a change to 10% of the files (edits, additions, deletions)
and writes into the volume. Paired, alternated and repeated in one run, each from the
changed state:
  files   `doit rollback:files`  | `git checkout TAG -- src` + the same restart as undoit's
                                   step: `docker compose restart app` and a poll until app is
                                   healthy (and, for reference, the restart without the poll)
  volume  `doit rollback:volume` | `docker compose down db`, `docker volume rm/create`,
                                   `docker run busybox tar xzf` from the gzip, `up -d db`
  full    `doit rollback:full`   | `down`, `git checkout TAG -- .`, the volume as above, `up -d`
undoit's side is the whole task: verified set, safety copies, restore, compare, checks.
Before each timed run the kernel's caches are dropped and what both methods read is read
back (bench/common.drop_caches): every run starts from the same disk.
Prints medians, the ratios the targets are stated in, and undoit's peak RSS.
Everything it creates carries the prefix `undoitbench` and is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))

from scripts.rollback import restore  # noqa: E402
from scripts.stack import images

from common import (begin, busybox_image, fill, remove_pins, settle_for, settle_option, start_even,  # noqa: E402
                    timed)
from tests.projects import (check, compose_file, do, everything, lay_out, phase, plan, refill, volume,  # noqa: E402
                            waiter, write_plan)

PLAN = plan(["app", "db"], volumes={"data": volume("db", quiesce="stop")}, phases=[
    phase("files", "source tree", [do("restore-files", paths=["src"]), do("restart", services=["app"])],
          [check("healthy", services=["app"])]),
    phase("volume", "database volume", refill(["data"], ["db"]),
          [check("healthy", services=["db"]), check("exec", service="db", argv=["test", "-d", "/data/docs"])]),
], full=everything(["data"], stop="down"))


def sh(cmd: str, cwd: Path | None = None) -> None:
    subprocess.run(cmd, shell=True, check=True, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def tree(root: Path, n: int, rng: random.Random) -> None:
    """n source-like files of 0.5-4 KiB in a two-level tree, as a backend/frontend has."""
    for i in range(n):
        d = root / "src" / ("backend" if i % 2 else "frontend") / f"mod{i % 97:02d}" / f"part{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i:05d}.ts").write_text(f"// {i}\n" + rng.randbytes(rng.randint(256, 2048)).hex() + "\n")


def change(root: Path, rng: random.Random) -> int:
    """The phase's commit: 10% of src/ touched (8% edited, 1% deleted, 1% added)."""
    files = sorted((root / "src").rglob("*.ts"))
    picked = rng.sample(files, len(files) // 10)
    cut = len(picked) // 10
    for f in picked[cut:]:
        f.write_text(f.read_text() + "// changed by the phase\n")
    for f in picked[:cut]:
        f.unlink()
    for i in range(cut):
        new = root / "src" / "backend" / "added" / f"new{i:04d}.ts"
        new.parent.mkdir(parents=True, exist_ok=True)
        new.write_text(f"// added {i}\n")
    sh("git add -A && git commit -qm 'phase change'", root)
    return len(picked) + cut


def breakdown(reports: Path, wall: float) -> dict[str, float]:
    """The newest rollback report's own step and check times, and the rest of the wall time."""
    import json

    rec = json.loads(max(reports.glob("*.json"), key=lambda f: f.stat().st_mtime).read_text())
    out: dict[str, float] = {}
    for st in rec["steps"]:
        out[st["do"]] = out.get(st["do"], 0) + st["seconds"]
    out["checks"] = max(rec["seconds"] - sum(out.values()), 0.0)
    # volumes built and checked before the first step, while the services still ran
    out["built ahead"] = sum((rec.get("prestaged") or {}).values())
    out["around"] = wall - rec["seconds"] - out["built ahead"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--kinds", default="files,volume,full", help="which rollbacks to time (comma-separated)")
    settle_option(ap, "volume restore")
    args = ap.parse_args()
    client, name, work = begin("undoitbench")
    bb = busybox_image(client)
    try:
        run(client, bb, name, work, args)
    finally:
        subprocess.run(["docker", "compose", "--project-name", name, "--project-directory", str(work / "project"),
                        "down", "--volumes", "--remove-orphans"], capture_output=True)
        for c in client.containers.list(all=True, filters={"label": f"com.docker.compose.project={name}"}):
            c.remove(force=True)
        for v in client.volumes.list(filters={"name": name}):
            v.remove(force=True)
        remove_pins(client, name)
        restore.discard_safety_sets(work / "snapshots")  # what rollbacks parked beside the engine's volumes
        shutil.rmtree(work, ignore_errors=True)


def run(client, bb, name: str, work: Path, args) -> None:
    rng = random.Random(11)
    root = work / "project"
    root.mkdir()
    tree(root, args.files, rng)
    p = images.prefix()
    lay_out(root, {"docker-compose.yml": compose_file({"app": waiter(p), "db": waiter(p, volumes=["data:/data"])},
                                                      volumes=["data"])}, "bench project")
    plan = write_plan(work / "phases.toml", PLAN, name, root, kept=work)
    compose = f"docker compose --project-name {name} --project-directory {root}"
    sh(f"{compose} up --detach --wait")
    vol = f"{name}_data"
    mp = Path(client.api.inspect_volume(vol)["Mountpoint"])
    t0 = time.perf_counter()
    size = fill(mp, args.mib)
    print(f"volume {vol}: {size / 2**30:.2f} GiB; {args.files} tracked files "
          f"({time.perf_counter() - t0:.0f} s to build)")
    settle = settle_for(args.settle, mp)

    env = dict(os.environ, UNDOIT_PLAN=str(plan), CI="true")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a user's Python runs (see bench/noop.py)
    doit = [sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "--dir", str(KIT)]
    subprocess.run([*doit, "backup"], env=env, check=True, stdout=subprocess.DEVNULL)
    tag = subprocess.run(["git", "describe", "--tags", "--abbrev=0"], cwd=root, capture_output=True, text=True,
                         check=True).stdout.strip()
    backups = work / "runbook"
    backups.mkdir()
    sh(f"docker run --rm --network none -v {vol}:/data -v {backups}:/backup {bb} tar czf /backup/data.tar.gz /data")
    touched = change(root, rng)
    print(f"baseline {tag}; the phase touches {touched} files; runbook backup "
          f"{(backups / 'data.tar.gz').stat().st_size / 2**20:.0f} MiB gzip")

    # read back after the caches are dropped: both methods' archives, and the programs and
    # the repository both run (a user's stack and tools are warm; a rollback's archive
    # may not be, so both are read back alike)
    baseline = next(p for p in (work / "snapshots").iterdir() if (p / "manifest.json").exists())
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    warm = [*baseline.glob("*.tar.zst"), backups / "data.tar.gz",
            lambda: subprocess.run([*doit, "list"], env=env, **quiet),
            lambda: subprocess.run(["docker", "compose", "version"], **quiet),
            lambda: subprocess.run(["git", "-C", str(root), "status", "--short"], **quiet),
            lambda: subprocess.run(["docker", "run", "--rm", "--network", "none", bb, "true"], **quiet)]

    def apply_change(volume: bool) -> None:
        sh("git reset -q --hard HEAD && git clean -fdq", root)
        if volume:  # what the phase wrote: a new table's pages and a rewritten one
            (mp / "base" / "phase-new").write_bytes(rng.randbytes(8 << 20))
            first = sorted((mp / "base").iterdir())[0]
            first.write_bytes(rng.randbytes(first.stat().st_size))
        sh(f"{compose} up --detach --wait")
        restore.discard_safety_sets(work / "snapshots")  # earlier rounds' safety copies
        for old in ("runs", "safety"):
            shutil.rmtree(work / "snapshots" / old, ignore_errors=True)
        # every round starts from the same disk: nothing recently freed in the kernel's
        # cache (deleting 20,000 files slows creating files for minutes after, on ext4
        # without a journal), and what either method reads read back in; a wait where the
        # caches cannot be dropped (files alone: no volume restored, no wait)
        start_even(warm, settle if volume else 0.0)

    restore_volume = (f"docker volume rm {vol} && docker volume create {vol} && "
                      f"docker run --rm --network none -v {vol}:/data -v {backups}:/backup {bb} "
                      f"tar xzf /backup/data.tar.gz -C /")
    # the files baseline: the bare checkout and the same restart as undoit's step, which
    # waits until the engine reports the service healthy (the runbook's validation,
    # "backend starts without errors", as a command); the restart without that wait is
    # timed as a third method, for reference
    bare_restart = f"git checkout {tag} -- src && {compose} restart app"
    runbook = {
        "files": f"{bare_restart} && until [ \"$(docker inspect -f '{{{{.State.Health.Status}}}}' {name}-app-1)\" "
                 "= healthy ]; do sleep 0.05; done",
        "volume": f"{compose} down db && {restore_volume} && {compose} up -d db",
        "full": f"{compose} down && git checkout {tag} -- . && {restore_volume} && {compose} up -d",
    }
    runbook = {k: v for k, v in runbook.items() if k in args.kinds.split(",")}
    res: dict[str, list[float]] = {f"{w}_{k}": [] for k in runbook for w in ("ud", "rb")}
    if "files" in runbook:
        res["rn_files"] = []
    rss: list[int] = []
    parts: dict[str, list[dict[str, float]]] = {k: [] for k in runbook}
    for r in range(args.repeat):
        for kind in runbook:
            order = ("rb", "ud") if r % 2 == 0 else ("ud", "rb")
            for who in order + (("rn",) if kind == "files" else ()):
                apply_change(volume=kind != "files")
                if who in ("rb", "rn"):
                    t, _ = timed(runbook[kind] if who == "rb" else bare_restart, shell=True, cwd=root,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                else:
                    with open(work / f"undoit-{kind}-{r + 1}.log", "w") as log:
                        t, peak = timed([*doit, f"rollback:{kind}", "yes=1"], env=env, stdout=log)
                    print("    " + "\n    ".join(line for line in (work / f"undoit-{kind}-{r + 1}.log").read_text()
                                                 .splitlines() if " MiB/s)" in line))
                    rss.append(peak)
                    parts[kind].append(breakdown(work / "reports", t))
                res[f"{who}_{kind}"].append(t)
                label = {"ud": "undoit", "rb": "runbook", "rn": "runbook, restart without waiting"}[who]
                print(f"  round {r + 1} {kind:6s} {label}: {t:.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in res.items()}
    print()
    for k, v in res.items():
        print(f"{k:10s} median {med[k]:7.2f} s   runs: {', '.join(f'{x:.2f}' for x in v)}")
    print("\nwhere undoit's time goes (medians, s; 'around' = start-up, verified:*, plan, safety tag):")
    for kind, runs in parts.items():
        keys = list(runs[0])
        print(f"  {kind:6s} " + "  ".join(f"{k} {statistics.median(r.get(k, 0) for r in runs):.2f}" for k in keys))
    print()
    against = {"files": ("git checkout + the same restart", 2), "volume": ("runbook commands", 0.6),
               "full": ("runbook commands", 0.6)}
    for kind in runbook:
        print(f"{kind + ':':7s} undoit / {against[kind][0]:31s} = {med[f'ud_{kind}'] / med[f'rb_{kind}']:.3f}"
              f"   (target <= {against[kind][1]})")
    if "files" in runbook:
        print(f"files:  undoit / git checkout + restart, no wait   = {med['ud_files'] / med['rn_files']:.3f}"
              "   (for reference: a restart that does not wait until the service is healthy)")
    print(f"peak RSS (largest process of a rollback) = {max(rss) / 1024:.0f} MiB   (target < 150 MiB)")


if __name__ == "__main__":
    main()
