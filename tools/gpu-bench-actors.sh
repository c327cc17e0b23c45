#!/usr/bin/env bash
# Runs on the GPU machine after tools/gpu-check.sh (same call; it reuses build-gpu/ and the
# Llama-3.2-1B-shaped model gpu-check made in /tmp/dw-bench-llama-3.2-1b): the actor-level
# measurements of issues 6 and 7 on CUDA — one actor's table (bench actor), KV snapshots against
# re-prefill (bench snapshot), the chat actor's golden transcript and a snapshot restored across
# backends — printed to stdout (the device tool returns the tail).
set -uo pipefail
cd "$(dirname "$0")/.."
B=build-gpu
dw=$B/bin/driftwood
m=/tmp/dw-bench-llama-3.2-1b
export LD_LIBRARY_PATH="/tmp/dw-sysroot/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
failed=""
[ -x "$dw" ] || { echo "gpu-bench-actors: $dw missing (run tools/gpu-check.sh first)"; exit 2; }
if [ -f "$m/config.json" ]; then
    echo "== bench actor (cuda, Llama-3.2-1B shape)"
    timeout 200 "$dw" bench actor --backend cuda --model "$m" --gen-tokens 128 --reps 5 --json || failed="$failed actor"
    echo "== bench snapshot (cuda, Llama-3.2-1B shape)"
    timeout 200 "$dw" bench snapshot --backend cuda --model "$m" --tokens 24,512,4096 --reps 3 --json || failed="$failed snapshot"
else
    echo "gpu-bench-actors: no model at $m"; failed="$failed model"
fi
echo "== chat actor on cuda: the golden transcript (F32 cache) and timings"
t=tests/data/tiny-goldens/chat_transcript.json
args=$(python3 -c 'import json,shlex,sys; t=json.load(open(sys.argv[1])); print(" ".join(["--system", shlex.quote(t["system"]), "-n", str(t["max_tokens"])] + [a for u in t["turns"] for a in ("--prompt", shlex.quote(u))]))' $t)
eval "timeout 60 $dw chat --backend cuda --model models/driftwood-tiny --kv-f32 --temp 0 $args" >/tmp/chat-cuda.txt 2>/tmp/chat-cuda.err
cat /tmp/chat-cuda.err
python3 - "$t" /tmp/chat-cuda.txt <<'PY' || failed="$failed chat-golden"
import json, sys
t = json.load(open(sys.argv[1])); got = open(sys.argv[2]).read()
want = "".join(r + "\n" for r in t["replies"])
print("chat transcript on cuda:", "identical to the reference" if got == want else "DIFFERS:\n" + got)
sys.exit(got != want)
PY
echo "== chat actor: snapshot on cuda, restore on cpu (and back)"
rm -f /tmp/x.snap /tmp/y.snap
"$dw" chat --backend cuda --model models/driftwood-tiny --temp 0.8 --seed 3 -n 16 --prompt "What is a cat?" --prompt "/save /tmp/x.snap" 2>/dev/null >/dev/null &&
"$dw" chat --backend cpu --model models/driftwood-tiny --temp 0.8 --seed 3 -n 16 --resume /tmp/x.snap --prompt "And a dog?" --prompt "/save /tmp/y.snap" &&
"$dw" chat --backend cuda --model models/driftwood-tiny --temp 0.8 --seed 3 -n 16 --resume /tmp/y.snap --prompt "And a bird?" || failed="$failed cross-backend-chat"
echo "== snapshots across processes on cuda: 40 random continuations and a chat actor (tests/cli/test_snapshot_cli.sh)"
DW_BUILD=$B DW_BIN=$dw DW_TEST_BACKEND=cuda bash tests/cli/test_snapshot_cli.sh || failed="$failed snapshot-cli-cuda"
echo "== gpu-bench-actors: ${failed:+FAILED:}${failed:-all passed}"
[ -z "$failed" ]
