"""`doit` killed with SIGKILL at its Nth state change: python -m tests.killpoints N COUNT ARGS...

A state change is one of the events Python's audit hooks report: a rename (every
durable write of a journal entry, a run record or a manifest; every swap of a volume's
contents), a folder made (a set, a staging folder, a sandbox), a process started
(compose, git, tar). Killing the run at each of them, in turn, reaches every state it
can leave behind on disk, and needs no sleep to aim: the run is killed right before
the event, in the thread that causes it. N=0 kills nothing; COUNT then holds how many
events the whole run had, to spread the points over, and COUNT.events what each was (a
command line, or a path), one a line, to aim at one. N:INT sends SIGINT there instead
(Ctrl-C: the run is asked to stop, and cleans up on its way out).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

EVENTS = {"os.rename", "os.mkdir", "subprocess.Popen"}


def main() -> int:
    point, count, *args = sys.argv[1:]
    at, _, name = point.partition(":")
    at, sig, seen = int(at), getattr(signal, f"SIG{name or 'KILL'}"), [0]

    said: list[str] = []

    def hook(event: str, args_) -> None:
        if event in EVENTS:
            seen[0] += 1
            said.append(f"{event} {describe(event, args_)}")
            if seen[0] == at:
                os.kill(os.getpid(), sig)

    sys.addaudithook(hook)
    from doit.doit_cmd import DoitMain

    try:
        return DoitMain().run(args)
    finally:
        Path(count).write_text(str(seen[0]))
        # what each point is, one line each (COUNT.events): a test can aim at one of them
        Path(f"{count}.events").write_text("".join(line.replace("\n", " ") + "\n" for line in said))


def describe(event: str, args) -> str:
    """The event's argument that says what it is: a command line, or a path."""
    if event == "subprocess.Popen":
        argv = args[1]
        return " ".join(map(str, argv)) if isinstance(argv, (list, tuple)) else str(argv)
    return str(args[0])


if __name__ == "__main__":
    sys.exit(main())
