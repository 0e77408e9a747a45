"""What each runbook phase does to the demo: the simplification itself, so rollbacks have
something real to undo.

Each phase's change is committed in the demo's scratch repository (one commit per logical
step, messages `phaseN: ...`) and then applied to the running stack: compose changes go
through `up -d --remove-orphans` (or `down` + `up -d` for networks), data changes through
psql inside the containers. Afterwards that phase's checks in phases.toml fail.

Every change works on a fresh demo and on one where earlier phases were applied: compose
and config files are edited by removing or inserting text that exists in either state,
files already gone are skipped, and a phase that finds nothing left to change makes no
commit. When the stack has no containers, only the files are changed.

Secret values (.env, secrets/) are never read into a message or printed.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import gitstate
from .compose import for_plan
from .errors import UndoitError

COMPOSE_FILE = "docker-compose.yml"
UP_TIMEOUT = 300
READY_TIMEOUT = 120


@dataclass(frozen=True)
class Change:
    """One phase's change: a title and apply(plan) -> commit ids made."""

    title: str
    apply: Callable[..., list[str]]


# ---------------------------------------------------------------------------- helpers

def _path(plan, rel: str) -> Path:
    return Path(plan.root) / rel


def _read(plan, rel: str) -> str | None:
    p = _path(plan, rel)
    return p.read_text() if p.is_file() else None


def _write(plan, rel: str, text: str) -> None:
    p = _path(plan, rel)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def _delete(plan, *rels: str) -> None:
    """Delete files or whole folders (tracked ones through git); missing ones are skipped."""
    for rel in rels:
        p = _path(plan, rel)
        if not (p.exists() or p.is_symlink()):
            continue
        if gitstate.run(plan.root, "ls-files", "--", rel):
            gitstate.run(plan.root, "rm", "-r", "-q", "-f", "--", rel)
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def _commit(plan, message: str, paths) -> list[str]:
    """Stage paths (added, changed or deleted) and commit them; [] when nothing changed."""
    root = plan.root
    present = [p for p in paths if _path(plan, p).exists() or gitstate.run(root, "ls-files", "--", p)]
    if present:
        gitstate.run(root, "add", "-A", "--", *present)
    staged = gitstate.run(root, "diff", "--cached", "--name-only")
    if not staged:
        return []
    gitstate.run(root, "commit", "-q", "-m", message)
    return [gitstate.head(root)]


def _edit(plan, rel: str, fn: Callable[[str], str]) -> bool:
    """Rewrite a text file through fn; False when the file is missing."""
    text = _read(plan, rel)
    if text is None:
        return False
    new = fn(text)
    if new != text:
        _write(plan, rel, new)
    return True


def _drop_lines(text: str, pattern: str) -> str:
    """Remove every whole line matching the regex pattern (anchored at line start)."""
    return re.sub(rf"(?m)^{pattern}[^\n]*\n", "", text)


# -- docker-compose.yml, edited as text so its comments and layout survive

def _service_span(lines: list[str], name: str) -> tuple[int, int] | None:
    """Line range of a service block (header `  name:` up to the next 0/2-indented line)."""
    header = re.compile(rf"^  {re.escape(name)}:\s*(#.*)?$")
    for i, line in enumerate(lines):
        if header.match(line.rstrip("\n")):
            end = i + 1
            while end < len(lines) and not re.match(r"^ {0,2}\S", lines[end]):
                end += 1
            return i, end
    return None


def _remove_service(text: str, name: str) -> str:
    lines = text.splitlines(keepends=True)
    span = _service_span(lines, name)
    if span is None:
        return text
    return "".join(lines[: span[0]] + lines[span[1]:])


def _edit_service(text: str, name: str, fn: Callable[[str], str]) -> str:
    """Rewrite one service block through fn (text in, text out); unchanged if absent."""
    lines = text.splitlines(keepends=True)
    span = _service_span(lines, name)
    if span is None:
        return text
    block = "".join(lines[span[0]: span[1]])
    return "".join(lines[: span[0]]) + fn(block) + "".join(lines[span[1]:])


def _insert_before_key(block: str, key: str, new_lines: str) -> str:
    """Insert new_lines before the block's `    key:` line (or at the block's end)."""
    m = re.search(rf"(?m)^    {re.escape(key)}:", block)
    if m:
        return block[: m.start()] + new_lines + block[m.start():]
    body = block.rstrip("\n")
    return body + "\n" + new_lines + block[len(body) + 1:]


def _top_level_section(text: str, key: str, body: str | None) -> str:
    """Replace (body given) or drop (None) a top-level `key:` section of a YAML file."""
    m = re.search(rf"(?ms)^{re.escape(key)}:[^\n]*\n(?:(?:[ \t]+[^\n]*|[ \t]*)\n)*?(?=^\S|\Z)", text)
    if m is None:
        return text if body is None else text.rstrip("\n") + "\n\n" + body
    return text[: m.start()] + (body or "") + text[m.end():]


