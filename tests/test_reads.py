"""A rollback reads each archive it restores at most twice (prove, then extract while
re-hashing), and no other archive of the set."""

from __future__ import annotations

import builtins
from collections import Counter
from dataclasses import replace

import pytest

from scripts.backup import backup
from scripts.rollback import restore, rollback
from scripts.store import archive
from scripts.plan.plan import Procedure, Step

from .conftest import volume_path

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("path", ["staged", "in place"])
def test_archive_reads_per_rollback(docker_client, mini, monkeypatch, capsys, path):
    from scripts.stack import volumes

    if path == "in place":
        monkeypatch.setattr(volumes, "stage", lambda *a, **k: None)
    (volume_path(docker_client, mini, "files") / "doc.txt").write_text("v1\n")
    s = backup.backup(mini)
    plan = replace(mini, phases=(Procedure(id="files", title="files", kind="phase", steps=(
        Step("stop", {"services": ["app"]}), Step("restore-volumes", {"volumes": ["files"]}), Step("up", {}))),))
    (volume_path(docker_client, mini, "files") / "doc.txt").write_text("v2\n")
    restore._PROVEN.clear()
    reads = Counter()
    real_open = builtins.open

    def counting(file, mode="r", *args, **kwargs):
        if str(file).endswith(".tar.zst") and "r" in mode:
            reads[str(file).rsplit("/", 1)[-1]] += 1
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(archive, "open", counting, raising=False)
    monkeypatch.setattr(builtins, "open", counting)
    rollback.verified_set(plan, "files")  # the verified:files task, in the same doit process
    rec = rollback.execute(plan, "files", yes=True)
    assert rec["outcome"] == "success", rec
    assert (volume_path(docker_client, mini, "files") / "doc.txt").read_text() == "v1\n"
    assert 1 <= reads["files.tar.zst"] <= 2, reads
    assert reads["data.tar.zst"] == 0, reads  # not restored: not read, not even for its checksum
    assert s.volumes["files"]["archive"].endswith("files.tar.zst")
    out = capsys.readouterr().out
    # staged: built and checked while app still ran, before the first step stopped it
    assert ("files: built beside" in out) == (path == "staged"), out
    if path == "staged":
        assert out.index("files: built beside") < out.index("[1/3] stop"), out
    assert list(rec["prestaged"]) == (["files"] if path == "staged" else []), rec["prestaged"]


def test_staged_contents_gone_before_their_step_are_restored_at_it(docker_client, mini):
    """A step that removes what was built ahead (here a command; `docker volume rm` would
    too): the volume is restored at its step as it would have been without the staging."""
    files = volume_path(docker_client, mini, "files")
    (files / "doc.txt").write_text("v1\n")
    backup.backup(mini)
    (files / "doc.txt").write_text("v2\n")
    plan = replace(mini, phases=(Procedure(id="files", title="files", kind="phase", steps=(
        Step("stop", {"services": ["app"]}),
        Step("run", {"argv": ["sh", "-c", f"rm -rf {files.parent}/undoit-staging-*"]}),
        Step("restore-volumes", {"volumes": ["files"]}), Step("up", {}))),))
    rec = rollback.execute(plan, "files", yes=True)
    assert rec["outcome"] == "success", rec
    assert (files / "doc.txt").read_text() == "v1\n"
    assert not list(files.parent.glob("undoit-staging-*"))
