#!/bin/bash
# mvp-backend: the files runbook phases 2, 3, 4, 6 and 7 touch, then the data services.
. "$(dirname "$0")/common.sh"
B=backend/src
# phase 2: tenant code
need_file $B/core/middleware/tenant.ts 'export'
need_file $B/core/config/tenant.ts 'export'
need_dir  $B/features/tenant-management '*.ts' 2
need_file $B/features/tenant-management/index.ts 'export'
need_file $B/app.ts "from '\./core/middleware/tenant'"
need_file $B/core/plugins/auth.plugin.ts 'export'
# phase 3: storage adapter and documents feature
need_file $B/core/storage/storage.adapter.ts 'interface StorageAdapter'
need_dir  $B/core/storage '*.adapter.ts' 2
need_dir  $B/features/documents '*.ts' 2
# phase 4: configuration and secrets (existence and keys only, never contents)
need_file config/app/production.yml '^database:'
grep -q '^redis:' config/app/production.yml || fail "config/app/production.yml has no redis: section"
need_file .env '^POSTGRES_PASSWORD='
need_dir  secrets/app '*'
# phase 6: config loader and the platform client
need_file $B/core/config/config-loader.ts 'export function loadConfig'
need_dir  $B/features/vehicles/external '*.ts'
# phase 7: migrations
need_dir  $B/_system/migrations '*.sql'
need_file $B/_system/migrations/run-all.sh 'psql'
# the data services, over their sockets
need_sql app
[ "$(redis-cli -s /run/redis/redis.sock ping 2>/dev/null)" = PONG ] \
  || fail "redis not answering on /run/redis/redis.sock"
echo "ok: backend"
