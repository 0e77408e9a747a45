"""Retention decisions (pure logic; the real removal and `restic forget` are exercised in
tests/test_offsite.py and tests/test_recovery.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from scripts.offsite.prune import decide
from scripts.store.snapshots import SnapshotSet

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def sset(sid: str, cycle: str, days_old: float, baseline=False, kind="backup", uses: str | None = None,
         commit: str = "c0ffee"):
    archive = f"{uses or sid}/data.tar.zst"
    manifest = {"kind": kind, "cycle": cycle, "baseline": baseline, "git": {"commit": commit},
                "finished": (NOW - timedelta(days=days_old)).isoformat(),
                "volumes": {"data": {"archive": archive, "listing": archive.replace(".tar.zst", ".listing")}}}
    if kind == "checkpoint":
        manifest["cycle_commit"] = commit
    return SnapshotSet(sid, Path("/nonexistent") / sid, manifest)


def verdicts(sets, **kw):
    kw.setdefault("current_cycle", ("c3", "c0ffee"))
    kw.setdefault("keep_last", None)
    kw.setdefault("keep_days", None)
    return {v.set.id: (v.keep, v.why) for v in decide(sets, now=NOW, **kw)}


SETS = [
    sset("s1", "c1", 30, baseline=True),
    sset("s2", "c1", 29),
    sset("s3", "c2", 20, baseline=True),
    sset("s4", "c2", 19),  # its archive is used by s6: the volume did not change after it
    sset("s5", "c2", 18, kind="checkpoint"),
    sset("s6", "c3", 2, baseline=True, uses="s4"),
    sset("s7", "c3", 1),
]


def test_the_current_cycle_and_used_archives_stay_older_baselines_follow_the_policy():
    v = verdicts(SETS, keep_last=1)
    assert {k for k, (keep, _) in v.items() if not keep} == {"s1", "s2", "s3", "s5"}
    assert v["s4"][1] == "holds archives set s6 uses"
    assert v["s6"][1] == v["s7"][1] == "in the current cycle c3 (a rollback restores it)"


def test_keep_last_and_keep_days_each_keep_more():
    assert verdicts(SETS, keep_last=5)["s3"] == (True, "among the newest 5")
    v = verdicts(SETS, keep_days=19.5)
    assert v["s5"] == (True, "younger than 19.5 day(s)") and not v["s2"][0]


def test_without_a_current_cycle_every_baseline_is_kept():
    v = verdicts(SETS, current_cycle=None, keep_last=1)
    assert all(v[s][0] for s in ("s1", "s3", "s6")) and not v["s2"][0]
    assert "no current cycle" in v["s1"][1]


def test_a_cycle_is_its_name_and_its_commit():
    """Another machine made the same tag name before a loss: its sets are not the current
    cycle's, however the names read."""
    sets = [sset("s1", "pre-change-20261201", 9, baseline=True, commit="aaaa"),
            sset("s2", "pre-change-20261201", 1, baseline=True, commit="bbbb")]
    v = verdicts(sets, current_cycle=("pre-change-20261201", "bbbb"), keep_last=1)
    assert v == {"s1": (False, ""), "s2": (True, "in the current cycle pre-change-20261201 (a rollback restores it)")}
