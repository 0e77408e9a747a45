"""The decision matrix as data: pure tests on the bundled plan."""

import json
import subprocess
import sys
from pathlib import Path

from scripts.plan import plan as planmod
from scripts.plan.decide import decide

KIT = Path(__file__).resolve().parent.parent
PLAN = planmod.load(KIT / "phases.toml", env={})


def failures(result):
    return [r["failure"] for r in result["rows"]]


def test_partial_case_insensitive_match_with_command():
    r = decide(PLAN, "NETWORK errors")
    assert r["matched"] and failures(r) == ["Network issues"]
    assert r["rows"][0]["command"].startswith("doit rollback:phase5")
    assert r["rows"][0]["risk"] == "Medium" and r["rows"][0]["duration"] == "10 min"


def test_words_in_other_forms_match():
    assert failures(decide(PLAN, "containers won't start")) == ["Container start fails"]
    assert failures(decide(PLAN, "the platform api is down"))[0] == "Platform API down"
    assert decide(PLAN, "data corruption")["rows"][0]["command"].startswith("doit rollback:full")


def test_nothing_matches_gives_every_row():
    r = decide(PLAN, "cosmic rays")
    assert not r["matched"] and len(r["rows"]) == len(PLAN.matrix) == 7


def test_rows_without_a_target_say_investigate():
    r = decide(PLAN, "build errors")
    assert failures(r) == ["Build errors"] and "investigate" in r["rows"][0]["command"]


def test_json_form_for_ci():
    res = subprocess.run([sys.executable, "-m", "doit", "decide", "failure=Test failures", "format=json"],
                         cwd=KIT, capture_output=True, text=True, check=True)
    data = json.loads(res.stdout)
    assert data["rows"][0]["scope"] == "Investigate, partial"


def test_each_row_shows_what_its_procedure_escalates_to():
    rows = {r["failure"]: r for r in decide(PLAN, "")["rows"]}
    assert rows["Data corruption"]["escalation"] == ["full"]  # full names nothing wider
    assert rows["Container start fails"]["escalation"] == ["phase1"]
    from scripts.plan.decide import chain

    assert chain(PLAN, "phase7") == ["phase7", "full"] and chain(PLAN, "storage-only") == ["storage-only", "full"]


def test_an_escalation_in_a_circle_is_refused(tmp_path):
    from scripts.errors import UndoitError

    text = (KIT / "phases.toml").read_text().replace('[full]\n', '[full]\non_failure = "phase7"\n', 1)
    (tmp_path / "phases.toml").write_text(text.replace('root = "', 'root = "' + str(KIT) + '/', 1))
    try:
        planmod.load(tmp_path / "phases.toml", env={})
    except UndoitError as err:
        assert "escalates in a circle: phase7 -> full -> phase7" in str(err), err
    else:
        raise AssertionError("a circle of escalations was accepted")
