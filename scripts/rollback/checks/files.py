"""The files-match check: the project's files as a ref has them."""

from __future__ import annotations

from ...plan.registry import CHECKS, CheckType
from ...repo import gitstate


@CHECKS.register
class FilesMatch(CheckType):
    name = "files-match"
    summary = "the paths are as the set's commit (or ref) has them"
    example = {"check": "files-match", "paths": ["config/"]}
    required = frozenset({"paths"})
    optional = frozenset({"ref"})

    def describe(self, ctx, check):
        return f"files-match {check.args.get('ref') or ctx.ref}: {' '.join(check.args['paths'])}"

    def run(self, ctx, check):
        ref = check.args.get("ref") or ctx.ref
        diffs = gitstate.differences(ctx.plan.root, ref, check.args["paths"], ctx.plan.kit_paths())
        if diffs:
            return False, f"{len(diffs)} file(s) differ from {ref}, first: {diffs[0]}"
        return True, f"files match {ref}"
