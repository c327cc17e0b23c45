#!/usr/bin/env bash
# Runs on the project's GPU machine: builds src/backend/cuda/probes/chain_probe.cu against the
# tree's matvec kernels and runs it for the 8B and 1B shapes (PROBE_MODELS="8b 1b"), once as is
# and once per PROBE_ENVS variant (VAR=VALUE[,VAR=VALUE] each: tuning knobs of the kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc -std=c++17 -O3 -arch=sm_90 -Isrc src/backend/cuda/probes/chain_probe.cu src/backend/cuda/kernels_matvec.cu \
    src/backend/cuda/kernels_quant.cu -o /tmp/dw-chain-probe
for m in ${PROBE_MODELS:-8b 1b}; do
    echo "== $m"
    /tmp/dw-chain-probe "$m"
    for e in ${PROBE_ENVS:-}; do
        echo "== $m $e"
        env ${e//,/ } /tmp/dw-chain-probe "$m"
    done
done
