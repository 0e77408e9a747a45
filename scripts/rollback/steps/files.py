"""The restore-files step: the project's files as a ref has them, every file it
overwrites, removes or moves aside kept first for `doit undo`."""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import UndoitError
from ...plan.registry import STEPS, StepType
from ...repo import gitstate


@STEPS.register
class RestoreFiles(StepType):
    name = "restore-files"
    summary = "put paths back as the set's commit (or ref) has them, no overlay: added files removed, untracked ones moved aside, all overwritten files saved first"
    example = {"do": "restore-files", "paths": ["config/", "compose.yaml"]}
    required = frozenset({"paths"})
    optional = frozenset({"ref"})
    destructive = True
    changes_files = True

    def describe(self, run, step):
        a, ref = step.args, step.args.get("ref") or run.ctx.ref
        try:
            # kept for execute: the plan described is the plan carried out (and git runs once)
            p = self._plan(run, step, ref, keep=True)
            what = (f"{len(p['checkout'])} file(s) from {ref}, {len(p['changed'])} overwritten or removed "
                    f"(copied to the safety area first), {len(p['remove'])} added since removed, "
                    f"{len(p['move'])} untracked moved aside")
        except UndoitError as err:
            what = f"cannot plan: {err}"
        return f"$ git checkout {ref} -- {' '.join(a['paths'])}   (no overlay: {what})"

    def execute(self, run, step):
        a, ref, plan = step.args, step.args.get("ref") or run.ctx.ref, run.ctx.plan
        p = self._plan(run, step, ref, keep=False)
        # on record before a file is touched: undo after a kill here puts back what was saved
        run.record.file_restores.append({"step": run.step_index(step), "ref": ref, "paths": list(a["paths"]),
                                         "dir": str(run.step_dir(step)),
                                         **{k: p[k] for k in ("changed", "move", "missing", "remove")}})
        run.persist()
        gitstate.restore_paths(plan.root, ref, a["paths"], run.step_dir(step), plan=p)
        _count_done(run.record.restored.setdefault("files", {}), plan.root, run.step_dir(step))
        run.ctx.redact.add_from(plan.root)
        return (f"{len(p['checkout'])} file(s) at {ref}; {len(p['changed'])} overwritten or removed (saved "
                f"first), {len(p['remove'])} added since removed, {len(p['move'])} untracked moved aside")

    @staticmethod
    def planned(run, step) -> dict:
        """The restore plan this step carries out (restore_plan's keys), as the run's
        description planned it (rollback/preview.py counts from it)."""
        return RestoreFiles._plan(run, step, step.args.get("ref") or run.ctx.ref, keep=True)

    @staticmethod
    def _plan(run, step, ref: str, keep: bool) -> dict:
        """The files this step checks out, overwrites, removes and moves: the one its
        description planned (once: execute takes it), else planned now."""
        i, plan = run.step_index(step), run.ctx.plan
        p = run.file_plans.get(i) if keep else run.file_plans.pop(i, None)
        p = p or gitstate.restore_plan(plan.root, ref, step.args["paths"], plan.kit_paths())
        if keep:
            run.file_plans[i] = p
        return p


def _count_done(counts: dict, root: Path, safety_dir: Path) -> None:
    """Add what a restore did to counts, read from what it left (not from its plan): each
    file saved before it was overwritten (there again now) or deleted (gone), each
    untracked file moved aside."""
    import tarfile

    saved = safety_dir / gitstate.SAVED
    names = []
    if saved.exists():
        with tarfile.open(saved) as tar:
            names = [m.name for m in tar.getmembers() if not m.isdir()]
    there = sum(os.path.lexists(root / n) for n in names)
    moved = sum(1 for f in (safety_dir / "moved").rglob("*") if not f.is_dir() or f.is_symlink())
    for key, n in (("overwritten", there), ("deleted", len(names) - there), ("moved", moved)):
        counts[key] = counts.get(key, 0) + n
