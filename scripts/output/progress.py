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


class Drills:
    """One line per drill of a rehearsal: on a terminal a live line each (procedure, step,
    elapsed: rich), otherwise (CI=true, a pipe) a plain line per drill and step with no
    escape codes. Writes to `out`, the real stdout, while the detail goes to a log."""

    def __init__(self, out, live: bool):
        self.out, self.live = out, live
        self.bar = self.task = None
        self.name, self.started = "", 0.0

    def __enter__(self):
        if self.live:
            from rich.console import Console
            from rich.progress import Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), TimeElapsedColumn(),
                                console=Console(file=self.out), transient=False)
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
            self.bar = None

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.out, flush=True)

    def start(self, name: str) -> None:
        self.name, self.started = name, time.monotonic()
        if self.bar is not None:
            self.task = self.bar.add_task(f"{name:<16} starting")
        self.step("reset: a fresh sandbox")

    def step(self, what: str) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, description=f"{self.name:<16} {what}")
        else:
            print(f"drill {self.name}: {what}", file=self.out, flush=True)

    def done(self, ok: bool, note: str = "") -> None:
        result = ("PASS" if ok else "FAIL") + (f" ({note})" if note else "")
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, description=f"{self.name:<16} {result}")
            self.bar.stop_task(self.task)
            self.task = None
        else:
            print(f"drill {self.name}: {result} in {time.monotonic() - self.started:.1f} s",
                  file=self.out, flush=True)
