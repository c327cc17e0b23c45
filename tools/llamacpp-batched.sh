#!/usr/bin/env bash
# Runs on the project's GPU machine (the device tool), from the repo root: builds llama.cpp (the
# trimmed source that tools/llamacpp-prepare.sh put in .carry/llamacpp/) with CUDA for sm_90,
# converts Hugging Face Llama models to GGUF f16 with its convert_hf_to_gguf.py, quantizes a Q4_0
# copy with llama-quantize, and runs llama-batched-bench on each (128-token prompts, 128
# generated, flash attention on, 1/4/16/64 parallel sequences), the reference beside
# `driftwood bench batch` (issue 19). Writes $OUT/llamacpp.json (per model, type and npl: decode
# speed S_TG and prefill speed S_PP in tok/s, the times, the exact command), $OUT/llamacpp.log
# (progress with timestamps, a table of the results, the tails of failed steps) and
# $OUT/llamacpp-raw.txt (llama-batched-bench's whole output, --output-format jsonl).
#
# Usage (carry: [".carry"]; models made there first, e.g. as tools/gpu-check.sh does:
#   build-gpu/bin/driftwood mkmodel --shape llama-3.2-1b --out /tmp/m1b --tokenizer-dir .carry/llama3-tokenizer):
#   tools/llamacpp-batched.sh all MODEL_DIR [MODEL_DIR...]   build, then convert, quantize, bench
#   tools/llamacpp-batched.sh build-bg     start the build detached (setsid) and return at once;
#                                          it outlives the device call that started it
#   tools/llamacpp-batched.sh build        build in the foreground
#   tools/llamacpp-batched.sh bench MODEL_DIR [MODEL_DIR...]
#                                          wait for a running build (or build), then the rest
#   tools/llamacpp-batched.sh status       say how the build stands
# The build (about 150 CUDA files, -j$(nproc)) goes to build-llamacpp/ (git-ignored, kept while
# the machine stays warm); GGUF files go to $LLAMACPP_GGUF_DIR (default /tmp/llamacpp-gguf; the
# 8B shape needs ~16 GB for f16 + ~4.5 GB for Q4_0 there). Within one 10-minute device call, start
# `build-bg` first, do Driftwood's own build and bench, then call `bench` (it waits at most
# LLAMACPP_BUILD_WAIT seconds, leaving time for conversion and the runs).
#
# Environment:
#   LLAMACPP_TYPES="f16 q4_0"    GGUF types to bench (f16 is converted; others are llama-quantize types)
#   LLAMACPP_NPL=1,4,16,64  LLAMACPP_NPP=128  LLAMACPP_NTG=128
#   LLAMACPP_BENCH_ARGS="..."    more llama-batched-bench arguments (e.g. -kvu for one unified KV buffer)
#   LLAMACPP_BUILD_TIMEOUT=1500  LLAMACPP_BUILD_WAIT=420  LLAMACPP_BENCH_TIMEOUT=420  (seconds)
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

bdir=$repo/build-llamacpp
src=$bdir/llama.cpp
obj=$bdir/build
status_file=$bdir/build.status
build_log=$bdir/build.log
gguf_dir=${LLAMACPP_GGUF_DIR:-/tmp/llamacpp-gguf}
OUT=${OUT:-$bdir/out}
types=${LLAMACPP_TYPES:-f16 q4_0}
npl=${LLAMACPP_NPL:-1,4,16,64}
npp=${LLAMACPP_NPP:-128}
ntg=${LLAMACPP_NTG:-128}
tarball=$repo/.carry/llamacpp/llama.cpp.tar.gz
mkdir -p "$bdir" "$OUT"
log=$OUT/llamacpp.log

say() { echo "[$(date -u +%H:%M:%S)] llamacpp: $*" | tee -a "$log"; }
die() { say "FAILED: $*"; exit 1; }
tail_into_log() { # FILE N: the last N lines of FILE, indented, into the log and stdout
    [ -f "$1" ] && tail -n "$2" "$1" | sed 's/^/    | /' | tee -a "$log"
}

