# Helpers for the stand-in healthchecks (sourced). Each check prints one short reason
# and exits 1 on the first problem. Files are only tested, never printed: .env and
# secrets/ hold canary values that must not reach `docker inspect` or any log.
cd /srv 2>/dev/null && [ -r . ] || { echo "unhealthy: cannot read /srv (repo not mounted, or its directory not readable by uid 1000)"; exit 1; }

fail() { echo "unhealthy: $*"; exit 1; }

# need_file PATH [PATTERN]: PATH is a non-empty file (containing PATTERN, if given)
need_file() {
  [ -f "$1" ] || fail "missing $1"
  [ -s "$1" ] || fail "empty $1"
  [ $# -lt 2 ] || grep -qE -- "$2" "$1" || fail "$1 does not look right (no /$2/)"
}

# need_dir DIR GLOB [MIN]: DIR holds at least MIN (default 1) non-empty files matching GLOB
need_dir() {
  local n=0 f
  [ -d "$1" ] || fail "missing $1/"
  for f in "$1"/$2; do [ -s "$f" ] && n=$((n + 1)); done
  [ "$n" -ge "${3:-1}" ] || fail "$1/ has $n non-empty $2 file(s), need ${3:-1}"
}

# need_sql DB: the postgres behind /run/postgresql answers a query in DB
need_sql() {
  [ "$(psql -h /run/postgresql -U postgres -d "$1" -Atc 'select 1' 2>/dev/null)" = 1 ] \
    || fail "postgres database '$1' not reachable over /run/postgresql"
}
