"""`doit` killed with SIGKILL at its Nth state change: python -m tests.killpoints N COUNT ARGS...

A state change is one of the events Python's audit hooks report: a rename (every
durable write of a journal entry, a run record or a manifest; every swap of a volume's
contents), a folder made (a set, a staging folder, a sandbox), a process started
(compose, git, tar). Killing the run at each of them, in turn, reaches every state it
can leave behind on disk, and needs no sleep to aim: the run is killed right before
the event, in the thread that causes it. N=0 kills nothing; COUNT then holds how many
events the whole run had, to spread the points over. N:INT sends SIGINT there instead
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

    def hook(event: str, _args) -> None:
        if event in EVENTS:
            seen[0] += 1
            if seen[0] == at:
                os.kill(os.getpid(), sig)

    sys.addaudithook(hook)
    from doit.doit_cmd import DoitMain

    try:
        return DoitMain().run(args)
    finally:
        Path(count).write_text(str(seen[0]))


if __name__ == "__main__":
    sys.exit(main())
