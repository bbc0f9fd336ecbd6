#!/usr/bin/env bash
# The whole test suite on a fresh Debian/Ubuntu machine, as CI runs it (.ci/run calls exactly this):
#   1. system packages the tests need (Docker engine, PostgreSQL, Prometheus, busybox-static), as root
#   2. a virtualenv with es-doctor and its dev extras
#   3. ruff, mypy --strict, the docs site built strictly, then pytest (unit + integration against the real
#      components)
# pytest's exit code 5 ("no tests collected") is a failure here, never a pass.
set -euo pipefail
cd "$(dirname "$0")/.."
# strict by default: a component that cannot start fails the run instead of skipping tests
export CI="${CI:-true}"

bash scripts/install-test-deps.sh

VENV="${ES_DOCTOR_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e '.[dev,docs]'

echo "== ruff"
"$VENV/bin/ruff" check src tests benchmarks
echo "== mypy"
"$VENV/bin/mypy" src
echo "== docs (strict: warnings are errors)"
bash scripts/docs.sh
echo "== pytest"
set +e
# the 40 slowest tests are listed at the end: where the suite's time goes (#20)
"$VENV/bin/python" -m pytest --durations=40 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
