"""Steps that run a command: on the host in the project's folder (run), in a service (exec)."""

from __future__ import annotations

import subprocess

from ...errors import UndoitError
from ...plan.registry import STEPS, StepType
from ..checks.commands import argv_line
from .services import compose_line


@STEPS.register
class Run(StepType):
    name = "run"
    summary = "run a command on this host in the project folder (cwd: a folder of it; env: more variables)"
    example = {"do": "run", "argv": ["make", "migrate-down"]}
    required = frozenset({"argv"})
    optional = frozenset({"cwd", "env"})
    changes_files = True
    for_change = True

    def describe(self, run, step):
        a = step.args
        env = " ".join(f"{k}=…" for k in (a.get("env") or {}))
        return f"$ (cd {a.get('cwd', '.')} && {env + ' ' if env else ''}{argv_line(a['argv'])})"

    def act(self, ctx, step):
        a = step.args
        try:
            res = subprocess.run(list(a["argv"]), cwd=ctx.plan.root / a.get("cwd", "."),
                                 env=dict(ctx.env, **(a.get("env") or {})), capture_output=True, text=True,
                                 timeout=ctx.command_timeout)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise UndoitError(f"{a['argv'][0]}: {err}") from None
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
            raise UndoitError(ctx.redact(f"{' '.join(a['argv'])} failed (exit {res.returncode}): ")
                              + ctx.redact.clip(tail[0], 200))
        return f"{' '.join(a['argv'])}: ok"


@STEPS.register
class Exec(StepType):
    name = "exec"
    summary = "run a command in a running service's container (user: as whom)"
    example = {"do": "exec", "service": "db", "argv": ["psql", "-U", "postgres", "-f", "/migrations/down.sql"]}
    required = frozenset({"service", "argv"})
    optional = frozenset({"user"})
    changes_files = True  # through a bind mount
    for_change = True

    def describe(self, run, step):
        return "$ " + compose_line(run.ctx, "exec", "-T", step.args["service"], argv_line(step.args["argv"]))

    def act(self, ctx, step):
        a = step.args
        ctx.compose.exec(a["service"], *a["argv"], user=a.get("user"), timeout=ctx.command_timeout)
        return f"ran in {a['service']}"
