#!/usr/bin/env bash
# `make demo`: the Driftwood story on this machine, on the small model that ships in models/.
#  1. The zero-copy chain: the GEMM actor computes in its own memory through the backend, and
#     the zero-copy table compares it with a copy path (CUDA too when a GPU is usable).
#  2. A chat actor (a Wasm module) converses with the model through host calls.
#  3. A snapshot mid-conversation; the process ends; a new process restores the actor and the
#     conversation goes on.
#  4. A closing table of the timings.
#  5. Three nodes on NATS JetStream (tools/cluster-up.sh): an actor placed on one node answers
#     through another; its node is killed; the conversation goes on, on a live node.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
dw=$BUILD/bin/driftwood
model=${DW_MODEL:-models/driftwood-tiny}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== 1. The GEMM actor: fills A and B in its memory; dw.gemm multiplies in place; it checks C"
"$dw" run "$BUILD/guests/gemm.wasm"
echo
"$dw" bench zerocopy --backend cpu
if "$dw" run "$BUILD/guests/gemm.wasm" --backend cuda >/dev/null 2>&1; then
    echo
    "$dw" bench zerocopy --backend cuda
fi

echo
echo "== 2. A chat actor (examples/chat, a Wasm module) talks with $model"
chat=("$dw" chat --model "$model" --system "You are a helpful assistant." --temp 0 -n 48 --echo)
"${chat[@]}" --prompt "What is a cat?" --prompt "Recite Genesis 1:1." \
    --prompt "/save $work/chat.snap" 2> >(tee "$work/first.log" >&2)
echo
echo "== 3. That process has ended. A new one restores the actor from $work/chat.snap and goes on"
"${chat[@]}" --resume "$work/chat.snap" --prompt "What is a hacker?" 2> >(tee "$work/second.log" >&2)
sleep 0.2 # let the tee of stderr finish

echo
echo "== 4. Timings"
python3 - "$work/first.log" "$work/second.log" <<'PY'
import re, sys
first, second = (open(p).read() for p in sys.argv[1:3])
load = re.findall(r"loaded on \w+ in ([\d.]+) ms", first)[0]
turns = re.findall(r"prefill (\d+) tokens in ([\d.]+) ms \| generated (\d+) tokens at ([\d.]+) tok/s", first + second)
save = re.findall(r"saved .*?: ([\d.]+) KiB in ([\d.]+) ms", first)[0]
restore = re.findall(r"restored .*? in ([\d.]+) ms", second)[0]
print(f"  {'model load':34s} {float(load):10.1f} ms")
for i, (n, ms, g, tps) in enumerate(turns, 1):
    per = 1000 / float(tps) if float(tps) else 0
    print(f"  turn {i}: prefill {int(n):4d} tokens {float(ms):10.1f} ms   {int(g):3d} tokens at {float(tps):7.1f} tok/s ({per:.2f} ms/token)")
print(f"  {'snapshot save (' + save[0] + ' KiB)':34s} {float(save[1]):10.1f} ms")
print(f"  {'snapshot restore (new process)':34s} {float(restore):10.1f} ms")
PY

echo
echo "== 5. A cluster: 3 NATS JetStream servers and 3 nodes (tools/cluster-up.sh); one actor, one node killed"
BUILD=$BUILD tools/cluster-up.sh "$work/cluster" --model "$model" >"$work/cluster.txt"
trap 'tools/cluster-up.sh stop "$work/cluster" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
sed 's/^/  /' "$work/cluster.txt"
python3 - "$work/cluster.txt" <<'PY'
import json, subprocess, sys, time, urllib.request
nodes = dict(line.split() for line in open(sys.argv[1]) if line.startswith("n"))
def call(node, method, path, body=None):
    req = urllib.request.Request(nodes[node] + path, method=method, data=json.dumps(body).encode() if body else None)
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.headers["X-Driftwood-Node"], json.load(r)
_, actor = call("n1", "POST", "/v1/actors", {"temperature": 0})
home = {a["id"]: a["node"] for a in call("n1", "GET", "/v1/cluster")[1]["actors"]}[actor["id"]]
print(f"  actor {actor['id']} placed on {home}")
other = [n for n in nodes if n != home]
turn = 0
for via, text in ((other[0], "What is a cat?"), (other[1], "And a dog?")):
    turn += 1
    served, r = call(via, "POST", f"/v1/actors/{actor['id']}/messages", {"content": text, "max_tokens": 24, "turn": turn})
    print(f"  turn {turn} sent to {via}, served by {served}: {r['output']!r}")
print(f"  killing {home} (SIGKILL) ...")
subprocess.run(["tools/cluster-up.sh", "kill", sys.argv[1].rsplit("/", 1)[0] + "/cluster", home], check=True)
t0 = time.time()
turn += 1
served, r = call(other[0], "POST", f"/v1/actors/{actor['id']}/messages", {"content": "Tell me more.", "max_tokens": 24, "turn": turn})
print(f"  turn {turn} sent to {other[0]}, served by {served} {time.time() - t0:.1f} s after the kill "
      f"(the dead node's lease runs out, then the actor wakes from its snapshot and log): {r['output']!r}")
PY
