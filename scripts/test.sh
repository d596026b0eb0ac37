#!/usr/bin/env bash
# The test command: set-up from a fresh clone, lint, then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/python -m pytest -p no:cacheprovider "$@"
