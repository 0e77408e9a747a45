"""The runbook's validation lists, made executable: each check returns pass/fail and one line.

A check never raises for an expected failure: it reports it. All checks of a procedure
run, so a failed rollback tells everything that is wrong at once.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import time
from dataclasses import dataclass, replace

from ..repo import gitstate
from ..stack import volumes
from ..store import listings
from ..errors import UndoitError
from ..plan.plan import Check
from ..output.redact import PLAIN, Redactor

DEFAULT_LOG_PATTERN = r"(?i)\b(error|fatal|panic|exception)\b"
SERVICE_LABEL = "com.docker.compose.service"


@dataclass(frozen=True)
class Result:
    name: str
    check: str
    ok: bool
    reason: str
    seconds: float = 0.0


def project_containers(run, running_only: bool = True) -> list:
    filters = {"label": f"com.docker.compose.project={run.plan.project_name}"}
    if running_only:
        filters["status"] = "running"
    return [c for c in run.client.containers.list(all=not running_only, filters=filters)
            if volumes.HELPER_LABEL not in (c.labels or {})]


def container_count(run, check: Check) -> tuple[bool, str]:
    n = len(project_containers(run))
    want = int(check.args["expect"])
    return n == want, f"{n} container(s) running, expected {want}"


def healthy(run, check: Check) -> tuple[bool, str]:
    wanted = check.args.get("services") or None
    start = time.monotonic()
    deadline = start + run.health_wait
    while True:
        bad = []
        cs = {c.labels.get(SERVICE_LABEL): c for c in project_containers(run, running_only=False)}
        for svc in wanted or sorted(cs):
            c = cs.get(svc)
            if c is None:
                bad.append(f"{svc}: no container")
                continue
            state, why = readiness(c, run.redact)
            if state != READY:
                bad.append(why)
        if not bad:
            return True, f"{len(wanted or cs)} service(s) running and healthy"
        if time.monotonic() > deadline or any("no container" in b or ": exited" in b for b in bad):
            return False, "; ".join(bad)
        # a restart waits on this: the first seconds often (a healthcheck every 250 ms is
        # seen 50 ms after it passes; the listing costs ~6 ms), then less
        time.sleep(0.05 if time.monotonic() - start < 3 else 0.25)


READY = "ready"


def readiness(container, redact: Redactor = PLAIN) -> tuple[str, str]:
    """(READY, "") for a container that runs and is healthy or has no healthcheck; else
    its state (exited, created, ...) or, running, its health (starting, unhealthy), and
    one line: "<service>: <state>" or "<service>: <health> (<its last health output>)",
    that output masked by redact before it is cut."""
    svc = container.labels.get(SERVICE_LABEL)
    state = container.attrs["State"]
    if state.get("Status") != "running":
        return state.get("Status"), f"{svc}: {state.get('Status')}"
    health = (state.get("Health") or {}).get("Status")
    if health in (None, "healthy"):
        return READY, ""
    return health, f"{svc}: {health} ({last_health_output(container, redact)})"


def last_health_output(container, redact: Redactor = PLAIN) -> str:
    """The last line the container's healthcheck printed: usually the reason it fails."""
    log = ((container.attrs.get("State") or {}).get("Health") or {}).get("Log") or []
    if not log:
        return "no health output yet"
    lines = (log[-1].get("Output") or "").strip().splitlines()
    return redact.clip(lines[-1], 160) if lines else f"exit {log[-1].get('ExitCode')}"


def logs_clean(run, check: Check) -> tuple[bool, str]:
    pattern = re.compile(check.args.get("pattern") or DEFAULT_LOG_PATTERN)
    services = check.args.get("services") or ()
    out = run.compose("logs", "--no-color", "--since", run.since_iso, *services)
    hits = [line for line in out.splitlines() if pattern.search(line)]
    if hits:
        return False, f"{len(hits)} matching line(s) since the rollback began, first: {run.redact.clip(hits[0], 160)}"
    return True, "no error lines in the logs since the rollback began"


def _networks(run) -> dict[str, str]:
    nets = run.client.networks.list(filters={"label": f"com.docker.compose.project={run.plan.project_name}"})
    return {(n.attrs.get("Labels") or {}).get("com.docker.compose.network"): n.name for n in nets}


def networks_exist(run, check: Check) -> tuple[bool, str]:
    have = _networks(run)
    missing = [k for k in check.args["networks"] if k not in have]
    if missing:
        return False, f"missing network(s): {', '.join(missing)}"
    return True, f"{len(check.args['networks'])} network(s) exist"


def networks_absent(run, check: Check) -> tuple[bool, str]:
    have = _networks(run)
    present = [k for k in check.args["networks"] if k in have]
    return not present, (f"still present: {', '.join(present)}" if present else "none of them exist")