# -- the running stack

def _stack(plan):
    """The compose project when it has containers, else None (then only files change)."""
    compose = for_plan(plan)
    return compose if compose.ps(all_=True) else None


def _up(compose) -> None:
    """Apply the compose file to the running stack, without waiting for health: the
    phases break services on purpose."""
    compose("up", "--detach", "--remove-orphans", timeout=UP_TIMEOUT)


def _wait_ready(compose, service: str, db: str) -> None:
    """Until postgres in service answers in db (exec, never over the network)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            if compose.exec(service, "psql", "-U", "postgres", "-d", db, "-Atc", "select 1", timeout=30).strip() == "1":
                return
        except UndoitError:
            pass
        if time.monotonic() > deadline:
            raise UndoitError(f"{service}: postgres not answering in database {db!r} after {READY_TIMEOUT} s")
        time.sleep(1)


def _until_not_healthy(plan, services, timeout: float = 20) -> None:
    """Wait until each service's healthcheck has noticed the change (it reads the repository
    live, every second): not `healthy` any more. Best effort: returns after timeout."""
    from .engine import client

    cli = client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        still = []
        for svc in services:
            for c in cli.containers.list(filters={"label": [f"com.docker.compose.project={plan.project_name}",
                                                             f"com.docker.compose.service={svc}"]}):
                if (c.attrs["State"].get("Health") or {}).get("Status") == "healthy":
                    still.append(svc)
        if not still:
            return
        time.sleep(0.5)


def _psql(compose, service: str, db: str, sql: str) -> str:
    return compose.exec(service, "psql", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-qAt",
                        "-c", sql, timeout=120)


def _project_resources(plan, kind: str, label: str, keys) -> list:
    """Engine objects (volumes or networks) of this compose project whose compose key is in keys."""
    from .engine import client

    cli = client()
    coll = cli.volumes if kind == "volumes" else cli.networks
    found = coll.list(filters={"label": f"com.docker.compose.project={plan.project_name}"})
    return [o for o in found if (o.attrs.get("Labels") or {}).get(label) in keys]


# ---------------------------------------------------------------------------- phase 1

def phase1(plan) -> list[str]:
    """Docker Compose simplification: mvp-redis is merged away (sessions and cache move
    into postgres), with its volumes and the backend's dependency on it: 6 containers."""

    def simplify(text: str) -> str:
        text = _remove_service(text, "mvp-redis")
        text = _drop_lines(text, r"[ \t]+mvp-redis:\s*\{condition:")
        text = _drop_lines(text, r"[ \t]+- redis_sock:")
        return _drop_lines(text, r"  redis_(data|sock):")

    _edit(plan, COMPOSE_FILE, simplify)
    commits = _commit(plan, "phase1: simplify docker-compose.yml: merge mvp-redis away, 6 containers",
                      [COMPOSE_FILE])
    compose = _stack(plan)
    if compose:
        _up(compose)
    return commits


# ---------------------------------------------------------------------------- phase 2

APP_TS_SINGLE_TENANT = """\
import Fastify from 'fastify';
import { loadConfig } from './core/config/config-loader';
import { authPlugin } from './core/plugins/auth.plugin';
import { createStorage } from './core/storage/minio.adapter';
import { documentsRoutes } from './features/documents/documents.routes';
import { platformVehiclesClient } from './features/vehicles/external/platform-vehicles.client';

// Single tenant: no tenant middleware, no tenant-management routes.
export async function buildApp() {
  const config = loadConfig();
  const app = Fastify({ logger: { level: config.logLevel } });

  await app.register(authPlugin, { auth0: config.auth0 });

  app.decorate('storage', createStorage(config.storage));
  app.decorate('platform', platformVehiclesClient(config.platform.vehiclesUrl));

  app.get('/health', async () => ({ status: 'ok' }));
  await app.register(documentsRoutes, { prefix: '/api/documents' });
  return app;
}

if (require.main === module) {
  buildApp().then((app) => app.listen({ host: '0.0.0.0', port: 3001 }));
}
"""

AUTH_PLUGIN_SINGLE_TENANT = """\
import fp from 'fastify-plugin';
import type { FastifyInstance, FastifyRequest } from 'fastify';

export interface Auth0Options {
  domain: string;
  audience: string;
  clientId: string;
  clientSecret: string;
}

export const authPlugin = fp(async (app: FastifyInstance, opts: { auth0: Auth0Options }) => {
  const issuer = `https://${opts.auth0.domain}/`;

  app.decorate('authenticate', async (request: FastifyRequest) => {
    await (request as any).jwtVerify({ allowedIss: issuer, allowedAud: opts.auth0.audience });
  });
});
"""

