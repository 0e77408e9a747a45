#!/usr/bin/env python3
"""Backup and restore of a ~1 GiB volume: undoit vs the runbook's method vs the host limit.

    .venv/bin/python bench/backup.py [--mib 1024] [--repeat 3] [--settle SECONDS]

Builds a mixed volume (70% database-page-like 8-16 MiB files that compress about 3:1,
20% random bytes, 10% as 20,000 small files in nested folders), then, paired and
repeated in one run:
  backup   runbook `docker run busybox tar czf` | undoit (doit backup) | host `tar | zstd -T0 -3`
  restore  runbook `tar xzf`                    | undoit (restore primitive) | host `zstd -dc | tar x`
  no-op    `doit backup` on the unchanged volume
and undoit's peak RSS. Prints the medians and the ratios the targets are stated in.
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
import tempfile
import time
import uuid
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))

from scripts import engine, images  # noqa: E402

BUSYBOX = "undoitbench/busybox:latest"


def busybox_image(client) -> str:
    """A local busybox image (the runbook uses alpine; no registry here): busybox-static + import."""
    try:
        client.images.get(BUSYBOX)
        return BUSYBOX
    except Exception:
        pass
    if not shutil.which("busybox") or not Path("/bin/busybox").exists():
        subprocess.run(["apt-get", "install", "-y", "-qq", "busybox-static"], check=True,
                       stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        (root / "bin").mkdir(parents=True)
        shutil.copy("/bin/busybox", root / "bin" / "busybox")
        for tool in ("sh", "tar", "gzip", "ls", "rm", "find"):
            os.symlink("busybox", root / "bin" / tool)
        (root / "tmp").mkdir()
        subprocess.run(f"tar -C {root} -c . | docker import --change 'ENV PATH=/bin' - {BUSYBOX}",
                       shell=True, check=True, stdout=subprocess.DEVNULL)
    return BUSYBOX


def fill(mp: Path, mib: int, seed: int = 7) -> int:
    """Write the mixed data set into the volume's host directory; return bytes written."""
    rng = random.Random(seed)
    total = mib << 20
    written = 0
    # a page-like block: a third random, the rest repeated structure -> ~3:1 under zstd -3
    def page_file(size):
        out = bytearray()
        while len(out) < size:
            block = rng.randbytes(2730) + bytes(range(256)) * 21
            out += block[:8192]
        return bytes(out[:size])

    (mp / "base").mkdir()
    i = 0
    while written < total * 0.70:
        size = rng.randint(8, 16) << 20
        (mp / "base" / f"{16384 + i}").write_bytes(page_file(size))
        written += size
        i += 1
    (mp / "blobs").mkdir()
    i = 0
    while written < total * 0.90:
        size = rng.randint(4, 12) << 20
        (mp / "blobs" / f"obj{i:04d}").write_bytes(rng.randbytes(size))
        written += size
        i += 1
    for n in range(20000):
        d = mp / "docs" / f"{n % 20:02d}" / f"{n % 400:03d}"
        d.mkdir(parents=True, exist_ok=True)
        size = rng.randint(1024, 8192)
        (d / f"doc{n:05d}.json").write_bytes(rng.randbytes(size // 2).hex()[:size].encode())
        written += size
    return written


def timed(argv, **kw) -> tuple[float, int]:
    """Run a command; return (seconds, peak RSS in KiB of that process tree's largest member)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, **kw)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark step failed: {argv if isinstance(argv, str) else ' '.join(map(str, argv))}")
    return elapsed, usage.ru_maxrss


def empty(mp: Path) -> None:
    for child in os.scandir(mp):
        if child.is_dir(follow_symlinks=False):
            shutil.rmtree(child.path)
        else:
            os.unlink(child.path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--settle", type=float, default=None,
                    help="seconds to wait before each timed restore (default: 65 on ext4 without a journal, else 0)")
    args = ap.parse_args()

    client = engine.client()
    if not images.up_to_date():
        images.build()
    bb = busybox_image(client)
    tag = f"undoitbench{uuid.uuid4().hex[:6]}"
    vol_name = f"{tag}_data"
    work = Path(tempfile.mkdtemp(prefix=tag, dir=os.environ.get("TMPDIR", "/var/tmp")))
    client.volumes.create(vol_name, labels={"com.docker.compose.project": tag,
                                            "com.docker.compose.volume": "data"})
    try:
        run(client, bb, tag, vol_name, work, args)
    finally:
        for c in client.containers.list(all=True, filters={"volume": vol_name}):
            c.remove(force=True)
        client.volumes.get(vol_name).remove(force=True)
        shutil.rmtree(work, ignore_errors=True)


def journal_less_ext4(path: Path) -> bool:
    """ext4 without a journal skips inodes freed in the last 60 s (360 s while their
    inode-table block is dirty: hence the sync) when it allocates new ones
    (fs/ext4/ialloc.c, recently_deleted), one buffer lookup per skipped inode: creating
    20,000 files right after deleting 20,000 takes 5-10x longer. Each restore starts
    from an emptied volume, so without a pause the order of the methods, not the
    methods, decides the times."""
    try:
        src, fstype = subprocess.run(["findmnt", "-no", "SOURCE,FSTYPE", "-T", str(path)], capture_output=True,
                                     text=True, check=True).stdout.split()[:2]
    except (OSError, ValueError, subprocess.CalledProcessError):
        return True  # cannot tell: wait, the safe side
    device = os.path.basename(src.split("[")[0])
    # a journal shows as /proc/fs/jbd2/<device>-8
    journals = os.listdir("/proc/fs/jbd2") if os.path.isdir("/proc/fs/jbd2") else []
    return fstype == "ext4" and not any(j.startswith(device + "-") for j in journals)


def run(client, bb, tag, vol_name, work: Path, args) -> None:
    mp = Path(client.api.inspect_volume(vol_name)["Mountpoint"])
    settle = args.settle if args.settle is not None else (65.0 if journal_less_ext4(mp) else 0.0)
    if settle:
        print(f"waiting {settle:.0f} s before each timed restore (ext4 without a journal: see journal_less_ext4)")
    t0 = time.perf_counter()
    size = fill(mp, args.mib)
    print(f"volume {vol_name}: {size / 2**30:.2f} GiB written in {time.perf_counter() - t0:.1f} s")
    project = make_project(work, tag, vol_name)
    env = dict(os.environ, UNDOIT_PLAN=str(project / "phases.toml"), CI="true")
    doit = [sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "--dir", str(KIT)]
    backups = work / "out"
    backups.mkdir()
    res = {k: [] for k in ("rb_backup", "ud_backup", "host_backup", "rb_restore", "ud_restore",
                           "host_restore", "noop")}
    rss = []
    snap = work / "snapshots"
    for r in range(args.repeat):
        order = ["rb", "ud", "host"] if r % 2 == 0 else ["host", "ud", "rb"]
        for who in order:
            for f in backups.iterdir():
                f.unlink()
            subprocess.run(["sync"])
            if who == "rb":
                t, _ = timed(["docker", "run", "--rm", "--network", "none", "-v", f"{vol_name}:/data",
                              "-v", f"{backups}:/backup", bb, "tar", "czf", "/backup/data.tar.gz", "/data"])
                res["rb_backup"].append(t)
            elif who == "ud":
                shutil.rmtree(snap, ignore_errors=True)
                t, peak = timed([*doit, "backup"], env=env, stdout=subprocess.DEVNULL)
                res["ud_backup"].append(t)
                rss.append(peak)
                t, _ = timed([*doit, "backup"], env=env, stdout=subprocess.DEVNULL)
                res["noop"].append(t)
            else:
                t, _ = timed(f"tar -C {mp} -cf - . | zstd -T0 -3 -q -f -o {backups}/host.tar.zst", shell=True)
                res["host_backup"].append(t)
        # restore: each method from its own archive into the emptied volume
        subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{vol_name}:/data",
                        "-v", f"{backups}:/backup", bb, "tar", "czf", "/backup/data.tar.gz", "/data"], check=True)
        subprocess.run(f"tar -C {mp} -cf - . | zstd -T0 -3 -q -f -o {backups}/host.tar.zst", shell=True, check=True)
        for who in order:
            empty(mp)
            subprocess.run(["sync"])
            time.sleep(settle)
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
    print(f"restore: undoit / runbook    = {med['ud_restore'] / med['rb_restore']:.3f}   (target <= 0.5)")
    print(f"restore: undoit / host limit = {med['ud_restore'] / med['host_restore']:.3f}")
    print(f"no-op backup                 = {med['noop']:.2f} s   (target < 1 s)")
    print(f"peak RSS (largest undoit process) = {max(rss) / 1024:.0f} MiB   (target < 100 MiB)")


def make_project(work: Path, tag: str, vol_name: str) -> Path:
    """A compose project whose one (never started) service mounts the bench volume, in a git repo."""
    from scripts import gitstate

    root = work / "project"
    root.mkdir()
    (root / "docker-compose.yml").write_text(
        f"services:\n  holder:\n    image: {images.names()['base']}\n    pull_policy: never\n"
        f"    network_mode: none\n    volumes: [data:/data]\n"
        f"volumes:\n  data:\n    name: {vol_name}\n    external: true\n")
    gitstate.init(root, "bench project")
    (work / "phases.toml").write_text(
        f'[project]\nname = "{tag}"\nroot = "{root}"\nservices = ["holder"]\n'
        f'[backup]\nsnapshots = "{work / "snapshots"}"\n'
        f'[volumes.data]\nservices = ["holder"]\n'
        f'[[phase]]\nid = "p"\ntitle = "p"\n[full]\ntitle = "full"\n')
    return work


def restore_child(snap: str, vol_name: str) -> None:
    from scripts import restore, snapshots

    sets = [s for s in snapshots.all_sets(Path(snap)) if s.complete]
    restore.restore_volume(engine.client(), sets[-1], "data", target=vol_name)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--restore-child":
        os.environ.setdefault("CI", "true")
        restore_child(sys.argv[2], sys.argv[3])
    else:
        main()
