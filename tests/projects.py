"""The compose projects and plans of the tests and benches, in one place: services and
plan pieces as small builders, so that a test states only what is particular to it.

    COMPOSE = compose_file({"db": postgres("shop"), "web": app()}, volumes=["pgdata"])
    PLAN = plan(["web", "db"], volumes={"pgdata": volume("db")},
                phases=[phase("db", "the database back", refill(["pgdata"], ["db"]))],
                full=everything(["pgdata"]))
    root = lay_out(tmp_path / "shop", {"compose.yaml": COMPOSE})
    path = write_plan(tmp_path / "plan.toml", PLAN, name, root, kept=tmp_path)

Compose files are written as YAML and plans as TOML by the two small writers at the end
(no YAML or TOML writer is among the kit's dependencies): key for key what a
hand-written file would say. Services run the kit's offline images, never pulled and
off every network unless they name one.

Benches import it as `tests.projects` (the kit's folder is on their sys.path) and pass
`prefix=images.prefix()` where they run compose without the kit's environment.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from scripts.repo import gitstate
from scripts.stack import images

PREFIX = "${UNDOIT_IMAGE_PREFIX:-undoit}"  # compose fills in the kit's image prefix

# ---------------------------------------------------------------------------- services


def merged(base: dict, keys: dict) -> dict:
    """base with keys over it; a key given None is left out."""
    return {k: v for k, v in {**base, **keys}.items() if v is not None}


def image(role: str, prefix: str = PREFIX) -> str:
    """One of the kit's images by role: base, postgres, redis, s3, app."""
    return images.names(prefix)[role]


def service(ref: str, **keys) -> dict:
    """A service on image `ref` (one of the kit's offline images, or one built from
    them): never pulled, off every network unless it names one."""
    offline = {} if "networks" in keys else {"network_mode": "none"}
    return merged({"image": ref, "pull_policy": "never", **offline}, keys)


def healthy_when(*argv: str, interval: str = "1s", **more) -> dict:
    """A healthcheck that runs argv in the container."""
    return {"test": ["CMD", *argv], "interval": interval, **more}


def app(prefix: str = PREFIX, **keys) -> dict:
    """The kit's app image, idle (a web or worker service), healthy at its first check."""
    return service(image("app", prefix), **merged({"stop_grace_period": "1s", "healthcheck": healthy_when("true")},
                                                  keys))


def redis(prefix: str = PREFIX, **keys) -> dict:
    """Redis 7 with its `data` volume, healthy once it answers PING."""
    ping = {"test": ["CMD-SHELL", '[ "$$(redis-cli -h 127.0.0.1 ping)" = PONG ]'], "interval": "1s", "retries": 30}
    return service(image("redis", prefix), **merged({"volumes": ["data:/data"], "healthcheck": ping}, keys))


def postgres(db: str, prefix: str = PREFIX, **keys) -> dict:
    """Postgres 15 holding database `db` in its `pgdata` volume, healthy once `db` takes
    connections; stopped with SIGINT (a fast shutdown)."""
    return service(image("postgres", prefix), **merged({
        "environment": {"POSTGRES_DB": db}, "volumes": ["pgdata:/var/lib/postgresql/data"], "stop_signal": "SIGINT",
        "healthcheck": healthy_when("pg_isready", "-q", "-U", "postgres", "-d", db, retries=60)}, keys))


def keeper(volume: str, ready: str | None = None, prefix: str = PREFIX, **keys) -> dict:
    """The kit's base image asleep with `volume` at /<volume>; healthy once the file
    /<volume>/<ready> exists (no healthcheck without `ready`)."""
    health = healthy_when("test", "-f", f"/{volume}/{ready}") if ready else None
    return service(image("base", prefix), **merged({
        "command": ["sleep", "infinity"], "init": True, "volumes": [f"{volume}:/{volume}"], "healthcheck": health},
        keys))


def waiter(prefix: str = PREFIX, **keys) -> dict:
    """The kit's base image waiting to be stopped (gone at once on SIGTERM), healthy at
    its first check, every 250 ms: a bench's service, whose start a bench times."""
    return service(image("base", prefix), **merged({"command": ["sh", "-c", "trap 'exit 0' TERM; sleep 86400 & wait"],
                                                   "healthcheck": healthy_when("true", interval="250ms")}, keys))


