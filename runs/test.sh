#!/usr/bin/env bash
# From a fresh machine to the whole test suite: set up .venv with the test extras, then pytest.
# Extra arguments go to pytest (e.g. -k tokenizer, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash runs/setup.sh test
exec .venv/bin/python -m pytest -q "$@"
