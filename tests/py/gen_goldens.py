#!/usr/bin/env python3
"""Generates the engine's parity goldens with Hugging Face transformers (the reference).

For each variant below, transformers itself builds a small random model, which is rounded to
bf16 and saved in the HF layout (config.json, generation_config.json, model.safetensors). Then,
with the bf16 weights computed in float32 (the exact function of the stored weights), it records
on a fixed 64-token prompt the logits at every position and 64 greedy tokens (full recomputation
each step, no KV cache). The logits of HF's own bf16 computation are stored too, for reference.

    golden.safetensors
        prompt_ids      I32 [64]
        logits          F32 [64, vocab]   float32 compute on the bf16 weights
        logits_hf_bf16  F32 [64, vocab]   HF computing in bf16 (informational)
        greedy_ids      I32 [64]          argmax continuation of the prompt (float32 compute)
        metadata: variant, transformers and torch versions, min_greedy_margin

Random weights are drawn so that logits are peaked (greedy is not decided by near-ties); a seed
whose greedy steps have a top-2 logit gap below MIN_MARGIN, or whose greedy run uses fewer than
MIN_DISTINCT different tokens, is skipped for the next one.

Run where torch and transformers are installed (CPU is enough):
    python3 tests/py/gen_goldens.py --out tests/data/models
The C test tests/unit/test_engine_parity.c checks the engine against these files without
transformers.
"""
import argparse
import copy
import json
import math
import os
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file

N_PROMPT = 64
N_GREEDY = 64
MIN_MARGIN = 0.1
MIN_DISTINCT = 8  # a greedy run stuck on one token tests little

COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
              max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
              bos_token_id=1, eos_token_id=2)

VARIANTS = {
    # multi-head attention, untied LM head
    "llama-mha": ("llama", dict(num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False)),
    # grouped-query attention (4 query heads per KV head)
    "llama-gqa": ("llama", dict(num_attention_heads=8, num_key_value_heads=2, tie_word_embeddings=False)),
    # tied embeddings and an explicit head_dim that is not hidden / heads
    "llama-tied-headdim": ("llama", dict(num_attention_heads=4, num_key_value_heads=2, head_dim=24,
                                         tie_word_embeddings=True)),
    # Llama 3.1/3.2 RoPE scaling (original context 32, so scaling acts within the 128 positions)
    "llama3-rope": ("llama", dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                  rope_theta=500000.0,
                                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                "high_freq_factor": 4.0,
                                                "original_max_position_embeddings": 32})),
    # Qwen2: q/k/v biases
    "qwen2-bias": ("qwen2", dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)),
    # Mistral with a sliding window shorter than prompt + generation
    "mistral-window": ("mistral", dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                                       sliding_window=48)),
}


def build(kind, overrides, seed):
    cfg_kw = dict(COMMON)
    cfg_kw.update(overrides)
    if kind == "llama":
        config, cls = transformers.LlamaConfig(**cfg_kw), transformers.LlamaForCausalLM
    elif kind == "qwen2":
        config, cls = transformers.Qwen2Config(use_sliding_window=False, **cfg_kw), transformers.Qwen2ForCausalLM
    else:
        config, cls = transformers.MistralConfig(**cfg_kw), transformers.MistralForCausalLM
    torch.manual_seed(seed)
    model = cls(config).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "model.norm.weight" and config.tie_word_embeddings:  # tied: logits of std ~16
                p.copy_(8.0 + 0.8 * torch.randn_like(p))
            elif name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.3 * torch.randn_like(p))
            elif "embed_tokens" in name:  # tied: small, or the residual stream echoes the input token
                p.copy_((0.25 if config.tie_word_embeddings else 1.0) * torch.randn_like(p))
            elif name == "lm_head.weight":
                p.copy_(16.0 * torch.randn_like(p) / math.sqrt(p.shape[1]))
            else:  # unit-variance linear maps
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[1]))
    return model


@torch.no_grad()
def greedy(model, prompt, n):
    ids = prompt.clone()
    margins = []
    for _ in range(n):
        logits = model(ids).logits[0, -1].double()
        top2 = torch.topk(logits, 2).values
        margins.append(float(top2[0] - top2[1]))
        ids = torch.cat([ids, logits.argmax().view(1, 1)], dim=1)
    return ids[0, prompt.shape[1]:].numpy().astype(np.int32), min(margins)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/data/models")
    ap.add_argument("--only", default=None, help="comma-separated variant names")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    names = args.only.split(",") if args.only else list(VARIANTS)
    for name in names:
        kind, overrides = VARIANTS[name]
        out = os.path.join(args.out, name)
        os.makedirs(out, exist_ok=True)
        for attempt in range(50):
            seed = 1000 * (1 + list(VARIANTS).index(name)) + attempt
            # the stored weights: bf16, saved in the HF layout; the reference is that directory
            # loaded back by transformers (in float32, and in bf16 as users run it)
            model = build(kind, overrides, seed)
            cls = type(model)
            model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
            ref = cls.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
            g = torch.Generator().manual_seed(seed)
            prompt = torch.randint(3, COMMON["vocab_size"], (1, N_PROMPT), generator=g)
            with torch.no_grad():
                logits = ref(prompt).logits[0].float().numpy()
            greedy_ids, margin = greedy(ref, prompt, N_GREEDY)
            distinct = len(set(greedy_ids.tolist()))
            if margin >= MIN_MARGIN and distinct >= MIN_DISTINCT:
                break
            print(f"{name}: seed {seed}: greedy margin {margin:.4f}, {distinct} distinct tokens; trying the next",
                  file=sys.stderr)
        else:
            sys.exit(f"{name}: no seed with a greedy margin >= {MIN_MARGIN}")
        bf16 = cls.from_pretrained(out, dtype=torch.bfloat16, attn_implementation="eager").eval()
        with torch.no_grad():
            logits_bf16 = bf16(prompt).logits[0].float().numpy()
        rel = float(np.max(np.linalg.norm(logits_bf16 - logits, axis=1) / np.linalg.norm(logits, axis=1)))
        save_file({
            "prompt_ids": prompt[0].numpy().astype(np.int32),
            "logits": logits.astype(np.float32),
            "logits_hf_bf16": logits_bf16.astype(np.float32),
            "greedy_ids": greedy_ids,
        }, os.path.join(out, "golden.safetensors"), metadata={
            "variant": name,
            "seed": str(seed),
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "min_greedy_margin": f"{margin:.4f}",
            "hf_bf16_vs_f32_max_rel": f"{rel:.3e}",
        })
        print(f"{name}: seed {seed}, greedy margin {margin:.3f}, HF bf16 vs f32 max rel error {rel:.2e}, "
              f"greedy {greedy_ids[:12].tolist()}...")
        print(json.dumps(json.load(open(os.path.join(out, "config.json")))), file=sys.stderr)


if __name__ == "__main__":
    main()
