"""Malformed plans and mutated archives: never a traceback, never a write outside the
target, every refusal one line. Seeded, so a failure can be replayed."""

from __future__ import annotations

import hashlib
import io
import random
import tarfile
from pathlib import Path

import pytest
import zstandard

from scripts.store import archive
from scripts.plan import plan as planmod
from scripts.errors import UndoitError
from scripts.store.tarscan import TarScanner

KIT = Path(__file__).resolve().parent.parent
DEMO_PLAN = (KIT / "phases.toml").read_text()


def load_text(tmp_path, text: str | bytes):
    p = tmp_path / "plan.toml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return planmod.load(p, env={})


@pytest.mark.parametrize("old, new, key", [
    ('{ do = "down" },', '{ do = ["down"] },', "do"),
    ('{ check = "healthy", name = "All containers healthy" },', '{ check = { a = 1 } },', "check"),
    ('target = "phase1"', 'target = ["phase1"]', "target"),
    ('target = "phase1"', 'target = { id = "phase1" }', "target"),
    ('cwd = "backend"', 'cwd = { a = 1 }', "cwd"),
    ('cwd = "backend"', 'cwd = "../elsewhere"', "cwd"),
    ('{ do = "up" },\n]', '{ do = "up", timeout = "soon" },\n]', "timeout"),
    ('{ do = "up" },\n]', '{ do = "up", timeout = -5 },\n]', "timeout"),
    ('expect = 7,', 'expect = "seven",', "expect"),
    ('{ check = "logs-clean", name = "No errors in logs" },',
     '{ check = "logs-clean", pattern = "(unclosed", name = "x" },', "pattern"),
    ('snapshots = "snapshots"', 'snapshots = ""', "snapshots"),
    ('tag = "pre-simplification-{date}"', 'tag = "pre-{when}"', "tag"),
    ('branch = "backup-{timestamp}"', 'branch = "backup..{timestamp}"', "branch"),
    ('branch = "backup-{timestamp}"', 'branch = "bad branch {timestamp}"', "branch"),
    # to the leaf: values a runner could not use (an empty command ended a rollback in an IndexError)
    ('{ do = "run", argv = ["npm", "install", "--no-audit", "--no-fund", "--offline"], cwd = "backend" },',
     '{ do = "run", argv = [], cwd = "backend" },', "argv"),
    ('{ do = "run", argv = ["npm", "install", "--no-audit", "--no-fund", "--offline"], cwd = "backend" },',
     '{ do = "run", argv = ["", "install"], cwd = "backend" },', "argv"),
    ('{ check = "command", argv = ["make", "-n", "test"],', '{ check = "command", argv = [],', "argv"),
    ('{ do = "restore-volumes", volumes = ["minio_data"] },', '{ do = "restore-volumes", volumes = [] },', "volumes"),
    ('{ do = "remove-networks", networks = ["frontend", "backend", "database"] },\n',
     '{ do = "remove-networks", networks = [] },\n', "networks"),
    ('{ do = "restore-files", paths = ["frontend/src/"] },', '{ do = "restore-files", paths = [] },', "paths"),
    ('{ do = "restore-files", paths = ["frontend/src/"] },', '{ do = "restore-files", paths = ["/etc"] },', "paths"),
    ('{ do = "restore-files", paths = ["frontend/src/"] },', '{ do = "restore-files", paths = ["../x"] },', "paths"),
    ('{ do = "restore-files", paths = ["frontend/src/"] },',
     '{ do = "restore-files", paths = ["frontend/src/"], ref = "" },', "ref"),
    ('{ do = "up" },\n]', '{ do = "up", timeout = 0.5 },\n]', "timeout"),
    ('{ do = "up" },\n]', '{ do = "up", timeout = inf },\n]', "timeout"),
    ('{ do = "up" },\n]', '{ do = "up", timeout = nan },\n]', "timeout"),
    ('{ do = "up" },\n]', '{ do = "up", timeout = true },\n]', "timeout"),
    ('{ do = "up" },\n]', '{ do = "note", text = "" },\n]', "text"),
    ('"--offline"], cwd = "backend" },', '"--offline"], cwd = "backend", env = { "A=B" = "1" } },', "env"),
    ('{ check = "logs-clean", name = "No errors in logs" },',
     '{ check = "logs-clean", pattern = "", name = "x" },', "pattern"),
    ('service = "mvp-backend", argv = ["bash"', 'service = "mvp-backend", user = "", argv = ["bash"', "user"),
    ('probe = ["sh", "-c", "for d', 'probe = ["", "-c", "for d', "probe"),
])
def test_wrong_types_and_values_are_one_line_naming_the_key(tmp_path, old, new, key):
    assert old in DEMO_PLAN, old
    with pytest.raises(UndoitError) as err:
        load_text(tmp_path, DEMO_PLAN.replace(old, new, 1))
    assert "\n" not in str(err.value) and key in str(err.value), str(err.value)
    assert err.value.exit_code == 2


