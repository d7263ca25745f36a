#!/usr/bin/env bash
# From a fresh machine to the main job on the bundled corpus: set up .venv, then `baichuan speedrun`.
# Extra arguments go to `baichuan speedrun` (e.g. --out DIR, --baichuan-assets DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash runs/setup.sh
exec .venv/bin/baichuan speedrun "$@"
