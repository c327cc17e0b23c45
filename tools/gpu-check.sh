#!/usr/bin/env bash
# Runs on the project's GPU machine (the device tool; docs/CUDA.md has the exact call): builds
# Driftwood against the system CUDA with what tools/gpu-prepare.sh put in .carry/, runs the unit
# tests with the CUDA ones required, and `driftwood bench zerocopy` on cuda and cpu. Logs go to
# $OUT (at most 8 files) and a summary is printed last. Exits non-zero when anything failed.
#
# DW_GPU_STEPS picks steps (default: all but batch-bench): cuda-tests, unit-tests, zerocopy, engine-bench,
# batch-bench (`driftwood bench batch --backend cuda`, many actors at once: see its block below)
# (`driftwood bench decode --backend cuda` on a random Llama-3.2-1B-shaped model made here by mkmodel;
# DW_GPU_BENCH_SHAPES="llama-3.2-1b llama-3.1-8b" for more shapes, DW_GPU_BENCH_ENVS for variants,
# DW_GPU_BENCH_QUANT="4 8" for the shapes quantized to 4/8 bits, DW_GPU_BENCH_ARGS for more
# arguments of bench decode, e.g. "--prefill-tokens 0").
set -uo pipefail
cd "$(dirname "$0")/.."
B=build-gpu
DW_GPU_STEPS="${DW_GPU_STEPS:-cuda-tests unit-tests zerocopy engine-bench}"
want() { case " $DW_GPU_STEPS " in *" $1 "*) return 0 ;; esac; return 1; }
OUT="${OUT:-$PWD/$B/out}"
mkdir -p "$OUT" "$B"
dw_failed=""
fail() { dw_failed="$dw_failed $1"; }

# ---- the carried pieces -----------------------------------------------------------------
[ -f .carry/wasmtime/lib/libwasmtime.so ] || { echo "gpu-check: .carry/wasmtime missing: run tools/gpu-prepare.sh here and carry .carry"; exit 2; }
export WASMTIME_DIR="$PWD/.carry/wasmtime"
dw_sys=/tmp/dw-sysroot
rm -rf "$dw_sys" && mkdir -p "$dw_sys"
for deb in .carry/debs/*.deb; do dpkg -x "$deb" "$dw_sys"; done
export CPATH="$dw_sys/usr/include:$dw_sys/usr/include/x86_64-linux-gnu${CPATH:+:$CPATH}"
export LIBRARY_PATH="$dw_sys/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$dw_sys/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The Llama 3 tokenizer for mkmodel, carried compressed (gpu-prepare.sh) unless .deps has it.
if [ ! -d .deps/llama3-tokenizer ] && [ ! -d .carry/llama3-tokenizer ] && [ -f .carry/llama3-tokenizer.tar.xz ]; then
    tar xJf .carry/llama3-tokenizer.tar.xz -C .carry
fi
if [ -d .carry/guests ]; then
    # Prebuilt guests (no clang there); newer than their sources so make keeps them.
    mkdir -p "$B/guests" && cp .carry/guests/*.wasm "$B/guests/" && touch "$B"/guests/*.wasm
fi

# ---- the machine --------------------------------------------------------------------------
{
    echo "== $(date -u +%FT%TZ) $(uname -r)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
    command -v nvcc && nvcc --version | tail -2
    ls -d /usr/local/cuda* 2>&1
    make -s cuda-info BUILD=$B
    gcc --version | head -1
} >"$OUT/env.txt" 2>&1
# cuBLAS: the toolkit's own, else the first libcublas.so.13 found (pip wheels of the image).
if ! make -s cuda-info BUILD=$B | grep -q "cuBLAS /"; then
    dw_cublas=$(find /usr/local /opt /usr/lib -name 'libcublas.so.13' 2>/dev/null | head -1)
    [ -n "$dw_cublas" ] && export DW_CUBLAS_LIB="$dw_cublas"
    echo "cuBLAS not beside the toolkit; DW_CUBLAS_LIB=${dw_cublas:-none found}" >>"$OUT/env.txt"
fi
dw_cuda_root=$(make -s cuda-info BUILD=$B | sed -n 's/^CUDA toolkit: \([^ ]*\) .*/\1/p')
if [ -n "$dw_cuda_root" ] && [ ! -f "$dw_cuda_root/include/cublas_v2.h" ]; then
    dw_hdr=$(find /usr/local /opt /usr/include -name cublas_v2.h 2>/dev/null | head -1)
    [ -n "$dw_hdr" ] && export CUDA_EXTRA_FLAGS="-I$(dirname "$dw_hdr")"
    echo "cublas_v2.h not in the toolkit; using ${dw_hdr:-none found}" >>"$OUT/env.txt"
