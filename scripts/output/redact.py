"""Keep secrets out of output, logs, reports and snapshot sets, wherever they appear.

Secret: every file under secrets/ and every compose `secrets:` file; every value of a
service's `env_file`; from .env files, the values of secret-looking keys (passwords,
secrets, tokens, keys, credentials, auth) and the passwords of URLs (masking every .env
value would also mask the project's name and "postgres" everywhere). Each is masked as a
substring of anything written (a URL, a command line, a healthcheck, a label), and so
is the password part of any scheme://user:password@ URL, known or not.

A value is also masked as the writers of reports and the programs a check runs would
escape it: JSON, URL-encoded, XML/HTML. Output is masked whole before it is cut
(`clip`): a cut first would leave a secret's start that no longer matches.
"""

from __future__ import annotations

import html
import json
import re
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable
from urllib.parse import quote, quote_plus
from xml.sax.saxutils import escape

from dotenv import dotenv_values

MASK = "***"
MIN_LEN = 4  # shorter values ("1", "no") would mask half of every log line
SECRET_KEY = re.compile(r"(?i)(pass|secret|token|key|credential|private|auth|cert)")
URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@")
URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s:'\"]*:)([^/@\s'\"]+)(@)")


def forms(value: str) -> set[str]:
    """The ways a value appears in what the kit writes or a command prints: as it is,
    JSON-escaped (ASCII or not), URL-encoded (a path, a query), XML- and HTML-escaped."""
    found = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
             quote(value, safe=""), quote(value), quote_plus(value),
             escape(value), escape(value, {'"': "&quot;", "'": "&apos;"}), html.escape(value)}
    return {f for f in found if len(f) >= MIN_LEN}


class Redactor:
    def __init__(self, values=()):
        self.values = values

    @property
    def values(self) -> list[str]:
        return self._values

    @values.setter
    def values(self, values) -> None:
        self._values = sorted({v for v in values if v and len(v) >= MIN_LEN}, key=len, reverse=True)
        # longest first: a value that holds another is masked whole
        self._masks = sorted({f for v in self._values for f in forms(v)}, key=len, reverse=True)

    def learn(self, values) -> None:
        """Mask these values too, from now on."""
        self.values = [*self._values, *values]

    @classmethod
    def shared(cls, plan) -> "Redactor":
        """This process's one redactor of plan while a task masks its output with it (or a
        rehearsal shares the live one with its sandbox): values learnt by a run (restored
        files) then mask its output too. Otherwise a new for_plan."""
        lazy = _shared.get(_key(plan))
        return lazy() if lazy is not None else cls.for_plan(plan)

    @classmethod
    def for_project(cls, *roots: Path) -> "Redactor":
        """Values of every .env* file at the roots and every file under their secrets/."""
        values = []
        for root in roots:
            root = Path(root)
            for env_file in sorted(root.glob(".env*")):
                if env_file.is_file() and not env_file.name.endswith(".example"):
                    for k, v in dotenv_values(env_file).items():
                        if v and (SECRET_KEY.search(k) or URL_WITH_PASSWORD.match(v)):
                            values.append(v)
                            values += [m.group(2) for m in URL_PASSWORD.finditer(v)]
            secrets = root / "secrets"
            if secrets.is_dir():
                for f in secrets.rglob("*"):
                    if f.is_file():
                        try:
                            text = f.read_text().strip()
                        except (OSError, UnicodeDecodeError):
                            continue
                        values.append(text)
                        values += [line.strip() for line in text.splitlines()]
        return cls(values)

    @classmethod
    def for_plan(cls, plan, config: dict | None = None) -> "Redactor":
        """for_project at the project and the plan's folder, plus what compose declares
        secret: every value of the services' env_files, every `secrets:` file."""
        r = cls.for_project(plan.root, plan.path.parent)
        if config is None and _compose_config:
            try:
                config = _compose_config[0](plan)
            except Exception:  # noqa: BLE001 - a compose file the change broke: the files above still count
                config = {}
        r.learn(_declared(config or {}, Path(plan.root)))
        return r

    def __call__(self, text) -> str:
        text = str(text)
        for v in self._masks:
            if v in text:
                text = text.replace(v, MASK)
        return URL_PASSWORD.sub(rf"\1{MASK}\3", text)

    def clip(self, text, n: int) -> str:
        """The first n characters of text, masked before the cut."""
        return self(text)[:n]

    def tail(self, text, n: int) -> str:
        """The last n characters of text, masked before the cut."""
        return self(text)[-n:]

    def data(self, value):
        """A JSON-like structure with every string masked (keys too): masking its JSON text
        would miss a secret that JSON escapes, and could break the JSON."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self(k) if isinstance(k, str) else k: self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value

    def add_from(self, *roots: Path) -> None:
        """Learn values from files a rollback just restored (a secret may come back with them)."""
        self.learn(Redactor.for_project(*roots).values)


# how a plan's compose config is read (stack/compose.py puts it here when it loads: this
# layer knows no compose; every run that builds a plan's redactor has loaded it)
_compose_config: list[Callable] = []


def reads_compose_with(config_of: Callable) -> None:
    """config_of(plan) -> compose's config: the env_files and secrets it declares are masked."""
    _compose_config[:] = [config_of]


