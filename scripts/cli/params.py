"""Task parameters (`doit rollback:phase3 dry_run=1`): only known names are accepted.

doit hands every `name=value` on the command line to get_var, and get_var answers the
default for a name nobody passed: a typo (`dry-run=1`) would silently turn a dry run
into a real rollback. So every name given must be one the kit reads.
"""

from __future__ import annotations

import difflib

from ..errors import UndoitError

# name -> what it does (shown by the refusal; tasks' docs name the ones they take)
KNOWN = {
    "dry_run": "rollback/scenario/recover/prune: print the plan, change nothing (dry_run=1)",
    "yes": "rollback/scenario/recover/release: do not ask before destroying data (yes=1)",
    "reason": 'rollback/scenario: why, for the log (reason="...")',
    "set": "rollback/scenario/verify/rehearse/offsite/recover: use this snapshot set (set=ID); fetch: set=ID or "
           "latest",
    "init": "offsite: create the restic repository first (init=1)",
    "offsite": "backup: send the new set offsite afterwards (offsite=1); prune: offsite=0 prunes only here",
    "keep_last": "prune: keep the newest N sets (keep_last=N; default [backup] keep_last)",
    "keep_days": "prune: keep sets younger than D days (keep_days=D; default [backup] keep_days)",
    "include_dirty": "backup: keep uncommitted changes on the backup branch (include_dirty=1)",
    "save_images": "backup: keep the images the stack runs in the set too (save_images=1)",
    "strict": "backup: state no backup covers is an error, not a warning (strict=1)",
    "force": "checkpoint: move an existing checkpoint tag to HEAD (force=1)",
    "only": "rehearse: only these procedures (only=phase3,full)",
    "failure": 'decide: the failure, in words (failure="network errors")',
    "format": "decide: format=json",
    "project": "plan:init: the folder of the compose project to write a starter plan for (project=DIR)",
}


def check(given: dict | None) -> None:
    """Refuse (exit 2) any parameter the kit does not read, naming the close ones."""
    unknown = sorted(set(given or {}) - set(KNOWN))
    if not unknown:
        return
    name = unknown[0]
    near = difflib.get_close_matches(name.replace("-", "_"), KNOWN, n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    raise UndoitError(f"unknown parameter {name!r}{hint}: nothing was run; known parameters: "
                      + ", ".join(sorted(KNOWN)), exit_code=2)


def given() -> dict:
    """The name=value pairs of this doit command line."""
    from doit import doit_cmd

    return dict(doit_cmd._CMDLINE_VARS or {})  # doit keeps them here; get_var reads one at a time
