"""The step and check types a plan may name: one registry for each, one class per type.

A type is a small class: its name, its keys (required, optional), whether it destroys
something or changes files, whether a procedure and a phase's change may use it, any
check of its values beyond the key's type, its dry-run description and its execution.
Plan validation, the dry run, the runner and a rehearsal's change all read it here.

Where the types are: the kit's own in `scripts/rollback/steps/` and
`scripts/rollback/checks/`, one module per family, each class registering itself with
`@STEPS.register` / `@CHECKS.register` when its module is imported. The plan sits
below the code that runs steps (compose, git, the engine), so it never imports those
modules: the first time a registry is read, it imports its package by name
(`importlib`), and that is the kit's one plugin mechanism. A type registered by anyone
else (a test's) is read the same way from then on. Adding a type is one class in one
of those modules (or a module of its own, imported by the package) and its test.

What each method receives, from the rollback package: `run` is the rollback as it
goes (`rollback/context.py`: Run, its fixed context `run.ctx` and what it has done so
far), `ctx` a read-only context (StackContext for a change; a rollback's RunContext).
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar, Generic, Iterator, TypeVar


class Invalid(Exception):
    """A key whose value a type refuses beyond its type (the loader names file and table)."""

    def __init__(self, key: str | None, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


class _Type:
    name: ClassVar[str]
    required: ClassVar[frozenset[str]] = frozenset()
    optional: ClassVar[frozenset[str]] = frozenset()
    summary: ClassVar[str] = ""  # what it does, for the reference (README, "Steps and checks")
    example: ClassVar[dict[str, Any]] = {}  # one use of it, as a plan writes it (the reference's, tested)

    def validate(self, args: dict[str, Any]) -> None:
        """Raise Invalid(key, problem) for a value this type cannot use. The loader has
        already checked the keys every type shares by name (services, paths, argv,
        timeout...: plan/procedures.py); a key of this type's own is checked here."""


class StepType(_Type):
    """A kind of step (`do = "..."`)."""

    destructive: ClassVar[bool] = False  # marked "!" in the plan; asks before it runs on a terminal
    changes_files: ClassVar[bool] = False  # later file restores of the run are planned again after it
    runs_images: ClassVar[bool] = False  # starts containers: the set's images must be there before step 1
    for_rollback: ClassVar[bool] = True  # a procedure's steps may use it
    for_change: ClassVar[bool] = False  # a phase's change may use it (apply)

    def volumes_restored(self, step) -> tuple[str, ...]:
        """The plan's volume keys this step fills from the set (built and proved before step 1)."""
        return ()

    def describe(self, run, step) -> str:
        """What the dry run (and the plan printed before a run) says this step does: the
        exact commands, resolved refs, real names."""
        raise NotImplementedError

    def execute(self, run, step) -> str:
        """Do it in a rollback; one line saying what was done; UndoitError when it failed."""
        return self.act(run.ctx, step)

    def act(self, ctx, step) -> str:
        """What it does to the stack with nothing but a read-only context: by default both
        a rollback's execute and a change's apply."""
        raise NotImplementedError

    def apply(self, ctx, step) -> None:
        """Do it as part of a phase's change (a rehearsal's sandbox): no safety copies,
        nothing recorded."""
        self.act(ctx, step)


class CheckType(_Type):
    """A kind of check (`check = "..."`); every check may also carry a `name`."""

    def describe(self, ctx, check) -> str:
        """One line: what the check compares."""
        raise NotImplementedError

    def run(self, ctx, check) -> tuple[bool, str]:
        """(passed, one line why); an expected failure is a False, never an exception."""
        raise NotImplementedError


T = TypeVar("T", StepType, CheckType)


class Registry(Generic[T]):
    """Types by name, in the order they were registered; the kit's own are imported from
    `package` the first time the registry is read."""

    def __init__(self, what: str, base: type, package: str):
        self.what, self.base, self.package = what, base, package
        self._types: dict[str, T] = {}
        self._loaded = False

    def register(self, cls: type) -> type:
        """Class decorator: the type, registered under its `name` (one instance)."""
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{cls!r} is not a {self.base.__name__}")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__name__} names no {self.what} type (name = ...)")
        if name in self._types and type(self._types[name]) is not cls:
            raise ValueError(f"{self.what} type {name!r} is registered already ({type(self._types[name]).__name__})")
        overlap = set(cls.required) & set(cls.optional)
        if overlap:
            raise TypeError(f"{cls.__name__}: {', '.join(sorted(overlap))} both required and optional")
        self._types[name] = cls()
        return cls

    def unregister(self, name: str) -> None:
        """Forget a type (a test's own, once the test is done)."""
        self._types.pop(name, None)

    def _all(self) -> dict[str, T]:
        if not self._loaded:
            self._loaded = True
            try:
                importlib.import_module(self.package, __package__)
            except BaseException:
                self._loaded = False
                raise
        return self._types

    def __getitem__(self, name: str) -> T:
        return self._all()[name]

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._all()))

    def names(self, **flags: bool) -> list[str]:
        """The names of the types whose attributes have these values (for_change=True...)."""
        return [n for n, t in self._all().items() if all(getattr(t, k) == v for k, v in flags.items())]


STEPS: Registry[StepType] = Registry("step", StepType, "..rollback.steps")
CHECKS: Registry[CheckType] = Registry("check", CheckType, "..rollback.checks")


def reference() -> str:
    """Every step and check type, its keys and an example, as the README's "Steps and
    checks" shows them: made from the registry, so the two cannot drift (a test compares)."""
    out = []
    for title, registry, key in (("Steps", STEPS, "do"), ("Checks", CHECKS, "check")):
        out += [f"{title} (`{key} = \"...\"`):", "", f"| {key} | keys (**required**) | what it does | example |",
                "|---|---|---|---|"]
        for name in registry:
            t = registry[name]
            if key == "do" and not t.for_rollback:
                continue  # a change's own step: listed with the change below
            out.append(_row(name, t, key))
        out.append("")
    change = [n for n in STEPS if STEPS[n].for_change]
    out.append("A phase's change (`[phase.change] steps`) may use: " + ", ".join(f"`{n}`" for n in change)
               + " (`up` and `restart` without the wait for health there)."
               + "".join(f" `{n}`: {STEPS[n].summary}." for n in change if not STEPS[n].for_rollback))
    out.append("Every check may also carry a `name`. Keys every type shares: `services` (compose services, all "
               "when none), `paths` (relative to the project folder), `argv` (a command and its arguments), "
               "`timeout` (seconds).")
    return "\n".join(out) + "\n"


def _row(name: str, t: "_Type", key: str) -> str:
    keys = [f"**{k}**" for k in sorted(t.required)] + sorted(t.optional)
    example = "{ " + ", ".join(f"{k} = {_inline(v)}" for k, v in t.example.items()) + " }"
    return f"| `{name}` | {', '.join(keys) or '-'} | {t.summary} | `{example}` |"


def _inline(value) -> str:
    import json

    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()
