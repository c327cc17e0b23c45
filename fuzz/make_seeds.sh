#!/usr/bin/env bash
# Rebuilds the committed seed corpora, fuzz/corpus/NAME/, from real inputs: the tiny model's
# config.json, the test models' configs, the small test tokenizers (each followed by a NUL and a
# line of text), KV files and an actor snapshot made by the CLI, small safetensors files, and the
# `dw` ABI programs of fuzz/make_abi_seeds.py. Run from a normal build (make), after a change
# that makes the old seeds stale (a new snapshot format version, a changed chat actor).
# Usage: fuzz/make_seeds.sh [BUILD]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
dw=$build/bin/driftwood
model=models/driftwood-tiny
out=fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PYTHONPATH="$PWD/.deps/python${PYTHONPATH:+:$PYTHONPATH}"

# (seeds are overwritten by name; inputs the campaigns added stay)
mkdir -p "$out"/{config,tokenizer,safetensors,kv_file,actor_snapshot,abi}

# config.json: the tiny model's and one per test architecture
cp "$model/config.json" "$out/config/driftwood-tiny.json"
for d in tests/data/models/*/; do cp "$d/config.json" "$out/config/$(basename "$d").json"; done

# tokenizer.json + NUL + text (the tiny model's own tokenizer.json, 540 KB, is left out: inputs
# that size slow every execution; the test tokenizers cover the same formats)
i=0
for t in tests/data/tokenizer/*.json; do
    i=$((i + 1))
    { cat "$t"; printf '\0'; sed -n "${i}p" tests/data/tokenizer/corpus.txt; } >"$out/tokenizer/$(basename "$t" .json)"
done

# KV files: a BF16 cache with logits and sampler state, an F32 one, and one made by another
# model (the tiny model with another rms_norm_eps: loading it rebuilds the cache from the text)
"$dw" generate --model "$model" --prompt "Once upon a time" -n 4 --save-kv "$out/kv_file/bf16.kv" >/dev/null 2>&1
"$dw" generate --model "$model" --prompt "Hi" -n 2 --kv-f32 --temp 0.8 --seed 3 --save-kv "$out/kv_file/f32.kv" >/dev/null 2>&1
mkdir "$tmp/other"
for f in "$model"/*; do ln -s "$PWD/$f" "$tmp/other/"; done
rm "$tmp/other/config.json"
sed 's/"rms_norm_eps": 1e-05/"rms_norm_eps": 2e-05/' "$model/config.json" >"$tmp/other/config.json"
"$dw" generate --model "$tmp/other" --prompt "A cat" -n 2 --save-kv "$out/kv_file/other_model.kv" >/dev/null 2>&1

# an actor snapshot of the chat actor after one turn
printf 'Hello there\n/save %s\n' "$PWD/$out/actor_snapshot/chat.snapshot" |
    "$dw" chat --model "$model" -n 3 >/dev/null 2>&1

# safetensors: a KV file's container and a few small files of several dtypes
cp "$out/kv_file/f32.kv" "$out/safetensors/kv_file.safetensors"
python3 - "$out/safetensors" <<'PY'
import sys, numpy as np
from safetensors.numpy import save_file
d = sys.argv[1]
save_file({"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(3, np.float16)}, f"{d}/two.safetensors",
          metadata={"format": "pt"})
save_file({"ids": np.arange(5, dtype=np.int32), "x": np.zeros((2, 0), np.float32), "s": np.array(7, np.int64),
           "u": np.array([1, 2, 3], np.uint8)}, f"{d}/dtypes.safetensors")
save_file({}, f"{d}/empty.safetensors", metadata={"k": "v"})
PY

python3 fuzz/make_abi_seeds.py "$out/abi"
du -sh "$out"
