"""Checks that run a command: on the host, in a service, the project's own tests."""

from __future__ import annotations

import subprocess

from ...errors import UndoitError
from ...plan.registry import CHECKS, CheckType


def argv_line(argv) -> str:
    """A command on one line: a multi-line argument (an inline script) shows its first line."""
    out = []
    for arg in argv:
        lines = [line for line in str(arg).strip().splitlines() if line.strip()]
        shown = lines[0] + (f" … (+{len(lines) - 1} lines)" if len(lines) > 1 else "") if lines else "''"
        out.append(shown if " " not in shown or len(lines) > 1 else repr(shown))
    return " ".join(out)


def _run_host(ctx, argv, cwd=None) -> subprocess.CompletedProcess:
    root = ctx.plan.root
    return subprocess.run(list(argv), cwd=root / cwd if cwd else root, env=dict(ctx.env),
                          capture_output=True, text=True, timeout=ctx.command_timeout)


def _expect(ctx, check, out: str) -> tuple[bool, str]:
    want = check.args.get("expect")
    if want is None:
        return True, ""
    text = out.strip()
    ok = text == str(want) or (isinstance(want, str) and want in text.splitlines())
    return ok, f"output {ctx.redact.tail(text, 80)!r}, expected {want!r}"


@CHECKS.register
class Command(CheckType):
    name = "command"
    summary = "a command on this host exits 0 (expect: its output, or one of its lines)"
    example = {"check": "command", "argv": ["curl", "-fsS", "http://localhost:8080/health"]}
    required = frozenset({"argv"})
    optional = frozenset({"cwd", "expect"})

    def describe(self, ctx, check):
        a = check.args
        return f"$ {argv_line(a['argv'])}" + (f"  (in {a['cwd']})" if a.get("cwd") else "")

    def run(self, ctx, check):
        try:
            res = _run_host(ctx, check.args["argv"], check.args.get("cwd"))
        except (OSError, subprocess.TimeoutExpired) as err:
            return False, f"{check.args['argv'][0]}: {err}"
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
            return False, f"exit {res.returncode}: {ctx.redact.clip(tail[0], 160)}"
        ok, why = _expect(ctx, check, res.stdout)
        return ok, why or f"{' '.join(check.args['argv'])} succeeded"


@CHECKS.register
class Exec(CheckType):
    name = "exec"
    summary = "a command in a service's container exits 0 (expect: its output, or one of its lines)"
    example = {"check": "exec", "service": "db", "argv": ["pg_isready"], "expect": "accepting connections"}
    required = frozenset({"service", "argv"})
    optional = frozenset({"expect", "user"})

    def describe(self, ctx, check):
        a = check.args
        return f"{a['service']}$ {argv_line(a['argv'])}" + (f"  (expect {a['expect']!r})" if "expect" in a else "")

    def run(self, ctx, check):
        a = check.args
        try:
            out = ctx.compose.exec(a["service"], *a["argv"], user=a.get("user"), timeout=ctx.command_timeout)
        except UndoitError as err:
            # the command as the plan wrote it, and how it failed: not compose's long prefix
            msg = str(err)
            how = msg[msg.index("failed (exit"):] if "failed (exit" in msg else msg
            return False, ctx.redact.clip(f"{argv_line(a['argv'])} in {a['service']} {how}", 600)
        ok, why = _expect(ctx, check, out)
        return ok, why or f"command in {a['service']} succeeded"


@CHECKS.register
class Test(CheckType):
    name = "test"
    summary = "the plan's [project] test_command exits 0"
    example = {"check": "test"}

    def describe(self, ctx, check):
        return f"$ {' '.join(ctx.plan.test_command)}"

    def run(self, ctx, check):
        argv = ctx.plan.test_command
        if not argv:
            return False, "the plan names no test_command"
        try:
            res = _run_host(ctx, argv)
        except (OSError, subprocess.TimeoutExpired) as err:
            return False, f"{argv[0]}: {err}"
        last = (res.stdout + res.stderr).strip().splitlines()[-1:] or [""]
        return res.returncode == 0, f"{' '.join(argv)}: exit {res.returncode}: {ctx.redact.clip(last[0], 160)}"
