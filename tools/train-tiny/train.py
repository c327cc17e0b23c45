#!/usr/bin/env python3
# Trains models/driftwood-tiny (LlamaForCausalLM, config.json in that folder) on the token streams
# written by tokenize_corpus.py and saves bf16 safetensors. See README.md beside this.
"""Usage: train.py --data DIR --model-dir models/driftwood-tiny --out DIR [--seconds S] [--max-steps N]

Reads DIR/train.bin and DIR/val.bin (uint16 ids). Trains for --epochs passes over the training
tokens but at most about --seconds of wall time (the step count is fixed after timing the first
steps, so the cosine schedule ends on time), or exactly --max-steps;
evaluates on the validation stream every --eval-every steps and keeps the weights with the lowest
validation loss. Writes OUT/model.safetensors (bf16; the tied LM head is not stored) and
OUT/train_log.json. bf16 autocast on CUDA, float32 master weights, AdamW, linear warm-up + cosine.
"""
import argparse
import json
import math
import os
import shutil
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model-dir", required=True, help="folder with config.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=240.0, help="wall-time budget for training")
    ap.add_argument("--max-steps", type=int, default=0, help="fixed step count (overrides the rest)")
    ap.add_argument("--epochs", type=float, default=0, help="stop after this many passes over the "
                    "training tokens, or at --seconds, whichever comes first")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=2e-4)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--dropout", type=float, default=0.1, help="residual dropout, training only")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--calibrate-steps", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return ap.parse_args()


def load_ids(path, device):
    arr = np.fromfile(path, dtype="<u2").astype(np.int64)
    return torch.from_numpy(arr).to(device)


def add_residual_dropout(model, p):
    """Dropout on each attention and MLP output before it joins the residual stream (training
    only; the saved model is a plain LlamaForCausalLM)."""
    def hook(module, inputs, output):
        if not module.training or p == 0:
            return output
        if isinstance(output, tuple):
            return (F.dropout(output[0], p, True),) + tuple(output[1:])
        return F.dropout(output, p, True)
    for layer in model.model.layers:
        layer.self_attn.register_forward_hook(hook)
        layer.mlp.register_forward_hook(hook)


def lr_at(step, total, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = min(1.0, (step - args.warmup) / max(1, total - args.warmup))
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * t))


def loss_of(model, x, y, device):
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=(device == "cuda")):
        logits = model(input_ids=x).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none")


