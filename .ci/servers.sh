#!/usr/bin/env bash
# The real servers and tools some tests start on 127.0.0.1 (and remove): sshd (an ssh://
# engine, an SFTP restic repository), rclone (`rclone serve restic`: a REST repository)
# and restic itself. Installed from Debian here, never started: no service may come up
# on an open port.
set -euo pipefail
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v restic >/dev/null || need+=(restic)
command -v rclone >/dev/null || need+=(rclone)
command -v mkfs.btrfs >/dev/null || need+=(btrfs-progs)  # copy-on-write tests: a loop-mounted btrfs
command -v mkfs.xfs >/dev/null || need+=(xfsprogs)       # and XFS with reflinks
[ ${#need[@]} -eq 0 ] && exit 0
echo "[servers] installing ${need[*]} from Debian" >&2
if [ ! -e /usr/sbin/policy-rc.d ]; then
  # the package would start sshd on 0.0.0.0:22; policy-rc.d exit 101 = "do not start"
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