TENANT_FILES = [
    "backend/src/core/middleware/tenant.ts",
    "backend/src/core/config/tenant.ts",
    "backend/src/features/tenant-management/",
]


def phase2(plan) -> list[str]:
    """Remove tenant: the tenant code is deleted in one commit, the files that used it are
    edited in a second (so the runbook's `git checkout HEAD~1` misses the deletions)."""
    _delete(plan, *TENANT_FILES)
    commits = _commit(plan, "phase2: remove multi-tenant middleware, config and tenant-management feature",
                      TENANT_FILES)
    edited = ["backend/src/app.ts", "backend/src/core/plugins/auth.plugin.ts"]
    _edit(plan, edited[0], lambda _t: APP_TS_SINGLE_TENANT)
    _edit(plan, edited[1], lambda _t: AUTH_PLUGIN_SINGLE_TENANT)
    commits += _commit(plan, "phase2: drop tenant references from app.ts and the auth plugin", edited)
    # nothing to restart: the backend's healthcheck reads the repository live
    if _stack(plan):
        _until_not_healthy(plan, ["mvp-backend"])
    return commits


# ---------------------------------------------------------------------------- phase 3

FILESYSTEM_ADAPTER = """\
import { createReadStream } from 'fs';
import { mkdir, rm, stat, writeFile } from 'fs/promises';
import { dirname, join, normalize } from 'path';
import type { Readable } from 'stream';
import type { StorageAdapter } from './storage.adapter';

/** Documents on the backend's own volume (replaces the MinIO bucket). */
export class FilesystemAdapter implements StorageAdapter {
  constructor(private readonly root = process.env.DOCUMENTS_DIR ?? '/app/data/documents') {}

  private path(key: string) {
    const p = normalize(join(this.root, key));
    if (!p.startsWith(this.root)) throw new Error(`bad storage key: ${key}`);
    return p;
  }

  async put(key: string, body: Buffer | Readable) {
    await mkdir(dirname(this.path(key)), { recursive: true });
    await writeFile(this.path(key), body);
  }

  async get(key: string): Promise<Readable> {
    return createReadStream(this.path(key));
  }

  async delete(key: string) {
    await rm(this.path(key), { force: true });
  }

  async exists(key: string) {
    return stat(this.path(key)).then(() => true, () => false);
  }
}

export const createStorage = (): StorageAdapter => new FilesystemAdapter();
"""

STORAGE_ADAPTER_FS = """\
import type { Readable } from 'stream';

/** Where uploaded documents (receipts, titles, insurance cards) live. */
export interface StorageAdapter {
  put(key: string, body: Buffer | Readable, contentType?: string): Promise<void>;
  get(key: string): Promise<Readable>;
  delete(key: string): Promise<void>;
  exists(key: string): Promise<boolean>;
}
"""

DOCUMENTS_SERVICE_FS = """\
import { randomUUID } from 'crypto';
import type { Pool } from 'pg';
import type { StorageAdapter } from '../../core/storage/storage.adapter';

/** Document bodies live on the backend's documents volume; metadata in postgres. */
export class DocumentsService {
  constructor(private readonly db: Pool, private readonly storage: StorageAdapter) {}

  async upload(vehicleId: string, fileName: string, body: Buffer, contentType: string) {
    const key = `${vehicleId}/${randomUUID()}${fileName.includes('.') ? fileName.slice(fileName.lastIndexOf('.')) : ''}`;
    await this.storage.put(key, body);
    const { rows } = await this.db.query(
      `INSERT INTO documents (vehicle_id, file_name, storage_key, content_type, size_bytes)
       VALUES ($1, $2, $3, $4, $5) RETURNING id`,
      [vehicleId, fileName, key, contentType, body.length],
    );
    return rows[0].id as string;
  }

  async download(id: string) {
    const { rows } = await this.db.query('SELECT storage_key FROM documents WHERE id = $1', [id]);
    if (!rows.length) return undefined;
    return this.storage.get(rows[0].storage_key);
  }
}
"""

DOCUMENTS_MOUNT = "      - documents_data:/app/data/documents   # phase 3: documents on the filesystem\n"


