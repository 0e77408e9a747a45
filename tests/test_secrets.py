"""A canary secret in every form never appears in anything the kit writes or prints:
stdout, the rollback log, the reports, every file of every snapshot set."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from scripts.repo import gitstate
from scripts.plan import plan as planmod
from scripts.stack.compose import for_plan

from .conftest import KIT, sweep, unique

pytestmark = pytest.mark.docker

CANARIES = {
    "env_secret": "canary-envkey-7f3a91",        # .env, a secret-looking key
    "url_password": "canary-urlpw-55c1e2",      # the password of a URL in .env
    "env_file": "canary-envfile-a0b9d4",        # a service's env_file, any key
    "secret_file": "canary-secretfile-3e8d20",  # a compose secrets: file
}

COMPOSE = """\
services:
  worker:
    image: ${UNDOIT_IMAGE_PREFIX:-undoit}/app:latest
    pull_policy: never
    network_mode: none
    env_file: [worker.env]
    secrets: [apikey]
    # interpolated into a command, a healthcheck and a label: stored in compose config
    command: ["sh", "-c", "echo starting with ${API_SECRET}; exec idle"]
    labels: {db.url: "${DATABASE_URL}"}
    volumes: [work:/work]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "sh", "-c", "test -n '${API_SECRET}'"]
      interval: 1s
secrets:
  apikey: {file: ./creds/api.key}
volumes:
  work: {}
"""

PLAN = """\
[project]
name = "{name}"
root = "{root}"
services = ["worker"]
log = "{tmp}/LOG.md"
reports = "{tmp}/reports"

[backup]
snapshots = "{tmp}/snapshots"

[volumes.work]
services = ["worker"]

[[phase]]
id = "broken"
title = "a step that prints a database URL and fails"
steps = [
  {{ do = "restore-files", paths = ["."] }},
  {{ do = "run", argv = ["sh", "-c", "echo connecting to postgres://app:{url}@otherhost:5432/x >&2; exit 1"] }},
]

[full]
title = "everything"
steps = [{{ do = "stop" }}, {{ do = "restore-volumes", volumes = ["work"] }}, {{ do = "up" }}]
checks = [{{ check = "exec", service = "worker", argv = ["sh", "-c", "cat /run/secrets/apikey; env"] }}]
"""


def test_a_canary_in_every_form_is_masked_everywhere(docker_client, kit_images, tmp_path):
    name = unique("sec")
    root = tmp_path / "proj"
    (root / "creds").mkdir(parents=True)
    (root / "compose.yaml").write_text(COMPOSE)
    (root / ".env").write_text(f"API_SECRET={CANARIES['env_secret']}\n"
                               f"DATABASE_URL=postgres://app:{CANARIES['url_password']}@db:5432/app\n")
    (root / "worker.env").write_text(f"WORKER_SETTING={CANARIES['env_file']}\n")
    (root / "creds" / "api.key").write_text(CANARIES["secret_file"] + "\n")
    (root / ".gitignore").write_text(".env\n")
    gitstate.init(root, "worker")
    (tmp_path / "plan.toml").write_text(PLAN.format(name=name, root=root, tmp=tmp_path, url=CANARIES["url_password"]))
    plan = planmod.load(tmp_path / "plan.toml", env={})
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
