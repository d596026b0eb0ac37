#!/usr/bin/env bash
# The main job: set-up from a fresh clone, then the reference page's examples end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m wlnet.examples "$@"
