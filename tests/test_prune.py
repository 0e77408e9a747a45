"""Retention decisions (pure logic; the real removal and `restic forget` are exercised in
tests/test_offsite.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from scripts.prune import decide
from scripts.snapshots import SnapshotSet

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def sset(sid: str, cycle: str, days_old: float, baseline=False, kind="backup", uses: str | None = None):
    archive = f"{uses or sid}/data.tar.zst"
    manifest = {"kind": kind, "cycle": cycle, "baseline": baseline,
                "finished": (NOW - timedelta(days=days_old)).isoformat(),
                "volumes": {"data": {"archive": archive, "listing": archive.replace(".tar.zst", ".listing")}}}
    return SnapshotSet(sid, Path("/nonexistent") / sid, manifest)


def verdicts(sets, **kw):
    kw.setdefault("current_cycle", "c3")
    kw.setdefault("keep_last", None)
    kw.setdefault("keep_days", None)
    kw.setdefault("released", set())
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


def test_baselines_the_current_cycle_and_used_archives_stay():
    v = verdicts(SETS, keep_last=1)
    assert {k for k, (keep, _) in v.items() if not keep} == {"s2", "s5"}
    assert v["s1"][1] == "baseline of cycle c1 (not released)"
    assert v["s4"][1] == "holds archives set s6 uses"
    assert v["s6"][1] == v["s7"][1] == "in the current cycle c3"


def test_a_released_cycle_loses_its_baseline_but_not_an_archive_in_use():
    v = verdicts(SETS, keep_last=1, released={"c1", "c2"})
    assert {k for k, (keep, _) in v.items() if not keep} == {"s1", "s2", "s3", "s5"}
    assert v["s4"][0]


def test_keep_last_and_keep_days_each_keep_more():
    assert verdicts(SETS, keep_last=5, released={"c1", "c2"})["s3"] == (True, "among the newest 5")
    v = verdicts(SETS, keep_days=19.5, released={"c1", "c2"})
    assert v["s5"] == (True, "younger than 19.5 day(s)") and not v["s2"][0]


def test_without_a_current_cycle_every_baseline_is_kept():
    v = verdicts(SETS, current_cycle=None, keep_last=1)
    assert all(v[s][0] for s in ("s1", "s3", "s6")) and not v["s2"][0]
