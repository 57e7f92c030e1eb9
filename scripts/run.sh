#!/usr/bin/env bash
# Set up (idempotent) and run the whole default pipeline (`dvc repro`), then print a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" DVC_NO_ANALYTICS=1
start=$(date +%s)
# one Prefect server for every stage instead of a temporary one each (flows/server.py); it
# prints the address of its UI, where the run can be watched while it goes
python -m flows.server dvc repro "$@"
python -m flows.summary --seconds $(( $(date +%s) - start ))
