#!/usr/bin/env bash
# `make demo`: the Driftwood story on this machine, on the small model that ships in models/.
#  1. The zero-copy chain: the GEMM actor computes in its own memory through the backend, and
#     the zero-copy table compares it with a copy path (CUDA too when a GPU is usable).
#  2. A chat actor (a Wasm module) converses with the model through host calls.
#  3. A snapshot mid-conversation; the process ends; a new process restores the actor and the
#     conversation goes on.
#  4. A closing table of the timings.
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
