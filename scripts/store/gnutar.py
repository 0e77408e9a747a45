"""GNU tar as the kit drives it: found once, fed through wide pipes, with the records
and options every archive and extraction of the kit uses, its stream read on two
threads."""

from __future__ import annotations

import fcntl
import queue
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Callable

CHUNK = 1 << 20

# 1 MiB tar records through 1 MiB pipes instead of 10 KiB through 64 KiB: a hundredth
# of the system calls and context switches; 10-20% faster both ways, measured on 2 cores
TAR_RECORDS = ("--blocking-factor=2048",)


_F_SETPIPE_SZ = 1031


def widen_pipe(pipe) -> None:
    try:
        fcntl.fcntl(pipe.fileno(), _F_SETPIPE_SZ, CHUNK)
    except OSError:
        pass  # above /proc/sys/fs/pipe-max-size, or not Linux: the default pipe works too


@lru_cache(maxsize=1)
def gnu_tar() -> str | None:
    """GNU tar, when this host has it: 5x faster than tarfile on many small files."""
    path = shutil.which("tar")
    if not path:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if "GNU tar" in out else None


def extract_argv(dest: Path) -> list[str]:
    return [gnu_tar(), "--extract", "--file=-", f"--directory={dest}", "--numeric-owner",
            "--same-owner", "--same-permissions", "--no-overwrite-dir", "--format=posix",
            *TAR_RECORDS, "--read-full-records"]


@contextmanager
def beside(consume: Callable[[bytes], None]):
    """consume() in a thread of its own, fed in order through a short queue; yields the
    feed, and raises consume's failure on the way out. The listing's parsing and content
    hashing take about a quarter of a backup's CPU: between the reads of tar's stream
    they held up tar and the compressor's workers, and on a busy machine the one thread
    doing everything was what the whole backup waited for.

    Meanwhile the interpreter hands the GIL over every 0.2 ms instead of 5: the
    listing's thread holds it while it parses headers, and a thread back from tar's pipe
    or from the compressor (both release it) waited up to a whole interval for it, at
    each of a GiB's thousand chunks: with the default, the thread gained nothing."""
    chunks: queue.Queue = queue.Queue(4)
    failed: list[BaseException] = []

    def run():
        while (chunk := chunks.get()) is not None:
            if not failed:  # after a failure: drained, so that the feed never blocks
                try:
                    consume(chunk)
                except BaseException as err:  # noqa: BLE001 - raised in the feeding thread
                    failed.append(err)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    worker = threading.Thread(target=run, name="tar-listing", daemon=True)
    worker.start()
    try:
        yield chunks.put
    finally:
        chunks.put(None)
        worker.join()
        sys.setswitchinterval(interval)
    if failed:
        raise failed[0]
