"""Rollback steps: each can say exactly what it will do (dry run) and then do it.

`describe` must print what `execute` runs: resolved refs, real volume names, the exact
commands. Steps that destroy something (DESTRUCTIVE) are preceded by a safety copy of
what they destroy, taken here or by the runner.
"""

from __future__ import annotations

import subprocess
import time

from ..repo import gitstate
from . import checks, restore
from ..stack import volumes
from ..store import snapshots
from ..errors import UndoitError
from ..plan.plan import Check, Step

DESTRUCTIVE = {"down", "restore-files", "restore-volumes", "remove-networks"}
# steps after which a restore planned earlier in the run is planned again (exec: a bind mount)
CHANGE_FILES = {"restore-files", "run", "exec"}


def _services(step: Step) -> list[str]:
    return list(step.args.get("services") or [])


def _compose_line(run, *args: str) -> str:
    return f"docker compose --project-name {run.plan.project_name} " + " ".join(args)


def describe(run, step: Step) -> str:
    a = step.args
    svcs = _services(step)
    if step.do in ("stop", "down", "restart"):
        return "$ " + _compose_line(run, step.do, *svcs)
    if step.do == "up":
        from ..stack import pins

        images = pins.recorded(run.snapshot.path) if run.snapshot and not run.sandbox else {}
        shown = ", ".join(f"{svc}={pins.pin_name(run.plan.project_name, i['id'])}" for svc, i in sorted(images.items()))
        return "$ " + _compose_line(run, "up", "--detach", "--wait", "--wait-timeout",
                                    str(a.get("timeout", run.up_timeout)), *svcs) + \
            (f"   (images as set {run.snapshot.id} ran them: {shown})" if shown else "")
    if step.do == "restore-files":
        ref = a.get("ref") or run.ref
        try:
            # kept for execute: the plan described is the plan carried out (and git runs once)
            p = run.file_plans.get(run.step_index(step)) or gitstate.restore_plan(run.plan.root, ref, a["paths"],
                                                                                   run.plan.kit_paths())
            run.file_plans[run.step_index(step)] = p
            what = (f"{len(p['checkout'])} file(s) from {ref}, {len(p['changed'])} overwritten or removed "
                    f"(copied to the safety area first), {len(p['remove'])} added since removed, "
                    f"{len(p['move'])} untracked moved aside")
        except UndoitError as err:
            what = f"cannot plan: {err}"
        return f"$ git checkout {ref} -- {' '.join(a['paths'])}   (no overlay: {what})"
    if step.do == "restore-volumes":
        parts = []
        for key in a["volumes"]:
            vol = run.snapshot.volumes.get(key) if run.snapshot else None
            src = f"{run.snapshot.archive_path(key).name} of set {run.snapshot.id} (sha256 {vol['sha256'][:12]})" \
                if vol else "NO ARCHIVE IN THE SET"
            parts.append(f"{key} -> volume {run.volume_names.get(key, '?')} from {src}")
        return ("restore volumes (built and checked beside the live ones before step 1 where this host allows; "
                "at this step swapped in, the replaced contents kept whole in a safety set; else a safety "
                "snapshot first, then empty, refill, compare listing): "
                + "; ".join(parts))
    if step.do == "remove-networks":
        return "$ docker network rm " + " ".join(run.network_name(k) for k in a["networks"])
    if step.do == "create-networks":
        return "create networks as the compose file declares them: " + " ".join(run.network_name(k) for k in a["networks"])
    if step.do == "run":
        env = " ".join(f"{k}=…" for k in (a.get("env") or {}))
        return f"$ (cd {a.get('cwd', '.')} && {env + ' ' if env else ''}{checks.argv_line(a['argv'])})"
    if step.do == "exec":
        return "$ " + _compose_line(run, "exec", "-T", a["service"], checks.argv_line(a["argv"]))
    if step.do == "note":
        return f"note: {a['text']}"
    raise UndoitError(f"unknown step {step.do}")


