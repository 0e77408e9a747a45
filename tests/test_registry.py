"""One registry of step types and one of check types: the kit's own are all in it with the
keys and flags they always had, and a type no kit module knows (registered here, by
this test only) goes through the plan loader, the dry run, a phase's change and the
runner like any other."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scripts.backup import backup
from scripts.errors import UndoitError
from scripts.plan import plan as planmod
from scripts.plan.registry import CHECKS, STEPS, CheckType, Invalid, StepType
from scripts.rehearse import changes
from scripts.rollback import checks, rollback, runlog

from . import projects
from .conftest import KIT, MINI_COMPOSE, make_stack, sweep, unique

# the vocabulary as the kit had it before the registry (plan.STEP_KEYS, CHANGE_STEP_KEYS,
# CHECK_KEYS, steps.DESTRUCTIVE, steps.CHANGE_FILES): every type moved, none added
STEP_KEYS = {
    "stop": (set(), {"services"}),
    "down": (set(), {"services"}),
    "up": (set(), {"services", "timeout"}),
    "restart": (set(), {"services", "timeout"}),
    "restore-files": ({"paths"}, {"ref"}),
    "restore-volumes": ({"volumes"}, {"set"}),
    "remove-networks": ({"networks"}, set()),
    "create-networks": ({"networks"}, set()),
    "run": ({"argv"}, {"cwd", "env"}),
    "exec": ({"service", "argv"}, {"user"}),
    "note": ({"text"}, set()),
}
CHANGE_STEP_KEYS = {**{k: v for k, v in STEP_KEYS.items() if k not in ("restore-files", "restore-volumes", "note")},
                    "remove-volumes": ({"volumes"}, set())}
CHECK_KEYS = {
    "container-count": ({"expect"}, {"of"}),
    "healthy": (set(), {"services"}),
    "logs-clean": (set(), {"services", "pattern"}),
    "networks-exist": ({"networks"}, set()),
    "networks-absent": ({"networks"}, set()),
    "volume-matches": ({"volumes"}, {"ignore"}),
    "files-match": ({"paths"}, {"ref"}),
    "command": ({"argv"}, {"cwd", "expect"}),
    "exec": ({"service", "argv"}, {"expect", "user"}),
    "test": (set(), set()),
}


def _keys(registry, names):
    return {n: (set(registry[n].required), set(registry[n].optional)) for n in names}


def test_every_type_the_kit_had_is_registered_with_its_keys_and_flags():
    assert _keys(STEPS, STEPS.names(for_rollback=True)) == STEP_KEYS
    assert _keys(STEPS, STEPS.names(for_change=True)) == CHANGE_STEP_KEYS
    assert _keys(CHECKS, CHECKS) == CHECK_KEYS
    assert set(STEPS.names(destructive=True)) == {"down", "restore-files", "restore-volumes", "remove-networks"}
    assert set(STEPS.names(changes_files=True)) == {"restore-files", "run", "exec"}
    assert STEPS.names(runs_images=True) == ["up"]


def test_loading_a_plan_imports_no_docker_sdk():
    """The plan loader reads the registry, which imports the kit's step and check modules:
    they import what needs the engine when they run (`doit list` stays light)."""
    res = subprocess.run([sys.executable, "-c", (
        "import sys\n"
        "from scripts.plan import plan\n"
        f"assert len(plan.load({str(KIT / 'phases.toml')!r}, env={{}}).phases) == 11\n"
        "print(sorted(m for m in ('docker', 'requests', 'urllib3') if m in sys.modules))\n")],
        cwd=KIT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", res.stdout


def test_a_name_is_one_type():
    class Other(StepType):
        name = "stop"

    class Both(CheckType):
        name = "both-ways"
        required = frozenset({"x"})
        optional = frozenset({"x"})

    with pytest.raises(ValueError, match="registered already"):
        STEPS.register(Other)
    with pytest.raises(TypeError, match="both required and optional"):
        CHECKS.register(Both)
    with pytest.raises(TypeError, match="not a CheckType"):
        CHECKS.register(Other)
    assert type(STEPS["stop"]).__name__ == "Stop" and "both-ways" not in CHECKS


# ---------------------------------------------------------------- a type of the test's own

def _project_file(args: dict) -> None:
    file = args["file"]
    if not isinstance(file, str) or not file or file.startswith("/") or ".." in file.split("/"):
        raise Invalid("file", "a file of the project, relative to its root")


class Echo(StepType):
    """Writes `text` into `file` of the project (a rollback's and a change's)."""

    name = "echo"
    required = frozenset({"text", "file"})
    changes_files = True
    for_change = True

    def validate(self, args):
        _project_file(args)

    def describe(self, run, step):
        return f"$ echo {step.args['text']!r} > {step.args['file']}"

    def act(self, ctx, step):
        (ctx.plan.root / step.args["file"]).write_text(step.args["text"] + "\n")
        return f"wrote {step.args['file']}"


class FileSays(CheckType):
    """A file of the project holds `text` (one line)."""

    name = "file-says"
    required = frozenset({"file", "text"})

    def validate(self, args):
        _project_file(args)

    def describe(self, ctx, check):
        return f"{check.args['file']} says {check.args['text']!r}"

    def run(self, ctx, check):
        path = ctx.plan.root / check.args["file"]
        said = path.read_text().strip() if path.exists() else None
        return said == check.args["text"], f"{check.args['file']} says {said!r}"


@pytest.fixture
def echo_types():
    STEPS.register(Echo)
    CHECKS.register(FileSays)
    try:
        yield
    finally:
        STEPS.unregister(Echo.name)
        CHECKS.unregister(FileSays.name)


ECHO_PLAN = """\
[project]
name = "{name}"
root = "{root}"
services = ["store", "app"]

