"""`doit rehearse`: every rollback of the plan, drilled in a sandbox, never on the live stack.

The sandbox is a git worktree of HEAD in a scratch folder, a compose project named
`<project>-rehearsal-<id>` (its own containers, networks and volumes; networks forced
internal, fixed names and published ports dropped), and volumes filled from the live
ones as they are now. Each procedure starts from that state afresh and is drilled the
Liquibase way: the change it undoes is applied (the commits and steps the plan names
for it, changes.py), the checks that now fail are recorded (felt), it is rolled back by
the same code as the real task, restoring from the live snapshot set, its checks must
pass, and the change must apply again. Every archive of the set is restored at least
once and its listing compared. The sandbox is removed at the end, also on failure and
on Ctrl-C; killed outright, by the next rehearsal or `doit repair`, from its journal
record (sandboxes.py). On screen a line per drill; every step goes to a log beside the
reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..backup import cycles
from ..output import redact
from . import changes, junit
from ..repo import gitstate
from ..rollback import checks, rehearsed, repair, restore, rollback
from ..stack import engine, ignored, sandboxes, stackcheck, volumes
from ..store import journal, snapshots
from ..stack.compose import discover, for_plan
from ..errors import NO_BACKUP, UndoitError
from ..plan.plan import Plan, Procedure
from ..output.progress import Drills, interactive, say
from ..output.redact import Redactor
from .junit import change_cell
from ..store import restic

Change = Callable[[Plan, Procedure], None]


class Sandbox:
    """The sandbox's worktree, compose project and volumes; `close()` removes all of it."""

    def __init__(self, plan: Plan, source: snapshots.SnapshotSet, client, masker: Redactor | None = None):
        self.live = plan
        self.source = source
        self.client = client
        # the live plan's secrets, and (learn_secrets) those the sandbox's own files hold
        self.masker = masker if masker is not None else Redactor.shared(plan)
        self.id = uuid.uuid4().hex[:6]
        self.name = f"{plan.project_name}-rehearsal-{self.id}"
        # named now, made by open() once the journal knows of it
        self.work = Path(tempfile.gettempdir()) / f"undoit-rehearsal-{self.id}-{uuid.uuid4().hex[:8]}"
        self.tree = self.work / "tree"
        # a project in a folder of a larger repository: the same folder of the worktree
        prefix = gitstate.run(plan.root, "rev-parse", "--show-prefix")
        self.override = self.work / "sandbox-override.yml"
        self.start: snapshots.SnapshotSet | None = None
        self.entry: journal.Entry | None = None
        self.plan = replace(
            plan, root=self.tree / prefix, project_name=self.name,
            compose_files=(*(plan.compose_files or discover(plan.root)), str(self.override)),
            snapshots_dir=self.work / "snapshots", log_path=self.work / "ROLLBACK-LOG.md",
            reports_dir=self.work / "reports",
        )

    # --- setup -------------------------------------------------------------------
    def open(self) -> None:
        for key, path in self.live.bind_paths().items():
            if not Path(path).is_relative_to(Path(self.live.root).resolve()):
                raise UndoitError(f"[volumes.{key}] bind = {path} lies outside the project: a sandbox cannot "
                                  "have its own copy of it, so it is not rehearsed")
        # on record before any of it exists: killed outright, the rehearsal leaves the
        # record, and the next rehearsal or `doit repair` removes what it names
        self.entry = journal.begin(self.live.snapshots_dir, self.live.project_name, "rehearsal",
                                   sandbox=sandboxes.record(self.name, self.work, self.tree, self.live.root))
        self.work.mkdir(mode=0o700)
        gitstate.run(self.live.root, "worktree", "add", "--detach", "--quiet", str(self.tree), "HEAD")
        self.tree.chmod(0o755)  # bind-mounted into containers that run as other users
        self._copy_ignored()
        self.override.write_text(self._override_yaml())
        self.learn_secrets()
        self._capture_live()

    def _copy_ignored(self) -> None:
        """The git-ignored files compose reads (an env_file, a secret's file), which a
        worktree does not have: copied from the live project (the sandbox's compose would
        refuse a required env file it cannot find), with their own modes, as the stack's
        containers read them, inside the scratch folder only its owner can enter. Their
        values are masked in all the rehearsal writes (learn_secrets)."""
        live_root = Path(self.live.root)
        files = set(ignored.ignored(self.live, for_plan(self.live).config_json()))
        files |= {f for f in self.live.env_files if (live_root / f).is_file()}
        for rel in sorted(files):
            src = live_root / rel
            for one in ([src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())):
                dst = self.plan.root / one.relative_to(live_root)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(one, dst)

    def learn_secrets(self) -> None:
        """What the sandbox's worktree and compose files hold secret (a change may bring an
        env file) is masked too, with the live values."""
        self.masker.learn(Redactor.for_plan(self.plan).values)

    def _override_yaml(self) -> str:
        """What keeps the sandbox off the live stack: its own names, no published ports,
        internal networks. Volumes and networks without a fixed name get the sandbox
        project's prefix from compose itself."""
        config = for_plan(self.live).config_json()
        lines = ["# written by undoit rehearse: isolates the sandbox from the live stack"]
        svc_lines = []
        for svc, spec in (config.get("services") or {}).items():
            extra = []
            if spec.get("container_name"):
                extra.append(f"    container_name: {self.name}-{svc}")
            if spec.get("ports"):
                extra.append("    ports: !reset []")
            if extra:
                svc_lines += [f"  {svc}:"] + extra
        if svc_lines:
            lines += ["services:"] + svc_lines
        nets = config.get("networks") or {}
        if nets:
            lines.append("networks:")
            for key in nets:
                lines.append(f"  {key}: {{name: {self.name}_{key}, internal: true, external: false}}")
        vols = config.get("volumes") or {}
        if vols:
            lines.append("volumes:")
            for key in vols:
                lines.append(f"  {key}: {{name: {self.name}_{key}, external: false}}")
        return "\n".join(lines) + "\n"

    def _capture_live(self) -> None:
        """The live volumes as they are now, read without stopping anything."""
        refs = stackcheck.refs(self.live, self.client)
        say(f"rehearsal {self.name}: copying {len(refs)} live volume(s) into the sandbox's start state")
        self.start = restore.safety_snapshot(
            self.client, self.work / "start", self.live.project_name, {k: r.name for k, r in refs.items()},
            "rehearsal start state")

    def volume_name(self, key: str) -> str:
        bind = self.live.volumes[key].bind if key in self.live.volumes else None
        if bind:  # compose resolves a relative bind against the sandbox's worktree
            return volumes.BIND + os.path.abspath(self.plan.root / bind)
        return f"{self.name}_{key}"

    def reset(self) -> None:
        """A fresh sandbox: no containers, the worktree at HEAD, volumes as captured, up."""
        self._down()
        gitstate.run(self.tree, "checkout", "--quiet", "--force", "--detach", gitstate.head(self.live.root))
        gitstate.run(self.tree, "clean", "-q", "-d", "-f", "-x")
        self._copy_ignored()  # the clean took them too
        for key in self.start.volumes:
            name = self.volume_name(key)
            if volumes.is_bind(name):
                volumes.host_path(self.client, name).mkdir(parents=True, exist_ok=True)
            else:
                self.client.volumes.create(name, labels={"com.docker.compose.project": self.name,
                                                         "com.docker.compose.volume": key})
            restore.restore_volume(self.client, self.start, key, target=name,
                                   devices=self.live.allows_devices(key))
        for_plan(self.plan).up(wait_timeout=180)

    def _down(self) -> None:
        try:
            for_plan(self.plan).down(volumes=True)
        except UndoitError:
            pass
        sandboxes.sweep(self.client, self.name)

    def close(self) -> None:
        """Remove everything the sandbox made (what its journal record names, as a repair
        would); safe to call twice, and after any failure."""
        if self.entry is None:
            return  # nothing was made
        try:
            if self.override.exists():
                self._down()
        finally:
            sandboxes.remove(self.client, self.entry.data["sandbox"])
            self.entry.path.unlink(missing_ok=True)
            self.entry = None

    # --- proving the archives ------------------------------------------------------
    def prove(self, key: str) -> None:
        """Restore one archive of the source set into a scratch volume and compare listings."""
        name = f"{self.name}_proof_{key}"
        self.client.volumes.create(name, labels={"com.docker.compose.project": self.name})
        try:
            restore.restore_volume(self.client, self.source, key, target=name,
                                   devices=self.live.allows_devices(key))
        finally:
            self.client.volumes.get(name).remove(force=True)


