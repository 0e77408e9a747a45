"""Keep secrets out of output, logs, reports and snapshot sets, wherever they appear.

Secret: every file under secrets/ and every compose `secrets:` file; every value of a
service's `env_file`; from .env files, the values of secret-looking keys (passwords,
secrets, tokens, keys, credentials, auth) and the passwords of URLs (masking every .env
value would also mask the project's name and "postgres" everywhere). Each is masked as a
substring of anything written (a URL, a command line, a healthcheck, a label), and so
is the password part of any scheme://user:password@ URL, known or not.
"""

from __future__ import annotations

import re
from pathlib import Path

from dotenv import dotenv_values

MASK = "***"
MIN_LEN = 4  # shorter values ("1", "no") would mask half of every log line
SECRET_KEY = re.compile(r"(?i)(pass|secret|token|key|credential|private|auth|cert)")
URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@")
URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s:'\"]*:)([^/@\s'\"]+)(@)")


class Redactor:
    def __init__(self, values):
        self.values = sorted({v for v in values if v and len(v) >= MIN_LEN}, key=len, reverse=True)

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
        if config is None:
            try:
                from .compose import for_plan

                config = for_plan(plan).config_json()
            except Exception:  # noqa: BLE001 - a compose file the change broke: the files above still count
                config = {}
        r.values = sorted(set(r.values) | set(_declared(config, Path(plan.root))), key=len, reverse=True)
        return r

    def __call__(self, text) -> str:
        text = str(text)
        for v in self.values:
            if v in text:
                text = text.replace(v, MASK)
        return URL_PASSWORD.sub(rf"\1{MASK}\3", text)

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
        self.values = Redactor.for_project(*roots).values + self.values
        self.values = sorted(set(self.values), key=len, reverse=True)


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

