#!/usr/bin/env bash
# The CPU peers benchmark (bench/cpu_peers.py): makes a venv with OpenVINO, ONNX Runtime, onnx and numpy
# from PyPI (VENV, default /tmp/tl_peers_venv), builds ours, and runs ours against them side by side.
#   bash bench/cpu_peers.sh [--batches 8,32] [--rounds 3] [--reps 3] [--whole-job 256]
# (--whole-job: the whole job too, tl_cache against PIL + OpenVINO bf16; needs make weights and pillow)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-/tmp/tl_peers_venv}
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import openvino, onnxruntime, onnx, numpy, PIL' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q openvino onnxruntime onnx numpy pillow
fi
make -s build/bench_ops tl_cache
exec "$VENV/bin/python" bench/cpu_peers.py "$@"
