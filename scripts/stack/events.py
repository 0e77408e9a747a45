"""The engine's own record of what it did: stops a killed run had asked for, waited out."""

from __future__ import annotations

import time

IN_FLIGHT = 0.5  # seconds


def stops_under_way(client, project: str, since: float, timeout: float) -> None:
    """Wait out the stops the engine was still carrying out when a run was cut short.
    Compose is killed on the way out, but not the request it had made: a container that
    still shows as running would be counted as running and exit a moment later, left
    stopped by a run that said it was up."""
    # a request compose wrote just before it was killed may not have reached the engine's
    # handler yet (local CI, two workers: an app counted as running, exited a moment
    # later): its "kill" event comes within this, and is then waited out below
    time.sleep(IN_FLIGHT)
    try:
        events = client.events(since=f"{since:.6f}", until=f"{time.time():.6f}", decode=True, filters={
            "type": "container", "label": f"com.docker.compose.project={project}", "event": ["kill", "die"]})
        last = {ev.get("id"): ev.get("Action") or ev.get("status") for ev in events}
    except Exception:  # noqa: BLE001 -- an engine that lists no events: no stop seen to wait for
        return
    for cid in [cid for cid, action in last.items() if action == "kill"]:  # signalled, not yet dead
        try:
            container = client.containers.get(cid)
            if container.status == "running":
                container.wait(condition="not-running", timeout=timeout)
        except Exception:  # noqa: BLE001 -- gone, or still running after the limit: counted as it is
            continue