PLAIN = Redactor()  # masks only URL passwords: for output with no plan to know secrets from


class _Lazy:
    """A plan's redactor, built when first asked for: building asks compose for the config,
    which a task that prints nothing (an up-to-date backup) must not wait for."""

    def __init__(self, plan, made: Redactor | None = None):
        self.plan, self.made = plan, made
        self.lock = threading.Lock()

    def __call__(self) -> Redactor:
        with self.lock:
            if self.made is None:
                self.made = Redactor.for_plan(self.plan)
            return self.made


_shared: dict[tuple, _Lazy] = {}
_active: list[_Lazy] = []  # the redactors of the tasks masking this process's output, innermost last


def _key(plan) -> tuple:
    return (str(plan.path), str(plan.root), plan.project_name)


@contextmanager
def sharing(plan, made: Redactor | None = None):
    """For the block, Redactor.shared(plan) answers one redactor (made, or built when
    first needed); yields the way to it."""
    key = _key(plan)
    saved = _shared.get(key)
    lazy = _shared[key] = _Lazy(plan, made)
    try:
        yield lazy
    finally:
        if saved is None:
            _shared.pop(key, None)
        else:
            _shared[key] = saved


@contextmanager
def masking(plan):
    """For the block, everything written to stdout and stderr is masked by plan's shared
    redactor: the backstop behind each writer's own masking, so no print escapes."""
    with sharing(plan) as lazy:
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = Masked(out, lazy), Masked(err, lazy)
        _active.append(lazy)
        try:
            yield lazy
        finally:
            _active.remove(lazy)
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            sys.stdout, sys.stderr = out, err


_tasks: list = []  # the plan whose secrets every task's output is masked with (mask_tasks)


def mask_tasks(plan) -> None:
    """From here on, every task's output (stdout, stderr, its failure's line) is masked by
    plan's secrets (dodo.py, once the plan is loaded; None: no plan, nothing to mask)."""
    _tasks[:] = [plan] if plan is not None else []


@contextmanager
def task_output():
    """A task's action: its stdout and stderr masked (mask_tasks) for the block; yields the
    mask for the line it ends with."""
    if not _tasks:
        yield PLAIN
        return
    with masking(_tasks[0]) as lazy:
        yield lambda text: lazy()(text)


def current() -> Redactor:
    """The redactor of the task whose output is being masked (PLAIN outside any): for text
    that is laid out before it is written (a table wraps its cells)."""
    return _active[-1]() if _active else PLAIN


class Masked:
    """A text stream that masks what passes through it, a line at a time: a value split
    over two writes (print's text, then its newline) is whole when it is masked. flush()
    lets a partial line out (a prompt, a live line redrawn in place)."""

    def __init__(self, stream, redactor: Callable[[], Redactor]):
        self._stream, self._redactor, self._held = stream, redactor, ""
        self._lock = threading.RLock()  # rich's live display writes from a thread of its own

    def write(self, text: str) -> int:
        with self._lock:
            self._held += text
            cut = self._held.rfind("\n") + 1
            if cut:
                done, self._held = self._held[:cut], self._held[cut:]
                self._stream.write(self._redactor()(done))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._held:
                held, self._held = self._held, ""
                self._stream.write(self._redactor()(held))
            self._stream.flush()

    def __getattr__(self, name):  # isatty, fileno, encoding...: the stream's own
        return getattr(self._stream, name)


def _declared(config: dict, root: Path) -> list[str]:
    """Values compose reads from files it was told are secret or environment."""
    values = []
    for svc in (config.get("services") or {}).values():
        for ef in svc.get("env_file") or []:
            path = Path(ef.get("path") if isinstance(ef, dict) else ef)
            path = path if path.is_absolute() else root / path
            if path.is_file():
                values += [v for v in dotenv_values(path).values() if v and len(v) >= MIN_LEN]
    for secret in (config.get("secrets") or {}).values():
        f = (secret or {}).get("file")
        if f:
            path = Path(f) if Path(f).is_absolute() else root / f
            try:
                text = path.read_text().strip()
            except (OSError, UnicodeDecodeError):
                continue
            values += [text] + [line.strip() for line in text.splitlines() if line.strip()]
    return values

