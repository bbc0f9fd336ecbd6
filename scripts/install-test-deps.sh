#!/usr/bin/env bash
# Installs, when missing, the system packages es-doctor's tests need:
# a Docker engine (docker.io), PostgreSQL 15, Prometheus (+promtool) and busybox-static
# (the rootfs of the lab's container image). Runs as root; `apt-get update` first.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
[ -x /usr/lib/postgresql/15/bin/postgres ] || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql postgresql-contrib)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v pg_dump >/dev/null 2>&1 || need+=(postgresql-client)

if [ ${#need[@]} -eq 0 ]; then
  echo "install-test-deps: all system packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing ${need[*]}; run as root to install them" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "install-test-deps: installing ${need[*]}"
apt-get update -qq
# apt does not start services here (policy-rc.d); the test harness starts its own instances.
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "install-test-deps: done"