def phase3(plan) -> list[str]:
    """Filesystem storage: the MinIO adapter goes, documents are stored on a backend volume,
    admin-minio leaves docker-compose.yml and its volume (the bucket's data) is removed."""
    storage = "backend/src/core/storage/"
    _delete(plan, storage + "minio.adapter.ts")
    _write(plan, storage + "filesystem.adapter.ts", FILESYSTEM_ADAPTER)
    _edit(plan, storage + "storage.adapter.ts", lambda _t: STORAGE_ADAPTER_FS)
    _edit(plan, "backend/src/features/documents/documents.service.ts", lambda _t: DOCUMENTS_SERVICE_FS)

    def compose_fs(text: str) -> str:
        text = _remove_service(text, "admin-minio")
        text = _drop_lines(text, r"  minio_data:")
        if "documents_data:/app/data/documents" not in text:
            text = _edit_service(text, "mvp-backend", lambda b: re.sub(
                r"(?m)^(    volumes:\n(?:      - [^\n]*\n)*)", lambda m: m.group(1) + DOCUMENTS_MOUNT, b, count=1))
        if not re.search(r"(?m)^  documents_data:", text):
            text = re.sub(r"(?m)^(volumes:\n)", r"\1  documents_data: {}\n", text, count=1)
        return text

    _edit(plan, COMPOSE_FILE, compose_fs)
    commits = _commit(plan, "phase3: replace MinIO with filesystem storage, drop admin-minio",
                      [storage, "backend/src/features/documents/", COMPOSE_FILE])
    compose = _stack(plan)
    if compose:
        _up(compose)  # --remove-orphans takes the admin-minio container away
        for vol in _project_resources(plan, "volumes", "com.docker.compose.volume", {"minio_data"}):
            vol.remove(force=True)
    return commits


# ---------------------------------------------------------------------------- phase 4

ENV_DROP = ("REDIS_URL", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "TENANT_ID")
ENV_RENAME = {"POSTGRES_PASSWORD": "DATABASE_PASSWORD"}


def _env_cleanup(text: str) -> str:
    """Drop and rename keys line by line; values are carried over, never looked at."""
    out = []
    for line in text.splitlines(keepends=True):
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else None
        if key in ENV_DROP:
            continue
        if key in ENV_RENAME:
            line = line.replace(key, ENV_RENAME[key], 1)
        out.append(line)
    return "".join(out)


def phase4(plan) -> list[str]:
    """Config cleanup: production.yml loses its redis:, minio: and tenant settings, .env and
    .env.development lose MinIO/tenant keys and rename POSTGRES_PASSWORD, and the secret
    files go (secrets come from the environment now)."""

    def prod(text: str) -> str:
        for section in ("redis", "minio"):
            text = _top_level_section(text, section, None)
        return _drop_lines(text, r"[ \t]+tenant_mode:")

    _edit(plan, "config/app/production.yml", prod)
    for env in (".env", ".env.development"):
        _edit(plan, env, _env_cleanup)
    _delete(plan, "secrets/app/", "secrets/platform/")
    commits = _commit(plan, "phase4: config cleanup: drop redis/minio/tenant settings, secrets from the environment",
                      ["config/app/production.yml", ".env", ".env.development", "secrets/app/", "secrets/platform/"])
    # nothing to restart: backend and platform healthchecks read the files live
    if _stack(plan):
        _until_not_healthy(plan, ["mvp-backend", "mvp-platform"])
    return commits


# ---------------------------------------------------------------------------- phase 5

OLD_NETWORKS = {"frontend", "backend", "database"}
ONE_NETWORK = "networks:\n  app: {internal: true}   # phase 5: one internal network\n"


def phase5(plan) -> list[str]:
    """Network simplification: frontend/backend/database become one internal network `app`;
    the stack goes down and up so the old networks are removed and the new one created."""

    def one_net(text: str) -> str:
        text = re.sub(r"(?m)^([ \t]+)networks: \[[^\]\n]*\]", r"\1networks: [app]", text)
        return _top_level_section(text, "networks", ONE_NETWORK + "\n")

    _edit(plan, COMPOSE_FILE, one_net)
    commits = _commit(plan, "phase5: simplify networks: one internal network instead of three", [COMPOSE_FILE])
    compose = _stack(plan)
    if compose:
        compose.down()
        for net in _project_resources(plan, "networks", "com.docker.compose.network", OLD_NETWORKS):
            net.remove()
        _up(compose)
    return commits


# ---------------------------------------------------------------------------- phase 6

CONFIG_LOADER_V2 = """\
import { readFileSync } from 'fs';
import { parse } from 'yaml';

const CONFIG_FILE = process.env.CONFIG_FILE ?? '/app/config/production.yml';

let cached: ReturnType<typeof read> | undefined;

function read() {
  const file = parse(readFileSync(CONFIG_FILE, 'utf8'));
  return {
    logLevel: file.server?.log_level ?? 'info',
    database: {
      host: file.database.host ?? 'mvp-postgres',
      port: file.database.port ?? 5432,
      name: file.database.name,
      user: file.database.user,
      password: process.env.DATABASE_PASSWORD ?? '',
    },
    storage: { root: process.env.DOCUMENTS_DIR ?? '/app/data/documents' },
    auth0: {
      domain: file.auth0.domain,
      audience: file.auth0.audience,
      clientId: file.auth0.client_id,
      clientSecret: process.env.AUTH0_CLIENT_SECRET ?? '',
    },
    platform: { url: file.platform?.url ?? 'http://mvp-platform:8000' },
  };
}

/** The configuration, read once (service names after the simplification: mvp-*). */
export function getConfig() {
  cached ??= read();
  return cached;
}
"""

