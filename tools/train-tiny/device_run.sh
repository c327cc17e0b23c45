#!/bin/bash
# The one GPU-machine call that makes models/driftwood-tiny: trains three variants side by side on
# the one GPU, keeps the lowest validation loss, writes the goldens. See README.md beside this.
# Needs OUT (results folder) and the token streams in build/train-tiny/data (tokenize_corpus.py).
# TRAIN_ARGS / GOLDEN_ARGS append arguments (for a quick CPU smoke test).
set -euo pipefail
: "${OUT:?set OUT to the results folder}"
data=${DATA:-build/train-tiny/data}
work=$(mktemp -d)
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers, tokenizers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__)"

t0=$(date +%s)
train() {
    local name=$1; shift
    python3 tools/train-tiny/train.py --data "$data" --model-dir models/driftwood-tiny \
        --out "$work/$name" --seconds 250 "$@" ${TRAIN_ARGS:-} > "$work/$name.log" 2>&1
}
train a --epochs 30 --dropout 0.1 --seed 0 & pa=$!
train b --epochs 60 --dropout 0.1 --seed 1 & pb=$!
train c --epochs 60 --dropout 0.2 --seed 2 & pc=$!
status=0
for p in $pa $pb $pc; do wait "$p" || status=1; done
for v in a b c; do echo "== variant $v"; grep -v "Writing model" "$work/$v.log" | tail -n 8; done
cat "$work"/{a,b,c}.log > "$OUT/train_stdout.txt"
echo "training wall time: $(( $(date +%s) - t0 ))s"
[ "$status" = 0 ] || { echo "a training run failed"; exit 1; }

best=$(python3 - "$work" "$OUT/train_logs.json" <<'PY'
import json, sys
work, out = sys.argv[1:]
logs = {v: json.load(open(f"{work}/{v}/train_log.json")) for v in "abc"}
best = min(logs, key=lambda v: logs[v]["final_val_loss_bf16"])
json.dump({"chosen": best, "variants": logs}, open(out, "w"), indent=1)
for v, l in logs.items():
    print(f"variant {v}: epochs {l['epochs']:.1f} steps {l['steps']} best step {l['best_step']} "
          f"train {l['final_train_loss_bf16']:.4f} val {l['final_val_loss_bf16']:.4f} "
          f"({l['train_seconds']:.0f}s)", file=sys.stderr)
print(best)
PY
)
echo "chosen variant: $best"
mkdir -p "$work/model"
cp models/driftwood-tiny/{config.json,generation_config.json,tokenizer.json,tokenizer_config.json} "$work/model/"
cp "$work/$best/model.safetensors" "$work/model/"
cp "$work/$best/model.safetensors" "$work/$best/config.saved.json" "$OUT/"
python3 tools/train-tiny/make_goldens.py --model "$work/model" \
    --prompts tests/data/tiny-goldens/prompts.txt --out "$OUT" ${GOLDEN_ARGS:-} 2>&1 | grep -v "Loading weights"
echo "total wall time: $(( $(date +%s) - t0 ))s"
ls -la "$OUT"
