#!/usr/bin/env bash
# Runs on the project's GPU machine (after tools/gpu-check.sh built this tree in build-gpu and made
# the 1B model with its batch-bench step): a same-run A/B of the batched step between a baseline
# tree and this one — typically a branch with a kernel change as this tree and main as the base,
# or the other way round (`BASE=COMMIT tools/gpu-prepare.sh` carries the base). Builds the base
# (tools/gpu-build-base.sh), runs its CUDA tests of the batched ops and steps (a kernel change must
# keep them), then alternates base and new `driftwood bench batch --mode engine` (128 + 128 tokens;
# DW_AB_ACTORS, default 1,16,64) DW_AB_ROUNDS times (default 2) on the 1B bf16 model and its 4-bit
# copy (DW_AB_QUANT=0 skips it), and prints each run and new/base ratios of the medians per actor
# count. Writes $OUT/batch-ab.jsonl, batch-ab.txt and batch-ab-summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/build-gpu/out}"
mkdir -p "$OUT"
NEW=build-gpu/bin/driftwood
m=/tmp/dw-bench-llama-3.2-1b
[ -x "$NEW" ] && [ -f "$m/config.json" ] || { echo "gpu-batch-ab: run tools/gpu-check.sh (batch-bench) first"; exit 2; }
. tools/gpu-build-base.sh
dw_build_base || { echo "gpu-batch-ab: the baseline did not build"; exit 1; }
BASE_CLI=.carry/base/build-base/bin/driftwood
(cd .carry/base && DW_REQUIRE_CUDA=1 DW_BUILD_DIR=build-base timeout 200 build-base/bin/dw-tests cuda) >"$OUT/batch-ab-base-tests.log" 2>&1
echo "base CUDA tests: $(grep '^unit' "$OUT/batch-ab-base-tests.log" || echo 'did not finish')" | tee "$OUT/batch-ab.txt"
models=$m
if [ "${DW_AB_QUANT:-1}" != 0 ]; then
    [ -f "$m-q4/config.json" ] || timeout 300 "$NEW" quantize --model "$m" --bits 4 --out "$m-q4" >>"$OUT/batch-ab.txt" 2>&1
    models="$m $m-q4"
fi
dw_ab_side() { # SIDE MODEL
    local cli=$NEW; [ "$1" = base ] && cli=$BASE_CLI
    dw_ab_run "$1" "$(basename "$2")" batch-ab "$cli" bench batch --backend cuda --model "$2" \
        --actors "${DW_AB_ACTORS:-1,16,64}" --prompt-tokens 128 --gen-tokens 128 --reps 1 --mode engine --json
}
dw_ab_alternate $models
python3 - "$OUT/batch-ab.jsonl" <<'PY' | tee "$OUT/batch-ab-summary.txt"
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    side, model, js = line.split(" ", 2)
    try:
        for r in json.loads(js)["results"]:
            runs.setdefault((model, r["actors"], side), []).append(r)
    except (ValueError, KeyError):
        print("unreadable run:", side, model, js.strip()[:200])
for model, actors in sorted({(k[0], k[1]) for k in runs}):
    b = [r["decode_tok_s"] for r in runs.get((model, actors, "base"), [])]
    n = [r["decode_tok_s"] for r in runs.get((model, actors, "new"), [])]
    if not b or not n:
        print(f"{model} {actors:3d} actors: missing"); continue
    p99 = lambda side: statistics.median(r["itl_p99_ms"] for r in runs[(model, actors, side)])
    print(f"{model} {actors:3d} actors: base {' '.join(f'{x:.1f}' for x in b)} new {' '.join(f'{x:.1f}' for x in n)} "
          f"tok/s, new/base {statistics.median(n) / statistics.median(b):.4f}; itl p99 base {p99('base'):.2f} new {p99('new'):.2f} ms")
PY