PLATFORM_CLIENT_V2 = """\
/** Client for mvp-platform, the single platform service (VIN decode, catalogue). */
export interface VinDecodeResult {
  vin: string;
  year: number;
  make: string;
  model: string;
}

export function platformClient(baseUrl = 'http://mvp-platform:8000') {
  async function get<T>(path: string): Promise<T> {
    const res = await fetch(`${baseUrl}${path}`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`platform ${path}: HTTP ${res.status}`);
    return (await res.json()) as T;
  }

  return {
    decodeVin: (vin: string) => get<VinDecodeResult>(`/vin/${encodeURIComponent(vin)}`),
    catalogue: (year: number) => get<Record<string, string[]>>(`/catalogue/${year}`),
  };
}
"""


def phase6(plan) -> list[str]:
    """Backend updates: loadConfig becomes getConfig (cached, secrets from the environment)
    and the platform client is renamed for the single platform service."""
    _edit(plan, "backend/src/core/config/config-loader.ts", lambda _t: CONFIG_LOADER_V2)
    external = "backend/src/features/vehicles/external/"
    _delete(plan, external + "platform-vehicles.client.ts")
    _write(plan, external + "platform.client.ts", PLATFORM_CLIENT_V2)
    commits = _commit(plan, "phase6: backend service references: getConfig, single platform client",
                      ["backend/src/core/config/config-loader.ts", external])
    if _stack(plan):
        _until_not_healthy(plan, ["mvp-backend"])
    return commits


# ---------------------------------------------------------------------------- phase 7

MIGRATIONS = "backend/src/_system/migrations/"

MIGRATION_003 = """\
-- 003: single tenant. Vehicles belong to users; the tenants table goes.
-- One vehicle per user is kept from the tenant era (duplicates per user removed).
DELETE FROM vehicles v USING vehicles w WHERE v.user_id = w.user_id AND v.id > w.id;
ALTER TABLE vehicles DROP COLUMN IF EXISTS tenant_id;
ALTER TABLE vehicles RENAME TO user_vehicles;
ALTER TABLE users DROP COLUMN IF EXISTS tenant_id;
DROP TABLE IF EXISTS tenants CASCADE;
-- history is tracked in _migrations by the new runner
DROP TABLE IF EXISTS schema_migrations;
"""

RUN_ALL_V2 = """\
#!/bin/bash
# Apply every NNN_*.sql here, in order, once each, recorded in _migrations.
set -euo pipefail
cd "$(dirname "$0")"
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
PSQL=(psql -h "${PGHOST:-/run/postgresql}" -U postgres -d "${PGDATABASE:-app}" -v ON_ERROR_STOP=1 -qAt)

"${PSQL[@]}" -c "CREATE TABLE IF NOT EXISTS _migrations (
  name text PRIMARY KEY, run_at timestamptz NOT NULL DEFAULT now())"

for f in [0-9][0-9][0-9]_*.sql; do
  if [ -n "$("${PSQL[@]}" -c "SELECT 1 FROM _migrations WHERE name = '$f'")" ]; then
    continue
  fi
  "${PSQL[@]}" -1 -f "$f" -c "INSERT INTO _migrations (name) VALUES ('$f')"
  echo "migration $f: applied"
done
"""

POSTGRES_TUNING = '    command: ["-c", "max_connections=50", "-c", "shared_buffers=64MB"]   # phase 7\n'


def phase7(plan) -> list[str]:
    """Database updates: a single-tenant migration (003) that drops a column and the tenants
    table and renames vehicles, an edit of the applied 002, a new runner with its own history
    table, and tuned postgres settings in docker-compose.yml; then the migrations are run
    (keeping one vehicle per user and dropping schema_migrations)."""

    def old_002(text: str) -> str:
        text = _drop_lines(text, r"\s+tenant_id\s+text NOT NULL REFERENCES tenants")
        return _drop_lines(text, r"CREATE INDEX IF NOT EXISTS vehicles_tenant_idx")

    _edit(plan, MIGRATIONS + "002_vehicles.sql", old_002)
    _write(plan, MIGRATIONS + "003_single_tenant.sql", MIGRATION_003)
    _edit(plan, MIGRATIONS + "run-all.sh", lambda _t: RUN_ALL_V2)

    def db_section(text: str) -> str:
        def tune(block: str) -> str:
            block = block.replace("shm_size: 256m", "shm_size: 128m")
            if "max_connections=" not in block:
                block = _insert_before_key(block, "volumes", POSTGRES_TUNING)
            return block

        return _edit_service(text, "mvp-postgres", tune)

    _edit(plan, COMPOSE_FILE, db_section)
    commits = _commit(plan, "phase7: database updates: single-tenant migration, new runner, postgres tuning",
                      [MIGRATIONS, COMPOSE_FILE])
    compose = _stack(plan)
    if compose:
        _up(compose)  # recreates mvp-postgres with the new settings
        _wait_ready(compose, "mvp-postgres", "app")
        # run the migrations the way the project does: the runner, from the backend container
        compose.exec("mvp-backend", "bash", "/srv/" + MIGRATIONS + "run-all.sh", timeout=120)
        _psql(compose, "mvp-postgres", "app", "CHECKPOINT")
    return commits


