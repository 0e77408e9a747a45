"""Checks of the project's networks: there, or gone."""

from __future__ import annotations

from ...plan.registry import CHECKS, CheckType


class _Networks(CheckType):
    """A check of the networks the plan names, against those of the project the engine has."""

    required = frozenset({"networks"})

    def describe(self, ctx, check):
        return f"{check.check}: {', '.join(check.args['networks'])}"

    @staticmethod
    def have(ctx) -> dict[str, str]:
        nets = ctx.client.networks.list(filters={"label": f"com.docker.compose.project={ctx.plan.project_name}"})
        return {(n.attrs.get("Labels") or {}).get("com.docker.compose.network"): n.name for n in nets}


@CHECKS.register
class NetworksExist(_Networks):
    name = "networks-exist"
    summary = "these networks of the project exist"
    example = {"check": "networks-exist", "networks": ["frontend"]}

    def run(self, ctx, check):
        have = self.have(ctx)
        missing = [k for k in check.args["networks"] if k not in have]
        if missing:
            return False, f"missing network(s): {', '.join(missing)}"
        return True, f"{len(check.args['networks'])} network(s) exist"


@CHECKS.register
class NetworksAbsent(_Networks):
    name = "networks-absent"
    summary = "none of these networks of the project exists"
    example = {"check": "networks-absent", "networks": ["legacy"]}

    def run(self, ctx, check):
        have = self.have(ctx)
        present = [k for k in check.args["networks"] if k in have]
        return not present, (f"still present: {', '.join(present)}" if present else "none of them exist")
