"""git adapters on real repositories in tmp_path (no engine)."""

from __future__ import annotations

import pytest
from datetime import datetime

from scripts import gitstate
from scripts.errors import UndoitError


def test_dirty_names_whole_paths(scratch_repo):
    (scratch_repo / "proxy").mkdir()
    (scratch_repo / "proxy" / "nginx.conf").write_text("a\n")
    gitstate.run(scratch_repo, "add", "-A")
    gitstate.run(scratch_repo, "commit", "-qm", "proxy")
    (scratch_repo / "proxy" / "nginx.conf").write_text("b\n")  # " M proxy/nginx.conf"
    (scratch_repo / "new file.txt").write_text("x\n")
    assert sorted(gitstate.dirty(scratch_repo)) == ["new file.txt", "proxy/nginx.conf"]
    with pytest.raises(UndoitError, match=r"first: proxy/nginx\.conf"):
        gitstate.backup_refs(scratch_repo, "b-{timestamp}", "t-{date}", ["proxy"], False, None,
                             datetime(2026, 1, 1))
