"""A phase's change, applied in a rehearsal's sandbox: its commits, then its steps.

The commits are taken as one difference (`git diff BASE TIP`, BASE = HEAD for a plain
ref) applied three-way onto the sandbox's worktree and committed there: a branch with
merges or a range from the middle of a longer history applies the same way, and a
change that no longer fits HEAD fails with git's own words instead of half-applying.
The steps then bring the sandbox's stack in line, as the team would after merging.

Only ever run against a sandbox: nothing here looks at the live project.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import gitstate, steps
from .errors import UndoitError
from .plan import Plan, Procedure, Step


@dataclass
class Applied:
    """What applying one phase's change did: its commit in the sandbox (to re-apply)."""

    phase: str
    tip: str  # the sandbox's HEAD once the change's files are in
    files: int
    steps: int

    def line(self) -> str:
        return f"{self.phase}: {self.files} file(s), {self.steps} step(s)"


def phases_of(plan: Plan, proc: Procedure) -> list[Procedure]:
    """The phases whose changes a drill of proc applies: the phase itself; for a scenario
    the phases it rolls back; for the full rollback every phase; in plan order."""
    if proc.kind == "phase":
        return [proc] if proc.change else []
    wanted = set(proc.rolls_back) if proc.kind == "scenario" else {p.id for p in plan.phases}
    return [p for p in plan.phases if p.change and p.id in wanted]


def _range(root: Path, ref: str) -> tuple[str, str]:
    """(base, tip) commits: for a plain ref the base is where it forked from HEAD, so
    commits HEAD gained since are not undone by the change."""
    base, tip = ref.split("..", 1) if ".." in ref else ("HEAD", ref)
    for r in (base, tip):
        if not gitstate.ref_exists(root, r):
            raise UndoitError(f"ref {r} does not exist in the project's repository")
    tip = gitstate.run(root, "rev-parse", "--verify", tip + "^{commit}")
    if ".." not in ref:
        return gitstate.run(root, "merge-base", "HEAD", tip), tip
    return gitstate.run(root, "rev-parse", "--verify", base + "^{commit}"), tip


def _git(root: Path, *args: str, stdin: bytes | None = None) -> bytes:
    res = subprocess.run(["git", "-C", str(root), *args], input=stdin, capture_output=True)
    if res.returncode != 0:
        lines = res.stderr.decode(errors="replace").strip().splitlines()
        raise UndoitError(lines[-1] if lines else f"git {args[0]} exit {res.returncode}")
    return res.stdout


def apply_files(tree: Path, root: Path, phase: Procedure) -> tuple[str, int]:
    """The change's commits as one commit on the sandbox's HEAD; (new HEAD, files changed)."""
    if not phase.change.ref:
        return gitstate.head(tree), 0
    base, tip = _range(root, phase.change.ref)
    patch = _git(tree, "diff", "--binary", "--full-index", "--no-renames", base, tip)
    if not patch.strip():
        return gitstate.head(tree), 0
    files = len(_git(tree, "diff", "--name-only", "--no-renames", base, tip).splitlines())
    try:
        _git(tree, "apply", "--3way", "--index", "--whitespace=nowarn", stdin=patch)
    except UndoitError as err:
        gitstate.run(tree, "reset", "--hard", "--quiet", "HEAD")
        raise UndoitError(f"change of {phase.id} ({phase.change.ref}) does not apply to HEAD: {err}") from None
    if not gitstate.run(tree, "diff", "--cached", "--name-only"):
        return gitstate.head(tree), 0  # HEAD already holds it
    gitstate.run(tree, "commit", "--quiet", "--no-verify", "-m",
                 f"{phase.id}: change {phase.change.ref}, applied by undoit rehearse")
    return gitstate.head(tree), files


def run_steps(run, phase: Procedure) -> None:
    """The change's steps on the sandbox's stack. `up` and `restart` do not wait for health:
    breaking it may be the change, and the checks read afterwards are how that shows."""
    for i, step in enumerate(phase.change.steps, 1):
        try:
            _step(run, step)
        except UndoitError as err:
            raise UndoitError(f"change of {phase.id}, step {i} ({step.do}): {err}") from None
    if phase.change.settle:
        time.sleep(phase.change.settle)


def _step(run, step: Step) -> None:
    svcs = list(step.args.get("services") or [])
    if step.do == "up":
        # --remove-orphans: a change that removes a service takes its container away
        run.compose("up", "--detach", "--remove-orphans", *svcs, timeout=int(step.args.get("timeout", run.up_timeout)))
    elif step.do == "restart":
        run.compose.restart(svcs)
    elif step.do == "remove-volumes":
        for key in step.args["volumes"]:
            for v in run.client.volumes.list(filters={"label": [f"com.docker.compose.project={run.plan.project_name}",
                                                                  f"com.docker.compose.volume={key}"]}):
                try:
                    v.remove(force=True)
                except Exception as err:  # docker.errors.APIError: in use
                    raise UndoitError(f"removing volume {v.name}: {err}") from None
    else:
        steps.execute(run, step)


def apply(tree: Path, root: Path, run, phase: Procedure) -> Applied:
    """Apply one phase's change in the sandbox (files, then steps)."""
    tip, files = apply_files(tree, root, phase)
    run_steps(run, phase)
    return Applied(phase.id, tip, files, len(phase.change.steps))


def reapply(tree: Path, run, phase: Procedure, applied: Applied) -> None:
    """After the rollback: the change's files as they were applied, and its steps again.
    What fails here is something the rollback left that blocks going forward."""
    gitstate.run(tree, "reset", "--hard", "--quiet", applied.tip)
    run_steps(run, phase)
