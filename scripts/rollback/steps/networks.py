"""Steps on the project's networks: remove them, create them as the compose file declares."""

from __future__ import annotations

from ...errors import UndoitError
from ...plan.registry import STEPS, StepType


@STEPS.register
class RemoveNetworks(StepType):
    name = "remove-networks"
    summary = "remove the project's networks by their compose keys"
    example = {"do": "remove-networks", "networks": ["legacy"]}
    required = frozenset({"networks"})
    destructive = True
    for_change = True

    def describe(self, run, step):
        return "$ docker network rm " + " ".join(run.ctx.network_name(k) for k in step.args["networks"])

    def act(self, ctx, step):
        from docker.errors import APIError, NotFound  # here: the plan loader imports this module

        removed = []
        for key in step.args["networks"]:
            name = ctx.network_name(key)
            try:
                ctx.client.networks.get(name).remove()
                removed.append(name)
            except NotFound:
                continue
            except APIError as err:
                raise UndoitError(f"removing network {name} failed: {err}") from err
        return f"removed {', '.join(removed) or 'nothing (already gone)'}"


@STEPS.register
class CreateNetworks(StepType):
    name = "create-networks"
    summary = "create networks as the compose file declares them"
    example = {"do": "create-networks", "networks": ["backend"]}
    required = frozenset({"networks"})
    for_change = True

    def describe(self, run, step):
        return ("create networks as the compose file declares them: "
                + " ".join(run.ctx.network_name(k) for k in step.args["networks"]))

    def act(self, ctx, step):
        from docker.errors import NotFound  # here: the plan loader imports this module

        config = ctx.compose.config_json().get("networks") or {}
        made = []
        for key in step.args["networks"]:
            spec = config.get(key)
            if spec is None:
                raise UndoitError(f"the compose file declares no network {key!r}")
            name = spec.get("name") or f"{ctx.plan.project_name}_{key}"
            try:
                ctx.client.networks.get(name)
                continue
            except NotFound:
                pass
            labels = dict(spec.get("labels") or {})
            labels.update({"com.docker.compose.project": ctx.plan.project_name, "com.docker.compose.network": key})
            ctx.client.networks.create(name, driver=spec.get("driver") or "bridge",
                                       internal=bool(spec.get("internal")), labels=labels)
            made.append(name)
        return f"created {', '.join(made) or 'nothing (all exist)'}"
