#!/usr/bin/env bash
# From a fresh machine to the whole test suite: set up .venv with the test extras, then pytest.
# Extra arguments go to pytest (e.g. -k tokenizer, -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash runs/setup.sh test
# The web chat test drives headless Chromium; as root with apt we install it, otherwise it skips.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }) \
    || echo "note: could not install chromium; the web chat test will be skipped"
fi
exec .venv/bin/python -m pytest -q "$@"