def procedures(plan: Plan, only: str | None) -> list[Procedure]:
    procs = [*plan.phases, plan.full, *plan.scenarios]
    if not only:
        return procs
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in {p.id for p in procs}]
    if unknown:
        raise UndoitError(f"only={only}: no phase or scenario named {', '.join(unknown)}")
    return [p for p in procs if p.id in wanted]


def rehearse(plan: Plan, only: str | None = None, set_id: str | None = None,
             change: Change | None = None, up_timeout: int | None = None) -> dict:
    """Drill every procedure (or `only`) in a sandbox; returns the report (also written).

    Everything it writes (screen, log, JSON, JUnit) is masked by the live plan's secrets
    and those the sandbox's own files hold: a drill's checks run on the sandbox, but print
    what the live stack holds."""
    client = engine.client()
    repair.remove_dead_sandboxes(plan)  # rehearsals killed outright (a living one's are its own)
    stackcheck.check(plan)  # the live stack as compose sees it, before the sandbox copies it
    source = _rehearsed_set(plan, set_id)
    procs = procedures(plan, only)
    started = time.monotonic()
    began = datetime.now(timezone.utc)
    masker = Redactor.shared(plan)
    sandbox = Sandbox(plan, source, client, masker)
    plan.reports_dir.mkdir(parents=True, exist_ok=True)
    log_path = plan.reports_dir / f"rehearsal-{began.strftime('%Y%m%dT%H%M%SZ')}.log"
    # the detail (every step, transfer and check) goes to the log; the screen gets a line per drill
    with _private_log(log_path, masker) as log, redact.sharing(sandbox.plan, masker), \
            Drills(redact.Masked(sys.stdout, lambda: masker), live=interactive()) as drills:
        drills.line(f"rehearsal {sandbox.name}: {len(procs)} drill(s) of set {source.id}; detail: {log_path}")
        rows, restored = _all_drills(sandbox, procs, change, up_timeout, drills, log)
    report = masker.data({
        "rehearsal": sandbox.name,
        "set": source.id,
        # the plan drilled: a gate ([rehearse] require) trusts a drill of this plan only
        "plan_digest": rehearsed.plan_digest(plan),
        "started": began.isoformat(timespec="seconds"),
        "log": str(log_path),
        "seconds": round(time.monotonic() - started, 1),
        "ok": all(r["ok"] for r in rows),
        "rows": rows,
        # what was actually restored and compared, by a drill or a proof
        "archives_proven": sorted(restored),
        "archives": sorted(source.volumes),
    })
    path = log_path.with_suffix(".json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    report["path"] = str(path)
    report["junit"] = str(junit.write(report, path.with_suffix(".xml")))
    return report


def _rehearsed_set(plan: Plan, set_id: str | None) -> snapshots.SnapshotSet:
    if set_id:
        source = restic.find(plan, set_id)
    else:
        cycle, why = cycles.current(plan)
        source = cycle.baseline
        say(f"rehearsing {why}")
    problems = snapshots.check_set(source, deep=False)
    if problems:
        raise UndoitError(f"the backup being rehearsed ({source.id}) is broken: {problems[0]}",
                          exit_code=NO_BACKUP)
    return source


@contextlib.contextmanager
def _private_log(path: Path, masker: Redactor):
    """The rehearsal's log (owner only), masked as it is written."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        log = redact.Masked(f, lambda: masker)
        try:
            yield log
        finally:
            log.flush()


def _all_drills(sandbox: Sandbox, procs: list[Procedure], change: Change | None, up_timeout: int | None,
                drills: Drills, log) -> tuple[list[dict], set[str]]:
    """Every drill, then a proof of each archive no drill restored; the sandbox removed
    whatever happens."""
    rows: list[dict] = []
    restored: set[str] = set()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with contextlib.redirect_stdout(log):
            sandbox.open()
            for proc in procs:
                drills.start(proc.id)
                rows.append(_drill(sandbox, proc, change, restored, up_timeout, drills))
                drills.done(rows[-1]["ok"], change_cell(rows[-1]))
            for key in sorted(set(sandbox.source.volumes) - restored):
                rows.append(_proof(sandbox, key, drills))
                if rows[-1]["ok"]:
                    restored.add(key)
    finally:
        signal.signal(signal.SIGTERM, previous)
        drills.line(f"rehearsal {sandbox.name}: removing the sandbox")
        with contextlib.redirect_stdout(log):
            sandbox.close()
    return rows, restored


def _proof(sandbox: Sandbox, key: str, drills: Drills) -> dict:
    t0 = time.monotonic()
    drills.start(f"archive {key}")
    drills.step("restore into a scratch volume and compare")
    try:
        sandbox.prove(key)
        row = _row(f"archive {key}", "proof", True, [], time.monotonic() - t0, None)
    except UndoitError as err:
        row = _row(f"archive {key}", "proof", False, [str(err)], time.monotonic() - t0, None)
    drills.done(row["ok"])
    return row


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _row(pid: str, kind: str, ok: bool, failed: list[str], seconds: float, minutes: int | None) -> dict:
    return {"procedure": pid, "kind": kind, "ok": ok, "failed": failed, "seconds": round(seconds, 3),
            "runbook_minutes": minutes,
            "ratio": round(seconds / (minutes * 60), 4) if minutes else None}


def _drill(sandbox: Sandbox, proc: Procedure, change: Change | None, restored: set[str],
           up_timeout: int | None, drills: Drills) -> dict:
    say(f"--- drill {proc.kind} {proc.id}: {proc.title}")
    felt, applied, declared = None, [], changes.phases_of(sandbox.plan, proc)
    try:
        sandbox.reset()
        if declared or change:
            drills.step("applying the change")
            for phase in declared:
                ctx = changes.context(sandbox.plan, phase)
                applied.append((phase, changes.apply(sandbox.tree, sandbox.live.root, ctx, phase)))
                say(f"applied the change of {applied[-1][1].line()}")
            changes.settle(declared)
            sandbox.learn_secrets()
            if change:  # a caller's own extra breakage (tests)
                change(sandbox.plan, proc)
            drills.step("reading the checks on the changed stack")
            felt = _failing_checks(sandbox, proc)
            say(f"after the change: {', '.join(felt) if felt else 'no check fails'}")
        drills.step(f"rolling back ({len(proc.steps)} steps, {len(proc.checks)} checks)")
        rec = rollback.execute(sandbox.plan, proc.id, yes=True, reason="rehearsal", source=sandbox.source,
                               sandbox=True, up_timeout=up_timeout)
    except UndoitError as err:
        row = _row(proc.id, proc.kind, False, [f"drill could not run: {err}"], 0.0, proc.minutes)
        return dict(row, felt=felt, change=_change_label(declared, change), reapplied=None)
    for step_def in proc.steps:
        if step_def.do == "restore-volumes" and rec["outcome"] == "success":
            restored.update(step_def.args["volumes"])
    failed = [f"step {rec['failed_step']['n']} ({rec['failed_step']['do']}): {rec['failed_step']['detail']}"] \
        if rec.get("failed_step") else [f"{c['name']}: {c['reason']}" for c in rec["checks"] if not c["ok"]]
    reapplied = None
    if applied and rec["outcome"] == "success":
        # forward again from the rolled-back stack: what fails here, the rollback left behind
        drills.step("applying the change again")
        try:
            for phase, done in applied:
                changes.reapply(sandbox.tree, changes.context(sandbox.plan, phase), phase, done)
            reapplied = True
            say("the change applies again after the rollback")
        except UndoitError as err:
            reapplied = False
            failed.append(f"re-applying the change after the rollback failed: {err}")
    return dict(_row(proc.id, proc.kind, rec["outcome"] == "success" and reapplied is not False, failed,
                     rec["seconds"], proc.minutes),
                felt=felt, change=_change_label(declared, change), reapplied=reapplied,
                # each step's time: what a rollback's preview predicts its downtime from
                steps=[{k: s[k] for k in ("n", "do", "seconds", "ok")} for s in rec["steps"]])


def _change_label(declared: list[Procedure], change: Change | None) -> str | None:
    if declared:
        return ", ".join(f"{p.id}: {p.change.ref or 'steps only'}" for p in declared)
    return "the caller's own" if change else None


def _side_run(sandbox: Sandbox, proc: Procedure):
    """A run in the sandbox that changes nothing by itself: what the felt checks read
    the stack with (its compose, engine client, the set's volumes)."""
    return rollback.prepare(sandbox.plan, proc.id, dry_run=True, yes=True, source=sandbox.source, sandbox=True)


def _failing_checks(sandbox: Sandbox, proc: Procedure) -> list[str]:
    """The procedure's checks that fail once the change is applied: the drill shows the
    change was felt (a phase whose checks all pass on the broken stack proves nothing)."""
    run = _side_run(sandbox, proc)
    before = {v.name for v in sandbox.client.volumes.list()}
    try:
        return [r.name for r in checks.run_now(run.ctx, proc.checks) if not r.ok]
    finally:
        # a check that mounts a volume the change removed makes the engine create an
        # empty one with no compose label, which the rollback would rightly refuse
        for v in sandbox.client.volumes.list():
            if v.name not in before and v.name.startswith(sandbox.plan.project_name):
                v.remove(force=True)