[backup]
snapshots = "{snapshots}"

[[phase]]
id = "p1"
title = "a step no kit module knows"
steps = [{{ do = "echo", text = "rolled back", file = "echo.txt" }}]
checks = [{{ check = "file-says", file = "echo.txt", text = "rolled back" }}]
[phase.change]
steps = [{{ do = "echo", text = "changed", file = "echo.txt" }}]

[full]
title = "everything"
steps = [{{ do = "restore-files", paths = ["."] }}]
"""


def _load(tmp_path, text: str):
    path = tmp_path / "phases.toml"
    path.write_text(text.format(name="x", root=tmp_path, snapshots=tmp_path / "snapshots"))
    return planmod.load(path, env={})


def test_the_plan_loader_knows_a_registered_type_and_its_own_checks(tmp_path, echo_types):
    plan = _load(tmp_path, ECHO_PLAN)
    p1 = plan.procedure("p1")
    assert p1.steps[0].type is STEPS["echo"] and p1.change.steps[0].args["text"] == "changed"
    assert p1.checks[0].type is CHECKS["file-says"] and p1.checks[0].name == "file-says"
    for old, new, needle in [
        ('file = "echo.txt" }}]\nchecks', 'file = "/etc/passwd" }}]\nchecks',
         "[phase.p1 step 1] file: a file of the project"),
        ('text = "rolled back" }}]\n[phase', 'text = "rolled back", loud = true }}]\n[phase',
         "[phase.p1 check 1] loud: unknown key (allowed: check, file, name, text)"),
        ('do = "echo", text = "changed"', 'do = "echo", text = ""', "[phase.p1.change step 1] text: must not be empty"),
    ]:
        assert old in ECHO_PLAN, old
        with pytest.raises(UndoitError) as info:
            _load(tmp_path, ECHO_PLAN.replace(old, new, 1))
        assert needle in str(info.value) and info.value.exit_code == 2, str(info.value)


def test_an_unregistered_type_is_unknown_to_the_plan(tmp_path):
    with pytest.raises(UndoitError, match=r"\[phase.p1 step 1\] do: unknown type 'echo' \(known: stop, "):
        _load(tmp_path, ECHO_PLAN)


@pytest.mark.docker
def test_a_registered_type_runs_in_the_dry_run_a_change_and_the_runner(docker_client, kit_images, tmp_path,
                                                                      echo_types, capsys):
    name = unique()
    try:
        echo_plan = projects.plan(["store", "app"], phases=[projects.phase(
            "p1", "a step no kit module knows", steps=[projects.do("echo", text="rolled back", file="echo.txt")],
            checks=[projects.check("file-says", file="echo.txt", text="rolled back")],
            change={"steps": [projects.do("echo", text="changed", file="echo.txt")]})])
        plan = make_stack(name, tmp_path, MINI_COMPOSE, echo_plan)
        echo = plan.root / "echo.txt"
        backup.backup(plan)

        capsys.readouterr()
        assert rollback.execute(plan, "p1", dry_run=True)["outcome"] == "dry-run"
        out = capsys.readouterr().out
        assert "  1. $ echo 'rolled back' > echo.txt" in out, out
        assert "check: file-says: echo.txt says 'rolled back'" in out, out
        assert not echo.exists()

        changes.apply_all(plan, changes.phases_of(plan, plan.procedure("p1")))  # the change's own context
        assert echo.read_text() == "changed\n"
        run = rollback.prepare(plan, "p1", dry_run=True, yes=True)
        felt = checks.run_now(run.ctx, run.proc.checks)
        assert [(r.ok, r.reason) for r in felt] == [(False, "echo.txt says 'changed'")]

        rec = rollback.execute(plan, "p1", yes=True, reason="a type of the test's own")
        assert rec["outcome"] == "success", rec
        assert echo.read_text() == "rolled back\n"
        assert [(s["do"], s["detail"]) for s in rec["steps"]] == [("echo", "wrote echo.txt")]
        assert rec["checks"][0]["ok"] and rec["checks"][0]["check"] == "file-says"
        assert runlog.record(plan, rec["run"])["steps"] == rec["steps"]
    finally:
        sweep(docker_client, name)


def test_a_record_has_its_end_only_once_closed():
    """Closing keys (services, failed_step, seconds, finished, next_steps) appear when the
    run ends: a record without them is of a run under way or one that died."""
    rec = runlog.Record(run="r", kind="phase", procedure="p1", title="t", reason="", host="h", user="u",
                        started="s", project="x", engine="unix:///e", ref="HEAD", ref_source="plan ref",
                        snapshot_set=None, snapshot_source="", head_before="0" * 40, running_before=[],
                        rolls_back=["p1"], keeps=[], runbook_minutes=None)
    opened = rec.as_dict()
    assert opened["outcome"] == "running" and opened["at_step"] == 0 and "finished" not in opened
    assert not set(runlog.CLOSING) & set(opened)
    rec.close(outcome="success", services="as the plan left them", failed_step=None, seconds=1.5, next_steps=("a",))
    closed = rec.as_dict()
    assert closed["failed_step"] is None and closed["seconds"] == 1.5 and closed["next_steps"] == ["a"]
    assert closed["finished"] and set(closed) == set(opened) | set(runlog.CLOSING)
