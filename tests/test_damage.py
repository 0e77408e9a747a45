"""Damaged snapshot sets: every damage is refused before anything live changes, on a
two-volume stack of the tests' own (a Redis store and a files volume)."""

from __future__ import annotations

import json
import shutil

import pytest

from scripts.backup import backup
from scripts.repo import gitstate
from scripts.rollback import rollback
from scripts.stack import volumes
from scripts.errors import UndoitError

from .conftest import volume_path

pytestmark = pytest.mark.docker


def _flip(p):
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))


def _truncate(p):
    p.write_bytes(p.read_bytes()[: max(1, p.stat().st_size // 2)])


def _manifest(s, edit):
    m = json.loads((s / "manifest.json").read_text())
    edit(m)
    (s / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True))


def _swap(a, b):
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)


def _sha(p):
    from scripts.store import archive

    return archive.sha256_file(p)


DAMAGES = {
    "archive flipped": lambda s: _flip(s / "data.tar.zst"),
    "archive truncated": lambda s: _truncate(s / "data.tar.zst"),
    "archive deleted": lambda s: (s / "data.tar.zst").unlink(),
    "archive with junk appended": lambda s: (s / "files.tar.zst").write_bytes(
        (s / "files.tar.zst").read_bytes() + b"junk"),
    "listing flipped": lambda s: _flip(s / "files.listing"),
    "listing truncated": lambda s: _truncate(s / "files.listing"),
    "listing deleted": lambda s: (s / "files.listing").unlink(),
    "archives swapped": lambda s: _swap(s / "data.tar.zst", s / "files.tar.zst"),
    "listings swapped": lambda s: _swap(s / "data.listing", s / "files.listing"),
    "state file edited": lambda s: (s / "containers.json").write_text("[]"),
    "state file deleted": lambda s: (s / "networks.json").unlink(),
    "manifest deleted": lambda s: (s / "manifest.json").unlink(),
    "manifest not json": lambda s: (s / "manifest.json").write_text("{"),
    # edits of the manifest itself, consistent or not with the files
    "manifest size edited": lambda s: _manifest(s, lambda m: m["volumes"]["data"].update(size=123)),
    "manifest volume name edited": lambda s: _manifest(s, lambda m: m["volumes"]["files"].update(name="other_vol")),
    "manifest entries swapped": lambda s: _manifest(s, lambda m: m["volumes"].update(
        data=m["volumes"]["files"], files=m["volumes"]["data"])),
    "manifest set id edited": lambda s: _manifest(s, lambda m: m.update(set="20200101T000000000000Z-0000")),
    "manifest sha256 edited to a flipped archive": lambda s: (_flip(s / "data.tar.zst"), _manifest(
        s, lambda m: m["volumes"]["data"].update(sha256=_sha(s / "data.tar.zst")))),
    "manifest listing digest edited to an edited listing": lambda s: (
        (s / "files.listing").write_text((s / "files.listing").read_text().replace("0o644", "0o600")),
        _manifest(s, lambda m: m["volumes"]["files"].update(
            listing_sha256=_sha(s / "files.listing"), listing_digest=_sha(s / "files.listing")))),
    "manifest archive path pointing at the other volume": lambda s: _manifest(
        s, lambda m: m["volumes"]["files"].update(archive=m["volumes"]["data"]["archive"],
                                                  sha256=m["volumes"]["data"]["sha256"])),
    "manifest baseline flag removed": lambda s: _manifest(s, lambda m: m.update(baseline=False)),
}


def live(docker_client, plan) -> dict:
    return {key: sorted((e.meta for e in volumes.listing(docker_client, ref.name)))
            for key, ref in volumes.resolve(docker_client, plan.project_name, list(plan.volumes)).items()}




def test_every_damage_is_refused_before_any_live_change(docker_client, mini):
    (volume_path(docker_client, mini, "files") / "doc.txt").write_text("the document\n")
    s = backup.backup(mini)
    # a full rollback that restores both volumes (mini's own restores files only)
    from dataclasses import replace

    from scripts.plan.plan import Procedure, Step

    full = Procedure(id="full", title="everything", kind="full", steps=(
        Step("stop", {"services": ["store", "app"]}), Step("restore-volumes", {"volumes": ["data", "files"]}),
        Step("up", {})))
    plan = replace(mini, full=full)
    pristine = s.path.parent / ".pristine"
    shutil.copytree(s.path, pristine)
    (volume_path(docker_client, plan, "files") / "doc.txt").write_text("changed since\n")
    before, head = live(docker_client, plan), gitstate.head(plan.root)
    refused = []
    for what, damage in DAMAGES.items():
        shutil.rmtree(s.path)
        shutil.copytree(pristine, s.path)
        damage(s.path)
        with pytest.raises(UndoitError) as err:
            rollback.execute(plan, "full", yes=True)
        assert "\n" not in str(err.value)
        refused.append(what)
        assert live(docker_client, plan) == before, what
        assert gitstate.head(plan.root) == head, what
        assert not list((plan.snapshots_dir / "safety").glob("*")) if (plan.snapshots_dir / "safety").exists() else True
    assert refused == list(DAMAGES) and len(refused) == 21
    # and the pristine set still restores
    shutil.rmtree(s.path)
    shutil.copytree(pristine, s.path)
    rec = rollback.execute(plan, "full", yes=True)
    assert rec["outcome"] == "success", rec
    assert (volume_path(docker_client, plan, "files") / "doc.txt").read_text() == "the document\n"
