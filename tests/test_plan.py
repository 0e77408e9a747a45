"""The plan loader: pure, no engine. Every bad input names file, table and key, exit 2."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.plan import plan as planmod, settings
from scripts.errors import UndoitError

KIT = Path(__file__).resolve().parent.parent
GOOD = (KIT / "phases.toml").read_text()


def load_text(tmp_path, text, env=None):
    path = tmp_path / "phases.toml"
    path.write_text(text)
    return planmod.load(path, env=env or {})


def fails(tmp_path, text, *needles):
    with pytest.raises(UndoitError) as info:
        load_text(tmp_path, text)
    msg = str(info.value)
    assert info.value.exit_code == 2
    assert str(tmp_path / "phases.toml") in msg
    for needle in needles:
        assert needle in msg, msg
    assert "\n" not in msg
    return msg


def test_bundled_plan_has_the_runbook(tmp_path):
    plan = load_text(tmp_path, GOOD)
    assert [p.id for p in plan.phases] == [f"phase{i}" for i in range(1, 12)]
    assert [s.id for s in plan.scenarios] == ["keep-infra", "keep-config", "storage-only"]
    assert plan.full.minutes == 30
    assert len(plan.matrix) == 7
    assert plan.procedure("phase3").volumes == ("minio_data",)
    assert all(p.title and p.risk and p.duration for p in plan.phases)


def test_unknown_key_names_table_and_key(tmp_path):
    text = GOOD.replace('id = "phase3"', 'id = "phase3"\nowner = "me"', 1)
    fails(tmp_path, text, "[phase.phase3] owner", "owner", "unknown key")


def test_missing_field(tmp_path):
    text = GOOD.replace('title = "Config cleanup rollback"\n', "", 1)
    fails(tmp_path, text, "[phase.phase4] title", "missing")


def test_duplicate_ids(tmp_path):
    text = GOOD.replace('id = "phase9"', 'id = "phase8"', 1)
    fails(tmp_path, text, "duplicate id 'phase8'")


def test_unknown_service_in_step(tmp_path):
    text = GOOD.replace('services = ["mvp-backend"] },\n  { do = "restore-files", paths = ["backend/src/core/storage/"',
                        'services = ["mvp-backnd"] },\n  { do = "restore-files", paths = ["backend/src/core/storage/"', 1)
    fails(tmp_path, text, "[phase.phase3 step 1] services", "unknown service 'mvp-backnd'")


def test_unknown_volume_and_phase_references(tmp_path):
    fails(tmp_path, GOOD.replace('volumes = ["minio_data"]\n', 'volumes = ["minio"]\n', 1),
          "[phase.phase3] volumes", "unknown volume 'minio'")
    fails(tmp_path, GOOD.replace('keeps = ["phase4"]', 'keeps = ["phase44"]', 1),
          "[scenario.keep-config] keeps", "unknown phase 'phase44'")
    fails(tmp_path, GOOD.replace('target = "phase5"', 'target = "phase55"', 1),
          "[matrix row 5] target", "unknown phase or scenario")


def test_unknown_step_type_and_bad_quiesce(tmp_path):
    fails(tmp_path, GOOD.replace('{ do = "down" },', '{ do = "teleport" },', 1),
          "[phase.phase1 step 1] do", "unknown type 'teleport'")
    fails(tmp_path, GOOD.replace('quiesce = "stop"', 'quiesce = "freeze"', 1),
          "[volumes.postgres_data] quiesce")


def test_a_volume_is_pre_copied_unless_the_plan_says_precopy_false(tmp_path):
    assert all(v.precopy for v in load_text(tmp_path, GOOD).volumes.values())
    plan = load_text(tmp_path, GOOD.replace('quiesce = "stop"', 'quiesce = "stop"\nprecopy = false', 1))
    assert not plan.volumes["postgres_data"].precopy
    fails(tmp_path, GOOD.replace('quiesce = "stop"', 'quiesce = "stop"\nprecopy = "no"', 1),
          "[volumes.postgres_data] precopy")


def test_not_toml(tmp_path):
    fails(tmp_path, GOOD + "\n[[[", "not valid TOML")


def test_env_file_read_and_environment_wins(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("UNDOIT_PROJECT_NAME=fromfile\nUNDOIT_GIT_REMOTE=origin\n")
    monkeypatch.setenv("UNDOIT_PROJECT_NAME", "fromenv")
    env = settings.read(tmp_path)
    assert env["UNDOIT_PROJECT_NAME"] == "fromenv"
    assert env["UNDOIT_GIT_REMOTE"] == "origin"
    assert load_text(tmp_path, GOOD, env=env).project_name == "fromenv"


def test_env_example_lists_every_key_the_code_reads():
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (KIT / ".env.example").read_text(), re.M))
    read = set()
    for path in (KIT / "scripts").rglob("*.py"):
        read |= set(re.findall(r"""(?:environ|env)(?:\.get)?[\[(]\s*["']((?:UNDOIT|DOCKER)_[A-Z0-9_]+)""",
                               path.read_text()))
    read |= set(settings.KEYS)
    assert read <= listed, f"missing from .env.example: {sorted(read - listed)}"


def test_bad_plan_gives_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('{ do = "down" },', '{ do = "teleport" },', 1))
    res = subprocess.run([sys.executable, "-m", "doit", "list"], cwd=KIT, capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "UNDOIT_PLAN": str(bad)})
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0
    assert "unknown type 'teleport'" in res.stderr
    assert "Traceback" not in res.stderr


def test_doit_list_shows_the_runbook():
    res = subprocess.run([sys.executable, "-m", "doit", "list", "--all"], cwd=KIT,
                         capture_output=True, text=True, check=True)
    assert "rollback:phase3" in res.stdout and "Filesystem storage rollback" in res.stdout
    assert "scenario:storage-only" in res.stdout


def test_the_image_prefix_in_the_kits_env_file_is_the_one_used(tmp_path, monkeypatch):
    """Settings are read once, the environment first, then the kit's .env: the images'
    prefix is read the same way as every other key (it once read the environment only)."""
    from scripts.plan import settings
    from scripts.stack import images

    (tmp_path / ".env").write_text("UNDOIT_IMAGE_PREFIX=fromdotenv\n")
    monkeypatch.delenv("UNDOIT_IMAGE_PREFIX", raising=False)
    monkeypatch.setattr(settings, "KIT_ROOT", tmp_path)
    settings.current.cache_clear()
    try:
        assert images.prefix() == "fromdotenv"
        assert images.names()["postgres"] == "fromdotenv/postgres:15"
        monkeypatch.setenv("UNDOIT_IMAGE_PREFIX", "fromenv")  # the environment wins
        settings.current.cache_clear()
        assert images.prefix() == "fromenv"
    finally:
        settings.current.cache_clear()