@pytest.mark.parametrize("text", [
    "x = " + "[" * 1200 + "]" * 1200,
    "x = " + "{ a = " * 1200 + "1" + " }" * 1200,
    "x = " + "9" * 5000,
    b"[project]\nname = \"\xff\xfe\"\n",
])
def test_hostile_files_are_one_line(tmp_path, text):
    with pytest.raises(UndoitError) as err:
        load_text(tmp_path, text)
    assert "\n" not in str(err.value)


VALUES = ['1', '-1', '0', '"x"', '""', 'true', '[]', '["a"]', '[1, 2]', '{}', '{ a = 1 }', '1.5', '"{nope}"',
          '"../../etc"', '"/abs"', '9' * 4400, '[' * 40 + ']' * 40, '"\\u0000"', '"(unclosed"', '"a b"']


def mutate(rng: random.Random, text: str) -> str | bytes:
    lines = text.splitlines()
    i = rng.randrange(len(lines))
    kind = rng.randrange(7)
    if kind == 0:  # a value replaced by one of another type
        line = lines[i]
        if "=" in line:
            lines[i] = line.split("=", 1)[0] + "= " + rng.choice(VALUES)
    elif kind == 1:
        del lines[i]
    elif kind == 2:
        lines.insert(i, lines[rng.randrange(len(lines))])
    elif kind == 3:  # a key renamed
        lines[i] = lines[i].replace("=", "_x =", 1)
    elif kind == 4:
        return "\n".join(lines)[: rng.randrange(len(text))]
    elif kind == 5:  # a byte flipped, maybe into invalid UTF-8
        data = bytearray("\n".join(lines).encode())
        data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    else:  # an inline value swapped for a deeply nested one
        lines[i] = "x = " + "[" * rng.randrange(5, 300) + "]" * 300
    return "\n".join(lines)


def test_a_thousand_mutated_plans_never_raise_anything_but_one_line(tmp_path):
    rng = random.Random(20261124)
    outcomes = {"loaded": 0, "refused": 0}
    for n in range(1000):
        text = mutate(rng, DEMO_PLAN)
        if rng.random() < 0.3:
            text = mutate(rng, text if isinstance(text, str) else text.decode("utf-8", "replace"))
        try:
            load_text(tmp_path, text)
            outcomes["loaded"] += 1
        except UndoitError as err:
            assert "\n" not in str(err), (n, str(err))
            outcomes["refused"] += 1
    assert outcomes["refused"] > 300 and outcomes["loaded"] > 50, outcomes


def sample_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data, link in [(".", tarfile.DIRTYPE, None, ""), ("./d", tarfile.DIRTYPE, None, ""),
                                       ("./d/a.txt", tarfile.REGTYPE, b"alpha" * 300, ""),
                                       ("./d/b", tarfile.SYMTYPE, None, "a.txt"),
                                       ("./h", tarfile.LNKTYPE, None, "./d/a.txt"),
                                       ("./" + "long" * 40, tarfile.REGTYPE, b"x", "")]:
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname, ti.mode = kind, link, 0o755
            if data is not None:
                ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        if len(b) < 1024:  # truncated to almost nothing already
            break
        kind = rng.randrange(5)
        if kind == 0:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif kind == 1:  # a header field rewritten: name, mode, size, type, link, magic, prefix
            block = rng.randrange(len(b) // 512) * 512
            lo, hi = rng.choice([(0, 100), (100, 108), (124, 136), (156, 157), (157, 257), (257, 265), (345, 500)])
            b[block + lo:block + hi] = bytes(rng.choice([0, 0x2e, 0x2f, 0x31, 0x37, 0xff]) for _ in range(hi - lo))
        elif kind == 2:
            del b[rng.randrange(len(b)):]
        elif kind == 3:
            b[rng.randrange(len(b)):rng.randrange(len(b))] = b"../../" * rng.randrange(1, 5)
        else:
            b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 1024)))
    return bytes(b)


def test_a_thousand_mutated_archives_never_raise_anything_but_one_line():
    rng = random.Random(424242)
    base = sample_tar()
    refused = 0
    for n in range(1000):
        data = mutate_bytes(rng, base)
        scanner = TarScanner(f"mutant {n}")
        try:
            for i in range(0, len(data), 777):  # chunks that cut headers anywhere
                scanner.feed(data[i:i + 777])
            scanner.finish()
        except UndoitError as err:
            assert "\n" not in str(err), (n, str(err))
            refused += 1
    assert refused > 200, refused


def test_mutated_archives_extracted_for_real_write_nothing_outside(tmp_path):
    rng = random.Random(7)
    base = sample_tar()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep\n")
    for n in range(60):
        data = zstandard.ZstdCompressor().compress(mutate_bytes(rng, base))
        path = tmp_path / f"m{n}.tar.zst"
        path.write_bytes(data)
        dest = tmp_path / f"dest{n}"
        dest.mkdir()
        try:
            archive.extract_checked(path, hashlib.sha256(data).hexdigest(), dest)
        except UndoitError as err:
            assert "\n" not in str(err), (n, str(err))
        assert sorted(p.name for p in outside.iterdir()) == ["keep"], n
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(("m", "dest"))) == ["outside"], n