def compose_file(services: dict, volumes=(), **top) -> str:
    """A compose file: the services, each named volume (a name: `{}`; or a dict of
    name -> options), and any other top-level key (name, networks, secrets)."""
    vols = volumes if isinstance(volumes, dict) else {v: {} for v in volumes}
    return _yaml(merged({"name": top.pop("name", None), "services": services, "volumes": vols or None}, top))


# ---------------------------------------------------------------------------- plans


def do(what: str, **keys) -> dict:
    """A step: do("stop", services=["app"])."""
    return {"do": what, **keys}


def check(what: str, **keys) -> dict:
    """A check: check("healthy", services=["app"])."""
    return {"check": what, **keys}


def refill(volumes: list[str], services: list[str]) -> list[dict]:
    """Steps that put volumes back: stop the services that use them, restore, start."""
    return [do("stop", services=services), do("restore-volumes", volumes=volumes), do("up", services=services)]


def volume(*services: str, **keys) -> dict:
    """A [volumes.X] table: the services that mount it, and its quiesce, probe, bind..."""
    return {"services": list(services), **keys}


def phase(pid: str, title: str, steps: list[dict] | None = None, checks: list[dict] | None = None, **keys) -> dict:
    """A [[phase]]: steps and checks left out when None."""
    return merged({"id": pid, "title": title, "steps": steps, "checks": checks}, keys)


def full(steps: list[dict] | None = None, checks: list[dict] | None = None, title: str = "everything") -> dict:
    """The [full] rollback: steps and checks left out when None."""
    return merged({"title": title}, {"steps": steps, "checks": checks})


def everything(volumes: list[str], stop: str = "stop", checks=(check("healthy"),), title: str = "everything") -> dict:
    """A [full] rollback of files and volumes: stop (or down), files, volumes, up."""
    return full([do(stop), do("restore-files", paths=["."]), do("restore-volumes", volumes=volumes), do("up")],
                list(checks) or None, title)


def plan(services: list[str], *, volumes: dict | None = None, phases=(), full: dict | None = None,
         project: dict | None = None, **tables) -> dict:
    """A plan's tables but [project] name and root (write_plan puts them in): services
    and any other [project] keys, [volumes.X], [[phase]], [full] (a restore of every
    file when not given) and any other table ([backup], [offsite], [contacts]...)."""
    return merged({"project": {"services": services, **(project or {})}, "volumes": volumes,
                   "phase": list(phases) or None,
                   "full": full or {"title": "everything", "steps": [do("restore-files", paths=["."])]}}, tables)


def more(doc: dict, *phases: dict, **tables) -> dict:
    """doc with phases added and tables put in (a table given None is left out)."""
    return merged({**doc, "phase": doc.get("phase", []) + list(phases)}, tables)


# ---------------------------------------------------------------------------- on disk


def lay_out(root: Path, files: dict[str, str], message: str = "stack") -> Path:
    """A project folder in a fresh git repository, `files` (its compose file among them)
    written and committed."""
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    gitstate.init(root, message)
    return root


def plan_toml(doc: dict, name: str, root, kept=None, log: str = "ROLLBACK-LOG.md") -> str:
    """The plan of project `name` in `root`, its snapshots, reports and log (named `log`)
    kept in the folder `kept` (when None: where the kit puts them, beside the plan)."""
    out = {"project": {"name": name, "root": str(root), **doc["project"]}}
    if kept is not None:
        out["project"].update(log=str(Path(kept) / log), reports=str(Path(kept) / "reports"))
        out["backup"] = {"snapshots": str(Path(kept) / "snapshots"), **doc.get("backup", {})}
    return _toml({**out, **{k: v for k, v in doc.items() if k not in out}})


def write_plan(path: Path, doc: dict, name: str, root, kept=None, log: str = "ROLLBACK-LOG.md") -> Path:
    """plan_toml() written to path; returns path."""
    path.write_text(plan_toml(doc, name, root, kept, log))
    return path


# ---------------------------------------------------------------------------- the writers

_PLAIN = re.compile(r"[A-Za-z0-9_/.][A-Za-z0-9_.:/=-]*")  # YAML scalars written unquoted (no number, no bool)


