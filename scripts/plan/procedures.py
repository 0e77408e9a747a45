"""The plan's procedures ([[phase]], [full], [[scenario]]) and their steps, checks and
changes, read against the step and check types of the registry."""

from __future__ import annotations

import re
from typing import Any

from .model import Change, Check, Procedure, Step
from .registry import CHECKS, STEPS, Invalid, Registry
from .tables import REVISION, Reader, within


def read(r: Reader, top: dict, services, networks, volumes) -> tuple[tuple[Procedure, ...], Procedure,
                                                                         tuple[Procedure, ...]]:
    """(phases, full, scenarios), their ids unique and every phase a scenario names known."""
    ctx = _Procedures(r, services, networks, tuple(volumes))
    phases = tuple(ctx.procedure("phase", i, spec) for i, spec in enumerate(_list(r, top, "phase")))
    full = ctx.procedure("full", None, top["full"])
    scenarios = tuple(ctx.procedure("scenario", i, spec) for i, spec in enumerate(_list(r, top, "scenario")))
    seen: set[str] = set()
    for proc in (*phases, full, *scenarios):
        if proc.id in seen:
            raise r.fail(proc.kind, "id", f"duplicate id {proc.id!r}")
        seen.add(proc.id)
    phase_ids = tuple(p.id for p in phases)
    for proc in scenarios:
        table = f"scenario.{proc.id}"
        for key in ("keeps", "rolls_back"):
            r.known(table, key, getattr(proc, key), phase_ids, "phase")
        if proc.rehearse_changes is not None:
            r.known(table, "rehearse_changes", proc.rehearse_changes, proc.rolls_back, "phase it rolls back:")
    _escalations(r, (*phases, full, *scenarios))
    return phases, full, scenarios


def _escalations(r: Reader, procs) -> None:
    """Each on_failure names another procedure, and following them never comes back
    round (a failed escalation would escalate forever)."""
    by_id = {p.id: p for p in procs}
    for proc in procs:
        if proc.on_failure is None:
            continue
        table = proc.id if proc.kind == "full" else f"{proc.kind}.{proc.id}"
        r.known(table, "on_failure", [proc.on_failure], set(by_id) - {proc.id}, "procedure (another phase, "
                "full or a scenario)")
        chain, step = [proc.id], proc
        while step.on_failure is not None:
            if step.on_failure in chain:
                raise r.fail(table, "on_failure", "escalates in a circle: " + " -> ".join(chain + [step.on_failure]))
            chain.append(step.on_failure)
            step = by_id[step.on_failure]


def _list(r: Reader, top: dict, kind: str) -> list:
    value = top.get(kind, [])
    if not isinstance(value, list):
        raise r.fail(kind, None, f"must be an array of tables ([[{kind}]])")
    return value


