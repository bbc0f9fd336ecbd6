#!/usr/bin/env bash
# Installs, when missing, the system packages es-doctor's tests need:
# a Docker engine (docker.io), PostgreSQL 15, Prometheus (+promtool), busybox-static
# (the rootfs of the lab's container image), chromium (serve's status page, headless) and golang-go
# (the lab's Go program: real pprof profiles for es-doctor profile, read back by `go tool pprof`),
# prometheus-alertmanager (+amtool: serve's alert receiver).
# Runs as root; `apt-get update` first.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
[ -x /usr/lib/postgresql/15/bin/postgres ] || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql postgresql-contrib)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)
# es-doctor serve's status page is checked in a real headless browser
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# es-doctor profile is tested against a real Go runtime's net/http/pprof and `go tool pprof`
command -v go >/dev/null 2>&1 || need+=(golang-go)
# the lab image's rootfs must be a static busybox (a dynamic one cannot run in an empty image)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || need+=(busybox-static)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v pg_dump >/dev/null 2>&1 || need+=(postgresql-client)
# es-doctor serve's alert receiver is tested behind a real Alertmanager (and amtool checks its printed config)
{ command -v prometheus-alertmanager && command -v amtool; } >/dev/null 2>&1 || need+=(prometheus-alertmanager)

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