@torch.no_grad()
def evaluate(model, ids, seq, device, batch=32, max_windows=None):
    """Mean loss over consecutive non-overlapping windows of `seq` tokens; also per position."""
    model.eval()
    n = (ids.numel() - 1) // seq
    if max_windows:
        n = min(n, max_windows)
    starts = torch.arange(n, device=ids.device) * seq
    total = torch.zeros(seq, device=ids.device, dtype=torch.float64)
    for i in range(0, n, batch):
        s = starts[i:i + batch]
        idx = s[:, None] + torch.arange(seq, device=ids.device)
        l = loss_of(model, ids[idx], ids[idx + 1], device).view(len(s), seq)
        total += l.sum(0).double()
    model.train()
    per_pos = (total / n)
    return per_pos.mean().item(), per_pos.cpu().numpy()


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = args.device
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cfg = LlamaConfig.from_pretrained(args.model_dir)
    model = LlamaForCausalLM(cfg).to(device)
    assert model.lm_head.weight is model.model.embed_tokens.weight, "embeddings must be tied"
    n_params = sum(p.numel() for p in model.parameters())
    add_residual_dropout(model, args.dropout)
    train_ids, val_ids = load_ids(os.path.join(args.data, "train.bin"), device), \
        load_ids(os.path.join(args.data, "val.bin"), device)
    print(f"params {n_params:,}; train tokens {train_ids.numel():,}; val tokens {val_ids.numel():,}; "
          f"device {device} {torch.cuda.get_device_name() if device == 'cuda' else ''}; "
          f"torch {torch.__version__}", flush=True)

    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=(device == "cuda"))
    gen = torch.Generator(device=device).manual_seed(args.seed)
    ar = torch.arange(args.seq, device=device)

    total = args.max_steps if args.max_steps else None
    log = {"args": vars(args), "params": n_params, "evals": [], "train_loss": []}
    best = (float("inf"), -1, None)
    t0 = time.time()
    step = 0
    recent = []

    def do_eval(step):
        nonlocal best
        vl, _ = evaluate(model, val_ids, args.seq, device)
        tl, _ = evaluate(model, train_ids, args.seq, device, max_windows=len(val_ids) // args.seq)
        log["evals"].append({"step": step, "val": vl, "train": tl, "time": time.time() - t0})
        print(f"step {step:6d}  train {tl:.4f}  val {vl:.4f}  lr {lr_at(step, total or 1, args):.2e}  "
              f"{time.time() - t0:6.1f}s", flush=True)
        if vl < best[0]:
            best = (vl, step, {k: v.detach().clone() for k, v in model.state_dict().items()})

    model.train()
    while total is None or step < total:
        if total is None and step == args.calibrate_steps:
            if device == "cuda":
                torch.cuda.synchronize()
            per_step = (time.time() - t_cal) / (args.calibrate_steps - 10)
            # Leave room for the evaluations (about one step's worth of work each, measured later).
            total = max(step + 1, int((args.seconds - (time.time() - t0)) / per_step * 0.93) + step)
            if args.epochs:
                total = min(total, int(args.epochs * train_ids.numel() / (args.batch * args.seq)))
            print(f"{per_step * 1000:.1f} ms/step, {args.batch * args.seq / per_step:,.0f} tok/s: "
                  f"{total} steps in total", flush=True)
        if step == 10:
            if device == "cuda":
                torch.cuda.synchronize()
            t_cal = time.time()
        if step > 0 and step % args.eval_every == 0:
            do_eval(step)
        lr = lr_at(step, total or 10 ** 9, args)
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, train_ids.numel() - args.seq - 1, (args.batch,), device=device,
                               generator=gen)
        idx = starts[:, None] + ar
        loss = loss_of(model, train_ids[idx], train_ids[idx + 1], device).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        recent.append(loss.detach())
        if len(recent) == 50:
            log["train_loss"].append([step, torch.stack(recent).mean().item()])
            recent = []
        step += 1
    do_eval(step)
    train_time = time.time() - t0
    vl, step_best, state = best
    model.load_state_dict(state)
    print(f"best validation loss {vl:.4f} at step {step_best} of {step}; trained {train_time:.1f}s",
          flush=True)

    # Final numbers on the kept weights, in bf16 as shipped.
    model = model.to(torch.bfloat16)
    vl_bf16, _ = evaluate(model, val_ids, args.seq, device)
    tl_bf16, _ = evaluate(model, train_ids, args.seq, device, max_windows=len(val_ids) // args.seq)
    long_seq = min(cfg.max_position_embeddings, 2048)
    _, per_pos = evaluate(model, val_ids, long_seq, device, batch=8)
    buckets = {}
    for lo, hi in [(0, 512), (512, 1024), (1024, 2048)]:
        if hi <= long_seq:
            buckets[f"{lo}-{hi}"] = float(per_pos[lo:hi].mean())
    log.update({"steps": step, "best_step": step_best, "train_seconds": train_time,
                "final_val_loss_bf16": vl_bf16, "final_train_loss_bf16": tl_bf16,
                "val_loss_by_position_2048": buckets,
                "tokens_seen": step * args.batch * args.seq,
                "epochs": step * args.batch * args.seq / train_ids.numel()})
    print(f"bf16 weights: train {tl_bf16:.4f} val {vl_bf16:.4f}; val loss by position "
          f"(2048-token windows): {buckets}", flush=True)

    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.copy(os.path.join(tmp, "model.safetensors"), os.path.join(args.out, "model.safetensors"))
        shutil.copy(os.path.join(tmp, "config.json"), os.path.join(args.out, "config.saved.json"))
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(log, f, indent=1)


if __name__ == "__main__":
    main()