class _Procedures:
    """What steps and checks may refer to: the plan's services, networks and volumes."""

    def __init__(self, r: Reader, services, networks, volumes):
        self.r, self.services, self.networks, self.volumes = r, services, networks, volumes

    def procedure(self, kind: str, index: int | None, spec: Any) -> Procedure:
        named = isinstance(spec, dict) and isinstance(spec.get("id"), str)
        label = kind if index is None else (f"{kind}.{spec['id']}" if named else f"{kind}[{index}]")
        r = self.r
        r.keys(
            label,
            spec,
            {"title"} | ({"id"} if kind != "full" else set()),
            {"risk", "duration", "triggers", "ref", "volumes", "steps", "checks", "on_failure"}
            | ({"keeps", "rolls_back", "rehearse_changes"} if kind == "scenario" else set())
            | ({"change"} if kind == "phase" else set())
            | ({"id"} if kind == "full" else set()),
        )
        pid = r.str_(label, spec, "id", "full")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", pid):
            raise r.fail(label, "id", f"{pid!r}: use lowercase letters, digits, - and _")
        table = f"{kind}.{pid}" if kind != "full" else "full"
        vols = r.strs(table, spec, "volumes")
        r.known(table, "volumes", vols, self.volumes, "volume")
        ref = spec.get("ref")
        if ref is not None and not isinstance(ref, str):
            raise r.fail(table, "ref", "must be a string")
        return Procedure(
            id=pid,
            title=r.str_(table, spec, "title"),
            kind=kind,
            risk=r.str_(table, spec, "risk", ""),
            duration=r.str_(table, spec, "duration", ""),
            triggers=r.strs(table, spec, "triggers"),
            ref=ref,
            volumes=vols,
            keeps=r.strs(table, spec, "keeps"),
            rolls_back=r.strs(table, spec, "rolls_back"),
            # counted from 1, as a person counts the lines of the array
            steps=tuple(self.step(f"{table} step {i}", s)
                        for i, s in enumerate(r.array(f"{table}.steps", spec.get("steps", [])), 1)),
            checks=tuple(self.check(f"{table} check {i}", c)
                         for i, c in enumerate(r.array(f"{table}.checks", spec.get("checks", [])), 1)),
            change=self.change(f"{table}.change", spec["change"]) if "change" in spec else None,
            rehearse_changes=r.strs(table, spec, "rehearse_changes") if "rehearse_changes" in spec else None,
            on_failure=r.str_(table, spec, "on_failure") if "on_failure" in spec else None,
        )

    def change(self, table: str, spec: Any) -> Change:
        r = self.r
        r.keys(table, spec, set(), {"ref", "steps", "settle"})
        ref = spec.get("ref")
        if ref is not None and (not isinstance(ref, str) or ref.count("..") > 1
                                or not all(REVISION.fullmatch(part) for part in ref.split(".."))):
            raise r.fail(table, "ref", f"{ref!r}: a branch, tag or commit, or a range A..B")
        settle = spec.get("settle", 0)
        if not within(settle, 0, 600):
            raise r.fail(table, "settle", "must be a number of seconds between 0 and 600")
        # what a change may do to the running stack: no restores (a change moves forward;
        # only a rollback restores), and what only a change does (remove a volume)
        steps = tuple(self.step(f"{table} step {i}", s, in_change=True)
                      for i, s in enumerate(r.array(f"{table}.steps", spec.get("steps", [])), 1))
        if ref is None and not steps:
            raise r.fail(table, None, "names neither a ref nor steps: nothing to apply")
        return Change(ref=ref, steps=steps, settle=settle)

    def step(self, table: str, spec: Any, in_change: bool = False) -> Step:
        known = STEPS.names(for_change=True) if in_change else STEPS.names(for_rollback=True)
        kind = self._type(table, spec, "do", STEPS, known)
        self.r.keys(table, spec, set(kind.required) | {"do"}, set(kind.optional))
        args = {k: v for k, v in spec.items() if k != "do"}
        self._refs(table, args)
        self._own(table, kind, args)
        return Step(do=kind.name, args=args)

    def check(self, table: str, spec: Any) -> Check:
        kind = self._type(table, spec, "check", CHECKS, list(CHECKS))
        self.r.keys(table, spec, set(kind.required) | {"check"}, set(kind.optional) | {"name"})
        args = {k: v for k, v in spec.items() if k not in ("check", "name")}
        self._refs(table, args)
        self._own(table, kind, args)
        return Check(check=kind.name, name=self.r.str_(table, spec, "name", kind.name), args=args)

    def _type(self, table: str, spec: Any, key: str, registry: Registry, known: list[str]):
        if not isinstance(spec, dict) or key not in spec:
            raise self.r.fail(table, key, "missing")
        kind = spec[key]
        if not isinstance(kind, str) or kind not in known:
            raise self.r.fail(table, key, f"unknown type {kind!r} (known: {', '.join(known)})")
        return registry[kind]

    def _own(self, table: str, kind, args: dict) -> None:
        """What the type itself refuses, beyond the keys every type shares."""
        try:
            kind.validate(args)
        except Invalid as err:
            raise self.r.fail(table, err.key, err.problem) from None

    def _refs(self, table: str, args: dict) -> None:
        """Every key of a step or check, to the leaf: its type, that it names something
        the plan has, and the value a runner can use (a command, a path, a duration)."""
        r = self.r
        for key in ("services", "networks", "volumes", "paths", "argv", "ignore"):
            if key in args:
                r.strs(table, args, key)
        for key in ("cwd", "user", "text", "ref", "set", "pattern", "service"):
            if key in args and not isinstance(args[key], str):
                raise r.fail(table, key, "must be a string")
        if "service" in args:
            r.known(table, "service", [args["service"]], self.services, "service")
        r.known(table, "services", args.get("services", ()), self.services, "service")
        r.known(table, "networks", args.get("networks", ()), self.networks, "network")
        r.known(table, "volumes", args.get("volumes", ()), self.volumes, "volume")
        _leaves(r, table, args)


# keys a step or check must name at least one of, and what each names
AT_LEAST_ONE = {"argv": "a command", "paths": "a path", "volumes": "a volume", "networks": "a network"}
# string keys whose empty value would stand for nothing (or, for ref, for the run's own ref)
NOT_EMPTY = ("user", "text", "ref", "set", "pattern", "service")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _leaves(r: Reader, table: str, args: dict) -> None:
    for key, what in AT_LEAST_ONE.items():
        if key in args and not args[key]:
            raise r.fail(table, key, f"must name {what} (an empty list)")
    if "argv" in args and not args["argv"][0]:
        raise r.fail(table, "argv", "its first item must name the command to run")
    for path in args.get("paths", ()):
        if not path or path.startswith("/") or ".." in path.split("/"):
            raise r.fail(table, "paths", f"{path!r}: a path of the project, relative to its root")
    for key in NOT_EMPTY:
        if args.get(key) == "":
            raise r.fail(table, key, "must not be empty")
    if "ref" in args and not REVISION.fullmatch(args["ref"]):
        raise r.fail(table, "ref", f"{args['ref']!r}: a branch, tag or commit")
    if "timeout" in args and not within(args["timeout"], 1, 86400):
        raise r.fail(table, "timeout", "must be a number of seconds between 1 and 86400")
    if "expect" in args and (isinstance(args["expect"], bool) or not isinstance(args["expect"], (int, str))):
        raise r.fail(table, "expect", "must be a number or a string")
    if "cwd" in args and (args["cwd"].startswith("/") or ".." in args["cwd"].split("/")):
        raise r.fail(table, "cwd", "a folder of the project, relative to its root")
    if "pattern" in args:
        try:
            re.compile(args["pattern"])
        except re.error as err:
            raise r.fail(table, "pattern", f"not a regular expression ({err})") from None
    if "env" in args and not (isinstance(args["env"], dict) and all(
            isinstance(v, str) and _ENV_NAME.fullmatch(k) for k, v in args["env"].items())):
        raise r.fail(table, "env", "must be a table of strings, each under a variable's name (A-Z, 0-9, _)")
