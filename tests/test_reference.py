"""The README's reference of step and check types is the registry's own, and every
example in it is a plan the loader takes (pure: no engine)."""

from __future__ import annotations

import re

from scripts.plan import plan as planmod
from scripts.plan import registry
from scripts.plan.registry import CHECKS, STEPS

from . import projects
from .conftest import KIT


def test_the_readme_reference_is_the_registrys():
    text = (KIT / "README.md").read_text()
    block = re.search(r"<!-- reference: [^>]*-->\n(.*?)<!-- /reference -->", text, re.S)
    assert block, "the README lost its reference of step and check types"
    assert block.group(1) == registry.reference(), "regenerate it: python -c 'from scripts.plan import registry; " \
                                                   "print(registry.reference())'"


def test_every_example_is_a_plan_the_loader_takes(tmp_path):
    steps = [STEPS[n].example for n in STEPS if STEPS[n].for_rollback]
    checks = [CHECKS[n].example for n in CHECKS]
    change = {"steps": [STEPS[n].example for n in STEPS if STEPS[n].for_change]}
    assert all(steps) and all(checks) and all(change["steps"])
    doc = projects.plan(["app", "db", "backend"], volumes={"pgdata": projects.volume("db"),
                                                          "cache": projects.volume("app")},
                        phases=[projects.phase("p1", "every example", steps=steps, checks=checks, change=change)],
                        project={"networks": ["legacy", "backend", "frontend"], "test_command": ["true"]})
    plan = planmod.load(projects.write_plan(tmp_path / "phases.toml", doc, "x", tmp_path), env={})
    p1 = plan.procedure("p1")
    assert [s.do for s in p1.steps] == [n for n in STEPS if STEPS[n].for_rollback]
    assert [c.check for c in p1.checks] == list(CHECKS)
