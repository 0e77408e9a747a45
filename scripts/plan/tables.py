"""Walking the parsed TOML: keys and types checked, every error naming file, table and key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .. import errors
from ..errors import UndoitError

# a revision git can resolve (main, v1.2, a1b2c3, main~2): never an option, never blank
REVISION = re.compile(r"[^-.\s][^\s\x00-\x1f\x7f]*")


class Reader:
    """Walks the parsed TOML, checking keys and types; errors name file, table and key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, table: str, key: str | None, problem: str) -> UndoitError:
        where = f"[{table}]" + (f" {key}" if key else "")
        return UndoitError(f"{self.path}: {where}: {problem}", exit_code=errors.PLAN)

    def keys(self, table: str, data: Any, required: set[str], optional: set[str]) -> dict:
        if not isinstance(data, dict):
            raise self.fail(table, None, "must be a table")
        for key in data:
            if key not in required | optional:
                allowed = ", ".join(sorted(required | optional))
                raise self.fail(table, key, f"unknown key (allowed: {allowed})")
        for key in sorted(required):
            if key not in data:
                raise self.fail(table, key, "missing")
        return data

    def str_(self, table: str, data: dict, key: str, default: str | None = None) -> str:
        value = data.get(key, default)
        if not isinstance(value, str):
            raise self.fail(table, key, "must be a string")
        return value

    def bool_(self, table: str, data: dict, key: str, default: bool = False) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(table, key, "must be true or false")
        return value

    def strs(self, table: str, data: dict, key: str) -> tuple[str, ...]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(table, key, "must be a list of strings")
        return tuple(value)

    def array(self, table: str, value: Any) -> list:
        if not isinstance(value, list):
            raise self.fail(table, None, f"must be an array of tables ([[{table}]])")
        return value

    def known(self, table: str, key: str, values, known, what: str) -> None:
        for value in values:
            if value not in known:
                raise self.fail(table, key, f"unknown {what} {value!r}")


def within(value, low: float, high: float) -> bool:
    """A number (not a boolean) from low to high: TOML's inf and nan are not."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and low <= value <= high


def beside(plan_path: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else plan_path.parent / p
