"""Keep secrets out of output, logs and reports: values from .env files and secrets/.

Every file under secrets/ is secret. From .env files, the values of secret-looking keys
(passwords, secrets, tokens, keys, credentials, auth) and URLs carrying a user:password:
masking every value would also mask the project's name and "postgres" everywhere.
"""

from __future__ import annotations

import re
from pathlib import Path

from dotenv import dotenv_values

MASK = "***"
MIN_LEN = 4  # shorter values ("1", "no") would mask half of every log line
SECRET_KEY = re.compile(r"(?i)(pass|secret|token|key|credential|private|auth|cert)")
URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@")


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
                    values += [v for k, v in dotenv_values(env_file).items()
                               if v and (SECRET_KEY.search(k) or URL_WITH_PASSWORD.match(v))]
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

    def __call__(self, text) -> str:
        text = str(text)
        for v in self.values:
            if v in text:
                text = text.replace(v, MASK)
        return text

    def add_from(self, *roots: Path) -> None:
        """Learn values from files a rollback just restored (a secret may come back with them)."""
        self.values = Redactor.for_project(*roots).values + self.values
        self.values = sorted(set(self.values), key=len, reverse=True)