# ---------------------------------------------------------------------------- phase 8

PLATFORM = "mvp-platform-services/vehicles/"

PLATFORM_MAIN_V2 = '''\
"""MVP Platform: one service for VIN decode, the catalogue and its loader (was api + etl)."""
import csv
import os

from fastapi import FastAPI, HTTPException
import psycopg

from .vin import decode

app = FastAPI(title="MVP Platform")
DSN = os.environ.get("VEHICLES_DB_DSN", "postgresql://postgres@/vehicles?host=/run/postgresql")


@app.get("/health")
def health():
    return {"status": "ok"}


@app.get("/vin/{vin}")
def vin(vin: str):
    try:
        return decode(vin)
    except ValueError as err:
        raise HTTPException(status_code=400, detail=str(err)) from err


@app.get("/catalogue/{year}")
def catalogue(year: int):
    with psycopg.connect(DSN) as conn:
        rows = conn.execute("SELECT make, model FROM catalog WHERE year = %s ORDER BY 1, 2", (year,)).fetchall()
    out: dict[str, list[str]] = {}
    for make, model in rows:
        out.setdefault(make, []).append(model)
    return out


def load(path: str) -> int:
    with open(path, newline="") as fh, psycopg.connect(DSN) as conn:
        rows = [(int(r["year"]), r["make"], r["model"]) for r in csv.DictReader(fh) if int(r["year"]) >= 2020]
        conn.cursor().executemany("INSERT INTO catalog (year, make, model) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", rows)
    return len(rows)
'''

PLATFORM_VIN_V2 = '''\
"""Offline VIN decoding (check digit, model year, manufacturer), part of the one platform service."""
TRANSLIT = {c: v for v, cs in enumerate(["", "AJ", "BKS", "CLT", "DMU", "ENV", "FW", "GPX", "HY", "RZ"]) for c in cs}
WEIGHTS = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2]
YEARS = "ABCDEFGHJKLMNPRSTVWXY123456789"
WMI = {"1FT": "Ford", "1G1": "Chevrolet", "1HG": "Honda", "JHM": "Honda", "JT2": "Toyota", "WBA": "BMW"}


def decode(vin: str) -> dict:
    vin = vin.strip().upper()
    if len(vin) != 17 or any(c in "IOQ" for c in vin):
        raise ValueError(f"not a VIN: {vin!r}")
    check = sum((int(c) if c.isdigit() else TRANSLIT[c]) * w for c, w in zip(vin, WEIGHTS)) % 11
    if vin[8] != ("X" if check == 10 else str(check)):
        raise ValueError("bad check digit")
    year = 2010 + YEARS.index(vin[9]) if vin[9] in YEARS else None
    return {"vin": vin, "year": year, "make": WMI.get(vin[:3], "Unknown"), "model": None}
'''

PLATFORM_SCHEMA_V2 = """\
-- Platform catalogue (one table, model years 2020 and later)
CREATE TABLE IF NOT EXISTS catalog (
  id    serial PRIMARY KEY,
  year  int  NOT NULL CHECK (year >= 2020),
  make  text NOT NULL,
  model text NOT NULL,
  UNIQUE (year, make, model)
);
"""

PLATFORM_ENV = (
    "    environment:   # phase 8: one platform service, catalogue loaded on start\n"
    "      VEHICLES_DB_DSN: postgresql://postgres@/vehicles?host=/run/postgresql\n"
    '      PLATFORM_LOAD_ON_START: "true"\n'
)

PLATFORM_DB_MIGRATION = """\
ALTER TABLE IF EXISTS vehicle_models RENAME TO catalog;
CREATE TABLE IF NOT EXISTS catalog (id serial PRIMARY KEY, year int NOT NULL, make text NOT NULL,
                                    model text NOT NULL, UNIQUE (year, make, model));
DELETE FROM catalog WHERE year < 2020;
"""


