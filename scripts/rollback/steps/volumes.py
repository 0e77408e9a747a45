"""Steps on the project's volumes: restore-volumes (a rollback's) and remove-volumes (a
change's: a volume the change does away with)."""

from __future__ import annotations

from ...errors import UndoitError
from ...plan.registry import STEPS, StepType
from ...store import snapshots


@STEPS.register
class RestoreVolumes(StepType):
    name = "restore-volumes"
    summary = "put volumes back as the set holds them (built beside the live ones and swapped in where it can), what they held kept as a safety copy"
    example = {"do": "restore-volumes", "volumes": ["pgdata"]}
    required = frozenset({"volumes"})
    optional = frozenset({"set"})
    destructive = True

    def volumes_restored(self, step):
        return tuple(step.args["volumes"])

    def describe(self, run, step):
        ctx, parts = run.ctx, []
        for key in step.args["volumes"]:
            s = ctx.snapshot
            vol = s.volumes.get(key) if s else None
            src = f"{s.archive_path(key).name} of set {s.id} (sha256 {vol['sha256'][:12]})" \
                if vol else "NO ARCHIVE IN THE SET"
            parts.append(f"{key} -> volume {ctx.volume_names.get(key, '?')} from {src}")
        return ("restore volumes (built and checked beside the live ones before step 1 where this host allows; "
                "at this step swapped in, the replaced contents kept whole in a safety set; else a safety "
                "snapshot first, then empty, refill, compare listing): "
                + "; ".join(parts))

    def execute(self, run, step):
        return restore_volumes(run, step.args["volumes"])


@STEPS.register
class RemoveVolumes(StepType):
    name = "remove-volumes"
    summary = "remove volumes (a phase's change that does away with one; not in a rollback)"
    example = {"do": "remove-volumes", "volumes": ["cache"]}
    required = frozenset({"volumes"})
    for_rollback = False
    for_change = True

    def describe(self, run, step):
        return "remove the project's volumes " + ", ".join(step.args["volumes"]) + " (docker volume rm --force)"

    def apply(self, ctx, step):
        from docker.errors import APIError  # here: the plan loader imports this module

        project = ctx.plan.project_name
        for key in step.args["volumes"]:
            for v in ctx.client.volumes.list(filters={"label": [f"com.docker.compose.project={project}",
                                                                  f"com.docker.compose.volume={key}"]}):
                try:
                    v.remove(force=True)
                except APIError as err:  # in use
                    raise UndoitError(f"removing volume {v.name}: {err}") from None


def restore_volumes(run, keys) -> str:
    """The volumes of keys as the run's set holds them: swapped in where built ahead (what
    they replace moved whole into a safety set), else copied to one, emptied and refilled."""
    from .. import restore  # here: restore needs the docker SDK, which loading a plan must not import
    from ...stack import volumes

    ctx = run.ctx
    if ctx.snapshot is None:
        raise UndoitError("no verified backup: run `doit backup` before the change")
    targets = {k: ctx.volume_names[k] for k in keys}
    for key, name in targets.items():
        ensure_volume(ctx, key, name)
        if volumes.is_bind(name):
            continue
        owner = (ctx.client.volumes.get(name).attrs.get("Labels") or {}).get("com.docker.compose.project")
        if ctx.sandbox and owner != ctx.plan.project_name:
            raise UndoitError(f"refusing to restore {name}: it belongs to project {owner}, not the sandbox")
    # a volume built ahead is swapped in: what it replaces is moved into the safety set
    # (where the host allows) instead of copied
    # (a step may have removed it since it was built: then restored at this step, and copied)
    safety = run.safety_snapshot(targets, park=[k for k, name in targets.items() if k in run.staged and restore.usable(
        ctx.client, run.staged[k], ctx.snapshot, k, name)])
    run.persist()  # the safety set is on record before the first volume is touched
    done = []
    for key, name in targets.items():
        # before the act: a later backup must never skip this volume as unchanged
        snapshots.note_restored(ctx.plan.snapshots_dir, name)
        r = restore.restore_volume(ctx.client, ctx.snapshot, key, target=name, devices=ctx.plan.allows_devices(key),
                                   # the run's own cleanup no longer has it: after the swap, that
                                   # folder holds what was swapped out (restore_volume cleans up before)
                                   intent=run.journal, staged=run.staged.pop(key, None),
                                   park=safety.parked_path(key) if safety and key in safety.volumes else None)
        done.append(f"{key} ({r['entries']} entries)")
        # the bytes now in the volume (its listing compared with the set's): the preview's figure, after the fact
        run.record.restored.setdefault("volumes", {})[key] = r["bytes"]
    return f"restored {', '.join(done)} from set {ctx.snapshot.id}"


def ensure_volume(ctx, key: str, name: str) -> None:
    """Create a volume a phase removed, labelled so compose adopts it as its own (a bind
    folder: the folder)."""
    from docker.errors import NotFound  # here: the plan loader imports this module

    from ...stack import volumes

    if volumes.is_bind(name):
        volumes.host_path(ctx.client, name).mkdir(parents=True, exist_ok=True)
        return
    try:
        ctx.client.volumes.get(name)
    except NotFound:
        ctx.client.volumes.create(name, labels={"com.docker.compose.project": ctx.plan.project_name,
                                                "com.docker.compose.volume": key})
        print(f"  created missing volume {name}", flush=True)
