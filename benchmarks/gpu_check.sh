#!/usr/bin/env bash
# One prepared run for a GPU machine (under 10 minutes): the CUDA equality suite, then the OGB
# benchmark grid on the GPU at d = 64. Figures go to results/ and the README's GPU section.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
echo "== CUDA equality suite (GPU against the reference and against the CPU emulation) and sm_80/sm_90 compile checks"
timeout 300 "$PY" -m pytest -q tests/codegen/backends/test_cuda_backend.py -s
echo "== OGB grid on the GPU (compiled CUDA vs graphcore eager vs PyG)"
timeout 280 "$PY" -m benchmarks.ogb_rgnn --device cuda --dims 64 --systems compiled eager pyg \
  --graphs aifb mutag fb15k237 heco_dblp hector_mag_0.1 --repeats 5 --cell-timeout 30 \
  --output ogb_rgnn_cuda.json --plot results/ogb_rgnn_cuda.png
