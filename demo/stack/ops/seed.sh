#!/bin/bash
# Demo data after the first `up`: migrations, 1000 vehicles, redis keys, two
# documents in the bucket, 100 catalogue rows in the platform DB. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
. ops/compose.sh

dc exec -T mvp-backend bash /srv/backend/src/_system/migrations/run-all.sh

dc exec -T mvp-postgres psql -U postgres -d app -v ON_ERROR_STOP=1 -qAt -c "
  INSERT INTO vehicles (tenant_id, user_id, vin, year, make, model, nickname, odometer)
  SELECT 'admin', 'auth0|demo' || (g % 50),
         'MVP' || lpad(g::text, 14, '0'),
         2005 + g % 20,
         (ARRAY['Honda','Toyota','Ford','BMW','Subaru'])[1 + g % 5],
         (ARRAY['Civic','Corolla','F-150','330i','Outback'])[1 + g % 5],
         CASE WHEN g % 7 = 0 THEN 'car #' || g END,
         (g * 137) % 250000
  FROM generate_series(1, 1000) g
  ON CONFLICT (vin) DO NOTHING"

dc exec -T mvp-redis redis-cli -h 127.0.0.1 MSET \
  session:3f1c9a '{"user":"auth0|demo1","tenant":"admin"}' \
  session:8b27e4 '{"user":"auth0|demo2","tenant":"admin"}' \
  cache:vin:MVP00000000000001 '{"year":2006,"make":"Toyota","model":"Corolla"}' \
  cache:makes:2020 '["BMW","Ford","Honda","Subaru","Toyota"]' >/dev/null

dc exec -T admin-minio node -e '
  const http = require("http");
  const put = (key, body) => new Promise((ok, bad) => http.request(
    { host: "127.0.0.1", port: 4568, method: "PUT", path: "/documents/" + key,
      headers: { "content-type": "text/plain", "content-length": Buffer.byteLength(body) } },
    (r) => { r.resume(); r.statusCode === 200 ? ok() : bad(new Error(key + ": HTTP " + r.statusCode)); },
  ).on("error", bad).end(body));
  Promise.all([
    put("vehicles/1/receipt-2024-03-oil-change.txt", "Oil change, 5W-30, 38,200 km, $64.90\n"),
    put("vehicles/2/insurance-card-2025.txt", "Policy MVP-2025-0002, valid to 2025-12-31\n"),
  ]).catch((e) => { console.error(e.message); process.exit(1); });'

{ echo 'SET client_min_messages = warning;'; cat mvp-platform-services/vehicles/sql/001_schema.sql; } |
  dc exec -T mvp-platform-vehicles-db psql -U postgres -d vehicles -v ON_ERROR_STOP=1 -qAt
dc exec -T mvp-platform-vehicles-db psql -U postgres -d vehicles -v ON_ERROR_STOP=1 -qAt -c "
  INSERT INTO vehicle_models (year, make, model)
  SELECT y, m.make, m.model
  FROM generate_series(2015, 2024) y,
       (VALUES ('Honda','Civic'),('Honda','CR-V'),('Toyota','Corolla'),('Toyota','RAV4'),
               ('Ford','F-150'),('Ford','Escape'),('BMW','330i'),('BMW','X3'),
               ('Subaru','Outback'),('Subaru','Forester')) AS m(make, model)
  ON CONFLICT DO NOTHING"

echo "seeded: $(dc exec -T mvp-postgres psql -U postgres -d app -Atc 'select count(*) from vehicles') vehicles," \
     "$(dc exec -T mvp-redis redis-cli -h 127.0.0.1 dbsize) redis keys," \
     "$(dc exec -T mvp-platform-vehicles-db psql -U postgres -d vehicles -Atc 'select count(*) from vehicle_models') platform rows"
