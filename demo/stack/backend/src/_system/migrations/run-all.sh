#!/bin/bash
# Apply every NNN_*.sql here, in order, once each; applied ones are recorded in
# schema_migrations, so running this again is a no-op. Each file runs in one transaction.
set -euo pipefail
cd "$(dirname "$0")"
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"   # no NOTICEs for IF NOT EXISTS
PSQL=(psql -h "${PGHOST:-/run/postgresql}" -U postgres -d "${PGDATABASE:-app}" -v ON_ERROR_STOP=1 -qAt)

"${PSQL[@]}" -c "CREATE TABLE IF NOT EXISTS schema_migrations (
  version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"

for f in [0-9][0-9][0-9]_*.sql; do
  v=${f%.sql}
  if [ -n "$("${PSQL[@]}" -c "SELECT 1 FROM schema_migrations WHERE version = '$v'")" ]; then
    echo "migration $v: already applied"
    continue
  fi
  "${PSQL[@]}" -1 -f "$f" -c "INSERT INTO schema_migrations (version) VALUES ('$v')"
  echo "migration $v: applied"
done
