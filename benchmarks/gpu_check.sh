#!/usr/bin/env bash
# The prepared GPU check (issue 18): one command, under 5 minutes on one modern GPU.
#   benchmarks/gpu_check.sh            # on the GPU; writes benchmarks/results/gpu_check.json
#   benchmarks/gpu_check.sh --cpu      # CPU smoke at the dry run's sizes
# Extra arguments go to benchmarks/gpu_check.py (--out, --samples, --mtt-iterations,
# --pipeline-seconds); see its docstring for what each figure measures.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export NO_PROXY="127.0.0.1${NO_PROXY:+,$NO_PROXY}"
exec timeout --signal=TERM 290 "$PY" benchmarks/gpu_check.py "$@"
