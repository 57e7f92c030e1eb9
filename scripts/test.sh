#!/usr/bin/env bash
# Set up (idempotent) and run the test suite (the tiny profile end to end, plus unit tests).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" DVC_NO_ANALYTICS=1
exec python -m pytest "$@"