# ---- the CUDA toolkit: nvcc, and cuBLAS beside it or from the image's pip wheels ---------------
cuda_cmake_args=()
find_cuda() {
    local nvcc=""
    [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ] && nvcc=$CUDA_HOME/bin/nvcc
    [ -z "$nvcc" ] && nvcc=$(command -v nvcc || true)
    [ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
    [ -n "$nvcc" ] || { say "no nvcc on PATH, in \$CUDA_HOME or /usr/local/cuda"; return 1; }
    local root
    root=$(cd "$(dirname "$(readlink -f "$nvcc")")/.." && pwd)
    say "nvcc: $nvcc ($("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')), toolkit $root"
    cuda_cmake_args=(-DCMAKE_CUDA_COMPILER="$nvcc" -DCUDAToolkit_ROOT="$root")
    local have_cublas=0 f
    for f in "$root"/lib64/libcublas.so* "$root"/lib/libcublas.so* "$root"/targets/*/lib/libcublas.so*; do
        [ -e "$f" ] && have_cublas=1
    done
    if [ "$have_cublas" = 0 ]; then
        # The image's PyTorch brings cuBLAS as the nvidia-cublas wheel: headers and libraries.
        local lib lt hdr
        lib=$(find /usr/local /opt /usr/lib -name 'libcublas.so.1[0-9]*' 2>/dev/null | sort | head -1)
        lt=$(find "$(dirname "${lib:-/nonexistent}")" -name 'libcublasLt.so.1[0-9]*' 2>/dev/null | sort | head -1)
        hdr=$(find /usr/local /opt /usr/include -name cublas_v2.h 2>/dev/null | head -1)
        [ -n "$lib" ] && [ -n "$lt" ] && [ -n "$hdr" ] ||
            { say "no cuBLAS beside the toolkit, and none found elsewhere (lib=$lib lt=$lt header=$hdr)"; return 1; }
        say "cuBLAS not beside the toolkit; using $lib, $lt, headers in $(dirname "$hdr")"
        cuda_cmake_args+=(-DCUDA_cublas_LIBRARY="$lib" -DCUDA_cublasLt_LIBRARY="$lt"
            -DCMAKE_CUDA_FLAGS="-I$(dirname "$hdr")" -DCMAKE_CXX_FLAGS="-I$(dirname "$hdr")")
        export LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        echo "$(dirname "$lib")" >"$bdir/extra-ld-path"
    fi
}

find_cmake() {
    if command -v cmake >/dev/null; then return 0; fi
    local whl
    whl=$(ls "$repo"/.carry/llamacpp/cmake-*.whl 2>/dev/null | head -1)
    [ -n "$whl" ] || { say "no cmake here and no cmake wheel in .carry/llamacpp (LLAMACPP_CARRY_CMAKE=1 tools/llamacpp-prepare.sh)"; return 1; }
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/llamacpp-cmake "$whl" ||
        { say "installing $whl failed"; return 1; }
    export PATH="/tmp/llamacpp-cmake/bin:$PATH"
    command -v cmake >/dev/null || { say "cmake wheel installed but no cmake in /tmp/llamacpp-cmake/bin"; return 1; }
}

# ---- build ----------------------------------------------------------------------------------
do_build() {
    echo "running $$" >"$status_file"
    local t0=$SECONDS
    : >"$build_log"
    [ -f "$tarball" ] || { echo failed >"$status_file"; die "no $tarball: run tools/llamacpp-prepare.sh here and carry .carry"; }
    find_cmake || { echo failed >"$status_file"; die "cmake"; }
    find_cuda || { echo failed >"$status_file"; die "CUDA toolkit"; }
    say "cmake $(cmake --version | head -1 | awk '{print $3}'), $(gcc --version | head -1), $(nproc) cores"
    # A new tarball (by content: each device call copies the tree afresh) starts from scratch.
    local sum
    sum=$(sha256sum "$tarball" | cut -d' ' -f1)
    if [ ! -f "$src/CMakeLists.txt" ] || [ "$(cat "$bdir/source.sha256" 2>/dev/null)" != "$sum" ]; then
        rm -rf "$src" "$obj" "$bdir/source.sha256"
        tar -xzf "$tarball" -C "$bdir" || { echo failed >"$status_file"; die "extracting $tarball"; }
        echo "$sum" >"$bdir/source.sha256"
    fi
    say "source: $(head -1 "$src/DRIFTWOOD-TRIM.txt" 2>/dev/null)"
    local gen=()
    command -v ninja >/dev/null && gen=(-G Ninja)
    say "configuring (CUDA sm_90, Release${gen:+, Ninja})"
    # GIT_CEILING_DIRECTORIES: the source has no .git; keep CMake's git calls off Driftwood's repo.
    local commit
    commit=$(sed -n 's/^llama.cpp commit \([0-9a-f]\{8\}\).*/\1/p' "$src/DRIFTWOOD-TRIM.txt" 2>/dev/null)
    if ! GIT_CEILING_DIRECTORIES=$bdir timeout 300 cmake -S "$src" -B "$obj" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
            -DLLAMA_BUILD_COMMIT="${commit:-unknown}" -DLLAMA_BUILD_NUMBER=0 \
            -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 "${cuda_cmake_args[@]}" -DGGML_NATIVE=OFF \
            -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
            -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TOOLS=ON \
            >>"$build_log" 2>&1; then
        tail_into_log "$build_log" 40
        echo failed >"$status_file"; die "cmake configure (log: $build_log)"
    fi
    say "building llama-batched-bench and llama-quantize with -j$(nproc)"
    if ! timeout "${LLAMACPP_BUILD_TIMEOUT:-1500}" cmake --build "$obj" -j"$(nproc)" \
            --target llama-batched-bench llama-quantize >>"$build_log" 2>&1; then
        grep -n -m 20 -i "error" "$build_log" | sed 's/^/    | /' | tee -a "$log"
        tail_into_log "$build_log" 30
        echo failed >"$status_file"; die "build (timeout ${LLAMACPP_BUILD_TIMEOUT:-1500} s or error; log: $build_log)"
    fi
    for b in llama-batched-bench llama-quantize; do
        [ -x "$obj/bin/$b" ] || { echo failed >"$status_file"; die "built, but no $obj/bin/$b"; }
    done
    echo ok >"$status_file"
    say "build ok in $((SECONDS - t0)) s"
}

# Waits for a build started by build-bg; builds in the foreground when none ran. Returns 0 when the
# binaries are there.
wait_for_build() {
    local waited=0 limit=${LLAMACPP_BUILD_WAIT:-420} st pid
    while :; do
        st=$(cat "$status_file" 2>/dev/null || echo none)
        case "$st" in
            ok) [ -x "$obj/bin/llama-batched-bench" ] && [ -x "$obj/bin/llama-quantize" ] && return 0
                say "build.status says ok but the binaries are missing; building again"; do_build; return ;;
            failed) say "the background build failed:"; tail_into_log "$bdir/build-bg.out" 40; return 1 ;;
            running*)
                pid=${st#running }
                if ! kill -0 "$pid" 2>/dev/null; then
                    say "the build (pid $pid) is gone without finishing:"; tail_into_log "$bdir/build-bg.out" 20
                    return 1
                fi
                if [ "$waited" -ge "$limit" ]; then
                    say "the build is still running after $waited s of waiting; call bench again later"
                    say "progress: $(grep -c 'Building\|\[[0-9]*/[0-9]*\]' "$build_log") compile steps so far; last: $(tail -1 "$build_log")"
                    return 1
                fi
                [ $((waited % 60)) -eq 0 ] && say "waiting for the build ($waited s; last: $(tail -1 "$build_log" | cut -c1-120))"
                sleep 10; waited=$((waited + 10)) ;;
            starting)
                [ "$waited" -ge 30 ] && { say "the background build never started:"; tail_into_log "$bdir/build-bg.out" 20; return 1; }
                sleep 2; waited=$((waited + 2)) ;;
            *) say "no build yet; building now"; do_build; return ;;
        esac
    done
}