def phase8(plan) -> list[str]:
    """Platform service: api and etl collapse into one module (vin_decode.py and etl/ go),
    the schema becomes one `catalog` table holding 2020+ models, mvp-platform's compose
    section gets its environment; the platform DB is migrated (older rows deleted)."""
    _write(plan, PLATFORM + "api/main.py", PLATFORM_MAIN_V2)
    _delete(plan, PLATFORM + "api/vin_decode.py", PLATFORM + "etl/")
    _write(plan, PLATFORM + "api/vin.py", PLATFORM_VIN_V2)
    _edit(plan, PLATFORM + "sql/001_schema.sql", lambda _t: PLATFORM_SCHEMA_V2)

    def platform_section(text: str) -> str:
        if "PLATFORM_LOAD_ON_START" in text:
            return text
        return _edit_service(text, "mvp-platform", lambda b: _insert_before_key(b, "volumes", PLATFORM_ENV))

    _edit(plan, COMPOSE_FILE, platform_section)
    commits = _commit(plan, "phase8: collapse the platform api and etl into one mvp-platform service",
                      [PLATFORM, COMPOSE_FILE])
    compose = _stack(plan)
    if compose:
        _up(compose)
        _wait_ready(compose, "mvp-platform-vehicles-db", "vehicles")
        _psql(compose, "mvp-platform-vehicles-db", "vehicles", PLATFORM_DB_MIGRATION)
        _psql(compose, "mvp-platform-vehicles-db", "vehicles", "CHECKPOINT")
    return commits


# ---------------------------------------------------------------------------- phase 9

README_V2 = """\
# MotoVaultPro

Track your vehicles, fuel, maintenance and documents. Single tenant, six containers,
one internal network, documents on the backend's volume.

## Run

```bash
docker compose up -d
make test
```

See `docs/redesign/README.md` for how we got here.
"""

CLAUDE_V2 = """\
# Notes for AI assistants

- Backend code: `backend/src/features/<name>/`, shared code in `backend/src/core/`.
- Single tenant: there is no tenant middleware any more.
- Configuration comes from `getConfig()`; secrets come from the environment.
- Run `make check` before proposing a change.
"""

AI_INDEX_V2 = """\
# AI index

| Need | Look in |
|------|---------|
| App entry point | `backend/src/app.ts` |
| Configuration | `backend/src/core/config/config-loader.ts` (`getConfig`) |
| Document storage | `backend/src/core/storage/filesystem.adapter.ts` |
| Platform | `mvp-platform-services/vehicles/api/` |
| Frontend | `frontend/src/` |
"""

REDESIGN_DONE = """\
# Architecture simplification (done)

Fewer containers, one tenant, filesystem storage, one internal network, one platform
service. The old architecture document was removed; this file is the reference now.
"""

MAKEFILE_V2 = """\
# MotoVaultPro developer commands (simplified)
COMPOSE ?= docker compose

.PHONY: check build

check:
    bash ops/test.sh

test: check

build:
    cd backend && node build.js
    cd frontend && node build.js
"""  # recipes indented with spaces, not tabs: `make -n test` says "missing separator"

AI_CONTEXT_V2 = """\
{
  "project": "MotoVaultPro",
  "architecture": "single-tenant",
  "services": ["mvp-frontend", "mvp-backend", "mvp-platform", "mvp-postgres", "mvp-platform-vehicles-db"],
  "entry_points": {
    "backend": "backend/src/app.ts",
    "frontend": "frontend/src/main.tsx",
    "platform": "mvp-platform-services/vehicles/api/main.py"
  },
  "storage": "filesystem",
  "test_command": "make check"
}
"""

FEATURE_READMES = {
    "documents": """\
# Documents feature

Upload and download of vehicle documents. Bodies are files under `/app/data/documents`
(the backend's `documents_data` volume, see `core/storage/filesystem.adapter.ts`).
""",
    "vehicles": """\
# Vehicles feature

CRUD for a user's vehicles (table `user_vehicles`) plus VIN decoding through
`external/platform.client.ts` (`mvp-platform`).
""",
}


def phase9(plan) -> list[str]:
    """Documentation: README/CLAUDE/AI-INDEX rewritten, docs/ARCHITECTURE.md deleted, the
    redesign notes marked done, .ai/context.json updated, feature READMEs rewritten, and the
    Makefile rewritten with its `test` target broken (space-indented recipes)."""
    _write(plan, "README.md", README_V2)
    _write(plan, "CLAUDE.md", CLAUDE_V2)
    _write(plan, "AI-INDEX.md", AI_INDEX_V2)
    _delete(plan, "docs/ARCHITECTURE.md")
    _write(plan, "docs/redesign/README.md", REDESIGN_DONE)
    _write(plan, ".ai/context.json", AI_CONTEXT_V2)
    _write(plan, "Makefile", MAKEFILE_V2)
    readmes = []
    for feature, text in FEATURE_READMES.items():
        rel = f"backend/src/features/{feature}/README.md"
        if _path(plan, rel).parent.is_dir():
            _write(plan, rel, text)
            readmes.append(rel)
    return _commit(plan, "phase9: documentation for the simplified architecture",
                   ["README.md", "CLAUDE.md", "AI-INDEX.md", "docs/", ".ai/context.json", "Makefile", *readmes])


