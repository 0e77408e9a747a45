#!/bin/bash
# `make test` stand-in: the files the app needs are there and the database is migrated.
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/compose.sh

missing=0
for f in backend/src/app.ts backend/src/core/middleware/tenant.ts backend/src/core/config/tenant.ts \
         backend/src/core/config/config-loader.ts backend/src/core/plugins/auth.plugin.ts \
         backend/src/core/storage/storage.adapter.ts backend/src/features/documents/documents.routes.ts \
         backend/src/features/vehicles/external/platform-vehicles.client.ts \
         backend/src/_system/migrations/run-all.sh config/app/production.yml .env \
         frontend/src/main.tsx frontend/src/App.tsx frontend/src/api/client.ts \
         mvp-platform-services/vehicles/api/main.py; do
  [ -s "$f" ] || { echo "FAIL missing $f"; missing=1; }
done
[ "$missing" = 0 ] || exit 1

n=$(dc exec -T mvp-postgres psql -U postgres -d app -Atc 'select count(*) from schema_migrations' 2>/dev/null) \
  || { echo "FAIL schema_migrations not readable in mvp-postgres"; exit 1; }
[ "${n:-0}" -gt 0 ] || { echo "FAIL no migrations applied"; exit 1; }
echo "ok: files present, $n migrations applied"
