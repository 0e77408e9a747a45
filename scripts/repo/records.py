"""Every backup and checkpoint set's manifest, recorded in the project's git repository.

The manifest says which archive holds which volume and what its checksums are; anyone
who can edit a set's files can edit it too, so its checks alone cannot catch an edited
manifest. Its bytes are therefore also stored in git (a blob under
refs/undoit/sets/<id>), where the set's own files cannot change them, and a set is
only trusted when its manifest is byte for byte the recorded one.
"""

from __future__ import annotations

from . import gitstate
from ..errors import UndoitError
from ..store.snapshots import MANIFEST, SnapshotSet

PREFIX = "refs/undoit/sets/"


def record(root, s: SnapshotSet) -> None:
    blob = gitstate.run(root, "hash-object", "-w", "--", str(s.path / MANIFEST))
    gitstate.run(root, "update-ref", PREFIX + s.id, blob)


def problem(root, s: SnapshotSet) -> str | None:
    """Why the set's manifest is not the one recorded in git (None: it is, or the set is
    older than these records and says so)."""
    try:
        recorded = gitstate.run(root, "rev-parse", "--verify", "--quiet", PREFIX + s.id)
    except UndoitError:
        recorded = None
    if recorded is None:
        if not (s.manifest or {}).get("recorded"):
            return None  # written before sets were recorded: its fields are cross-checked only
        return f"set {s.id} has no record in git ({PREFIX}{s.id}): its manifest cannot be trusted"
    actual = gitstate.run(root, "hash-object", "--", str(s.path / MANIFEST))
    if actual != recorded:
        return f"set {s.id}: manifest.json differs from the one recorded when the set was made (edited?)"
    return None
