#!/usr/bin/env bash
# Runs on the project's GPU machine (the device tool, after tools/gpu-check.sh built this tree in
# build-gpu): a same-run A/B of decode speed between a baseline commit and this tree. The baseline's
# source is carried in .carry/base (tools/gpu-prepare.sh BASE=COMMIT puts it there) and built
# here in build-base; a base from before the CLI's `bench decode --backend cuda` runs its own
# benchmark (bench/cuda/bench_decode_cuda.c, built here), a later one its CLI, as this tree does.
# Both measure: prefill 512 (best of 3 after a warm-up), decode 16 + 256 with the host choosing
# tokens from logits in a registered buffer, the same with tokens chosen on the device, and both
# at 4096 in context (128 tokens). Runs alternate base/new DW_AB_ROUNDS times (default 2) per
# model (1B bf16 and its 4-bit g64 copy, made here by this tree's mkmodel and quantize), and
# `bench zerocopy --backend cuda` (the guest's GEMM) three times each; the
# summary prints each run's numbers and new/base ratios of the medians. DW_AB_PREPARE_ONLY=1
# builds the baseline and makes the models, and stops there (to overlap with other work);
# DW_AB_DECODE=0 runs the zero-copy A/B alone.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/build-gpu/out}"
mkdir -p "$OUT"
NEW=build-gpu/bin/driftwood
[ -x "$NEW" ] || { echo "gpu-ab: $NEW missing: run tools/gpu-check.sh first"; exit 2; }
[ -d .carry/base ] || { echo "gpu-ab: .carry/base missing: run BASE=COMMIT tools/gpu-prepare.sh here"; exit 2; }
# ---- the baseline (tools/gpu-build-base.sh), with its own decode benchmark if it predates the CLI's -
. tools/gpu-build-base.sh
B=build-base
dw_build_base || { echo "gpu-ab: the baseline did not build"; exit 1; }
if [ -f .carry/base/bench/cuda/bench_decode_cuda.c ]; then
    (
        cd .carry/base || exit 1
        gcc -std=c11 -D_GNU_SOURCE -O2 -g -pthread -Iinclude -Isrc -I"$WASMTIME_DIR/include" -DDW_HAVE_CUDA \
            -o "$B/bin/bench-decode-cuda" bench/cuda/bench_decode_cuda.c "$B/lib/libdriftwood.a" \
            -L"$WASMTIME_DIR/lib" -lwasmtime -Wl,-rpath,"$WASMTIME_DIR/lib" -lpcre2-8 -ljansson -lm -ldl \
            $(make -s BUILD=$B cuda-ldlibs)
    ) >>"$OUT/ab-build.log" 2>&1 || { tail -20 "$OUT/ab-build.log"; echo "gpu-ab: the baseline's benchmark did not build"; exit 1; }
    base_decode=(".carry/base/$B/bin/bench-decode-cuda" --prompt 16 --gen 256 --long 4096 --prefill 512)
else
    base_decode=(".carry/base/$B/bin/driftwood" bench decode --backend cuda --prompt-tokens 16 --gen-tokens 256 --long 4096
                 --long-gen-tokens 128 --prefill-tokens 512 --json)
fi
BASE_CLI=.carry/base/$B/bin/driftwood

# ---- the models ----------------------------------------------------------------------------
dw_tok=.deps/llama3-tokenizer; [ -d "$dw_tok" ] || dw_tok=.carry/llama3-tokenizer
m=/tmp/dw-bench-llama-3.2-1b
[ "${DW_AB_DECODE:-1}" = 0 ] || [ -f "$m/config.json" ] || timeout 240 "$NEW" mkmodel --shape llama-3.2-1b --out "$m" --tokenizer-dir "$dw_tok" >>"$OUT/ab.txt" 2>&1
[ "${DW_AB_DECODE:-1}" = 0 ] || [ -f "$m-q4/config.json" ] || timeout 300 "$NEW" quantize --model "$m" --bits 4 --out "$m-q4" >>"$OUT/ab.txt" 2>&1

[ "${DW_AB_PREPARE_ONLY:-0}" = 1 ] && { echo "gpu-ab: prepared"; exit 0; }

# ---- alternating runs ----------------------------------------------------------------------------
# the guest's GEMM through the backend: zero-copy on registered memory vs the copy path
for r in $(seq 3); do
    for side in base new; do
        cli=$NEW; [ $side = base ] && cli=$BASE_CLI
        echo "$side zerocopy $(timeout 90 "$cli" bench zerocopy --backend cuda --json 2>&1 | tail -1)" >>"$OUT/ab.jsonl"
    done
done
dw_models="$m $m-q4"; [ "${DW_AB_DECODE:-1}" = 0 ] && dw_models=""
dw_ab_side() { # SIDE MODEL
    if [ "$1" = base ]; then
        dw_ab_run base "$(basename "$2")" ab "${base_decode[@]}" --model "$2"
    else
        dw_ab_run new "$(basename "$2")" ab "$NEW" bench decode --backend cuda --model "$2" --prompt-tokens 16 \
            --gen-tokens 256 --long 4096 --long-gen-tokens 128 --prefill-tokens 512 --json
    fi
}
dw_ab_alternate $dw_models

python3 - "$OUT/ab.jsonl" <<'PY' | tee "$OUT/ab-summary.txt"
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    side, model, js = line.split(" ", 2)
    try:
        runs.setdefault((model, side), []).append(json.loads(js))
    except ValueError:
        print("unreadable run:", side, model, js.strip()[:200])
# the same measure under each tool's name: (label, base key, new key)
measures = [("zero-copy GEMM 128^3 (ms)", "gemm_ms", "gemm_ms"),
            ("copy-path GEMM 128^3 (ms)", "copy_gemm_ms", "copy_gemm_ms"),
            ("greedy on device 16+256", "greedy_device_tok_s", "greedy_device_tok_s"),
            ("per token 16+256", "decode_tok_s", "decode_tok_s"),
            ("greedy on device at 4096", "long_greedy_device_tok_s", "long_greedy_device_tok_s"),
            ("per token at 4096", "long_decode_tok_s", "long_decode_tok_s"),
            ("prefill 512", "prefill_tok_s", "prefill_tok_s")]
for model in sorted({k[0] for k in runs}):
    print(f"== {model}")
    for label, kb, kn in measures:
        b = [r[kb] for r in runs.get((model, "base"), []) if kb in r]
        n = [r[kn] for r in runs.get((model, "new"), []) if kn in r]
        if not b or not n:
            print(f"  {label:28s} missing"); continue
        mb, mn = statistics.median(b), statistics.median(n)
        print(f"  {label:28s} base {' '.join(f'{x:.1f}' for x in b):24s} new {' '.join(f'{x:.1f}' for x in n):24s} "
              f"new/base {mn / mb:.4f}")
PY
