#!/usr/bin/env bash
# Runs on the project's GPU machine: `driftwood serve --backend cuda` measured. Builds with
# tools/gpu-check.sh (build step only; it also unpacks the carried Debian packages into
# /tmp/dw-sysroot), makes a random Llama-3.2-1B-shaped bf16 model, then:
#   - tools/loadgen.py: 1 and 64 concurrent streaming clients (chat, and 64 stateful actors);
#   - tools/serve-measure.py: the turn log's fsync cost, and the wake-up of a hibernated actor with
#     4,096 tokens of context against re-prefilling it, and after SIGKILL.
#   - `driftwood bench batch` at 64 actors on the same model first: the baseline the 64 streams are
#     held against (issue 20: at least 85 % of it), engine and actors, prompts of the chats' length.
# Results (JSON and the server's log) go to $OUT. Prepare here with tools/gpu-prepare.sh and carry
# .carry (it holds httpx for the load generator). DW_SERVE_CLIENTS (64), DW_SERVE_TOKENS (128),
# DW_SERVE_ROUNDS (8 requests a client), DW_SERVE_RUNS (CLIENTS:MODE[:TEMPERATURE] ..., default
# "1:chat 64:chat 64:actors"; a run at a temperature samples, and bench batch then runs at that
# temperature too), DW_SERVE_MEASURE=0 skips the fsync and wake-up measures.
set -uo pipefail
cd "$(dirname "$0")/.."
B=build-gpu
OUT="${OUT:-$PWD/$B/out}"
mkdir -p "$OUT"
DW_GPU_STEPS=none OUT="$OUT" tools/gpu-check.sh >"$OUT/gpu-check.txt" 2>&1
[ -x "$B/bin/driftwood" ] || { echo "gpu-serve: the build failed ($OUT/build.log)"; exit 1; }
export LD_LIBRARY_PATH="/tmp/dw-sysroot/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$PWD/.carry/python${PYTHONPATH:+:$PYTHONPATH}"
clients=${DW_SERVE_CLIENTS:-64}
tokens=${DW_SERVE_TOKENS:-128}
dw_tok=.deps/llama3-tokenizer; [ -d "$dw_tok" ] || dw_tok=.carry/llama3-tokenizer
model=/tmp/dw-serve-1b
[ -f /tmp/dw-bench-llama-3.2-1b/config.json ] && model=/tmp/dw-bench-llama-3.2-1b # gpu-check's batch-bench made it
[ -f "$model/config.json" ] || timeout 240 "$B/bin/driftwood" mkmodel --shape llama-3.2-1b --dtype bf16 --out "$model" \
    --tokenizer-dir "$dw_tok" >"$OUT/mkmodel.txt" 2>&1 || { echo "gpu-serve: mkmodel failed"; exit 1; }

runs=${DW_SERVE_RUNS:-1:chat $clients:chat $clients:actors}
temperatures=$(for run in $runs; do t=${run#*:*:}; [ "$t" != "$run" ] && echo "$t"; done | sort -u)
for t in 0 $temperatures; do
    suffix=$([ "$t" = 0 ] || echo "-$t")
    timeout 200 "$B/bin/driftwood" bench batch --backend cuda --model "$model" --actors "$clients" --prompt-tokens 32 \
        --gen-tokens "$tokens" --temperature "$t" --reps 2 --json >"$OUT/bench-batch$suffix.json" 2>"$OUT/bench-batch$suffix.err" ||
        echo "gpu-serve: bench batch (temperature $t) failed"
    cat "$OUT/bench-batch$suffix.json"
done

# 8,192-token sessions (256 MiB of bf16 KV each for this shape at full length): the batching pool
# (--kv-pool) holds 16 GiB of KV blocks, what 64 such sessions hold at 1,000 tokens many times over
store=/tmp/dw-serve-store
rm -rf "$store"
"$B/bin/driftwood" serve --backend cuda --model "$model" --listen 127.0.0.1:8080 --store "$store" --ctx 8192 \
    --memory-budget $((48 << 30)) --kv-pool $((16 << 30)) --max-streams 256 --workers 128 --max-tokens 8192 >"$OUT/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 600); do grep -q "listening on" "$OUT/serve.log" && break; sleep 0.1; done
rc=0
for run in $runs; do
    set -- ${run//:/ }
    temperature=${3:-0}
    name=loadgen-$1-$2$([ "$temperature" = 0 ] || echo "-$temperature")
    timeout 300 python3 tools/loadgen.py --url http://127.0.0.1:8080 -n "$1" --procs $(( $1 >= 16 ? 4 : 1 )) --rounds "${DW_SERVE_ROUNDS:-8}" --max-tokens "$tokens" \
        --mode "$2" --temperature "$temperature" --json >"$OUT/$name.json" 2>>"$OUT/loadgen.err" || rc=1
    cat "$OUT/$name.json"
done
kill -TERM "$server"; wait "$server"
[ "${DW_SERVE_MEASURE:-1}" = 0 ] && exit $rc
timeout 400 python3 tools/serve-measure.py --build "$B" --backend cuda --model "$model" --ctx 8192 --context 4096 \
    --turns 40 --json >"$OUT/serve-measure.json" 2>"$OUT/serve-measure.err" || rc=1
cat "$OUT/serve-measure.json"
exit $rc
