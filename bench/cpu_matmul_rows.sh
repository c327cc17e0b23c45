#!/usr/bin/env bash
# Builds and runs bench/cpu_matmul_rows.c (the CPU batched-step product against the decode matmul,
# on the Llama-3.2-1B shapes) against the library of the CPU build (make DW_SKIP_CUDA=1 first).
#   bench/cpu_matmul_rows.sh [bf16|q4|q8] [LAYERS] [REPS] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${DW_BUILD:-build}
[ -f "$build/lib/libdriftwood.a" ] || { echo "bench: build first (make DW_SKIP_CUDA=1)"; exit 1; }
wasmtime=${WASMTIME_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/driftwood/wasmtime-48.0.8/dist}
cc -std=c11 -D_GNU_SOURCE -O2 -pthread -Iinclude -Isrc -o "$build/bin/cpu_matmul_rows" bench/cpu_matmul_rows.c \
    "$build/lib/libdriftwood.a" -L"$wasmtime/lib" -lwasmtime -Wl,-rpath,"$PWD/$build/lib" \
    -lpcre2-8 -ljansson -lutf8proc -lcrypto -lm -ldl
exec "$build/bin/cpu_matmul_rows" "$@"
