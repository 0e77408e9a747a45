"""Projects laid out their own way: compose.yaml with an override file and a profile,
plans whose names compose does not know."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.backup import backup
from scripts.repo import gitstate
from scripts.rollback import rollback
from scripts.plan import plan as planmod
from scripts.stack.compose import discover, for_plan
from scripts.errors import UndoitError

from .conftest import sweep, unique
from .projects import app, check, compose_file, do, everything, full, lay_out, phase, plan, redis, volume, write_plan

pytestmark = pytest.mark.docker

BASE = compose_file({"shop": app(volumes=["orders:/orders"]), "mailer": app(profiles=["jobs"])}, volumes=["orders"])

OVERRIDE = compose_file({"shop": {"labels": {"shop.tier": "override"}, "environment": {"SHOP_MODE": "from-override"}}})


def shop_plan(*services: str) -> dict:
    return plan(list(services or ("shop", "mailer")), project={"profiles": ["jobs"]},
                volumes={"orders": volume("shop")},
                phases=[phase("release", "release", [do("down"), do("restore-files", paths=["."]), do("up")],
                              [check("healthy"), check("container-count", expect=2)])],
                full=everything(["orders"], stop="down", checks=()))


def shop(tmp_path, name, *services: str):
    root = lay_out(tmp_path / "shop", {"compose.yaml": BASE, "compose.override.yaml": OVERRIDE}, "shop")
    return load(write_plan(tmp_path / "plan.toml", shop_plan(*services), name, root, kept=tmp_path, log="LOG.md"))


def load(path: Path):
    return planmod.load(path, env={})


def labels(client, name, service):
    cs = client.containers.list(filters={"label": [f"com.docker.compose.project={name}",
                                                   f"com.docker.compose.service={service}"]})
    return [c.labels for c in cs]


def test_compose_files_are_the_ones_compose_would_use(tmp_path):
    (tmp_path / "docker-compose.yml").write_text(BASE)
    assert discover(tmp_path, {}) == ("docker-compose.yml",)
    (tmp_path / "compose.yaml").write_text(BASE)
    (tmp_path / "compose.override.yaml").write_text(OVERRIDE)
    assert discover(tmp_path, {}) == ("compose.yaml", "compose.override.yaml")
    (tmp_path / ".env").write_text("COMPOSE_FILE=a.yml:b.yml\n")
    assert discover(tmp_path, {}) == ("a.yml", "b.yml")
    assert discover(tmp_path, {"COMPOSE_FILE": "c.yml"}) == ("c.yml",)
    with pytest.raises(UndoitError, match="no compose file"):
        discover(tmp_path / "nowhere", {})


def test_a_rollback_keeps_the_override_file_and_the_profile(docker_client, kit_images, tmp_path):
    name = unique("shop")
    try:
        plan = shop(tmp_path, name)
        for_plan(plan).up(wait_timeout=60)
        assert labels(docker_client, name, "shop")[0].get("shop.tier") == "override"
        assert len(labels(docker_client, name, "mailer")) == 1
        backup.backup(plan)
        (plan.root / "compose.yaml").write_text(BASE.replace("orders:/orders", "orders:/orders:ro"))
        gitstate.run(plan.root, "commit", "-qam", "the release")
        rec = rollback.execute(plan, "release", yes=True)
        assert rec["outcome"] == "success", rec
        # up ran with the override file and the profile, as the stack had them
        assert labels(docker_client, name, "shop")[0].get("shop.tier") == "override"
        assert len(labels(docker_client, name, "mailer")) == 1
        config = json.loads((rollback.runs_dir(plan) / rec["run"] / "record.json").read_text())
        assert config["outcome"] == "success"
    finally:
        sweep(docker_client, name)


def test_unknown_names_refused_before_any_ref_is_made(docker_client, kit_images, tmp_path):
    name = unique("shop")
    try:
        plan = shop(tmp_path, name, "shop", "mailer", "billing")
        for_plan(plan).up(wait_timeout=60)
        tags = gitstate.run(plan.root, "tag", "--list")
        with pytest.raises(UndoitError, match=r"\[project\] services: compose has no service 'billing' "
                                              r"\(it has: mailer, shop"):
            backup.backup(plan)
        assert gitstate.run(plan.root, "tag", "--list") == tags  # no tag, no branch: no empty cycle
        assert gitstate.run(plan.root, "branch", "--list") == "* main"
    finally:
        sweep(docker_client, name)


def test_a_plan_named_unlike_the_running_stack_says_which_name_compose_uses(docker_client, kit_images, tmp_path):
    name = unique("shop")
    try:
        plan = shop(tmp_path, name)
        (plan.root / "compose.yaml").write_text(f"name: {name}real\n" + BASE)
        gitstate.run(plan.root, "commit", "-qam", "named")
        with pytest.raises(UndoitError, match=f"compose calls this project '{name}real'"):
            backup.backup(plan)
    finally:
        sweep(docker_client, name)


def test_the_kits_state_inside_the_project_never_dirties_it(docker_client, kit_images, tmp_path):
    """The plan kept in the project (root = "."): snapshots/, reports/ and the log land
    in the project folder, yet the tree stays clean and a restore of "." leaves them."""
    name = unique("shop")
    try:
        plan = shop(tmp_path, name)
        write_plan(plan.root / "phases.toml", shop_plan(), name, ".", kept=Path("."))
        gitstate.run(plan.root, "add", "phases.toml")
        gitstate.run(plan.root, "commit", "-qm", "the rollback plan")
        plan = load(plan.root / "phases.toml")
        for_plan(plan).up(wait_timeout=60)
        first = backup.backup(plan)
        assert first.path.parent == plan.root / "snapshots"
        assert gitstate.dirty(plan.root) == []
        rec = rollback.execute(plan, "full", yes=True)
        assert rec["outcome"] == "success", rec
        assert (first.path / "manifest.json").is_file()  # not moved aside by the restore of "."
        assert rec["file_restores"][0]["move"] == []
        assert gitstate.dirty(plan.root) == [] and (plan.root / "ROLLBACK-LOG.md").is_file()
    finally:
        sweep(docker_client, name)


# a data folder bind-mounted from the project, and state no backup covers: a Redis
# writing into its own layer, and an anonymous volume
NOTES = compose_file({"notes": app(user="0", volumes=["./data:/srv/data"]), "cache": redis(volumes=["/scratch"])})

NOTES_PLAN = plan(["notes", "cache"], volumes={"notes_data": volume("notes", bind="./data")},
                  full=full([do("stop", services=["notes"]), do("restore-files", paths=["."]),
                             do("restore-volumes", volumes=["notes_data"]), do("up")],
                            [check("volume-matches", volumes=["notes_data"]), check("healthy")]))


def test_a_bind_mounted_data_folder_is_backed_up_and_restored_like_a_volume(docker_client, kit_images, tmp_path,
                                                                             capsys):
    name = unique("notes")
    root = tmp_path / "notes"
    try:
        lay_out(root, {"compose.yaml": NOTES, "README": "notes\n"}, "notes")
        (root / "data" / "sub").mkdir(parents=True)
        (root / "data" / "a.txt").write_text("v1\n")
        (root / "data" / "sub" / "b.txt").write_text("kept\n")
        plan = load(write_plan(tmp_path / "plan.toml", NOTES_PLAN, name, root, kept=tmp_path, log="LOG.md"))
        for_plan(plan).up(wait_timeout=60)
        for_plan(plan).exec("cache", "sh", "-c", "redis-cli -h 127.0.0.1 set k v && redis-cli -h 127.0.0.1 save")
        s = backup.backup(plan)
        out = capsys.readouterr().out
        warnings = [line for line in out.splitlines() if line.startswith("WARNING")]
        assert len(warnings) == 2, warnings
        assert "WARNING: cache keeps /scratch in an anonymous volume" in out
        assert "WARNING: cache has written" in out and "(first: /data/" in out
        with pytest.raises(UndoitError, match="strict=1: 2 place"):
            backup.backup(plan, strict=True)
        assert s.volumes["notes_data"]["name"] == f"bind:{root / 'data'}"
        assert gitstate.dirty(root) == []  # the data folder is no file of the project's
        # the change: data rewritten and added to
        (root / "data" / "a.txt").write_text("v2\n")
        (root / "data" / "new.txt").write_text("new\n")
        rec = rollback.execute(plan, "full", yes=True)
        assert rec["outcome"] == "success", rec
        assert (root / "data" / "a.txt").read_text() == "v1\n" and not (root / "data" / "new.txt").exists()
        assert (root / "data" / "sub" / "b.txt").read_text() == "kept\n"
        assert not list(root.glob(".undoit-staging-*"))
        safety = rec["safety_sets"]
        assert safety, rec  # what the restore replaced was kept first
        # rehearsed like a volume: the sandbox gets its own copy of the folder, the live one is left
        from scripts.rehearse import rehearse

        (root / "data" / "live-only.txt").write_text("live\n")
        report = rehearse.rehearse(plan)
        assert report["ok"], report["rows"]
        assert report["archives_proven"] == ["notes_data"]
        assert (root / "data" / "live-only.txt").read_text() == "live\n"
        assert (root / "data" / "a.txt").read_text() == "v1\n"
    finally:
        sweep(docker_client, name)


def test_a_project_in_a_folder_of_a_monorepo(docker_client, kit_images, tmp_path):
    name = unique("mono")
    top = tmp_path / "mono"
    shop_dir = top / "apps" / "shop"
    lay_out(top, {"apps/shop/compose.yaml": BASE, "apps/shop/shop.conf": "v1\n", "apps/billing.conf": "billing v1\n"},
            "monorepo")
    plan = load(write_plan(tmp_path / "plan.toml", shop_plan(), name, shop_dir, kept=tmp_path, log="LOG.md"))
    try:
        for_plan(plan).up(wait_timeout=60)
        (top / "apps" / "stray.txt").write_text("untracked, outside the project\n")
        backup.backup(plan)
        (shop_dir / "shop.conf").write_text("v2\n")
        (top / "apps" / "billing.conf").write_text("billing v2\n")
        gitstate.run(top, "commit", "-qam", "shop and billing change")
        rec = rollback.execute(plan, "full", yes=True)
        assert rec["outcome"] == "success", rec
        assert (shop_dir / "shop.conf").read_text() == "v1\n"
        assert (shop_dir / "compose.yaml").read_text() == BASE  # the project's own files stay
        # outside the project folder nothing is touched
        assert (top / "apps" / "billing.conf").read_text() == "billing v2\n"
        assert (top / "apps" / "stray.txt").read_text() == "untracked, outside the project\n"
    finally:
        sweep(docker_client, name)


def ledger(name: str) -> str:
    """A project named in its compose file, whose one service mounts an external volume
    (made outside compose) and a volume with a name of its own."""
    return compose_file({"keeper": app(user="0", volumes=["shared:/shared", "archive:/archive"])}, name=name,
                   volumes={"shared": {"external": True, "name": f"{name}-shared-data"},
                            "archive": {"name": f"{name}-archive"}})


LEDGER_PLAN = plan(["keeper"], volumes={"shared": volume("keeper"), "archive": volume("keeper")},
                   full=full([do("stop"), do("restore-volumes", volumes=["shared", "archive"]), do("up")],
                             [check("volume-matches", volumes=["shared", "archive"])]))


def test_an_external_volume_and_a_named_one(docker_client, kit_images, tmp_path):
    from .conftest import volume_path

    name = unique("keep")
    root = tmp_path / "keep"
    lay_out(root, {"compose.yaml": ledger(name)}, "keeper")
    plan = load(write_plan(tmp_path / "plan.toml", LEDGER_PLAN, name, root, kept=tmp_path, log="LOG.md"))
    docker_client.volumes.create(f"{name}-shared-data")  # made outside compose: no compose label
    try:
        for_plan(plan).up(wait_timeout=60)
        shared = Path(docker_client.api.inspect_volume(f"{name}-shared-data")["Mountpoint"])
        (shared / "ledger.txt").write_text("shared v1\n")
        (volume_path(docker_client, plan, "archive") / "old.txt").write_text("archive v1\n")
        s = backup.backup(plan)
        assert s.volumes["shared"]["name"] == f"{name}-shared-data"
        assert s.volumes["archive"]["name"] == f"{name}-archive"
        (shared / "ledger.txt").write_text("shared v2\n")
        (volume_path(docker_client, plan, "archive") / "old.txt").write_text("archive v2\n")
        rec = rollback.execute(plan, "full", yes=True)
        assert rec["outcome"] == "success", rec
        assert (shared / "ledger.txt").read_text() == "shared v1\n"
        assert (volume_path(docker_client, plan, "archive") / "old.txt").read_text() == "archive v1\n"
    finally:
        sweep(docker_client, name)
        try:
            docker_client.volumes.get(f"{name}-shared-data").remove(force=True)
        except Exception:
            pass
