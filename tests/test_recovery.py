"""The machine is lost: a fresh clone in another folder gets the newest point in time back,
and the sets from before the loss never rewind what was written since.

The project is unlike the demo: a Postgres ledger whose settings come from a git-ignored
`.env` (env_file, required), a web service with a bind-mounted uploads folder and a
secret file, an override file, a service under a profile, its plan committed in the
project with the kit's snapshots, reports and log beside it, and a remote that gets
only what a plain `git push` sends (the branch, no backup tags)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.store import restic
from scripts.repo import gitstate
from scripts.store import snapshots
from scripts.plan import plan as planmod
from scripts.stack.compose import for_plan

from .conftest import KIT, sweep, unique
from .projects import check, do, everything, lay_out, more, phase, plan, plan_toml, volume

pytestmark = [pytest.mark.docker, pytest.mark.long(2)]

CANARY = "canary-Atelier-tok-5150"
PASSWORD = "canary-Atelier-restic-0451"

# its own compose files, not the builders of tests/projects.py: the layout is the point
# (settings only in a required, git-ignored .env; a secret file; a bind-mounted uploads
# folder; an override file; a service under a profile)
COMPOSE = """\
services:
  ledger:
    image: ${UNDOIT_IMAGE_PREFIX:-undoit}/postgres:15
    pull_policy: never
    network_mode: none
    env_file: [{path: .env, required: true}]
    volumes: [pgdata:/var/lib/postgresql/data]
    stop_grace_period: 20s
  web:
    image: %(web)s
    pull_policy: never
    network_mode: none
    user: "0"
    volumes: [./uploads:/srv/uploads]
    secrets: [token]
    stop_grace_period: 1s
  tools:
    image: ${UNDOIT_IMAGE_PREFIX:-undoit}/app:latest
    pull_policy: never
    network_mode: none
    profiles: [tools]
secrets:
  token: {file: ./secrets/token.txt}
volumes:
  pgdata: {}
"""

OVERRIDE = """\
services:
  web:
    healthcheck:
      test: ["CMD", "test", "-f", "/run/secrets/token"]
      interval: 1s
"""

PLAN = plan(["ledger", "web"], backup={"include_ignored": [".env"]},
            volumes={"pgdata": volume("ledger"), "uploads": volume("web", bind="./uploads", quiesce="none")},
            phases=[phase("web", "web back", [do("restore-files", paths=["compose.yaml"]), do("up")])],
            full=everything(["pgdata", "uploads"], title="everything back", checks=[
                check("healthy"), check("container-count", expect=2),
                check("exec", service="ledger", argv=["psql", "-U", "postgres", "-d", "atelier", "-Atc", "select 1"],
                      expect="1")]))


def doit(plan_path: Path, *args, ok=True):
    env = dict(os.environ, UNDOIT_PLAN=str(plan_path), CI="true")
    res = subprocess.run([sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "-d", str(KIT), *args],
                         env=env, capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert (res.returncode == 0) == ok, out[-4000:]
    assert CANARY not in out and PASSWORD not in out and "Traceback" not in out, out[-4000:]
    return out


def sql(plan, query: str) -> str:
    return for_plan(plan).exec("ledger", "psql", "-U", "postgres", "-d", "atelier", "-Atc", query).strip()


def counts(plan) -> tuple[int, int]:
    return int(sql(plan, "select count(*) from customers")), int(sql(plan, "select count(*) from orders"))


def git(root, *args):
    return gitstate.run(root, *args)


def image(client, tag: str, label: str) -> str:
    """A web image of the test's own, built offline from the kit's app image (another id
    per label: each cycle's set pins its own)."""
    from scripts.stack import images

    dockerfile = f"FROM {images.prefix()}/app:latest\nLABEL atelier.cycle={label}\n"
    subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, text=True, check=True,
                   capture_output=True)
    return client.images.get(tag).id


@pytest.fixture
def atelier(docker_client, kit_images, tmp_path):
    name = unique("atl")
    webs = [f"{name}-web:1", f"{name}-web:2"]
    try:
        yield name, webs
    finally:
        sweep(docker_client, name)
        for tag in webs:
            try:
                docker_client.images.remove(tag, force=True)
            except Exception:
                pass