def _plain(v: str) -> bool:
    if not _PLAIN.fullmatch(v) or v.lower() in ("true", "false", "yes", "no", "on", "off", "null"):
        return False
    if v[0].isdigit() or v[0] in "+-.":  # a number, or text that begins like one
        try:
            float(v)
        except ValueError:
            return not re.fullmatch(r"0[xo][0-9a-fA-F]+", v)
        return False
    return True


def _scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_scalar(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    return v if _plain(v) else json.dumps(v, ensure_ascii=False)


def _yaml(doc: dict, indent: str = "") -> str:
    """Block mappings; lists, and mappings of plain values, in flow style; a list that
    holds a multi-line string (a script) as a block list of literal blocks."""
    out = []
    for key, v in doc.items():
        if isinstance(v, dict) and any(isinstance(x, (dict, list)) or "\n" in str(x) for x in v.values()):
            out.append(f"{indent}{key}:\n{_yaml(v, indent + '  ')}")
        elif isinstance(v, list) and any(isinstance(x, str) and "\n" in x for x in v):
            out.append(f"{indent}{key}:")
            out += [f"{indent}  - |\n" + "".join(f"{indent}    {line}\n" for line in x.splitlines()) for x in v]
        else:
            out.append(f"{indent}{key}: {_scalar(v)}")
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def _inline(v) -> str:
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_inline(x)}" for k, x in v.items()) + " }" if v else "{}"
    if isinstance(v, list):
        return "[" + ", ".join(_inline(x) for x in v) + "]"
    return _scalar(v)


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)


def _table(header: str, body: dict) -> str:
    lines = [header]
    for k, v in body.items():
        if isinstance(v, list) and len(v) > 1 and all(isinstance(x, dict) for x in v):
            lines += [f"{_key(k)} = ["] + [f"  {_inline(x)}," for x in v] + ["]"]  # steps, checks: one a line
        else:
            lines.append(f"{_key(k)} = {_inline(v)}")
    return "\n".join(lines) + "\n"


def _toml(doc: dict) -> str:
    """[table] for a table, [a.b] for a table of tables ([volumes.X]), [[a]] for a list
    of tables; inside, inline tables and arrays."""
    parts = []
    for key, v in doc.items():
        if isinstance(v, list):
            parts += [_table(f"[[{key}]]", item) for item in v]
        elif v and key != "project" and all(isinstance(x, dict) for x in v.values()):
            parts += [_table(f"[{key}.{_key(sub)}]", body) for sub, body in v.items()]
        else:
            parts.append(_table(f"[{key}]", v))
    return "\n".join(parts)


# ---------------------------------------------------------------------------- projects several files use

def mini_compose(**app_keys) -> str:
    """The mini stack: Redis (`store`, its volume `data` stopped while exported) and an
    idle app (`files`, never stopped), the app's keys changed by app_keys. MINI_PLAN's
    phase restores config.txt."""
    app_keys = merged({"user": "0", "volumes": ["files:/files"], "stop_grace_period": "2s"}, app_keys)
    return compose_file({"store": redis(), "app": app(**app_keys)}, volumes=["data", "files"])


MINI_COMPOSE = mini_compose()
MINI_PLAN = plan(["store", "app"], volumes={"data": volume("store", quiesce="stop"),
                                            "files": volume("app", quiesce="none")},
                 phases=[phase("p1", "config rollback", [do("restore-files", paths=["config.txt"])])])


def keeper_project(svc: str, vol: str, ready: str | None, phase_title: str | None, **vol_keys) -> tuple[str, dict]:
    """One service keeping one volume (keeper()), stopped while exported: the compose
    file and the plan, with a phase `vol` that puts the volume back (none without a
    title) and a full rollback (both checking health when the service has one)."""
    healthy = [check("healthy")] if ready else []
    phases = [phase(vol, phase_title, refill([vol], [svc]), healthy or None)] if phase_title else []
    return (compose_file({svc: keeper(vol, ready)}, volumes=[vol]),
            plan([svc], volumes={vol: volume(svc, quiesce="stop", **vol_keys)}, phases=phases,
                 full=everything([vol], checks=healthy)))