def execute(run, step: Step) -> str:
    """Do the step; return one line saying what was done; raise UndoitError on failure."""
    a = step.args
    svcs = _services(step)
    if step.do == "stop":
        run.compose.stop(svcs)
        return f"stopped {', '.join(svcs) or 'all services'}"
    if step.do == "down":
        if svcs:
            run.compose("rm", "--stop", "--force", *svcs)
        else:
            run.compose.down()
        return f"removed containers of {', '.join(svcs) or 'all services'}"
    if step.do == "up":
        late = up(run, svcs, int(a.get("timeout", run.up_timeout)))
        return f"{', '.join(svcs) or 'all services'} up and healthy{late}"
    if step.do == "restart":
        run.compose.restart(svcs)
        wait_healthy(run, svcs, int(a.get("timeout", run.up_timeout)))
        return f"restarted {', '.join(svcs) or 'all services'}, healthy"
    if step.do == "restore-files":
        ref = a.get("ref") or run.ref
        p = run.file_plans.pop(run.step_index(step), None) or gitstate.restore_plan(run.plan.root, ref, a["paths"],
                                                                                     run.plan.kit_paths())
        # on record before a file is touched: undo after a kill here puts back what was saved
        run.file_restores.append({"step": run.step_index(step), "ref": ref, "paths": list(a["paths"]),
                                  "dir": str(run.step_dir(step)), **{k: p[k] for k in ("changed", "move", "missing", "remove")}})
        run.persist()
        gitstate.restore_paths(run.plan.root, ref, a["paths"], run.step_dir(step), plan=p)
        run.redact.add_from(run.plan.root)
        return (f"{len(p['checkout'])} file(s) at {ref}; {len(p['changed'])} overwritten or removed (saved "
                f"first), {len(p['remove'])} added since removed, {len(p['move'])} untracked moved aside")
    if step.do == "restore-volumes":
        return restore_volumes(run, a["volumes"])
    if step.do == "remove-networks":
        removed = []
        for key in a["networks"]:
            name = run.network_name(key)
            try:
                run.client.networks.get(name).remove()
                removed.append(name)
            except Exception as err:  # docker.errors.NotFound / APIError
                if "not found" not in str(err).lower():
                    raise UndoitError(f"removing network {name} failed: {err}") from err
        return f"removed {', '.join(removed) or 'nothing (already gone)'}"
    if step.do == "create-networks":
        return create_networks(run, a["networks"])
    if step.do == "run":
        cwd = run.plan.root / a.get("cwd", ".")
        env = dict(run.env, **(a.get("env") or {}))
        try:
            res = subprocess.run(list(a["argv"]), cwd=cwd, env=env, capture_output=True, text=True,
                                 timeout=run.command_timeout)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise UndoitError(f"{a['argv'][0]}: {err}") from None
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
            raise UndoitError(run.redact(f"{' '.join(a['argv'])} failed (exit {res.returncode}): ")
                              + run.redact.clip(tail[0], 200))
        return f"{' '.join(a['argv'])}: ok"
    if step.do == "exec":
        run.compose.exec(a["service"], *a["argv"], user=a.get("user"), timeout=run.command_timeout)
        return f"ran in {a['service']}"
    if step.do == "note":
        print(f"\n  NOTE: {a['text']}\n", flush=True)
        if run.interactive:
            input("  Press Enter when done (Ctrl-C to stop) ")
            return "confirmed"
        return "shown (non-interactive)"
    raise UndoitError(f"unknown step {step.do}")


def pinned(run):
    """The run's compose, with the images the restored set ran pinned for each service
    the compose file has now (see pins.py); the plain one when the set recorded none."""
    from ..stack import pins
    from ..stack.compose import Compose, discover

    if run.snapshot is None or run.sandbox:
        return run.compose
    images = pins.recorded(run.snapshot.path)
    if not images:
        return run.compose
    services = run.compose.config_json().get("services") or {}
    # only where the compose file's image is no longer the one the set ran (a rebuilt
    # tag, an upgrade): elsewhere the containers stay exactly as compose describes them
    differ = {svc: info for svc, info in images.items()
              if svc in services and pins.image_id(run.client, services[svc].get("image")) != info["id"]}
    path = pins.override(run.plan.project_name, differ, services, run.run_dir / "images-override.yml")
    if path is None:
        return run.compose
    c = run.compose
    return Compose(c.root, c.project, (*(run.plan.compose_files or discover(c.root, c.env)), str(path)), env=c.env,
                   profiles=run.plan.profiles, env_files=run.plan.env_files)


def up(run, services, timeout: int) -> str:
    """compose up, then a wait until the services run and are healthy; on failure, say
    which service is not and why. Returns a note when a service became healthy only on
    the engine's next healthcheck.

    The kit waits itself, looking every 50 ms: compose's --wait looks every 500 ms, a
    quarter of a second late on average, and each `up` of a rollback waits so. Where a
    container is in a state compose has rules for (exited, created, none for a service),
    compose's own --wait decides, as before."""
    c = pinned(run)
    try:
        c.up(services, wait_timeout=timeout, wait=False)
        settled, note = _running_and_healthy(run, services, timeout)
        if settled:
            return note
        c.up(services, wait_timeout=timeout)
        return ""
    except UndoitError as err:
        if str(err).startswith(_TIMED_OUT):
            raise
        ok, why = _healthy_within(run, services, min(run.health_wait, timeout))
        # compose gives up at once on a container that is unhealthy when it looks, though
        # the cause may be gone (a config the service reads live, restored a moment ago):
        # the engine's next healthcheck decides. Any other failure stays a failure.
        if ok and str(err).rstrip().endswith("is unhealthy"):
            return " (on the engine's next healthcheck: compose had given up on it as unhealthy from before)"
        raise UndoitError(f"up failed: {why if not ok else err}") from None


_TIMED_OUT = "up failed (the wait for health timed out): "


