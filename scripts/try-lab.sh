#!/usr/bin/env bash
# Start the embedded lab stack on loopback and run `es-doctor diagnose` against it.
# Needs only python3 (>= 3.11) with venv; PostgreSQL/Prometheus/Docker are used when present.
# Leaves the lab running: `.venv/bin/es-doctor lab down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
  else
    echo "try-lab: needs python3 >= 3.11 with the venv module (Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e . >/dev/null

.venv/bin/es-doctor lab up
set +e
.venv/bin/es-doctor diagnose -t lab "$@"
rc=$?
set -e
echo
echo "exit code $rc (0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN). Try: .venv/bin/es-doctor lab fault add slow-api-crit," \
     "then diagnose again. Stop the lab: .venv/bin/es-doctor lab down"
exit 0
