#!/usr/bin/env bash
# Start the embedded lab stack on loopback and run `es-doctor diagnose` against it.
# Needs only python3 (>= 3.11) with venv; PostgreSQL/Prometheus/Docker are used when present.
# Leaves the lab running: `.venv/bin/es-doctor lab down` stops it.
# Says what it is doing at each step; pip's output is kept in a log and shown only when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'try-lab: %s\n' "$*"; }
log=$(mktemp "${TMPDIR:-/tmp}/try-lab.XXXXXX.log")
trap 'rm -f "$log"' EXIT

# run "$@" quietly; on failure show what it printed and stop
quiet() {
  if ! "$@" >"$log" 2>&1; then
    say "failed: $*" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}

if ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "installing python3 and python3-venv (apt-get)…"
    quiet apt-get update -qq
    quiet env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv
  else
    echo "try-lab: needs python3 >= 3.11 with the venv module (Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
fi
if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv…"
  quiet python3 -m venv .venv
  say "installing es-doctor and its dependencies into .venv (about half a minute the first time)…"
  quiet .venv/bin/python -m pip install -q --upgrade pip
else
  say "checking es-doctor's installation in .venv…"
fi
quiet .venv/bin/python -m pip install -q -e .
say "starting the lab (service, Qdrant, and PostgreSQL, Prometheus, Docker where installed)…"
.venv/bin/es-doctor lab up
say "diagnosing the lab: .venv/bin/es-doctor diagnose -t lab $*"
set +e
.venv/bin/es-doctor diagnose -t lab "$@"
rc=$?
set -e
echo
echo "exit code $rc (0 OK, 1 WARN, 2 CRIT, 3 UNKNOWN). Try: .venv/bin/es-doctor lab fault add slow-api-crit," \
     "then diagnose again. Stop the lab: .venv/bin/es-doctor lab down"
exit 0
