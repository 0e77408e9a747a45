"""The README's "Use it on your project" steps, run as they are written, on a fresh
compose project of the test's own (an app and its Postgres), ending in a green rollback."""

from __future__ import annotations

import os
import re
import subprocess

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
        steps = readme_steps()
        exports = [s for s in steps if s.startswith("export ")]
        for s in exports:
            key, _, value = s[len("export "):].partition("=")
            env[key] = value.replace("/srv/shop", str(project))
        backup_at = next(i for i, s in enumerate(steps) if s.endswith("doit backup"))
        for line in steps[len(exports):backup_at + 1]:
            res = run(line, project, env)
            assert res.returncode == 0, f"{line}\n{res.stdout[-2000:]}{res.stderr[-2000:]}"
        plan = (project / "phases.toml").read_text()
        assert "[volumes.pgdata]" in plan and "probe" in plan and f'name = "{name}"' in plan
        assert 'root = "."' in plan  # relative to the plan: a clone in another folder finds it
        # the change goes wrong: data lost, a release committed
        psql(name, "drop table orders")
        (project / "shop.conf").write_text("release=2\n")
        gitstate.run(project, "commit", "-qam", "release 2")
        for line in steps[backup_at + 1:]:
            res = run(line, project, env)
            assert res.returncode == 0, f"{line}\n{res.stdout[-2000:]}{res.stderr[-2000:]}"
        assert "outcome: success" in res.stdout, res.stdout[-2000:]
        assert psql(name, "select count(*) from orders") == "10"
        assert (project / "shop.conf").read_text() == "release=1\n"
    finally:
        sweep(docker_client, name)
