#!/usr/bin/env bash
# Runs on the project's GPU machine after tools/gpu-check.sh built the tree (engine-bench step:
# build-gpu/bin/driftwood and the bench models in /tmp/dw-bench-*): Nsight Compute (ncu)
# on the decode kernels of one decode step, each kernel alone (ncu serializes them: PDL overlap
# is lost, each kernel's own duration, memory throughput and warp stalls are what it shows).
# DW_PROFILE_MODEL: the model directory (default the 1B bench model); DW_PROFILE_CONTEXTS: prompt
# lengths to decode after (default "16 4096"); DW_PROFILE_KERNELS: ncu kernel regex on demangled
# names (default decode attention and the matvecs); DW_PROFILE_COUNT: kernels profiled per context
# (default 10); DW_PROFILE_STALLS=1 adds the warp stall reasons and the hot source lines.
# Reports go to $OUT/ncu-<context>.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
B=build-gpu
OUT="${OUT:-$PWD/$B/out}"
mkdir -p "$OUT"
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
[ -x "$ncu" ] || { echo "gpu-profile: ncu not found"; exit 2; }
[ -x "$B/bin/driftwood" ] || { echo "gpu-profile: run tools/gpu-check.sh (engine-bench) first"; exit 2; }
model="${DW_PROFILE_MODEL:-/tmp/dw-bench-llama-3.2-1b}"
kernels="${DW_PROFILE_KERNELS:-regex:attention_kernel<\\(int\\)256|matvec_kernel}"
# one decode step's kernels after two warm-up steps (5 per layer at most: q/k/v, attention, o,
# gate/up, down)
n_layers=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["num_hidden_layers"])' "$model/config.json")
for ctx in ${DW_PROFILE_CONTEXTS:-16 4096}; do
    extra=()
    [ "${DW_PROFILE_STALLS:-0}" = 1 ] && extra=(--section SourceCounters --metrics \
        'regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,smsp__inst_executed.sum,smsp__cycles_active.avg')
    timeout 300 "$ncu" --kernel-name-base demangled --kernel-name "$kernels" --clock-control none --launch-skip $((10 * n_layers)) \
        --launch-count "${DW_PROFILE_COUNT:-10}" --section SpeedOfLight --section LaunchStats --section Occupancy \
        --section WarpStateStats --section MemoryWorkloadAnalysis "${extra[@]}" "$B/bin/driftwood" bench decode --backend cuda --model "$model" --prompt-tokens "$ctx" \
        --gen-tokens 8 --prefill-tokens 0 >"$OUT/ncu-$ctx.txt" 2>&1 || echo "gpu-profile: ncu at $ctx failed (see $OUT/ncu-$ctx.txt)"
    # a line per kernel: name, duration, DRAM throughput
    python3 - "$OUT/ncu-$ctx.txt" <<'PY'
import re, sys
name = None
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"\s+(\S.*?) \(\d+, \d+, \d+\)x\(\d+, \d+, \d+\)", line)
    if m: name = m.group(1)[:90]
    m = re.match(r"\s+(Duration|DRAM Throughput|Memory Throughput|Registers Per Thread|Achieved Occupancy)\s+(\S+)\s+(\S+)", line)
    if m and name: print(f"{name:90s} {m.group(1):22s} {m.group(3):>10s} {m.group(2)}")
PY
done
