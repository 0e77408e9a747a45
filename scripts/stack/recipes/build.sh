#!/bin/bash
# Registry-free images from Debian bookworm packages (no pull, no buildx, no network
# inside builds). Called by `doit images`, which passes:
#   PREFIX  image name prefix, e.g. "undoit" -> undoit/base:bookworm, undoit/postgres:15 ...
#   RECIPE  hash of this folder, stored as label undoit.recipe so the task knows when to rebuild
# The apt mirrors are the ones this machine's apt already uses.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${PREFIX:?}" "${RECIPE:?}"
apt_uri(){ # apt_uri SUFFIX: first configured URI whose path ends in SUFFIX
  { grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{for(i=2;i<=NF;i++)print $i}'
    grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '{print ($2 ~ /^\[/) ? $3 : $2}' || true
  } | grep -E "$1/?\$" | head -n1 || true; }
MIRROR=${MIRROR:-$(apt_uri '/debian')}
SECMIRROR=${SECMIRROR:-$(apt_uri '/debian-security')}
[ -n "$MIRROR" ] && [ -n "$SECMIRROR" ] || { echo "no Debian mirror found in apt sources; set MIRROR and SECMIRROR" >&2; exit 1; }
SUITE=bookworm
# uids are pinned because volumes outlive images: a rebuilt image must still own old data
PG_UID=999 REDIS_UID=998 APP_UID=1000

need(){ command -v "$1" >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null; }; }
need mmdebstrap mmdebstrap
need npm npm

work=$(mktemp -d "${TMPDIR:-/tmp}/undoit-images.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "[images] s3rver from npm" >&2
mkdir -p "$work/s3rver"
npm install --prefix "$work/s3rver" --omit=dev --no-audit --no-fund --loglevel=error s3rver@3.7.1 >/dev/null

echo "[images] Debian $SUITE rootfs (mmdebstrap)" >&2
# essential variant = Essential:yes packages + --include deps; docs, man pages, locales
# and the LLVM JIT are excluded (postgres runs with jit=off).
X=(--dpkgopt='path-exclude=/usr/share/doc/*'
   --dpkgopt='path-include=/usr/share/doc/*/copyright'
   --dpkgopt='path-exclude=/usr/share/man/*'
   --dpkgopt='path-exclude=/usr/share/info/*'
   --dpkgopt='path-exclude=/usr/share/locale/*'
   --dpkgopt='path-exclude=/usr/lib/postgresql/15/lib/bitcode/*'
   --dpkgopt='path-exclude=/usr/lib/postgresql/15/lib/llvmjit*'
   --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/libLLVM-14.so*'
   --dpkgopt='path-exclude=/usr/lib/llvm-14/*'
   --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/libz3.so*')
# --skip=cleanup/run: mmdebstrap would otherwise empty /run, where the postgres socket lives
mmdebstrap --quiet --mode=root --variant=essential --skip=cleanup/run \
  --include=postgresql-15,redis-server,nodejs "${X[@]}" \
  --essential-hook="printf '%s\n' 'postgres:x:$PG_UID:$PG_UID:PostgreSQL administrator:/var/lib/postgresql:/bin/bash' 'redis:x:$REDIS_UID:$REDIS_UID::/var/lib/redis:/usr/sbin/nologin' 'app:x:$APP_UID:$APP_UID::/srv:/bin/bash' >> \"\$1/etc/passwd\"" \
  --essential-hook="printf '%s\n' 'postgres:x:$PG_UID:' 'redis:x:$REDIS_UID:' 'app:x:$APP_UID:' >> \"\$1/etc/group\"" \
  --customize-hook='rm -rf "$1"/var/lib/postgresql/15 "$1"/etc/postgresql/15' \
  --customize-hook="copy-in $here/pg-entrypoint $here/idle $here/s3rver-run /usr/local/bin" \
  --customize-hook="copy-in $work/s3rver /opt" \
  --customize-hook='chroot "$1" sh -c "install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data && install -d -o postgres -g postgres -m 2775 /run/postgresql && install -d -o redis -g redis -m 750 /data && install -d -o redis -g redis -m 2775 /run/redis && install -d -o app -g app -m 755 /srv"' \
  --customize-hook='test "$(chroot "$1" id -u postgres)" = '"$PG_UID" \
  "$SUITE" "$work/rootfs.tar" \
  "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
  "deb $SECMIRROR $SUITE-security main"

OLD=$(docker image inspect -f '{{.Id}}' "$PREFIX/postgres:15" "$PREFIX/redis:7" "$PREFIX/s3:latest" \
      "$PREFIX/app:latest" "$PREFIX/base:$SUITE" 2>/dev/null || true)
BASE=$PREFIX/base:$SUITE
PATHS=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
echo "[images] docker import $BASE" >&2
# CMD [] here and in every child: the rootfs has no CMD and must not leak one
docker import --change "ENV PATH=$PATHS" --change 'ENV LANG=C.UTF-8' \
  --change 'CMD []' --change "LABEL undoit.recipe=$RECIPE" "$work/rootfs.tar" "$BASE" >/dev/null

build(){ # build NAME DOCKERFILE: legacy builder, no context, no network
  echo "[images] docker build $1" >&2
  local out; out=$(docker build -q --network none --build-arg "BASE=$BASE" \
    --label "undoit.recipe=$RECIPE" -t "$1" - < "$here/$2" 2>&1) || { echo "$out" >&2; return 1; }; }
build "$PREFIX/postgres:15" postgres.Dockerfile
build "$PREFIX/redis:7" redis.Dockerfile
build "$PREFIX/s3:latest" s3.Dockerfile
build "$PREFIX/app:latest" app.Dockerfile
for id in $OLD; do   # leftovers this run replaced, once nothing tags them
  [ "$(docker image inspect -f '{{len .RepoTags}}' "$id" 2>/dev/null)" = 0 ] && docker rmi "$id" >/dev/null 2>&1 || true
done