def test_a_lost_machine_recovers_the_newest_point_in_time_in_a_fresh_clone(docker_client, atelier, tmp_path):
    name, webs = atelier
    ids = [image(docker_client, tag, str(n)) for n, tag in enumerate(webs, 1)]
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    (tmp_path / "restic-pw").write_text(PASSWORD + "\n")
    root = tmp_path / "site" / "atelier"
    files = {
        "compose.yaml": COMPOSE % {"web": webs[0]},
        "compose.override.yaml": OVERRIDE,
        ".gitignore": ".env\nsecrets/\nuploads/\n",
        "app.conf": "v1\n",
        # committed in the project, its sets, reports and log beside it
        "phases.toml": plan_toml(more(PLAN, offsite={"repository": str(tmp_path / "restic"), "check_subset": "100%",
                                                     "password_file": str(tmp_path / "restic-pw")}), name, "."),
        ".env": f"POSTGRES_DB=atelier\nAPI_TOKEN={CANARY}\n",
        "secrets/token.txt": "not-kept\n",
        "uploads/a.txt": "upload one\n",
    }
    lay_out(root, files, "atelier")
    git(root, "remote", "add", "origin", str(origin))
    git(root, "push", "-q", "-u", "origin", "main")
    plan_path = root / "phases.toml"
    plan = planmod.load(plan_path, env={})
    for_plan(plan).up(wait_timeout=120)
    sql(plan, "create table customers(id serial primary key, name text);"
              "create table orders(id serial primary key, customer int);"
              "insert into customers(name) select 'c' || g from generate_series(1, 500) g;"
              "insert into orders(customer) select g % 500 + 1 from generate_series(1, 3000) g")

    # cycle 1 and cycle 2, each backed up and sent offsite; a plain `git push` only
    out = doit(plan_path, "backup")
    assert out.count("secrets/token.txt (secret token)") == 1, out  # warned once, the .env is kept
    assert ".env (" not in out and "git-ignored files kept in the set (owner only): .env" in out
    doit(plan_path, "offsite", "init=1")
    (root / "app.conf").write_text("v2\n")
    (root / "compose.yaml").write_text(COMPOSE % {"web": webs[1]})
    git(root, "commit", "-qam", "cycle 2: v2 and a new web")
    git(root, "push", "-q")
    for_plan(plan).up(wait_timeout=120)
    sql(plan, "insert into customers(name) select 'n' || g from generate_series(1, 25) g;"
              "delete from orders where id <= 10")
    (root / "uploads" / "b.txt").write_text("upload two\n")
    doit(plan_path, "backup")
    doit(plan_path, "offsite")
    assert counts(plan) == (525, 2990)
    sets = [s for s in snapshots.all_sets(plan.snapshots_dir, name) if s.complete]
    cycle1, cycle2 = sets
    tags_before = {cycle1.tag, cycle2.tag}
    assert not [r for r in git(origin, "tag", "-l").split()]  # the remote has no backup tag
    env_bytes = (root / ".env").read_bytes()

    # the loss: containers, volumes and the whole folder
    for_plan(plan).down(volumes=True)
    shutil.rmtree(root)
    assert not docker_client.volumes.list(filters={"label": f"com.docker.compose.project={name}"})

    # a fresh clone in another folder, the README's recovery
    clone = tmp_path / "elsewhere" / "atelier-2"
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
    cplan_path = clone / "phases.toml"
    # the secret no set keeps (each backup named it) stops the recovery before it begins
    out = doit(cplan_path, "recover", "yes=1", ok=False)
    assert f"recover: set {cycle2.id} (the newest backup set, offsite)" in out, out[-3000:]
    assert "compose needs secrets/token.txt (secret token)" in out and "the stack was not touched" in out, out
    assert ".env: written back from set" in out
    assert not docker_client.volumes.list(filters={"label": f"com.docker.compose.project={name}"})
    (clone / "secrets").mkdir()
    (clone / "secrets" / "token.txt").write_text("not-kept\n")  # from the team's password manager
    out = doit(cplan_path, "recover", "yes=1")
    assert f"recover: set {cycle2.id} (the newest backup set, here)" in out, out[-3000:]
    assert "outcome: success" in out and f"recovered: the stack is now set {cycle2.id}" in out, out[-3000:]
    cplan = planmod.load(cplan_path, env={})
    assert counts(cplan) == (525, 2990)
    assert (clone / "app.conf").read_text() == "v2\n"
    assert sorted(p.name for p in (clone / "uploads").iterdir()) == ["a.txt", "b.txt"]
    assert (clone / ".env").read_bytes() == env_bytes and (clone / ".env").stat().st_mode & 0o077 == 0
    assert (cplan.snapshots_dir / cycle2.id / snapshots.MANIFEST).is_file()  # never moved aside
    assert "moved aside" not in out or "0 untracked moved aside" in out
    # fetched sets are history: no rollback restores one unless it is named
    out = doit(cplan_path, "rollback:full", "yes=1", ok=False)
    assert "fetched from the offsite repository" in out and "set=ID" in out

    # the next backup opens a cycle of its own, with a name no set had before the loss
    sql(cplan, "insert into customers(name) select 'r' || g from generate_series(1, 5) g")
    out = doit(cplan_path, "backup")
    assert "baseline of a new cycle" in out
    newest = [s for s in snapshots.all_sets(cplan.snapshots_dir, name) if s.complete][-1]
    assert newest.tag not in tags_before and newest.manifest["baseline"]
    # cycle 1's set is only offsite: naming it says so, and how to bring it
    out = doit(cplan_path, "verify", f"set={cycle1.id}", ok=False)
    assert f"set {cycle1.id} is in the offsite repository" in out and f"`doit fetch set={cycle1.id}`" in out, out
    # fetched afterwards, it never becomes the target
    out = doit(cplan_path, "fetch", f"set={cycle1.id}")
    assert "verified" in out
    out = doit(cplan_path)
    assert f"baseline set {newest.id}" in out, out
    sql(cplan, "insert into customers(name) select 'x' || g from generate_series(1, 10) g")
    (clone / "phases.toml").write_text(cplan_path.read_text() + "# edited after the recovery\n")
    git(clone, "commit", "-qam", "plan edited")
    out = doit(cplan_path, "rollback:full", "yes=1")
    assert f"volumes come from set {newest.id}" in out and "outcome: success" in out, out[-3000:]
    assert counts(cplan) == (530, 2990)  # not cycle 1's 500, not the 540 of after the backup
    # the kit's own files are never rolled back or moved aside
    assert cplan_path.read_text().endswith("# edited after the recovery\n")
    assert (clone / "ROLLBACK-LOG.md").is_file() and (cplan.snapshots_dir / cycle1.id).is_dir()
    assert "phases.toml" not in git(clone, "status", "--porcelain")

    # what each set pins, and the safety copies rollbacks parked, are listed
    out = doit(cplan_path, "snapshots")
    assert webs[0] in out and webs[1] in out and "fetched: restored only when named" in out, out
    assert "safety sets of rollbacks: 2" in out and "MiB under " in out and "undoit-parked" in out, out[-1500:]
    pins_before = set(docker_client.images.get(ids[0]).tags)
    assert any(t.startswith(f"undoit-pin/{name}:") for t in pins_before)

    # retention across the loss: the sets from before it go here and offsite, with the
    # parked copies and pins only they used
    doit(cplan_path, "offsite")
    out = doit(cplan_path, "prune", "keep_last=1")
    assert f"remove {cycle1.id}" in out and f"remove {cycle2.id}" in out, out
    assert f"keep   {newest.id}" in out and "in the current cycle" in out
    left = {s.id for s in snapshots.all_sets(cplan.snapshots_dir, name) if s.complete}
    assert left == {newest.id}
    assert set(restic.Repo(cplan).sets()) == {newest.id}
    assert len(snapshots.safety_sets(cplan.snapshots_dir)) == 1  # the last rollback's: undo needs it
    assert not [t for t in docker_client.images.get(ids[0]).tags if t.startswith("undoit-pin/")]
    assert [t for t in docker_client.images.get(ids[1]).tags if t.startswith(f"undoit-pin/{name}:")]
    # everything else the kit keeps on the engine goes with `doit release` (asked first)
    out = doit(cplan_path, "release", ok=False)
    assert "pass yes=1" in out and len(snapshots.safety_sets(cplan.snapshots_dir)) == 1
    out = doit(cplan_path, "release", "yes=1")
    assert "released 1 safety set(s)" in out and not snapshots.safety_sets(cplan.snapshots_dir)
    assert not [t for i in ids for t in docker_client.images.get(i).tags if t.startswith("undoit-pin/")]
    for p in tmp_path.rglob("*"):
        if p.is_file() and p.name not in (".env", "restic-pw") and "restic" not in p.parts \
                and not p.name.endswith((".tar.zst", ".sqlite3")):
            data = p.read_bytes()
            assert CANARY.encode() not in data and PASSWORD.encode() not in data, p
