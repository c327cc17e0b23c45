#!/usr/bin/env bash
# Runs on the project's GPU machine: builds bench/cuda/chain_probe.cu against the tree's matvec
# kernels and runs it for the 8B and 1B shapes (PROBE_MODELS="8b 1b").
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc -std=c++17 -O3 -arch=sm_90 -Iinclude -Isrc bench/cuda/chain_probe.cu src/backend/cuda/kernels_matvec.cu \
    src/backend/cuda/kernels_quant.cu -o /tmp/dw-chain-probe
for m in ${PROBE_MODELS:-8b 1b}; do
    echo "== $m"
    /tmp/dw-chain-probe "$m"
done
