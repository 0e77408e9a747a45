"""Canary secrets in .env and secrets/ never leave the kit, in any form: whole, cut, JSON-
escaped, URL-encoded or XML-escaped, in stdout, stderr, the reports (JSON, JUnit XML,
the rehearsal's log), the rollback log and the run records. Checks that print them (a
failing rollback's, a failing rehearsal's, run on the sandbox) are the hard case: their
output is cut to one line, and a cut made before the masking leaves a secret's start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import errors
from scripts.store import snapshots
from scripts.plan import plan as planmod
from scripts.stack.compose import for_plan

from .conftest import KIT, sweep, unique, volume_path
from .projects import MINI_COMPOSE, MINI_PLAN, check, do, lay_out, more, phase, write_plan
from .test_redact import written_forms

pytestmark = pytest.mark.docker

# each changed by every escaping: a quote, &, <, >, a space, /, +, %, non-ASCII
CANARIES = {
    ".env API_TOKEN": 'tok"N4&q<Zr> 8/w+J%u2\u00e9',
    ".env SMTP_PASSWORD": 'Sm7P"q&w<x> Y/z+K%e9\u00e9',
    "secrets/db_password": 'Db5"Hx&k<3Ve> /p+R%7\u00fc',
}

# prints every value of the live project's .env and secrets/ in every form, after 150
# characters (a cut at 160 falls inside each); the last line of stderr is what a failed
# command's reason shows. `ok` ends with exit 0 (an expect that fails shows the output's end)
LEAK = """\
import html, json, sys
from pathlib import Path
from urllib.parse import quote, quote_plus
root = Path(sys.argv[1])
values = [line.split("=", 1)[1].strip("'") for line in (root / ".env").read_text().splitlines() if "=" in line]
values += [p.read_text().strip() for p in sorted((root / "secrets").iterdir())]
pad = "x" * 150
for v in values:
    for form in (v, json.dumps(v)[1:-1], quote(v, safe=""), quote_plus(v), html.escape(v)):
        print(pad + form)
        print(pad + form, file=sys.stderr)
print(pad + values[0], file=sys.stderr)
sys.exit(0 if sys.argv[2:] == ["ok"] else 1)
"""

# an exec check whose failure (compose's last lines of stderr) runs past 600 characters
EXEC = r"head -c 590 /dev/zero | tr '\0' x >&2; cat /files/leak.txt >&2; exit 3"


def leaky(tmp: Path, root: Path) -> dict:
    """The mini stack's plan, sending sets offsite, with one phase: a rollback whose checks
    print the project's secrets."""
    leak = ["python3", f"{tmp}/leak.py", str(root)]
    return more(MINI_PLAN, offsite={"repository": f"{tmp}/restic", "password_file": f"{tmp}/restic-password"},
                phase=[phase("leaky", "a rollback whose checks print the project's secrets",
                             [do("restore-files", paths=["config.txt"])], [
                                 check("command", name="failing command", argv=leak),
                                 check("command", name="unexpected output", argv=[*leak, "ok"], expect="x"),
                                 check("exec", name="failing exec", service="app", argv=["sh", "-c", EXEC])])])


def forms(value: str) -> set[str]:
    return set(written_forms(value))


WINDOW = 8  # any 8 characters of a form in a row count as a leak: a cut one too


def pieces() -> dict[str, str]:
    """Every WINDOW-long piece of every form of every canary -> which canary and form."""
    out = {}
    for what, value in CANARIES.items():
        for form in forms(value):
            for i in range(len(form) - WINDOW + 1):
                out[form[i:i + WINDOW]] = f"{what} as {form!r}"
    return out


def leaks(text: str, where: str) -> list[str]:
    return [f"{where}: {piece!r} of {what}" for piece, what in pieces().items() if piece in text]


def project(tmp: Path, name: str) -> Path:
    root = lay_out(tmp / "proj", {
        "docker-compose.yml": MINI_COMPOSE, "config.txt": "v1\n",
        ".env": f"API_TOKEN='{CANARIES['.env API_TOKEN']}'\nSMTP_PASSWORD='{CANARIES['.env SMTP_PASSWORD']}'\n",
        "secrets/db_password": CANARIES["secrets/db_password"] + "\n", ".gitignore": ".env\nsecrets/\n"})
    (tmp / "leak.py").write_text(LEAK)
    (tmp / "restic-password").write_text("canary-restic-pw-91c3\n")
    return write_plan(tmp / "phases.toml", leaky(tmp, root), name, root, kept=tmp)


@pytest.mark.long(2)
def test_no_form_of_a_secret_leaves_the_kit(docker_client, kit_images, tmp_path):
    name = unique("canary")
    plan = planmod.load(project(tmp_path, name), env={})
    env = dict(os.environ, UNDOIT_PLAN=str(plan.path), CI="true")
    said: dict[str, str] = {}

    def doit(*args, code=0):
        res = subprocess.run([sys.executable, "-m", "doit", "-f", str(KIT / "dodo.py"), "-d", str(KIT), *args],
                             env=env, capture_output=True, text=True, timeout=600)
        said[" ".join(args)] = res.stdout + res.stderr
        assert res.returncode == code, (args, (res.stdout + res.stderr)[-3000:])
        return res.stdout + res.stderr

    try:
        for_plan(plan).up(wait_timeout=60)
        leak = "\n".join("x" * 150 + f for v in CANARIES.values() for f in sorted(forms(v)))
        (volume_path(docker_client, plan, "files") / "leak.txt").write_text(leak + "\n")
        doit("backup")
        doit("offsite", "init=1")
        doit("verify")
        out = doit("rollback:leaky", "yes=1", code=errors.ROLLBACK_FAILED)
        assert "3 check(s) failed" in out and "***" in out  # the checks printed them: masked
        assert "the state from before it is back (proven)" in out  # its own put-back said its piece too
        doit("rollback:leaky", "yes=1", "keep=1", code=errors.ROLLBACK_FAILED)  # its half state, for undo
        doit("undo")
        out = doit("rehearse", code=errors.DRILL_FAILED)
        assert "FAIL leaky: failing command: exit 1: " in out and "***" in out
        doit("snapshots")
        doit()  # a bare `doit`: what the plan holds
        baseline = snapshots.latest_complete(plan.snapshots_dir, plan.project_name)
        shutil.rmtree(baseline.path)  # brought back from the repository
        doit("fetch", f"set={baseline.id}")
    finally:
        sweep(docker_client, name)
    written = [p for base in (tmp_path / "reports", tmp_path / "snapshots" / "runs") for p in base.rglob("*")
               if p.is_file()] + [tmp_path / "ROLLBACK-LOG.md"]
    kinds = {p.suffix for p in written}
    assert {".json", ".xml", ".log", ".md"} <= kinds, kinds  # the rehearsal's three reports, the run's, the log
    found = [hit for cmd, text in said.items() for hit in leaks(text, f"doit {cmd}")]
    found += [hit for p in written for hit in leaks(p.read_text(errors="replace"), str(p))]
    assert found == [], found[:20]
    assert len(pieces()) > 300  # what was looked for: 3 canaries, 9 forms each, every 8 characters of them
