"""A canary secret in every form never appears in anything the kit writes or prints:
stdout, the rollback log, the reports, every file of every snapshot set."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from scripts.plan import plan as planmod
from scripts.stack.compose import for_plan

from .conftest import KIT, sweep, unique
from .projects import app, check, compose_file, do, full, healthy_when, lay_out, phase, plan, volume, write_plan

pytestmark = pytest.mark.docker

CANARIES = {
    "env_secret": "canary-envkey-7f3a91",        # .env, a secret-looking key
    "url_password": "canary-urlpw-55c1e2",      # the password of a URL in .env
    "env_file": "canary-envfile-a0b9d4",        # a service's env_file, any key
    "secret_file": "canary-secretfile-3e8d20",  # a compose secrets: file
}

COMPOSE = compose_file({"worker": app(
    env_file=["worker.env"], secrets=["apikey"],
    # interpolated into a command, a healthcheck and a label: stored in compose config
    command=["sh", "-c", "echo starting with ${API_SECRET}; exec idle"], labels={"db.url": "${DATABASE_URL}"},
    volumes=["work:/work"], healthcheck=healthy_when("sh", "-c", "test -n '${API_SECRET}'"))},
    secrets={"apikey": {"file": "./creds/api.key"}}, volumes=["work"])

PLAN = plan(["worker"], volumes={"work": volume("worker")}, phases=[
    phase("broken", "a step that prints a database URL and fails", [do("restore-files", paths=["."]), do("run", argv=[
        "sh", "-c", f"echo connecting to postgres://app:{CANARIES['url_password']}@otherhost:5432/x >&2; exit 1"])])],
    full=full([do("stop"), do("restore-volumes", volumes=["work"]), do("up")],
              [check("exec", service="worker", argv=["sh", "-c", "cat /run/secrets/apikey; env"])]))


def test_a_canary_in_every_form_is_masked_everywhere(docker_client, kit_images, tmp_path):
    name = unique("sec")
    root = lay_out(tmp_path / "proj", {
        "compose.yaml": COMPOSE,
        ".env": f"API_SECRET={CANARIES['env_secret']}\n"
                f"DATABASE_URL=postgres://app:{CANARIES['url_password']}@db:5432/app\n",
        "worker.env": f"WORKER_SETTING={CANARIES['env_file']}\n",
        "creds/api.key": CANARIES["secret_file"] + "\n",
        ".gitignore": ".env\n"}, "worker")
    plan = planmod.load(write_plan(tmp_path / "plan.toml", PLAN, name, root, kept=tmp_path, log="LOG.md"), env={})
    env = dict(os.environ, UNDOIT_PLAN=str(tmp_path / "plan.toml"), CI="true")
    doit = [sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "-d", str(KIT)]
    try:
        for_plan(plan).up(wait_timeout=60)
        outputs = []
        for args in (["backup"], ["rollback:broken"], ["rollback:full"], ["snapshots"], ["verify"]):
            res = subprocess.run(doit + args, env=env, capture_output=True, text=True, timeout=300)
            outputs.append(res.stdout + res.stderr)
        assert "exit 1" in outputs[1] and "Traceback" not in "".join(outputs)
        written = [p for base in (tmp_path / "snapshots", tmp_path / "reports") for p in base.rglob("*")
                   if p.is_file() and not p.name.endswith((".tar.zst",))]
        written.append(tmp_path / "LOG.md")
        config = next(p for p in written if p.name == "compose-config.json").read_text()
        assert "echo starting with ***" in config  # the value was there, and is masked
        assert "postgres://app:***@otherhost" in (tmp_path / "LOG.md").read_text()
        for what, canary in CANARIES.items():
            for text in outputs:
                assert canary not in text, (what, text[-1500:])
            for p in written:
                assert canary.encode() not in p.read_bytes(), (what, p)
    finally:
        sweep(docker_client, name)
