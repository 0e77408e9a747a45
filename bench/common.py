"""What the benchmarks share: the start of a run (engine, images, a name and a work
folder of its own) and the cleanup of a demo copy, a local busybox image for the
runbook's commands, the mixed ~1 GiB data set, a timer that reads the peak RSS of what it
ran, and the same start for every timed run (caches dropped and read back, or the ext4
pause). Their compose projects and plans come from tests/projects.py."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

BUSYBOX = "undoitbench/busybox:latest"


def begin(prefix: str):
    """The engine's client (one line and out if no engine answers), the kit's images
    built where missing, and a name of the bench's own with a work folder named after
    it: everything the bench creates carries the name. Returns (client, name, work)."""
    from scripts.stack import engine, images

    # the kit's commands timed as a user runs them: Python caches their bytecode (a shell
    # that forbids it compiles ~90 modules again at every command: 0.15-0.3 s each)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    client = engine.client()
    if not images.up_to_date():
        images.build()
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    return client, name, Path(tempfile.mkdtemp(prefix=name, dir=os.environ.get("TMPDIR", "/var/tmp")))


def remove_demo(plan, name: str, tmp: Path) -> None:
    """A bench's copy of the demo (plan None: never loaded) down with its volumes, its
    image pins and its folder removed; a cleanup that fails says so, never hides it."""
    from scripts.stack import engine
    from scripts.stack.compose import for_plan

    try:
        if plan is not None:
            for_plan(plan).down(volumes=True)
        remove_pins(engine.client(), name)
    except Exception as err:  # noqa: BLE001 - the bench's own leftovers: say, never hide
        print(f"cleanup of {name} failed: {err}; remove its containers and volumes by hand")
    shutil.rmtree(tmp, ignore_errors=True)


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
    elapsed, peak, _ = timed_cpu(argv, **kw)
    return elapsed, peak


def timed_cpu(argv, **kw) -> tuple[float, int, float]:
    """timed, and the CPU seconds (user + system) of the process and every child it
    waited for (a pipeline's shell: both sides; `docker run`: not the container)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, **kw)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark step failed: {argv if isinstance(argv, str) else ' '.join(map(str, argv))}")
    return elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def empty(mp: Path) -> None:
    for child in os.scandir(mp):
        if child.is_dir(follow_symlinks=False):
            shutil.rmtree(child.path)
        else:
            os.unlink(child.path)


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


def drop_caches(warm=()) -> bool:
    """sync, then let the kernel drop its clean caches (root only), then read back warm
    (paths of files read; callables called) so that no method starts cold. ext4 without a
    journal skips a recently freed inode only while its inode-table block is cached
    (fs/ext4/ialloc.c, recently_deleted): after this, files are created at full speed
    whatever was deleted before, where a wait had to outlast 60 s, or 360 s once the
    allocation itself dirties that block. False where the caches cannot be dropped."""
    subprocess.run(["sync"], check=True)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        return False
    for item in warm:
        if callable(item):
            item()
            continue
        with open(item, "rb") as f:
            while f.read(1 << 20):
                pass
    return True


def settle_option(ap, restores: str) -> None:
    """--settle: the wait that stands in for drop_caches where the caches cannot be dropped."""
    ap.add_argument("--settle", type=float, default=None,
                    help="where the kernel's caches cannot be dropped (not root): seconds to wait before each "
                         f"timed {restores} (default: 65 on ext4 without a journal)")


def settle_for(given: float | None, path: Path) -> float:
    """--settle as given, else 65 s where path is on ext4 without a journal (see journal_less_ext4)."""
    return given if given is not None else (65.0 if journal_less_ext4(path) else 0.0)


def start_even(warm, settle: float) -> None:
    """drop_caches(warm) before a timed run; where the caches cannot be dropped, wait
    settle seconds instead (the only other way past ext4's recently freed inodes)."""
    if not drop_caches(warm) and settle:
        print(f"    waiting {settle:.0f} s (ext4 without a journal, and the caches cannot be dropped: see "
              "bench/common.journal_less_ext4)", flush=True)
        time.sleep(settle)


def files_under(root: Path) -> list[Path]:
    """Every regular file below root (what a warm read of a volume reads)."""
    return [Path(d, f) for d, _, names in os.walk(root) for f in names if os.path.isfile(os.path.join(d, f))]


def remove_pins(client, project: str) -> None:
    """The image tags the kit pinned for the bench's project (undoit-pin/<project>:...)."""
    for image in client.images.list(name=f"undoit-pin/{project.lower()}"):
        for tag in image.tags:
            if tag.startswith(f"undoit-pin/{project.lower()}:"):
                client.images.remove(tag)
