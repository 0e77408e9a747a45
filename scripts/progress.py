"""Progress for long work: a rich bar on a terminal, one plain line per item otherwise."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager


def interactive() -> bool:
    return sys.stdout.isatty() and os.environ.get("CI", "").lower() not in ("1", "true", "yes")


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def say(message: str) -> None:
    print(message, flush=True)


@contextmanager
def transfer(label: str, total: int):
    """Yield a callback(bytes_done); show a bar (TTY) or print one summary line at the end.

    total may be 0 when not known yet: callback.set_total(n) sets it later."""
    start = time.monotonic()
    done = [0]
    if interactive():
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)

        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), TimeRemainingColumn(), transient=False) as bar:
            task = bar.add_task(label, total=max(total, 1))

            def advance(n: int) -> None:
                done[0] += n
                bar.update(task, advance=n)

            advance.set_total = lambda n: bar.update(task, total=max(n, 1))
            yield advance
    else:

        def advance(n: int) -> None:
            done[0] += n

        advance.set_total = lambda n: None
        yield advance
        elapsed = max(time.monotonic() - start, 1e-6)
        say(f"{label}: {human(done[0])} in {elapsed:.2f} s ({human(done[0] / elapsed)}/s)")
