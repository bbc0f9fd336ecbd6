#!/usr/bin/env bash
# Builds the documentation site into site/ (open site/index.html; it works offline, search included):
#   1. the docs extras (Sphinx, MyST, furo) in the project's virtualenv
#   2. the reference pages regenerated from the code (scripts/gen_reference.py)
#   3. sphinx-build, strictly: every warning is an error (a broken link, a missing page, an orphan)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${ES_DOCTOR_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import sphinx, myst_parser, furo, es_doctor' >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip install -q -e '.[docs]'
fi
"$VENV/bin/python" scripts/gen_reference.py
rm -rf site
"$VENV/bin/python" -m sphinx -W --keep-going -n -q -b html docs site
echo "docs: site/index.html"
