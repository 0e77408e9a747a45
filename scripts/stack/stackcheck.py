"""The plan against the stack as compose sees it: every service, volume and network the
plan names must be one compose knows, checked before anything is made or changed."""

from __future__ import annotations

from pathlib import Path

from .compose import for_plan, own_config
from ..errors import PLAN, UndoitError


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
                              "counts only when [project] profiles names it)", exit_code=PLAN)
    binds = plan.bind_paths()
    mounted = {m.get("source") for spec in (config.get("services") or {}).values()
               for m in spec.get("volumes") or [] if m.get("type") == "bind"}
    for key, path in binds.items():
        if path not in mounted:
            raise UndoitError(f"{where}: [volumes.{key}] bind = {plan.volumes[key].bind!r}: no service mounts "
                              f"{path} (compose's bind mounts: {', '.join(sorted(mounted - {None})) or 'none'})",
                              exit_code=PLAN)
    for key in plan.volumes:
        if key in binds:
            continue
        if key not in known["volumes"]:
            raise UndoitError(f"{where}: [volumes.{key}]: compose declares no volume {key!r} "
                              f"(it has: {', '.join(known['volumes']) or 'none'})", exit_code=PLAN)
    for net in plan.networks:
        if net not in known["networks"]:
            raise UndoitError(f"{where}: [project] networks: compose declares no network {net!r} "
                              f"(it has: {', '.join(known['networks']) or 'none'})", exit_code=PLAN)
    if client is not None:
        _project_name(plan, client)
    return config


def refs(plan, client, keys=None) -> dict:
    """The plan's volumes (or keys of them) as the engine names them: compose labels, bind
    folders, and compose's own names for external ones."""
    from . import volumes

    keys = list(plan.volumes) if keys is None else list(keys)
    return volumes.resolve(client, plan.project_name, keys, plan.bind_paths(), declared=lambda: declared_names(plan))


def declared_names(plan) -> dict[str, str]:
    """Volume key -> the name compose gives it (`name:`, external ones, <project>_<key>)."""
    return {k: v.get("name") for k, v in (for_plan(plan).config_json().get("volumes") or {}).items()
            if isinstance(v, dict) and v.get("name")}


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
                          f"volumes; compose calls this project {theirs!r}: set name = \"{theirs}\"", exit_code=PLAN)


# paths a container writes that are not state worth keeping (runtime, caches, temp)
EPHEMERAL = ("/tmp", "/run", "/var/run", "/var/tmp", "/var/cache", "/var/lock", "/dev", "/proc", "/sys",
             "/root/.cache", "/root/.npm")


def _ephemeral(path: str) -> bool:
    return any(path == e or path.startswith(e + "/") for e in EPHEMERAL)


def uncovered(plan, client, config: dict) -> list[str]:
    """One line per place where a service keeps state that no backup of the plan covers:
    anonymous volumes, named volumes and writable bind folders the plan leaves out, and
    data written into a running container's own layer (a rollback that recreates the
    container loses it)."""
    from ..repo import gitstate

    covered = set(plan.volumes)
    binds = set(plan.bind_paths().values())
    root = str(Path(plan.root).resolve())
    out = []
    for svc, spec in sorted((config.get("services") or {}).items()):
        for m in spec.get("volumes") or []:
            kind, source, target = m.get("type"), m.get("source"), m.get("target")
            if _ephemeral(target or ""):
                continue  # a socket or scratch folder shared between services: no state
            if kind == "volume" and not source:
                out.append(f"{svc} keeps {target} in an anonymous volume: no backup covers it "
                           "(name the volume in the compose file and the plan)")
            elif kind == "volume" and source not in covered:
                out.append(f"{svc} mounts volume {source} at {target}, which the plan does not back up "
                           f"(add [volumes.{source}])")
            elif kind == "bind" and not m.get("read_only") and source not in binds and Path(source).is_dir():
                inside = source == root or source.startswith(root + "/")
                tracked = inside and gitstate.run(plan.root, "ls-files", "--", source)
                if not tracked:
                    out.append(f"{svc} writes to the folder {source} (at {target}), which neither git nor the plan "
                               "covers (add [volumes.<name>] bind = \"...\")")
    label = {"label": f"com.docker.compose.project={plan.project_name}"}
    for c in client.containers.list(filters=label):
        try:
            changes = client.api.diff(c.id) or []
        except Exception:  # noqa: BLE001 - a storage driver without diff: nothing to say
            continue
        # mount points (and the folders above them) appear in the layer as created: no data
        mounts = [m.get("Destination", "") for m in c.attrs.get("Mounts") or []]
        kept = [ch["Path"] for ch in changes if ch.get("Kind") in (0, 1) and not _ephemeral(ch["Path"])
                and not any(m == ch["Path"] or m.startswith(ch["Path"] + "/") for m in mounts)]
        files = [p for p in kept if not any(q.startswith(p + "/") for q in kept)]
        if files:
            svc = c.labels.get("com.docker.compose.service", c.name)
            out.append(f"{svc} has written {len(files)} path(s) into its container's own layer (first: {files[0]}): "
                       "a rollback that recreates it loses them (mount a volume there and add it to the plan)")
    return out
