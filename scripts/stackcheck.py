"""The plan against the stack as compose sees it: every service, volume and network the
plan names must be one compose knows, checked before anything is made or changed."""

from __future__ import annotations

from .compose import for_plan, own_config
from .errors import UndoitError


def check(plan, client=None) -> dict:
    """Raise one line naming the plan key and compose's own names when the plan names
    something compose does not know; return compose's config (for callers that need it)."""
    compose = for_plan(plan)
    config = compose.config_json()
    known = {kind: sorted((config.get(kind) or {}).keys()) for kind in ("services", "volumes", "networks")}
    where = plan.path
    for svc in plan.services:
        if svc not in known["services"]:
            raise UndoitError(f"{where}: [project] services: compose has no service {svc!r} "
                              f"(it has: {', '.join(known['services']) or 'none'}; a service in a profile "
                              "counts only when [project] profiles names it)", exit_code=2)
    for key in plan.volumes:
        if key not in known["volumes"]:
            raise UndoitError(f"{where}: [volumes.{key}]: compose declares no volume {key!r} "
                              f"(it has: {', '.join(known['volumes']) or 'none'})", exit_code=2)
    for net in plan.networks:
        if net not in known["networks"]:
            raise UndoitError(f"{where}: [project] networks: compose declares no network {net!r} "
                              f"(it has: {', '.join(known['networks']) or 'none'})", exit_code=2)
    if client is not None:
        _project_name(plan, client)
    return config


def _project_name(plan, client) -> None:
    """A plan whose project name is not the one the running stack has finds none of its
    volumes: say which name compose uses instead of "is the stack created?"."""
    label = {"label": f"com.docker.compose.project={plan.project_name}"}
    if client.volumes.list(filters=label) or client.containers.list(all=True, filters=label):
        return
    try:
        theirs = own_config(plan.root, plan.compose_files, for_plan(plan).env).get("name")
    except UndoitError:
        return
    if theirs and theirs != plan.project_name:
        raise UndoitError(f"{plan.path}: [project] name is {plan.project_name!r}, which has no containers or "
                          f"volumes; compose calls this project {theirs!r}: set name = \"{theirs}\"", exit_code=2)
