"""What the rehearsal reports say of a procedure, and the gate `[rehearse] require` puts
before a checkpoint: pure, no engine (the reports are written here as a rehearsal writes
them; test_preview.py has the real ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.errors import UndoitError
from scripts.plan import plan as planmod
from scripts.rollback import rehearsed

KIT = Path(__file__).resolve().parent.parent
STEPS = [{"n": 1, "do": "stop", "seconds": 0.5, "ok": True}, {"n": 2, "do": "restore-volumes", "seconds": 1.25,
                                                               "ok": True},
         {"n": 3, "do": "up", "seconds": 2.0, "ok": True}, {"n": 4, "do": "run", "seconds": 9.0, "ok": True}]


def load(tmp_path, require: bool):
    text = (KIT / "phases.toml").read_text() + ("\n[rehearse]\nrequire = true\n" if require else "")
    path = tmp_path / "phases.toml"
    path.write_text(text)
    return planmod.load(path, env={})  # its reports: beside it, in tmp_path/reports


def report(plan, when: str, set_id: str, ok: bool, digest: str | None = None, pid: str = "phase1") -> None:
    plan.reports_dir.mkdir(parents=True, exist_ok=True)
    row = {"procedure": pid, "kind": "phase", "ok": ok, "failed": [] if ok else ["step 3 (up): not healthy"],
           "seconds": 3.75, "steps": STEPS}
    (plan.reports_dir / f"rehearsal-{when}.json").write_text(json.dumps({
        "set": set_id, "started": when, "plan_digest": digest or rehearsed.plan_digest(plan),
        "rows": [row, {"procedure": "archive db", "kind": "proof", "ok": True}]}))


def test_downtime_is_from_the_first_stop_to_the_start_after_it():
    assert rehearsed.downtime(STEPS) == 3.75  # stop, restore, up; the run after the services are back is not
    assert rehearsed.downtime(STEPS[1:]) is None  # nothing stopped
    assert rehearsed.downtime(STEPS[:2]) == 1.75  # never started again: to the last step


def test_the_gate_holds_a_checkpoint_until_a_drill_of_this_plan_and_set_passed(tmp_path):
    assert rehearsed.gate(load(tmp_path, require=False), "phase1", "S1") == \
        "phase1: never rehearsed (`doit rehearse only=phase1`)"
    plan = load(tmp_path, require=True)
    refusals = []
    for when, set_id, ok, digest in [(None, None, None, None), ("20261207T0900Z", "S1", False, None),
                                     ("20261207T0901Z", "S1", True, "0" * 64), ("20261207T0902Z", "S0", True, None)]:
        if when:
            report(plan, when, set_id, ok, digest)
        with pytest.raises(UndoitError) as refused:
            rehearsed.gate(plan, "phase1", "S1")
        assert str(refused.value).endswith("; run `doit rehearse only=phase1` first")
        refusals.append(str(refused.value))
    assert ["never rehearsed" in refusals[0], "failed" in refusals[1], "ran another plan" in refusals[2],
            "rehearsed set S0, not the current cycle's S1" in refusals[3]] == [True] * 4
    report(plan, "20261207T0903Z", "S1", True)
    line = rehearsed.gate(plan, "phase1", "S1")
    assert line.startswith("phase1: last rehearsed 20261207T0903Z on set S1") and line.endswith(
        "(the plan as it is now): passed")
    assert rehearsed.last_drill(plan, "phase1").downtime == 3.75
    assert rehearsed.last_drill(plan, "phase2") is None  # a proof of an archive is no drill


def test_the_rehearse_table_takes_require_only_as_true_or_false(tmp_path):
    path = tmp_path / "phases.toml"
    for table, needle in [("[rehearse]\nrequire = \"yes\"\n", "must be true or false"),
                          ("[rehearse]\nrequired = true\n", "unknown key")]:
        path.write_text((KIT / "phases.toml").read_text() + "\n" + table)
        with pytest.raises(UndoitError) as refused:
            planmod.load(path, env={})
        assert "rehearse" in str(refused.value) and needle in str(refused.value), str(refused.value)
