"""A phase upgrades a service's image, the old one is pruned: the rollback runs the image
the stack ran at backup (pinned by the set, or loaded from it with save_images=1)."""

from __future__ import annotations

import io
import subprocess

import pytest

from scripts.backup import backup
from scripts.rollback import rollback
from scripts.stack import pins
from scripts.plan import plan as planmod
from scripts.stack.compose import for_plan
from scripts.errors import UndoitError

from .conftest import sweep, unique
from .projects import app, check, compose_file, do, full, lay_out, phase, plan, write_plan

pytestmark = pytest.mark.docker

PLAN = plan(["api"], phases=[phase("upgrade", "the api image upgrade", [do("up")], [check("healthy")])],
            full=full([do("up")]))


def build(client, tag: str, release: str) -> str:
    """A tiny image of the test's own (one label on the kit's app image), built offline."""
    from scripts.stack.images import names

    dockerfile = f"FROM {names()['app']}\nLABEL release={release}\n"
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, network_mode="none", rm=True)
    return image.id


def running_image(client, name) -> str:
    (c,) = client.containers.list(filters={"label": f"com.docker.compose.project={name}"})
    return c.attrs["Image"]


@pytest.fixture
def api(docker_client, kit_images, tmp_path):
    name = unique("img")
    tag = f"{name}/api:latest"
    root = lay_out(tmp_path / "api", {"compose.yaml": compose_file({"api": app(image=tag)})}, "api")
    plan = planmod.load(write_plan(tmp_path / "plan.toml", PLAN, name, root, kept=tmp_path, log="LOG.md"), env={})
    made = []
    try:
        made.append(build(docker_client, tag, "1"))
        for_plan(plan).up(wait_timeout=60)
        yield plan, tag, made
    finally:
        sweep(docker_client, name)
        for ref in [tag, *made, *(i.tags[0] for i in docker_client.images.list(name=f"{pins.REPO}/{name}"))]:
            try:
                docker_client.images.remove(ref, force=True)
            except Exception:
                pass


def upgrade(docker_client, plan, tag, made) -> str:
    """The phase: the same tag rebuilt as release 2, the stack moved onto it; release 1
    left untagged, then `docker image prune` (untagged images only)."""
    made.append(build(docker_client, tag, "2"))
    for_plan(plan).up(wait_timeout=60)
    subprocess.run(["docker", "image", "prune", "-f", "--filter", "label=release=1"], check=True,
                   capture_output=True, timeout=60)
    return made[-1]


def test_an_upgraded_then_pruned_image_is_run_again(docker_client, api):
    plan, tag, made = api
    v1 = made[0]
    backup.backup(plan)
    v2 = upgrade(docker_client, plan, tag, made)
    assert running_image(docker_client, plan.project_name) == v2
    docker_client.images.get(v1)  # kept by the set's pin
    rec = rollback.execute(plan, "upgrade", yes=True)
    assert rec["outcome"] == "success", rec
    assert running_image(docker_client, plan.project_name) == v1


def test_a_lost_image_comes_back_from_the_set_or_the_rollback_refuses(docker_client, api):
    plan, tag, made = api
    v1 = made[0]
    s = backup.backup(plan, save_images=True)
    assert s.manifest["images"] and s.manifest["images"][0]["id"] == v1
    upgrade(docker_client, plan, tag, made)
    docker_client.images.remove(pins.pin_name(plan.project_name, v1), force=True)  # `prune -a` took it all
    with pytest.raises(Exception):
        docker_client.images.get(v1)
    rec = rollback.execute(plan, "upgrade", yes=True)
    assert rec["outcome"] == "success", rec
    assert running_image(docker_client, plan.project_name) == v1
    # a set without a copy of it, then release 1 lost again: refused before anything changes
    s2 = backup.backup(plan)
    assert "images" not in s2.manifest
    for_plan(plan).up(wait_timeout=60)  # back on release 2, as the compose file says
    docker_client.images.remove(pins.pin_name(plan.project_name, v1), force=True)  # its last tag: gone
    with pytest.raises(Exception):
        docker_client.images.get(v1)
    with pytest.raises(UndoitError, match="save_images=1"):
        rollback.execute(plan, "upgrade", yes=True, set_id=s2.id)
    assert running_image(docker_client, plan.project_name) == made[-1]
