#!/usr/bin/env python3
"""Backup and restore of a ~1 GiB volume: undoit vs the runbook's method vs the host limit.

    .venv/bin/python bench/backup.py [--mib 1024] [--repeat 3] [--settle SECONDS]

Builds a mixed volume (70% database-page-like 8-16 MiB files that compress about 3:1,
20% random bytes, 10% as 20,000 small files in nested folders), then, paired and
repeated in one run:
  backup   runbook `docker run busybox tar czf` | undoit (doit backup) | host `tar | zstd -T0 -3`
  restore  runbook `tar xzf`                    | undoit (restore primitive) | host `zstd -dc | tar x`
  no-op    `doit backup` on the unchanged volume
  proofs   (a reference) the host's tools doing the sha256s a set carries besides the
           archive: `tar | tee (sha256) | zstd -T0 -3 | tee archive | sha256` (openssl)
and undoit's peak RSS, and each backup's CPU time. Before each timed backup and restore the kernel's caches are
dropped and what all three methods read is read back (bench/common.drop_caches: the
volume, or the three archives, and the programs): every run starts from the same disk.
The volume's only service is never started, so undoit exports it directly, as the other
two do (no pre-copy: the run says which way its set was made).
Prints the medians and the ratios the targets are stated in.
Everything it creates carries the prefix `undoitbench` and is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))

from scripts.stack import engine, images  # noqa: E402

from common import (begin, busybox_image, empty, files_under, fill, settle_for, settle_option,  # noqa: E402
                    start_even, timed, timed_cpu)


SHA256 = "openssl dgst -sha256"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    settle_option(ap, "restore")
    args = ap.parse_args()

    client, tag, work = begin("undoitbench")
    bb = busybox_image(client)
    vol_name = f"{tag}_data"
    client.volumes.create(vol_name, labels={"com.docker.compose.project": tag,
                                            "com.docker.compose.volume": "data"})
    try:
        run(client, bb, tag, vol_name, work, args)
    finally:
        for c in client.containers.list(all=True, filters={"volume": vol_name}):
            c.remove(force=True)
        client.volumes.get(vol_name).remove(force=True)
        shutil.rmtree(work, ignore_errors=True)


def run(client, bb, tag, vol_name, work: Path, args) -> None:
    mp = Path(client.api.inspect_volume(vol_name)["Mountpoint"])
    settle = settle_for(args.settle, mp)
    t0 = time.perf_counter()
    size = fill(mp, args.mib)
    print(f"volume {vol_name}: {size / 2**30:.2f} GiB written in {time.perf_counter() - t0:.1f} s")
    project = make_project(work, tag, vol_name)
    env = dict(os.environ, UNDOIT_PLAN=str(project / "phases.toml"), CI="true")
    doit = [sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "--dir", str(KIT)]
    backups = work / "out"
    backups.mkdir()
    res = {k: [] for k in ("rb_backup", "ud_backup", "host_backup", "proof_backup", "rb_restore", "ud_restore",
                           "host_restore", "noop", "ud_cpu", "host_cpu", "proof_cpu")}
    rss = []
    snap = work / "snapshots"
    # read back after the caches are dropped: the programs every method runs (a user's
    # tools are warm), and the volume before a backup or the archives before a restore
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    tools = [lambda: subprocess.run([*doit, "list"], env=env, **quiet),
             lambda: subprocess.run(["docker", "run", "--rm", "--network", "none", bb, "true"], **quiet),
             lambda: subprocess.run("tar --version && zstd --version", shell=True, **quiet)]
    volume_files = files_under(mp)
    precopied = []
    for r in range(args.repeat):
        order = ["rb", "ud", "host", "proof"] if r % 2 == 0 else ["proof", "host", "ud", "rb"]
        for who in order:
            for f in backups.iterdir():
                f.unlink()
            if who == "ud":
                shutil.rmtree(snap, ignore_errors=True)  # a first backup: the whole volume exported
            start_even([*tools, *volume_files], 0.0)  # nothing was deleted from the volume: no wait
            if who == "rb":
                t, _ = timed(["docker", "run", "--rm", "--network", "none", "-v", f"{vol_name}:/data",
                              "-v", f"{backups}:/backup", bb, "tar", "czf", "/backup/data.tar.gz", "/data"])
                res["rb_backup"].append(t)
            elif who == "ud":
                t, peak, cpu = timed_cpu([*doit, "backup"], env=env, stdout=subprocess.DEVNULL)
                res["ud_backup"].append(t)
                res["ud_cpu"].append(cpu)
                rss.append(peak)
                precopied.append(newest_set(snap)["volumes"]["data"].get("precopy") is not None)
                t, _ = timed([*doit, "backup"], env=env, stdout=subprocess.DEVNULL)
                res["noop"].append(t)
            elif who == "proof":
                # the host's tools doing what a set proves besides the archive: a sha256 of
                # every byte tar reads (undoit's is per file) and of the archive itself
                # (fd 4: the tar stream to the outer sha256sum; every process waited for, so counted)
                # (openssl's sha256 uses the CPU's SHA instructions, as Python's does; coreutils'
                # sha256sum here is 3.8x slower)
                t, _, cpu = timed_cpu(f"{{ tar -C {mp} -cf - . | tee /dev/fd/4 | zstd -T0 -3 -q "
                                      f"| tee {backups}/proof.tar.zst | {SHA256} > /dev/null; }} 4>&1 "
                                      f"| {SHA256} > /dev/null", shell=True, executable="/bin/bash")
                res["proof_backup"].append(t)
                res["proof_cpu"].append(cpu)
            else:
                t, _, cpu = timed_cpu(f"tar -C {mp} -cf - . | zstd -T0 -3 -q -f -o {backups}/host.tar.zst",
                                      shell=True)
                res["host_backup"].append(t)
                res["host_cpu"].append(cpu)
        # restore: each method from its own archive into the emptied volume
        subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{vol_name}:/data",
                        "-v", f"{backups}:/backup", bb, "tar", "czf", "/backup/data.tar.gz", "/data"], check=True)
        subprocess.run(f"tar -C {mp} -cf - . | zstd -T0 -3 -q -f -o {backups}/host.tar.zst", shell=True, check=True)
        archives = [backups / "data.tar.gz", backups / "host.tar.zst", *snap.glob("*/data.tar.zst")]
        for who in (w for w in order if w != "proof"):  # a reference for the backup only
            empty(mp)
            start_even([*tools, *archives], settle)
            if who == "rb":
                t, _ = timed(["docker", "run", "--rm", "--network", "none", "-v", f"{vol_name}:/data",
                              "-v", f"{backups}:/backup", bb, "tar", "xzf", "/backup/data.tar.gz", "-C", "/"])
                res["rb_restore"].append(t)
            elif who == "ud":
                t, peak = timed([sys.executable, __file__, "--restore-child", str(snap), vol_name])
                res["ud_restore"].append(t)
                rss.append(peak)
            else:
                t, _ = timed(f"zstd -dc -q {backups}/host.tar.zst | tar -C {mp} -x", shell=True)
                res["host_restore"].append(t)
    med = {k: statistics.median(v) for k, v in res.items() if v}
    print()
    for k, v in res.items():
        print(f"{k:13s} median {med[k]:7.2f} s   runs: {', '.join(f'{x:.2f}' for x in v)}")
    print()
    print(f"backup:  undoit / runbook    = {med['ud_backup'] / med['rb_backup']:.3f}   (target <= 0.12)")
    print(f"backup:  undoit / host limit = {med['ud_backup'] / med['host_backup']:.3f}   (target <= 1.3)")
    print(f"backup:  undoit / host tools with the set's sha256s = {med['ud_backup'] / med['proof_backup']:.3f}"
          f"   (reference: {med['proof_backup']:.2f} s, CPU {med['proof_cpu']:.2f} s)")
    print(f"restore: undoit / runbook    = {med['ud_restore'] / med['rb_restore']:.3f}   (target <= 0.5)")
    print(f"restore: undoit / host limit = {med['ud_restore'] / med['host_restore']:.3f}")
    cores = len(os.sched_getaffinity(0))
    print(f"backup CPU (user + system)   = undoit {med['ud_cpu']:.2f} s, host limit {med['host_cpu']:.2f} s "
          f"({med['ud_cpu'] / med['host_cpu']:.2f}x): on {cores} cores, at least "
          f"{med['ud_cpu'] / cores:.2f} s and {med['host_cpu'] / cores:.2f} s of wall time")
    print(f"no-op backup                 = {med['noop']:.2f} s   (target < 1 s)")
    print(f"peak RSS (largest undoit process) = {max(rss) / 1024:.0f} MiB   (target < 100 MiB)")
    print(f"undoit's backups pre-copied the volume: {sum(precopied)} of {len(precopied)}"
          + ("" if any(precopied) else " (exported directly, as the runbook and the host limit read it)"))


def newest_set(snap: Path) -> dict:
    """The manifest of the newest set in snap (what the backup just made)."""
    import json

    return json.loads(max(snap.glob("*/manifest.json"), key=lambda f: f.stat().st_mtime).read_text())


def make_project(work: Path, tag: str, vol_name: str) -> Path:
    """A compose project whose one (never started) service mounts the bench volume, in a git repo."""
    from tests.projects import compose_file, full, lay_out, phase, plan, service, volume, write_plan

    root = lay_out(work / "project", {"docker-compose.yml": compose_file(
        {"holder": service(images.names()["base"], volumes=["data:/data"])},
        volumes={"data": {"name": vol_name, "external": True}})}, "bench project")
    write_plan(work / "phases.toml", plan(["holder"], volumes={"data": volume("holder")}, phases=[phase("p", "p")],
                                          full=full(title="full")), tag, root, kept=work)
    return work


def restore_child(snap: str, vol_name: str) -> None:
    from scripts.rollback import restore
    from scripts.store import snapshots

    sets = [s for s in snapshots.all_sets(Path(snap)) if s.complete]
    restore.restore_volume(engine.client(), sets[-1], "data", target=vol_name)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--restore-child":
        os.environ.setdefault("CI", "true")
        restore_child(sys.argv[2], sys.argv[3])
    else:
        main()
