#!/usr/bin/env bash
# The CPU engine benchmark of docs/PERFORMANCE.md: makes the Llama-3.2-1B-shaped random model if
# needed, then runs `driftwood bench decode` RUNS times (512 prompt tokens, 64 generated) and
# prints each run and the median of prefill tok/s, decode tok/s and decode as a fraction of the
# memory-bandwidth bound measured in the same run (before the prefill and after the decode, and
# interleaved: between the decoded tokens).
#   bench/cpu_engine.sh [MODEL_DIR] [RUNS]      (defaults: /tmp/dw-llama-3.2-1b, 5)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-/tmp/dw-llama-3.2-1b}
runs=${2:-5}
bin=${DW_BUILD:-build}/bin/driftwood
[ -x "$bin" ] || { echo "bench: build first (make)"; exit 1; }
[ -f "$model/config.json" ] || "$bin" mkmodel --shape llama-3.2-1b --out "$model"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq "$runs"); do
    "$bin" bench decode --model "$model" --prompt-tokens 512 --gen-tokens 64 --json | tee -a "$out"
done
python3 - "$out" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda k: statistics.median(r[k] for r in rows)
print(f"median of {len(rows)} runs ({rows[0]['isa']}, {rows[0]['threads']} threads): "
      f"prefill {med('prefill_tok_s'):.1f} tok/s, decode {med('decode_tok_s'):.2f} tok/s, "
      f"bandwidth {med('read_bandwidth_gbs'):.1f} GB/s, bound {med('bound_tok_s'):.2f} tok/s, "
      f"decode/bound {100 * med('fraction_of_bound'):.1f}% (best run {100 * max(r['fraction_of_bound'] for r in rows):.1f}%)")
if all('fraction_of_interleaved_bound' in r for r in rows):
    il = [r['fraction_of_interleaved_bound'] for r in rows]
    print(f"interleaved bound: decode/bound {100 * statistics.median(il):.1f}% (runs {100 * min(il):.1f}-{100 * max(il):.1f}%), "
          f"bandwidth over the decodes {med('interleaved_bandwidth_gbs'):.1f} GB/s, "
          f"weights in huge pages {100 * med('weights_huge_mapped_fraction'):.0f}%")
EOF
