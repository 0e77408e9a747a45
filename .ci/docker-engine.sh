#!/usr/bin/env bash
# Make a Docker engine answer: install Debian's docker.io when dockerd is missing, start
# dockerd in the background when the socket does not answer, wait for it. The engine is
# kept off the host network: no default bridge, no iptables, no masquerading.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null; then
  echo "[engine] installing docker.io from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  echo "[engine] starting dockerd (log: /var/log/undoit-dockerd.log)" >&2
  nohup dockerd --bridge=none --iptables=false --ip-masq=false >/var/log/undoit-dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
docker info >/dev/null 2>&1 || { echo "[engine] dockerd did not answer in 60 s; see /var/log/undoit-dockerd.log" >&2; exit 1; }
