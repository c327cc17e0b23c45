#!/usr/bin/env bash
# `make demo`: the zero-copy story on this machine. The GEMM actor computes in its own
# memory through the backend, then the zero-copy table compares it with a copy path, and
# the host-call cost is measured. CUDA runs too when a GPU is usable.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
dw=$BUILD/bin/driftwood

echo "== 1. The GEMM actor: fills A and B in its memory, dw.gemm multiplies in place, checks C"
"$dw" run "$BUILD/guests/gemm.wasm"
echo
echo "== 2. Zero-copy vs copy path (CPU backend)"
"$dw" bench zerocopy --backend cpu
if "$dw" run "$BUILD/guests/gemm.wasm" --backend cuda >/dev/null 2>&1; then
    echo
    echo "== 2b. The same on the GPU (CUDA backend)"
    "$dw" run "$BUILD/guests/gemm.wasm" --backend cuda
    "$dw" bench zerocopy --backend cuda
fi
echo
echo "== 3. What a host call costs"
"$dw" bench hostcall --calls 2000000
