"""The README's "Use it on your project" steps, run as they are written, on a fresh
compose project of the test's own (an app and its Postgres), ending in a green rollback."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from scripts.repo import gitstate

from .conftest import KIT, sweep, unique
from .projects import app, compose_file, postgres

pytestmark = pytest.mark.docker

PROJECT = compose_file({"web": app(), "db": postgres("shop")}, volumes=["pgdata"])


def readme_steps() -> list[str]:
    text = (KIT / "README.md").read_text()
    block = re.search(r"<!-- adoption-steps[^>]*-->\s*```bash\n(.*?)```", text, re.S)
    assert block, "the README lost its adoption steps"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def readme_commands(project, env) -> list[str]:
    """The README's adoption lines after its `export`s, which go into env (for project)."""
    steps = readme_steps()
    exports = [s for s in steps if s.startswith("export ")]
    for s in exports:
        key, _, value = s[len("export "):].partition("=")
        env[key] = value.replace("/srv/shop", str(project))
    return steps[len(exports):]


def run(line: str, project, env) -> subprocess.CompletedProcess:
    line = line.replace("/srv/shop", str(project))
    return subprocess.run(["bash", "-c", line], cwd=KIT, env=env, capture_output=True, text=True, timeout=300)


def psql(project_name, sql):
    out = subprocess.run(["docker", "exec", f"{project_name}-db-1", "psql", "-U", "postgres", "-d", "shop", "-Atc",
                          sql], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_readme_adoption_steps_end_in_a_green_rollback(docker_client, kit_images, tmp_path):
    name = unique("shop")
    project = tmp_path / name
    project.mkdir()
    (project / "compose.yaml").write_text(PROJECT)
    (project / "shop.conf").write_text("release=1\n")
    gitstate.init(project, "the shop")
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNDOIT_")}
    env.update(CI="true", UNDOIT_IMAGE_PREFIX=os.environ.get("UNDOIT_IMAGE_PREFIX", "undoit"))
    try:
        subprocess.run(["docker", "compose", "up", "-d", "--wait"], cwd=project, env=env, check=True,
                       capture_output=True, timeout=120)
        psql(name, "create table orders(id int); insert into orders select generate_series(1, 10)")
        commands = readme_commands(project, env)
        backup_at = next(i for i, s in enumerate(commands) if s.endswith("doit backup"))
        for line in commands[:backup_at + 1]:
            res = run(line, project, env)
            assert res.returncode == 0, f"{line}\n{res.stdout[-2000:]}{res.stderr[-2000:]}"
        plan = (project / "phases.toml").read_text()
        assert "[volumes.pgdata]" in plan and "probe" in plan and f'name = "{name}"' in plan
        assert 'root = "."' in plan  # relative to the plan: a clone in another folder finds it
        # the change goes wrong: data lost, a release committed
        psql(name, "drop table orders")
        (project / "shop.conf").write_text("release=2\n")
        gitstate.run(project, "commit", "-qam", "release 2")
        for line in commands[backup_at + 1:]:
            res = run(line, project, env)
            assert res.returncode == 0, f"{line}\n{res.stdout[-2000:]}{res.stderr[-2000:]}"
        assert "outcome: success" in res.stdout, res.stdout[-2000:]
        assert psql(name, "select count(*) from orders") == "10"
        assert (project / "shop.conf").read_text() == "release=1\n"
    finally:
        sweep(docker_client, name)


def quiesce_of(plan_text: str) -> dict[str, str]:
    """Each [volumes.X]'s quiesce in a written plan."""
    import tomllib

    return {k: v["quiesce"] for k, v in tomllib.loads(plan_text)["volumes"].items()}


def test_plan_init_pauses_only_volumes_every_user_of_which_is_a_crash_safe_database():
    from scripts.stack import starter

    images = {"db": "undoit/postgres:15", "cache": "redis:7", "web": "undoit/app:latest", "ui": "mongo-express:1"}
    s = starter.Survey(services=sorted(images), profiled={}, images=images, replicas=dict.fromkeys(images, 1))
    s.databases = {svc: kind for svc in s.services
                   if (kind := starter.database({"image": s.images[svc], "command": ["--db", "postgres://db/x"]}))}
    s.volume_users = {"pgdata": ["db"], "cachedata": ["cache"], "shared": ["db", "web"], "uidata": ["ui"]}
    written = starter.render(s, Path("."), "shop")
    assert quiesce_of(written) == {"pgdata": "pause", "cachedata": "pause", "shared": "stop", "uidata": "stop"}
    assert "Postgres recovers from a crash" in written and "Redis recovers from a crash" in written


CANARY = "canary-Adopt-tok-8008"
# every trait of a project a new user brings, as it is: images whose healthchecks are their
# own (not in the compose file), a Redis with appendonly, an S3 store, a bind-mounted
# uploads folder, a healthcheck that reads a variable only the override file sets, a
# service under a profile, and a git-ignored .env that compose requires
TRAITS = {
    "compose.yaml": """\
services:
  db:
    image: ${UNDOIT_IMAGE_PREFIX:-undoit}/postgres:15
    pull_policy: never
    network_mode: none
    env_file: [{path: .env, required: true}]
    volumes: [pgdata:/var/lib/postgresql/data]
    stop_grace_period: 20s
  cache:
    image: ${UNDOIT_IMAGE_PREFIX:-undoit}/redis:7
    pull_policy: never
    network_mode: none
    volumes: [cachedata:/data]
  objects:
    image: ${UNDOIT_IMAGE_PREFIX:-undoit}/s3:latest
    pull_policy: never
    network_mode: none
    volumes: [objdata:/data]
  web:
    image: ${UNDOIT_IMAGE_PREFIX:-undoit}/app:latest
    pull_policy: never
    network_mode: none
    user: "0"
    volumes: [./uploads:/srv/uploads]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD-SHELL", "[ \\"$$MODE\\" = live ] && test -d /srv/uploads"]
      interval: 1s
  tools:
    image: ${UNDOIT_IMAGE_PREFIX:-undoit}/app:latest
    pull_policy: never
    network_mode: none
    profiles: [tools]
    stop_grace_period: 1s
volumes: {pgdata: {}, cachedata: {}, objdata: {}}
""",
    "compose.override.yaml": "services:\n  web:\n    environment: {MODE: live}\n",
    ".gitignore": ".env\nuploads/\n",
    "shop.conf": "release=1\n",
}


def test_a_project_with_every_trait_adopts_by_the_readme_and_rehearses_as_it_is(docker_client, kit_images,
                                                                               tmp_path):
    name = unique("shop")
    project = tmp_path / name
    for rel, text in TRAITS.items():
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    gitstate.init(project, "the shop")
    (project / ".env").write_text(f"POSTGRES_DB=shop\nAPI_TOKEN={CANARY}\n")  # git-ignored, required
    (project / "uploads").mkdir()
    (project / "uploads" / "logo.png").write_bytes(b"\x89PNG logo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNDOIT_")}
    env.update(CI="true", UNDOIT_IMAGE_PREFIX=os.environ.get("UNDOIT_IMAGE_PREFIX", "undoit"))
    compose = ["docker", "compose", "--project-name", name]
    try:
        subprocess.run([*compose, "up", "-d", "--wait"], cwd=project, env=env, check=True, capture_output=True,
                       timeout=180)
        subprocess.run([*compose, "--profile", "tools", "up", "-d", "tools"], cwd=project, env=env, check=True,
                       capture_output=True, timeout=120)  # the profile service runs throughout
        psql(name, "create table orders(id int); insert into orders select generate_series(1, 10)")
        outs, commands = {}, readme_commands(project, env)
        for line in commands:
            res = run(line, project, env)
            assert res.returncode == 0, f"{line}\n{res.stdout[-3000:]}{res.stderr[-2000:]}"
            outs[line] = res.stdout + res.stderr
        init = next(o for line, o in outs.items() if "plan:init" in line)
        for found in ("volume pgdata", "volume cachedata", "volume objdata", "bind-mounted data folder ./uploads",
                      "profile service tools", "git-ignored .env"):
            assert found in init, init
        written = (project / "phases.toml").read_text()
        assert "no healthcheck" not in written
        # Postgres and Redis recover from a crash: paused; the S3 store and the uploads stopped
        assert quiesce_of(written) == {"pgdata": "pause", "cachedata": "pause", "objdata": "stop", "uploads": "stop"}
        assert "outcome: success" in outs[commands[-1]], outs[commands[-1]][-3000:]
        # the full rollback passed with tools running, and left it so
        assert "Up" in subprocess.run([*compose, "--profile", "tools", "ps", "tools", "--format", "{{.Status}}"],
                                      cwd=project, env=env, capture_output=True, text=True).stdout
        # rehearsed as it is: the sandbox has the git-ignored .env compose requires
        res = run(".venv/bin/doit rehearse", project, env)
        assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
        reports = project / "reports"
        for p in [*reports.iterdir(), project / "ROLLBACK-LOG.md"]:
            assert CANARY not in p.read_text(errors="replace"), p
        assert CANARY not in res.stdout + res.stderr
        # a change already merged: its drill fails with one line naming the range to use
        gitstate.run(project, "checkout", "-q", "-b", "feature")
        (project / "shop.conf").write_text("release=2\n")
        gitstate.run(project, "commit", "-qam", "release 2")
        gitstate.run(project, "checkout", "-q", "main")
        gitstate.run(project, "merge", "-q", "--no-ff", "-m", "merge release 2", "feature")
        plan = (project / "phases.toml").read_text()
        plan = plan.replace('# [phase.change]\n# ref = "my-change-branch"', '[phase.change]\nref = "feature"', 1)
        (project / "phases.toml").write_text(plan)
        gitstate.run(project, "commit", "-qam", "the change of phase1")
        res = run(".venv/bin/doit rehearse only=phase1", project, env)
        assert res.returncode == 6, (res.stdout + res.stderr)[-3000:]
        assert "ref feature" in res.stdout and "applies nothing, its commits are already in HEAD" in res.stdout
        assert re.search(r'ref = "[0-9a-f]{12}\.\.feature"', res.stdout), res.stdout[-3000:]
    finally:
        sweep(docker_client, name)
