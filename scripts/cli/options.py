"""Task parameters (`doit rollback:phase3 dry_run=1`): declared once per task, checked
before anything runs, read once.

doit hands every `name=value` on the command line to get_var, and get_var answers the
default for a name nobody passed: a typo (`dry-run=1`) would silently turn a dry run
into a real rollback. So every name given must be one a task takes.
The names given are found by doit's own rule for the command line (an argument that
does not begin with "-" and holds "=" is a variable); their values come from get_var.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from doit import get_var

from ..errors import PLAN, UndoitError

# what each task takes: name -> what it does (a task's `doit help` and its refusal say so)
DRY_RUN = "print the plan, change nothing (dry_run=1)"
YES = "do not ask before destroying data (yes=1)"
PROCEDURE = {"dry_run": DRY_RUN, "yes": YES, "reason": 'why, for the log (reason="...")',
             "set": "restore this snapshot set (set=ID)",
             "keep": "a failed run leaves its half state instead of putting back the state from before (keep=1)",
             "escalate": "a failed run, put back, runs the procedure's on_failure next (escalate=1; "
                         "default [rollback] escalate)"}
OPTIONS: dict[str, dict[str, str]] = {
    "rollback": PROCEDURE,
    "scenario": PROCEDURE,
    "verified": {"set": "verify this snapshot set (set=ID)"},
    "backup": {"include_dirty": "keep uncommitted changes on the backup branch (include_dirty=1)",
               "strict": "state no backup covers is an error, not a warning (strict=1)",
               "save_images": "keep the images the stack runs in the set too (save_images=1)",
               "offsite": "send the new set offsite afterwards (offsite=1)"},
    "verify": {"set": "this snapshot set (set=ID; default: the one a rollback restores)"},
    "checkpoint": {"force": "move an existing checkpoint tag to HEAD (force=1)"},
    "rehearse": {"only": "only these procedures (only=phase3,full)", "set": "rehearse this set (set=ID)"},
    "offsite": {"init": "create the restic repository first (init=1)", "set": "send only this set (set=ID)"},
    "fetch": {"set": "the set to bring back (set=ID or set=latest)"},
    "prune": {"keep_last": "keep the newest N sets (keep_last=N; default [backup] keep_last)",
              "keep_days": "keep sets younger than D days (keep_days=D; default [backup] keep_days)",
              "dry_run": "list what would go, remove nothing (dry_run=1)",
              "offsite": "offsite=0 prunes only here"},
    "recover": {"set": "recover this set (set=ID; default: the newest backup set)", "yes": YES,
                "dry_run": "say what it would do, change nothing (dry_run=1)"},
    "release": {"yes": YES},
    "decide": {"failure": 'the failure, in words (failure="network errors")', "format": "format=json"},
    "plan": {"project": "the folder of the compose project to write a starter plan for (project=DIR)"},
}
KNOWN = {name: doc for table in OPTIONS.values() for name, doc in table.items()}
_VARIABLE = re.compile(r"[^-][^=]*=")  # doit's rule: no leading "-", an "="


def given(argv) -> dict[str, str]:
    """The name=value pairs of a doit command line, as doit itself splits them."""
    return dict(a.split("=", 1) for a in argv if _VARIABLE.match(a))


def check(names) -> None:
    """Refuse (exit 2) a parameter no task reads, naming the close ones. (One that another
    task takes is let through, as it always was: a dependency may read it, as verified:*
    reads a rollback's set=.)"""
    unknown = sorted(set(names or ()) - set(KNOWN))
    if unknown:
        name = unknown[0]
        near = difflib.get_close_matches(name.replace("-", "_"), KNOWN, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise UndoitError(f"unknown parameter {name!r}{hint}: nothing was run; known parameters: "
                          + ", ".join(sorted(KNOWN)), exit_code=PLAN)


def doc(task: str) -> str:
    """The parameters a task takes, for its `doit help` line."""
    names = OPTIONS.get(task)
    return "; parameters: " + " ".join(f"{n}=..." for n in names) if names else ""


@dataclass(frozen=True)
class Args:
    """The command line's parameters, read once (dodo.py) and handed to the task creators."""

    values: dict

    @classmethod
    def read(cls, argv) -> "Args":
        names = given(argv)
        check(names)
        return cls({n: get_var(n, v) for n, v in names.items()})

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name)
        return default if value in (None, "") else str(value)

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.values.get(name)
        if value in (None, ""):
            return default
        return str(value).lower() in ("1", "true", "yes", "on")

    def number(self, name: str, kind, default=None):
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return kind(raw)
        except ValueError:
            raise UndoitError(f"{name}={raw}: not a number", exit_code=PLAN) from None