fi

# ---- build ----------------------------------------------------------------------------------
dw_t0=$(date +%s)
if make -j"$(nproc)" BUILD=$B "$B/bin/driftwood" "$B/bin/dw-tests" >"$OUT/build.log" 2>&1; then
    dw_tests="$B/bin/dw-tests"
else
    fail build
    # Fallback: the CUDA tests alone, linked against whatever of the library builds.
    echo "== full build failed; building the CUDA tests alone" >>"$OUT/build.log"
    dw_tests="$B/bin/dw-cuda-tests"
    make -k -j"$(nproc)" BUILD=$B "$B/lib/libdriftwood.a" >>"$OUT/build.log" 2>&1
    gcc -std=c11 -D_GNU_SOURCE -O2 -g -pthread -Iinclude -Isrc -I"$WASMTIME_DIR/include" -DDW_HAVE_CUDA -o "$dw_tests" \
        tests/unit/main.c tests/unit/test_cuda_backend.c src/backend/backend.c src/backend/cpu/*.c src/core/*.c \
        "$B"/obj/src/backend/cuda/*.o $(make -s BUILD=$B cuda-ldlibs) \
        -ljansson -lpcre2-8 -lcrypto -lm >>"$OUT/build.log" 2>&1 || fail cuda-test-build
fi
echo "build: $(( $(date +%s) - dw_t0 )) s" >>"$OUT/env.txt"

# ---- tests and benchmarks ----------------------------------------------------------------------
export DW_BUILD_DIR=$B
if [ -x "$dw_tests" ] && want cuda-tests; then
    DW_REQUIRE_CUDA=1 timeout 150 "$dw_tests" cuda >"$OUT/tests-cuda.log" 2>&1 || fail cuda-tests
fi
if [ -x "$dw_tests" ] && want unit-tests; then
    if [ "$dw_tests" = "$B/bin/dw-tests" ]; then
        DW_REQUIRE_CUDA=1 timeout 240 "$dw_tests" >"$OUT/tests-all.log" 2>&1 || fail unit-tests
    fi
fi
if [ -x "$B/bin/driftwood" ] && want zerocopy; then
    for be in cuda cpu; do
        timeout 90 "$B/bin/driftwood" bench zerocopy --backend $be --json >"$OUT/bench-$be.json" 2>&1 || fail "bench-$be"
    done
    timeout 90 "$B/bin/driftwood" bench zerocopy --backend cuda >"$OUT/bench-cuda.txt" 2>&1 || fail bench-cuda-table
    { timeout 60 "$B/bin/driftwood" run "$B/guests/gemm.wasm" --backend cuda &&
      timeout 60 "$B/bin/driftwood" run "$B/guests/gemm.wasm" --backend cuda -- 512; } >>"$OUT/bench-cuda.txt" 2>&1 || fail gemm-actor-cuda
fi

# ---- the engine on CUDA: decode/prefill speed against the copy-bandwidth bound ---------------
# `driftwood bench decode --backend cuda` (16 + 256 tokens, prefill 512, 4096 in context) on a
# random model of each shape made here by mkmodel, and on its quantized copies.
if [ -x "$B/bin/driftwood" ] && want engine-bench; then
    dw_tok=.deps/llama3-tokenizer; [ -d "$dw_tok" ] || dw_tok=.carry/llama3-tokenizer
    dw_bench() { # MODEL LABEL: one run of the benchmark, its table and JSON into bench-engine.txt
        for dw_env in ${DW_GPU_BENCH_ENVS:-DW_DEFAULT=1}; do
            echo "== $2 ${dw_env//,/ }"
            env ${dw_env//,/ } timeout 200 "$B/bin/driftwood" bench decode --backend cuda --model "$1" \
                --prompt-tokens 16 --gen-tokens 256 --long 4096 --prefill-tokens 512 ${DW_GPU_BENCH_ARGS:-} &&
            env ${dw_env//,/ } timeout 200 "$B/bin/driftwood" bench decode --backend cuda --model "$1" \
                --prompt-tokens 16 --gen-tokens 256 --long 4096 --prefill-tokens 512 ${DW_GPU_BENCH_ARGS:-} --json
        done
    }
    for shape in ${DW_GPU_BENCH_SHAPES:-llama-3.2-1b}; do
        dw_m=/tmp/dw-bench-$shape
        [ -f "$dw_m/config.json" ] || timeout 240 "$B/bin/driftwood" mkmodel --shape "$shape" --out "$dw_m" \
            --tokenizer-dir "$dw_tok" >>"$OUT/bench-engine.txt" 2>&1 || fail "mkmodel-$shape"
        dw_bench "$dw_m" "$shape" >>"$OUT/bench-engine.txt" 2>&1 || fail "bench-engine-$shape"
        # DW_GPU_BENCH_QUANT="4 8": the same shape quantized (MLX affine, g64) by `driftwood quantize`
        for dw_bits in ${DW_GPU_BENCH_QUANT:-}; do
            dw_q=$dw_m-q$dw_bits
            [ -f "$dw_q/config.json" ] || timeout 300 "$B/bin/driftwood" quantize --model "$dw_m" --bits "$dw_bits" \
                --out "$dw_q" >>"$OUT/bench-engine.txt" 2>&1 || fail "quantize-$shape-$dw_bits"
            dw_bench "$dw_q" "$shape $dw_bits-bit g64" >>"$OUT/bench-engine.txt" 2>&1 || fail "bench-engine-$shape-q$dw_bits"
            { echo "== $shape $dw_bits-bit: generate -n 1 (warm page cache), wall time" &&
              /usr/bin/time -f "wall %e s" "$B/bin/driftwood" generate --model "$dw_q" --backend cuda -n 1 \
                  --prompt "Hello" --timings && /usr/bin/time -f "wall %e s" "$B/bin/driftwood" generate --model "$dw_q" \
                  --backend cuda -n 1 --prompt "Hello" --timings; } >>"$OUT/bench-engine.txt" 2>&1 || fail "generate-$shape-q$dw_bits"
        done
        # DW_GPU_NSYS=1: per-kernel GPU time of 64 decode steps (Nsight Systems, when installed) on
        # the model of this shape, or its quantized copy with DW_GPU_NSYS_QUANT=4|8
        dw_nsys=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
        if [ "${DW_GPU_NSYS:-0}" = 1 ] && [ -n "$dw_nsys" ]; then
            timeout 120 "$dw_nsys" profile -t cuda --cuda-graph-trace=node -o /tmp/dw-prof --force-overwrite true \
                "$B/bin/driftwood" bench decode --backend cuda --model "$dw_m${DW_GPU_NSYS_QUANT:+-q$DW_GPU_NSYS_QUANT}" \
                --gen-tokens 64 --prefill-tokens 0 >/tmp/dw-nsys.log 2>&1
            timeout 60 "$dw_nsys" stats -r cuda_gpu_kern_sum -f csv /tmp/dw-prof.nsys-rep >"$OUT/nsys-kernels.csv" 2>&1
            echo "== nsys: GPU kernels over the decode steps (total ns, instances, avg ns, name)" >>"$OUT/bench-engine.txt"
            python3 -c 'import csv,sys
rows=[r for r in csv.reader(open(sys.argv[1])) if r and r[0][:1].isdigit()]
for r in rows[:16]: print(r[1], r[2], r[3], r[-1][:160])' "$OUT/nsys-kernels.csv" >>"$OUT/bench-engine.txt" 2>&1
        elif [ "${DW_GPU_NSYS:-0}" = 1 ]; then
            echo "== nsys not found" >>"$OUT/bench-engine.txt"
        fi
    done
fi

# ---- batching: many actors on one GPU (`driftwood bench batch`; docs/DESIGN.md "Batching") ---------
# DW_GPU_BATCH_SHAPES (default llama-3.2-1b), DW_GPU_BATCH_QUANT="4" for quantized copies too,
# DW_GPU_BATCH_ACTORS (1,4,16,64), DW_GPU_BATCH_REPS (3), DW_GPU_BATCH_MODES (engine,actors),
# DW_GPU_BATCH_SHARED=1 for the shared-prefix run (64 actors, a common 1,000-token system prompt),
# DW_GPU_BATCH_TEMPERATURE=T for a sampled run of the 1B bf16 model at 64 actors (tokens drawn on
# the device, then by the guests from their logits: --guest-picks; skipped when the CUDA tests
# failed), DW_GPU_BATCH_TIMEOUT (400 s) for each bench batch. Tables and JSON lines go to batch.txt.
if [ -x "$B/bin/driftwood" ] && want batch-bench; then
    dw_tok=.deps/llama3-tokenizer; [ -d "$dw_tok" ] || dw_tok=.carry/llama3-tokenizer
    dw_batch() { # MODEL LABEL [extra args]: one JSON line, then a table made from it
        local dw_model=$1 dw_label=$2; shift 2
        echo "== $dw_label $(date -u +%T)"
        timeout "${DW_GPU_BATCH_TIMEOUT:-400}" "$B/bin/driftwood" bench batch --backend cuda --model "$dw_model" --actors "${DW_GPU_BATCH_ACTORS:-1,4,16,64}" \
            --prompt-tokens 128 --gen-tokens 128 --reps "${DW_GPU_BATCH_REPS:-3}" --mode "${DW_GPU_BATCH_MODES:-engine,actors}" \
            --json "$@" | tee /tmp/dw-batch.json || return 1
        python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
for r in d["results"]: print("%-7s %3d actors %9.1f tok/s  itl p50 %6.2f p99 %6.2f ms  ttft p50 %7.2f p99 %7.2f ms  KV %7.1f MB  %5.1f tok/step" % (r["mode"], r["actors"], r["decode_tok_s"], r["itl_p50_ms"], r["itl_p99_ms"], r["ttft_p50_ms"], r["ttft_p99_ms"], r["kv_peak_mb"], r["tokens_per_step"]))' /tmp/dw-batch.json
    }
    for shape in ${DW_GPU_BATCH_SHAPES:-llama-3.2-1b}; do
        dw_m=/tmp/dw-bench-$shape
        [ -f "$dw_m/config.json" ] || timeout 240 "$B/bin/driftwood" mkmodel --shape "$shape" --out "$dw_m" \
            --tokenizer-dir "$dw_tok" >>"$OUT/batch.txt" 2>&1 || fail "mkmodel-$shape"
        dw_batch "$dw_m" "$shape bf16" >>"$OUT/batch.txt" 2>&1 || fail "batch-$shape"
        for dw_bits in ${DW_GPU_BATCH_QUANT:-}; do
            dw_q=$dw_m-q$dw_bits
            [ -f "$dw_q/config.json" ] || timeout 300 "$B/bin/driftwood" quantize --model "$dw_m" --bits "$dw_bits" \
                --out "$dw_q" >>"$OUT/batch.txt" 2>&1 || fail "quantize-$shape-$dw_bits"
            dw_batch "$dw_q" "$shape $dw_bits-bit g64" >>"$OUT/batch.txt" 2>&1 || fail "batch-$shape-q$dw_bits"
        done
    done
    if [ -n "${DW_GPU_BATCH_TEMPERATURE:-}" ] && [[ " $dw_failed " != *" cuda-tests "* ]]; then # (a failing sampler may hang)
        for dw_picks in "" --guest-picks; do
            DW_GPU_BATCH_ACTORS=64 dw_batch /tmp/dw-bench-llama-3.2-1b "llama-3.2-1b bf16 sampled at $DW_GPU_BATCH_TEMPERATURE ${dw_picks:-on the device}" \
                --temperature "$DW_GPU_BATCH_TEMPERATURE" $dw_picks >>"$OUT/batch.txt" 2>&1 || fail "batch-sampled$dw_picks"
        done
    fi
    if [ "${DW_GPU_BATCH_SHARED:-0}" = 1 ]; then
        { echo "== shared prefix: 64 actors, 1,000 common prompt tokens + 64 own"
          timeout 200 "$B/bin/driftwood" bench batch --backend cuda --model /tmp/dw-bench-llama-3.2-1b --actors 1,64 \
              --prompt-tokens 1064 --shared-prefix 1000 --gen-tokens 32 --reps 1 --mode engine --json; } >>"$OUT/batch.txt" 2>&1 ||
            fail batch-shared
    fi
fi

# ---- summary (printed last: the device tool returns the tail) --------------------------------------
{
    cat "$OUT/env.txt"
    echo "== build (tail)"; tail -5 "$OUT/build.log"
    for f in tests-cuda.log tests-all.log; do
        [ -f "$OUT/$f" ] && { echo "== $f"; grep -v '^ok  ' "$OUT/$f" | tail -40; }
    done
    for f in bench-cuda.txt bench-cuda.json bench-cpu.json; do
        [ -f "$OUT/$f" ] && { echo "== $f"; tail -30 "$OUT/$f"; }
    done
    [ -f "$OUT/bench-engine.txt" ] && { echo "== bench-engine.txt"; grep -v '^{' "$OUT/bench-engine.txt" | tail -70; }
    [ -f "$OUT/batch.txt" ] && { echo "== batch.txt"; grep -v '^{' "$OUT/batch.txt" | tail -60; }
    echo "== gpu-check: ${dw_failed:+FAILED:}${dw_failed:-all passed}"
} | tee "$OUT/summary.txt"
[ -z "$dw_failed" ]