# ---- convert, quantize, bench -------------------------------------------------------------------
bench_all() {
    [ $# -ge 1 ] || die "bench needs at least one model directory"
    [ -f "$bdir/extra-ld-path" ] && export LD_LIBRARY_PATH="$(cat "$bdir/extra-ld-path")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    local gpu max_pl ctx failed="" m name f16 g ty raw
    gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)
    say "GPU: $gpu"
    max_pl=$(echo "$npl" | tr ',' '\n' | sort -n | tail -1)
    ctx=$((max_pl * (npp + ntg)))
    mkdir -p "$gguf_dir"
    local runs=$bdir/runs.jsonl
    : >"$runs"
    for m in "$@"; do
        m=${m%/}
        name=$(basename "$m")
        [ -f "$m/config.json" ] || { say "$m: no config.json; skipped"; failed="$failed $name"; continue; }
        f16=$gguf_dir/$name-f16.gguf
        if [ ! -s "$f16" ] || [ "$m/config.json" -nt "$f16" ]; then
            say "$name: converting to GGUF f16"
            rm -f "$f16"
            if ! timeout 900 python3 "$src/convert_hf_to_gguf.py" "$m" --outtype f16 --outfile "$f16.tmp" \
                    >"$bdir/convert-$name.log" 2>&1 || ! mv "$f16.tmp" "$f16"; then
                tail_into_log "$bdir/convert-$name.log" 25
                say "$name: conversion FAILED"; failed="$failed $name-convert"; rm -f "$f16.tmp"; continue
            fi
            say "$name: $(du -h "$f16" | cut -f1) f16 GGUF"
        fi
        for ty in $types; do
            g=$gguf_dir/$name-$ty.gguf
            if [ "$ty" != f16 ] && { [ ! -s "$g" ] || [ "$f16" -nt "$g" ]; }; then
                say "$name: quantizing to $ty"
                if ! timeout 600 "$obj/bin/llama-quantize" "$f16" "$g.tmp" "$(echo "$ty" | tr a-z A-Z)" \
                        >"$bdir/quantize-$name-$ty.log" 2>&1 || ! mv "$g.tmp" "$g"; then
                    tail_into_log "$bdir/quantize-$name-$ty.log" 20
                    say "$name: quantize to $ty FAILED"; failed="$failed $name-$ty-quantize"; rm -f "$g.tmp"; continue
                fi
                say "$name: $(du -h "$g" | cut -f1) $ty GGUF"
            fi
            raw=$bdir/bench-$name-$ty.txt
            local cmd=("$obj/bin/llama-batched-bench" -m "$g" -c "$ctx" -b 2048 -ub 512 -npp "$npp" -ntg "$ntg"
                -npl "$npl" -fa on -ngl 99 --output-format jsonl ${LLAMACPP_BENCH_ARGS:-})
            say "$name $ty: ${cmd[*]}"
            if ! timeout "${LLAMACPP_BENCH_TIMEOUT:-420}" "${cmd[@]}" >"$raw" 2>&1; then
                tail_into_log "$raw" 30
                say "$name $ty: llama-batched-bench FAILED (rc or timeout ${LLAMACPP_BENCH_TIMEOUT:-420} s)"
                failed="$failed $name-$ty-bench"
            fi
            { echo "===== $name $ty: ${cmd[*]}"; cat "$raw"; } >>"$OUT/llamacpp-raw.txt"
            grep -E 'flash_attn|CUDA0|offloaded|n_ctx|KV buffer' "$raw" | grep -v '^{' | head -12 | sed 's/^/    /' >>"$log"
            python3 - "$raw" "$name" "$ty" "$g" "${cmd[*]}" >>"$runs" <<'EOF' || { say "$name $ty: no results in the output"; failed="$failed $name-$ty-parse"; }
import json, os, sys
raw, name, ty, path, cmd = sys.argv[1:]
rows = []
for line in open(raw, errors="replace"):
    line = line.strip()
    if line.startswith('{"n_kv_max"'):
        rows.append(json.loads(line))
if not rows:
    sys.exit(1)
print(json.dumps({"model": name, "type": ty, "gguf": path, "gguf_bytes": os.path.getsize(path),
                  "command": cmd, "rows": rows}))
EOF
        done
    done
    python3 - "$runs" "$OUT/llamacpp.json" "$gpu" "$(head -1 "$src/DRIFTWOOD-TRIM.txt" 2>/dev/null)" <<'EOF' | tee -a "$log"
import json, sys, time
runs_path, out_path, gpu, source = sys.argv[1:]
runs = [json.loads(l) for l in open(runs_path) if l.strip()]
summary = []
for r in runs:
    for row in r["rows"]:
        summary.append({"model": r["model"], "type": r["type"], "npl": row["pl"], "pp": row["pp"], "tg": row["tg"],
                        "decode_tok_s": round(row["speed_tg"], 2), "prefill_tok_s": round(row["speed_pp"], 2),
                        "t_tg_s": round(row["t_tg"], 4), "t_pp_s": round(row["t_pp"], 4),
                        "total_tok_s": round(row["speed"], 2), "flash_attn": row["flash_attn"]})
doc = {"tool": "llama-batched-bench", "source": source, "gpu": gpu,
       "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
       "note": "decode_tok_s = S_TG (all sequences' generated tokens / generation time); prefill_tok_s = S_PP",
       "summary": summary, "runs": runs}
json.dump(doc, open(out_path, "w"), indent=1)
print(f"| model | type | npl | decode S_TG tok/s | prefill S_PP tok/s |")
print(f"|---|---|---:|---:|---:|")
for s in summary:
    print(f"| {s['model']} | {s['type']} | {s['npl']} | {s['decode_tok_s']:.1f} | {s['prefill_tok_s']:.1f} |")
EOF
    say "wrote $OUT/llamacpp.json"
    [ -z "$failed" ] || die "failed steps:$failed"
    say "all done"
}

cmd=${1:-}
shift || true
case "$cmd" in
    build) do_build ;;
    build-bg)
        st=$(cat "$status_file" 2>/dev/null || echo none)
        if [ "${st%% *}" = running ] && kill -0 "${st#running }" 2>/dev/null; then
            say "a build is already running (${st#running })"; exit 0
        fi
        [ "$st" = ok ] && [ -x "$obj/bin/llama-batched-bench" ] && { say "already built"; exit 0; }
        # The detached build logs to build-llamacpp/, not to this call's $OUT.
        echo starting >"$status_file"   # the build itself writes "running PID", then ok or failed
        OUT=$bdir/out setsid nohup "$0" build >"$bdir/build-bg.out" 2>&1 </dev/null &
        say "build started in the background (pid $!); tools/llamacpp-batched.sh bench MODEL_DIR waits for it" ;;
    status)
        echo "build: $(cat "$status_file" 2>/dev/null || echo none)"
        tail -3 "$build_log" 2>/dev/null ;;
    bench) wait_for_build || die "no llama.cpp build"; bench_all "$@" ;;
    all) do_build && bench_all "$@" ;;
    *) sed -n '2,/^set -uo/{/^set -uo/!p}' "$0"; exit 2 ;;
esac
