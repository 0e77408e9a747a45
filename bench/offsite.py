"""Offsite uploads through restic: the first upload of a set with a ~1 GiB volume, and
the next one after 1% of the volume changed, to a local-path repository and to a REST
repository (`rclone serve restic` on 127.0.0.1), in one run.

Prints, per repository: seconds and bytes restic added for each upload, and each later
upload as a ratio of the first (the target: bytes <= 5%). Three kinds of 1% change, one
after the other: whole files rewritten (objects, documents, a table rewritten); 64 KiB
runs rewritten in place across the big files (a database's scattered pages), which no
chunking store deduplicates at 1%: restic's chunks average 1 MiB; and a new file early
in the archive's order, which moves everything after it in the tar stream.

    .venv/bin/python bench/offsite.py [--mib 1024]
"""

from __future__ import annotations

import argparse
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))

from scripts.backup import backup  # noqa: E402
from scripts.offsite import offsite
from scripts.store import restic
from scripts.repo import gitstate
from scripts.plan import plan as planmod  # noqa: E402
from scripts.stack.compose import Compose  # noqa: E402

sys.path.insert(0, str(KIT / "bench"))
from common import fill, remove_pins, begin  # noqa: E402
from tests.projects import keeper_project, lay_out, more, write_plan  # noqa: E402

# one service keeping the data set in its volume (its full rollback is never run here)
COMPOSE, PLAN = keeper_project("store", "data", None, None)


def rewrite_files(folder: Path, total: int, seed: int) -> int:
    """1% of the volume as whole files rewritten with new contents of the same kind."""
    rng = random.Random(seed)
    big = sorted(p for p in folder.rglob("*") if p.is_file() and p.stat().st_size >= 4 << 20)
    rng.shuffle(big)
    done = 0
    for f in big:
        if done >= total // 100:
            break
        size = f.stat().st_size
        data = bytearray(f.read_bytes())
        for at in range(0, size, 8192):  # every page keeps its shape, its random third changes
            data[at:at + 2730] = rng.randbytes(min(2730, size - at))
        f.write_bytes(bytes(data))
        done += size
    return done


def rewrite_runs(folder: Path, total: int, seed: int) -> int:
    """1% of the volume as 64 KiB runs rewritten in place, spread over the big files."""
    rng = random.Random(seed)
    big = sorted(p for p in folder.rglob("*") if p.is_file() and p.stat().st_size >= 4 << 20)
    left, done = total // 100, 0
    while left > 0:
        f = rng.choice(big)
        run = min(64 << 10, left)
        with open(f, "r+b") as fh:
            fh.seek(rng.randrange(0, f.stat().st_size - run))
            fh.write(rng.randbytes(run))
        left -= run
        done += run
    return done


def add_file(folder: Path, total: int, seed: int) -> int:
    """1% of the volume as a new file early in the archive's order: everything after it
    in the tar stream moves."""
    rng = random.Random(seed)
    size = total // 100
    (folder / "base" / f"00000-new-{seed}").write_bytes(rng.randbytes(size // 3) * 3)
    return size


def rest_server(data: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["rclone", "serve", "restic", "--addr", f"127.0.0.1:{port}", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"rest:http://127.0.0.1:{port}/"
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("rclone serve restic did not start")


def cycle(label: str, repo: str, name: str, root: Path, work: Path, folder: Path, total: int) -> dict:
    path = work / f"phases-{label}.toml"
    remote = {"repository": repo, "password_file": f"{work}/password", "check_subset": "1%"}
    write_plan(path, more(PLAN, backup={"snapshots": f"{work}/snapshots-{label}"}, offsite=remote), name, root,
               kept=work)
    plan = planmod.load(path, env={})
    restic.Repo(plan).init()
    uploads = []
    for change in (None, rewrite_files, rewrite_runs, add_file):
        changed = change(folder, total, seed=len(uploads) + len(label)) if change else total
        (root / "note.txt").write_text(f"{label} {len(uploads)}\n")
        gitstate.run(root, "commit", "-qam", f"{label} {len(uploads)}")
        backup.backup(plan)
        t0 = time.perf_counter()
        sent = offsite.send(plan)
        uploads.append((change.__name__ if change else "first", changed, time.perf_counter() - t0,
                        sent["bytes_added"]))
    return {"label": label, "uploads": uploads}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=1024)
    args = ap.parse_args()
    for tool in ("restic", "rclone"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: bash .ci/servers.sh installs it")
    client, name, work = begin("benchoff")
    (work / "password").write_text(uuid.uuid4().hex)
    (work / "password").chmod(0o600)
    root = work / "project"
    lay_out(root, {"docker-compose.yml": COMPOSE, "note.txt": "start\n"}, "bench")
    compose = Compose(root, name)
    server = None
    try:
        compose("create")
        folder = Path(client.api.inspect_volume(f"{name}_data")["Mountpoint"])
        total = fill(folder, args.mib)
        compose.up(wait_timeout=60)
        rows = [cycle("local", str(work / "repo-local"), name, root, work, folder, total)]
        (work / "rest").mkdir()
        server, url = rest_server(work / "rest")
        rows.append(cycle("rest", url, name, root, work, folder, total))
        print(f"volume {total / (1 << 20):.0f} MiB; bytes = what restic added to the repository")
        for r in rows:
            _, _, t1, b1 = r["uploads"][0]
            print(f"{r['label']}: first upload {t1:.1f} s, {b1 / (1 << 20):.1f} MiB")
            for what, changed, t, b in r["uploads"][1:]:
                print(f"  after {what} ({changed / (1 << 20):.1f} MiB changed): {t:.1f} s ({t / t1:.2f}x), "
                      f"{b / (1 << 20):.1f} MiB ({b / b1:.3f}x; target <= 0.05x: "
                      f"{'met' if b <= 0.05 * b1 else 'NOT met'})")
    finally:
        if server is not None:
            server.terminate()
            server.wait(20)
        compose("down", "--volumes")
        remove_pins(client, name)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