def volume_matches(run, check: Check) -> tuple[bool, str]:
    """The volume holds exactly what the snapshot holds: every entry with its type, owner,
    mode, size, mtime and (regular files) content; nothing missing, nothing extra, except
    paths matching the check's `ignore` globs (files a running service writes, e.g. a pid
    file). Directory mtimes are left out: adding or removing anything in a directory moves
    them, and that is reported as the entry itself."""
    if run.snapshot is None:
        return False, "no snapshot set to compare with"
    ignore = [g.strip("/") for g in check.args.get("ignore", ())]

    def kept(entries):  # on disk, as the listings are (a volume may hold millions of files)
        return listings.build(replace(e, mtime_ns=0) if e.type == "d" else e for e in entries
                              if not any(fnmatch.fnmatchcase(e.path.decode("utf-8", "surrogateescape"), g)
                                         for g in ignore))

    problems, files = [], 0
    for key in check.args["volumes"]:
        expected = kept(run.snapshot.listing(key))
        name = run.volume_names.get(key) or run.snapshot.volumes[key]["name"]
        try:
            actual = kept(volumes.listing(run.client, name))
            if any(e.digest for e in expected):
                sums = volumes.content_digests(run.client, name)
                actual = listings.build(replace(e, digest=sums.get(e.path, "")) if e.type == "f" else e
                                        for e in actual)
        except Exception as err:  # the volume is gone
            problems.append(f"{key}: cannot read {name} ({err})")
            continue
        differences = listings.diff(expected, actual, limit=3)
        if differences:
            problems.append(f"{key}: differs from set {run.snapshot.id}: {'; '.join(differences)}")
        files += sum(e.type == "f" for e in expected)
    if problems:
        return False, "; ".join(problems)
    return True, (f"{len(check.args['volumes'])} volume(s) hold exactly what set {run.snapshot.id} holds "
                  f"({files} file(s), content compared)")


def files_match(run, check: Check) -> tuple[bool, str]:
    ref = check.args.get("ref") or run.ref
    diffs = gitstate.differences(run.plan.root, ref, check.args["paths"], run.plan.kit_paths())
    if diffs:
        return False, f"{len(diffs)} file(s) differ from {ref}, first: {diffs[0]}"
    return True, f"files match {ref}"


def _run_host(run, argv, cwd=None) -> subprocess.CompletedProcess:
    root = run.plan.root
    return subprocess.run(list(argv), cwd=root / cwd if cwd else root, env=run.env,
                          capture_output=True, text=True, timeout=run.command_timeout)


def _expect(run, check: Check, out: str) -> tuple[bool, str]:
    want = check.args.get("expect")
    if want is None:
        return True, ""
    text = out.strip()
    ok = text == str(want) or (isinstance(want, str) and want in text.splitlines())
    return ok, f"output {run.redact.tail(text, 80)!r}, expected {want!r}"


def command(run, check: Check) -> tuple[bool, str]:
    try:
        res = _run_host(run, check.args["argv"], check.args.get("cwd"))
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"{check.args['argv'][0]}: {err}"
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
        return False, f"exit {res.returncode}: {run.redact.clip(tail[0], 160)}"
    ok, why = _expect(run, check, res.stdout)
    return ok, why or f"{' '.join(check.args['argv'])} succeeded"


def exec_(run, check: Check) -> tuple[bool, str]:
    try:
        out = run.compose.exec(check.args["service"], *check.args["argv"], user=check.args.get("user"),
                               timeout=run.command_timeout)
    except UndoitError as err:
        # the command as the plan wrote it, and how it failed: not compose's long prefix
        msg = str(err)
        how = msg[msg.index("failed (exit"):] if "failed (exit" in msg else msg
        return False, run.redact.clip(f"{argv_line(check.args['argv'])} in {check.args['service']} {how}", 600)
    ok, why = _expect(run, check, out)
    return ok, why or f"command in {check.args['service']} succeeded"


def test(run, check: Check) -> tuple[bool, str]:
    argv = run.plan.test_command
    if not argv:
        return False, "the plan names no test_command"
    try:
        res = _run_host(run, argv)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"{argv[0]}: {err}"
    last = (res.stdout + res.stderr).strip().splitlines()[-1:] or [""]
    return res.returncode == 0, f"{' '.join(argv)}: exit {res.returncode}: {run.redact.clip(last[0], 160)}"


CHECKS = {
    "container-count": container_count,
    "healthy": healthy,
    "logs-clean": logs_clean,
    "networks-exist": networks_exist,
    "networks-absent": networks_absent,
    "volume-matches": volume_matches,
    "files-match": files_match,
    "command": command,
    "exec": exec_,
    "test": test,
}


def describe(run, check: Check) -> str:
    a = check.args
    if check.check == "container-count":
        return f"{a['expect']} containers of project {run.plan.project_name} running"
    if check.check in ("healthy", "logs-clean"):
        return f"{check.check}: {', '.join(a.get('services') or ['all services'])}"
    if check.check in ("networks-exist", "networks-absent"):
        return f"{check.check}: {', '.join(a['networks'])}"
    if check.check == "volume-matches":
        return "volume-matches: " + ", ".join(f"{k} vs set {run.snapshot.id if run.snapshot else '?'}" for k in a["volumes"])
    if check.check == "files-match":
        return f"files-match {a.get('ref') or run.ref}: {' '.join(a['paths'])}"
    if check.check == "command":
        return f"$ {argv_line(a['argv'])}" + (f"  (in {a['cwd']})" if a.get("cwd") else "")
    if check.check == "exec":
        return f"{a['service']}$ {argv_line(a['argv'])}" + (f"  (expect {a['expect']!r})" if "expect" in a else "")
    return f"$ {' '.join(run.plan.test_command)}"


def argv_line(argv) -> str:
    """A command on one line: a multi-line argument (an inline script) shows its first line."""
    out = []
    for arg in argv:
        lines = [line for line in str(arg).strip().splitlines() if line.strip()]
        shown = lines[0] + (f" … (+{len(lines) - 1} lines)" if len(lines) > 1 else "") if lines else "''"
        out.append(shown if " " not in shown or len(lines) > 1 else repr(shown))
    return " ".join(out)


def run_all(run, checks) -> list[Result]:
    results = []
    for check in checks:
        start = time.monotonic()
        try:
            ok, reason = CHECKS[check.check](run, check)
        except UndoitError as err:
            ok, reason = False, str(err)
        results.append(Result(check.name, check.check, ok, run.redact(reason), round(time.monotonic() - start, 3)))
    return results
