#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): CUDA tests, training throughput at the paper's size, a short end-to-end run.
#   bash bench/gpu_check.sh               # on a CUDA machine: at most about 8 minutes, no network
#   bash bench/gpu_check.sh --cpu-smoke   # anywhere: every stage shrunk to seconds on the CPU
# Wheels the GPU machine lacks (bench/gpu-wheels.txt says how to fetch them) are installed from a local folder,
# $SIGPROP_WHEELS (default .whl/ at the repository root), when it holds any and snakemake is not importable
# already; nothing is downloaded. The IWSLT'14
# data for the end-to-end run: $SIGPROP_IWSLT_DIR, else data/iwslt14/ (a copy of the shared folder, not in git).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${SIGPROP_WHEELS:-.whl}
SITE=${SIGPROP_SITE:-/tmp/sigprop-site}
if compgen -G "$WHEELS/*.whl" >/dev/null && ! "$PY" -c "import snakemake" 2>/dev/null; then
    echo "installing bench/gpu-wheels.txt from $WHEELS into $SITE (no index)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --find-links "$WHEELS" \
        --target "$SITE" -r bench/gpu-wheels.txt
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    export PATH="$SITE/bin:$PATH"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" bench/gpu_check.py "$@"