# ---------------------------------------------------------------------------- phase 10

FRONTEND_API_V2 = """\
export interface Vehicle {
  id: number;
  vin: string;
  year: number;
  make: string;
  model: string;
  nickname?: string;
}

const BASE = import.meta.env.VITE_API_BASE_URL ?? '/api';

/** Single tenant: no x-tenant-id header any more. */
export function api(token: string) {
  async function request<T>(path: string): Promise<T> {
    const res = await fetch(`${BASE}${path}`, { headers: { authorization: `Bearer ${token}` } });
    if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status}`);
    return res.json() as Promise<T>;
  }
  return {
    vehicles: () => request<Vehicle[]>('/vehicles'),
    decodeVin: (vin: string) => request<Vehicle>(`/vin/${vin}`),
  };
}
"""


def phase10(plan) -> list[str]:
    """Frontend: the api client moves from src/api/client.ts to src/lib/api.ts without the
    tenant header, and App.tsx imports it from there."""
    src = "frontend/src/"
    _delete(plan, src + "api/client.ts")
    _write(plan, src + "lib/api.ts", FRONTEND_API_V2)
    _edit(plan, src + "App.tsx", lambda t: t.replace("from './api/client'", "from './lib/api'"))
    commits = _commit(plan, "phase10: frontend: single-tenant api client in src/lib/api.ts", [src])
    if _stack(plan):
        _until_not_healthy(plan, ["mvp-frontend"])
    return commits


# ---------------------------------------------------------------------------- phase 11

def phase11(plan) -> list[str]:
    """Testing changes no code."""
    return []


# ---------------------------------------------------------------------------- API

PHASES: dict[str, Change] = {
    "phase1": Change("Docker Compose simplification: mvp-redis merged away (6 containers)", phase1),
    "phase2": Change("Remove tenant: tenant code deleted, then app.ts and auth plugin edited (2 commits)", phase2),
    "phase3": Change("Filesystem storage: MinIO adapter and admin-minio gone, minio volume removed", phase3),
    "phase4": Change("Config cleanup: redis/minio/tenant config dropped, .env keys renamed, secrets deleted", phase4),
    "phase5": Change("Network simplification: three internal networks become one", phase5),
    "phase6": Change("Backend updates: getConfig and a renamed platform client", phase6),
    "phase7": Change("Database updates: single-tenant migration run, schema_migrations dropped", phase7),
    "phase8": Change("Platform service: api+etl collapsed, platform DB migrated to 2020+ rows", phase8),
    "phase9": Change("Documentation rewritten, docs/ARCHITECTURE.md deleted, Makefile test broken", phase9),
    "phase10": Change("Frontend: api client moved to src/lib/api.ts", phase10),
    "phase11": Change("Testing: no code changes", phase11),
}


def _order(phase_id: str) -> int:
    m = re.fullmatch(r"phase(\d+)", phase_id)
    if not m or phase_id not in PHASES:
        raise UndoitError(f"unknown phase {phase_id!r}; known: {', '.join(PHASES)}")
    return int(m.group(1))


def apply(plan, phase_id: str) -> list[str]:
    """Make phase_id's change: commit(s) in plan.root, then the running stack brought in line.
    Returns the commit ids made (oldest first)."""
    _order(phase_id)
    return PHASES[phase_id].apply(plan)


def apply_all(plan, upto: str = "phase11") -> dict[str, list[str]]:
    """Phases 1..upto in order; phase id -> its commits."""
    last = _order(upto)
    return {pid: apply(plan, pid) for pid in sorted(PHASES, key=_order) if _order(pid) <= last}


# ---------------------------------------------------------------------------- drills

# What a scenario's drill breaks: the phases it rolls back that its steps can undo.
# The phases a scenario keeps are taken as having succeeded, so they are not applied
# (the demo's change for a phase is the failed version of it).
SCENARIO_DRILLS = {
    "keep-infra": ["phase2", "phase6", "phase10"],
    "keep-config": ["phase1", "phase2", "phase5", "phase6", "phase10"],
    "storage-only": ["phase3"],
}


def drill_phases(proc) -> list[str]:
    """The phase changes to apply before rehearsing or testing a procedure."""
    if proc.kind == "phase":
        return [proc.id] if proc.id in PHASES else []
    if proc.kind == "full":
        return sorted(PHASES, key=_order)
    return SCENARIO_DRILLS.get(proc.id, [p for p in proc.rolls_back if p in PHASES])
