#!/usr/bin/env bash
# Installs the BigQuery emulator tier (bqemulator in its own venv, .corisync/tools/bqemu, git-ignored):
# see tests/bigquery/emulator.py for what and why. Idempotent; needs PyPI, nothing else.
# Usage: bash tests/bigquery/install_emulator.sh   (prints the emulator venv's python)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
[[ -x "$PY" ]] || PY="$(command -v python3)"
exec "$PY" -m tests.bigquery.emulator install
