"""Task parameters: a mistyped one is refused before anything runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scripts.cli import options as params
from scripts.errors import UndoitError

from .conftest import KIT


def test_a_typo_is_refused_with_the_close_name():
    with pytest.raises(UndoitError, match=r"'dry-run' \(did you mean dry_run\?\).*known parameters: dry_run"):
        params.check({"dry-run": "1"})
    params.check({"dry_run": "1", "yes": "1", "set": "x"})


def test_doit_refuses_a_mistyped_parameter_before_running_anything(tmp_path):
    res = subprocess.run([sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "-d", str(KIT),
                          "rollback:phase1", "dry-run=1"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "unknown parameter 'dry-run'" in res.stderr and "Traceback" not in res.stderr
    assert "phase1" not in res.stdout  # no task ran