def _running_and_healthy(run, services, timeout: int) -> tuple[bool, str]:
    """Wait until every container of services (all: those of the project) runs and is
    healthy or has no healthcheck: (True, note). (False, "") at once for a state only
    compose's wait judges (a container exited, created or restarting; a named service
    with none). Raises when the time is up with a service still starting or unhealthy."""
    start = time.monotonic()
    seen_unhealthy = False
    # starting: as long as compose's --wait would wait; unhealthy: as long as the kit
    # waits for an engine's next healthcheck after compose gave up on one
    deadlines = {False: start + timeout, True: start + min(run.health_wait, timeout)}
    while True:
        cs = [c for c in checks.project_containers(run, running_only=False)
              if c.labels.get("com.docker.compose.oneoff") != "True"]
        by_service = {c.labels.get(checks.SERVICE_LABEL) for c in cs}
        if any(svc not in by_service for svc in services):
            return False, ""
        waiting, unhealthy = [], False
        for c in cs:
            if services and c.labels.get(checks.SERVICE_LABEL) not in services:
                continue
            if c.attrs["State"].get("Status") != "running":
                return False, ""
            state, why = checks.readiness(c, run.redact)
            if state != checks.READY:  # its health: starting, unhealthy
                unhealthy |= state == "unhealthy"
                waiting.append(why)
        if not waiting:
            return True, " (on the engine's next healthcheck: it was unhealthy from before)" if seen_unhealthy else ""
        seen_unhealthy |= unhealthy
        if time.monotonic() > deadlines[unhealthy]:
            raise UndoitError(_TIMED_OUT + "; ".join(waiting))
        time.sleep(0.05 if time.monotonic() - start < 3 else 0.25)


def _healthy_within(run, services, timeout) -> tuple[bool, str]:
    """The healthy check of services (all: empty), waiting up to timeout seconds."""
    saved, run.health_wait = run.health_wait, timeout
    try:
        return checks.healthy(run, Check("healthy", "healthy", {"services": services} if services else {}))
    finally:
        run.health_wait = saved


def wait_healthy(run, services, timeout: int) -> None:
    ok, why = _healthy_within(run, services, timeout)
    if not ok:
        raise UndoitError(f"not healthy after {timeout} s: {why}")


def restore_volumes(run, keys) -> str:
    if run.snapshot is None:
        raise UndoitError("no verified backup: run `doit backup` before the change")
    targets = {k: run.volume_names[k] for k in keys}
    for key, name in targets.items():
        ensure_volume(run, key, name)
        if volumes.is_bind(name):
            continue
        owner = (run.client.volumes.get(name).attrs.get("Labels") or {}).get("com.docker.compose.project")
        if run.sandbox and owner != run.plan.project_name:
            raise UndoitError(f"refusing to restore {name}: it belongs to project {owner}, not the sandbox")
    # a volume built ahead is swapped in: what it replaces is moved into the safety set
    # (where the host allows) instead of copied
    # (a step may have removed it since it was built: then restored at this step, and copied)
    safety = run.safety_snapshot(targets, park=[k for k, name in targets.items() if k in run.staged and restore.usable(
        run.client, run.staged[k], run.snapshot, k, name)])
    run.persist()  # the safety set is on record before the first volume is touched
    done = []
    for key, name in targets.items():
        # before the act: a later backup must never skip this volume as unchanged
        snapshots.note_restored(run.plan.snapshots_dir, name)
        r = restore.restore_volume(run.client, run.snapshot, key, target=name, devices=run.plan.allows_devices(key),
                                   # the run's own cleanup no longer has it: after the swap, that
                                   # folder holds what was swapped out (restore_volume cleans up before)
                                   intent=run.journal, staged=run.staged.pop(key, None),
                                   park=safety.parked_path(key) if safety and key in safety.volumes else None)
        done.append(f"{key} ({r['entries']} entries)")
    return f"restored {', '.join(done)} from set {run.snapshot.id}"


def ensure_volume(run, key: str, name: str) -> None:
    """Create a volume a phase removed, labelled so compose adopts it as its own (a bind
    folder: the folder)."""
    if volumes.is_bind(name):
        volumes.host_path(run.client, name).mkdir(parents=True, exist_ok=True)
        return
    try:
        run.client.volumes.get(name)
    except Exception:
        run.client.volumes.create(name, labels={"com.docker.compose.project": run.plan.project_name,
                                                "com.docker.compose.volume": key})
        print(f"  created missing volume {name}", flush=True)


def create_networks(run, keys) -> str:
    config = run.compose.config_json().get("networks") or {}
    made = []
    for key in keys:
        spec = config.get(key)
        if spec is None:
            raise UndoitError(f"the compose file declares no network {key!r}")
        name = spec.get("name") or f"{run.plan.project_name}_{key}"
        try:
            run.client.networks.get(name)
            continue
        except Exception:
            pass
        labels = dict(spec.get("labels") or {})
        labels.update({"com.docker.compose.project": run.plan.project_name, "com.docker.compose.network": key})
        run.client.networks.create(name, driver=spec.get("driver") or "bridge",
                                   internal=bool(spec.get("internal")), labels=labels)
        made.append(name)
    return f"created {', '.join(made) or 'nothing (all exist)'}"
