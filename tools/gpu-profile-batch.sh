#!/usr/bin/env bash
# Runs on the project's GPU machine after tools/gpu-check.sh built build-gpu/ and made the
# Llama-3.2-1B-shaped model (its batch-bench step): where a batched step's GPU time goes. Nsight
# Compute times every kernel of `driftwood bench batch --mode engine` (one metric,
# gpu__time_duration.sum, clocks and caches left alone) for each actor count in
# DW_PROFILE_ACTORS (default "64 4"), and tools/ncu-steps.py splits the last decode steps by
# kernel. Set the step's wall time from the unprofiled bench beside it: what the GPU does not
# account for is the host's. Writes $OUT/ncu-N.csv and $OUT/profile.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
B=build-gpu
OUT="${OUT:-$PWD/$B/out}"
model=${DW_PROFILE_MODEL:-/tmp/dw-bench-llama-3.2-1b}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="/tmp/dw-sysroot/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -n "$ncu" ] || { echo "gpu-profile-batch: no ncu on this machine" | tee "$OUT/profile.txt"; exit 1; }
[ -x "$B/bin/driftwood" ] && [ -f "$model/config.json" ] || { echo "gpu-profile-batch: run tools/gpu-check.sh (batch-bench) first"; exit 1; }
rc=0
for n in ${DW_PROFILE_ACTORS:-64 4}; do
    echo "== $n actors, 128 + 8 tokens, $(date -u +%T)" >>"$OUT/profile.txt"
    timeout 240 "$ncu" --csv --print-kernel-base function --metrics gpu__time_duration.sum --clock-control none \
        --cache-control none --log-file "$OUT/ncu-$n.csv" "$B/bin/driftwood" bench batch --backend cuda --model "$model" \
        --actors "$n" --prompt-tokens 128 --gen-tokens 8 --reps 1 --mode engine >>"$OUT/profile.txt" 2>&1 || rc=1
    python3 tools/ncu-steps.py "$OUT/ncu-$n.csv" --steps 3 >>"$OUT/profile.txt" 2>&1 || rc=1
done
cat "$OUT/profile.txt"
exit $rc
