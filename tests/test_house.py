"""The shape of the kit, from its own imports: packages in layers, imports only pointing
down, no circle, small modules and functions, and no word of the demo (pure: no engine)."""

from __future__ import annotations

import ast
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
SCRIPTS = KIT / "scripts"
# each package may import from those before it, never from one after it
LAYERS = ["errors", "output", "plan", "store", "repo", "stack", "backup", "rollback", "offsite", "rehearse", "cli"]


def modules() -> dict[str, Path]:
    out = {}
    for path in SCRIPTS.rglob("*.py"):
        parts = path.relative_to(KIT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The kit's modules a module imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                target = next((c for c in (f"{base}.{alias.name}", base) if c in known), None)
                if target and target != name:
                    found.add(target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known and a.name != name}
    return found


def layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else -1  # scripts/__init__: under every layer


def test_every_import_points_down_the_layers():
    mods = modules()
    assert {n.split(".")[1] for n in mods if n.count(".") >= 1} <= set(LAYERS), "a package outside the layers"
    upward = [f"{a} -> {b}" for a, path in mods.items() for b in imports(a, path, set(mods))
              if layer(b) > layer(a)]
    assert upward == []


def test_no_import_circle():
    mods = modules()
    graph = {a: imports(a, p, set(mods)) for a, p in mods.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            n = todo.pop()
            for m in graph[n]:
                if m == goal:
                    return True
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return False

    assert [a for a in graph if reaches(a, a)] == []


def test_modules_and_functions_stay_small():
    long_modules, long_functions = [], []
    for name, path in modules().items():
        text = path.read_text()
        if len(text.splitlines()) > 500:
            long_modules.append(name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 70:
                long_functions.append(f"{name}.{node.name}")
    assert (long_modules, long_functions) == ([], [])


def test_the_kit_does_not_name_the_demo():
    named = [str(p.relative_to(KIT)) for p in SCRIPTS.rglob("*") if p.is_file() and p.suffix in (".py", ".sh", "")
             and "demo" in p.read_text(errors="replace").lower()]
    assert named == []
