"""A phase's change, applied in a rehearsal's sandbox: its commits, then its steps.

The commits are cherry-picked onto the sandbox's HEAD as they are (a phase of two
commits stays two, so a plan that assumed one, the runbook's `HEAD~1`, fails its drill
as it would fail for real); a range holding merges is applied as one three-way diff
instead. A change that no longer fits HEAD fails with the files in conflict, and the
worktree is put back as it was. The steps then bring the sandbox's stack in line, as
the team would after merging.

The kit runs this only in a sandbox (tests also apply it to throwaway copies of a stack).
Each step runs by its type (plan/registry.py: `apply`), with the plan's StackContext.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UndoitError
from ..plan.plan import Plan, Procedure
from ..repo import gitstate
from ..rollback.context import StackContext


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
    the phases it rolls back (or its `rehearse_changes`); for the full rollback every
    phase; in plan order."""
    if proc.kind == "phase":
        return [proc] if proc.change else []
    if proc.kind == "scenario":
        wanted = set(proc.rolls_back if proc.rehearse_changes is None else proc.rehearse_changes)
    else:
        wanted = {p.id for p in plan.phases}
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


def _merged_range(root: Path, ref: str, tip: str) -> str:
    """The range A..ref that holds a change already merged into HEAD: from where it forked
    off the branch it was merged into (found by the merge commit), else its last commit."""
    for merge in gitstate.run(root, "rev-list", "--merges", "--first-parent", "HEAD").split():
        parents = gitstate.run(root, "rev-list", "--parents", "-n", "1", merge).split()[1:]
        if tip in parents[1:]:
            return f"{gitstate.run(root, 'merge-base', parents[0], tip)[:12]}..{ref}"
    return f"{ref}~1..{ref}"


def _git(root: Path, *args: str, stdin: bytes | None = None) -> bytes:
    res = subprocess.run(["git", "-C", str(root), *args], input=stdin, capture_output=True)
    if res.returncode != 0:
        lines = res.stderr.decode(errors="replace").strip().splitlines()
        raise UndoitError(lines[-1] if lines else f"git {args[0]} exit {res.returncode}")
    return res.stdout


def apply_files(tree: Path, root: Path, phase: Procedure) -> tuple[str, int]:
    """The change's commits on the worktree's HEAD; (new HEAD, files changed)."""
    before = gitstate.head(tree)
    if not phase.change.ref:
        return before, 0
    base, tip = _range(root, phase.change.ref)
    span = f"{base}..{tip}"
    if gitstate.run(tree, "rev-list", "--count", span) == "0":
        # its commits are in HEAD already (merged): applying them would change nothing,
        # and the drill would "roll back" a change it never made
        raise UndoitError(f"change of {phase.id}: ref {phase.change.ref} ({tip[:12]}) applies nothing, its commits "
                          f"are already in HEAD ({gitstate.head(root)[:12]}); name the change as a range: "
                          f'ref = "{_merged_range(root, phase.change.ref, tip)}"')
    try:
        if gitstate.run(tree, "rev-list", "--merges", span):
            _git(tree, "apply", "--3way", "--index", "--whitespace=nowarn",
                 stdin=_git(tree, "diff", "--binary", "--full-index", base, tip))
            if gitstate.run(tree, "diff", "--cached", "--name-only"):
                gitstate.run(tree, "commit", "--quiet", "--no-verify", "-m",
                             f"{phase.id}: change {phase.change.ref} (as one diff: it holds merges)")
        else:
            gitstate.run(tree, "cherry-pick", "--allow-empty", "--keep-redundant-commits", span)
    except UndoitError as err:
        conflicts = gitstate.run(tree, "diff", "--name-only", "--diff-filter=U").split()
        try:
            gitstate.run(tree, "cherry-pick", "--abort")
        except UndoitError:
            pass  # it was the diff, or nothing was started
        gitstate.run(tree, "reset", "--hard", "--quiet", before)
        why = f"conflict in {', '.join(conflicts)}" if conflicts else str(err)
        raise UndoitError(f"change of {phase.id} ({phase.change.ref}) does not apply to HEAD: {why}") from None
    return gitstate.head(tree), len(gitstate.run(tree, "diff", "--name-only", before, "HEAD").splitlines())


def run_steps(ctx: StackContext, phase: Procedure) -> None:
    """The change's steps on the sandbox's stack. `up` and `restart` do not wait for health:
    breaking it may be the change, and the checks read afterwards are how that shows."""
    for i, step in enumerate(phase.change.steps, 1):
        try:
            step.type.apply(ctx, step)
        except UndoitError as err:
            raise UndoitError(f"change of {phase.id}, step {i} ({step.do}): {err}") from None


def settle(phases: list[Procedure]) -> None:
    """Once all changes are in: the longest settle any of them asks for, so healthchecks
    that read files live have noticed before the checks are read."""
    longest = max((p.change.settle for p in phases), default=0)
    if longest:
        time.sleep(longest)


def context(plan: Plan, phase: Procedure) -> StackContext:
    """What a change's steps run with: the plan's compose, engine and timeouts; no set (a
    change restores nothing), so no backup is needed to apply one."""
    return StackContext.of(plan, phase)


def apply_all(plan: Plan, phases: list[Procedure]) -> list[Applied]:
    """Apply the changes of phases to plan's project (its worktree and stack), in order,
    then settle once."""
    done = [apply(plan.root, plan.root, context(plan, phase), phase) for phase in phases]
    settle(phases)
    return done


def apply(tree: Path, root: Path, ctx: StackContext, phase: Procedure) -> Applied:
    """Apply one phase's change in the sandbox (files, then steps)."""
    tip, files = apply_files(tree, root, phase)
    run_steps(ctx, phase)
    return Applied(phase.id, tip, files, len(phase.change.steps))


def reapply(tree: Path, ctx: StackContext, phase: Procedure, applied: Applied) -> None:
    """After the rollback: the change's files as they were applied, and its steps again.
    What fails here is something the rollback left that blocks going forward."""
    gitstate.run(tree, "reset", "--hard", "--quiet", applied.tip)
    run_steps(ctx, phase)


