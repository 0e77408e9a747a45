#!/bin/bash
# mvp-frontend: the files runbook phase 10 touches.
. "$(dirname "$0")/common.sh"
need_file frontend/src/main.tsx "from '\./App'"
need_file frontend/src/App.tsx 'export default'
need_file frontend/src/api/client.ts 'export'
need_file frontend/package.json '"build"'
node -e 'JSON.parse(require("fs").readFileSync("frontend/package.json","utf8"))' 2>/dev/null \
  || fail "frontend/package.json is not valid JSON"
echo "ok: frontend"
