#!/usr/bin/env python3
# Writes tests/data/tiny-goldens/: greedy generations, last-position logits, chat-template ids and
# tokenizer cases from HF transformers on models/driftwood-tiny, the references Driftwood must match.
"""Usage: make_goldens.py --model DIR --prompts prompts.txt --out DIR [--new-tokens 64]

Computes in float32 on the CPU from the bf16 weights (upcast exactly), eager attention, no KV
cache in the reference loop (the whole sequence is recomputed at each step). Writes
OUT/goldens.json and OUT/last_logits.safetensors.
"""
import argparse
import hashlib
import json
import os
import platform

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is a cat?"},
    {"role": "assistant", "content": "A soft, indestructible automaton provided by nature to be "
                                     "kicked when things go wrong in the domestic circle."},
    {"role": "user", "content": "Recite Genesis 1:1."},
]
# Strings for tokenizer parity: contractions, digits, whitespace runs, newlines, multi-byte
# characters, and special-token text (matched only when special tokens are parsed).
TOKENIZER_CASES = [
    "Hello, world!",
    "I'll say it's 12345 o'clock; you're LATE.",
    "  two leading spaces,\ttab and trailing   ",
    "line one\n\nline three\r\n",
    "“Curly quotes” — em dash, café, naïve, 日本語, emoji 🙂.",
    "<|begin_of_text|>text with <|eot_id|> inside",
    "",
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@torch.no_grad()
def greedy(model, ids, n):
    """n greedy tokens with no early stop; returns tokens, per-step top-1/top-2 margins and the
    logits of the prompt's last position."""
    seq = torch.tensor([ids])
    out, margins, first = [], [], None
    for _ in range(n):
        logits = model(input_ids=seq, use_cache=False).logits[0, -1].float()
        if first is None:
            first = logits.clone()
        top = torch.topk(logits, 2)
        margins.append((top.values[0] - top.values[1]).item())
        nxt = int(top.indices[0])
        out.append(nxt)
        seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
    return out, margins, first


def stop_index(ids, stops):
    return next((i for i, t in enumerate(ids) if t in stops), None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--new-tokens", type=int, default=64)
    args = ap.parse_args()
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16,
                                                 attn_implementation="eager")
    model = model.float().eval()
    stops = [tok.convert_tokens_to_ids("<|end_of_text|>"), tok.convert_tokens_to_ids("<|eot_id|>")]
    prompts = [l.rstrip("\n") for l in open(args.prompts, encoding="utf-8") if l.strip()]

    results, last = [], []
    for p in prompts:
        ids = tok(p)["input_ids"]                     # <|begin_of_text|> + text
        gen, margins, first = greedy(model, ids, args.new_tokens)
        hf = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                            do_sample=False, max_new_tokens=args.new_tokens, eos_token_id=stops,
                            pad_token_id=stops[0])[0, len(ids):].tolist()
        s = stop_index(gen, stops)
        want = gen[:s + 1] if s is not None else gen
        assert hf == want, f"generate() and the reference loop differ for {p!r}: {hf} vs {gen}"
        top = torch.topk(first, 50)
        last.append(first)
        results.append({
            "prompt": p, "prompt_ids": ids, "generated_ids": gen,
            "text": tok.decode(gen, skip_special_tokens=False),
            "stop_index": s, "min_margin": min(margins), "margins": [round(m, 5) for m in margins],
            "last_logits_top50": {"ids": top.indices.tolist(), "values": top.values.tolist()},
        })
        print(f"{p!r} -> {results[-1]['text']!r}  (min top-1/top-2 margin {min(margins):.4f})",
              flush=True)

    chat_ids = tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True)
    if isinstance(chat_ids, dict) or hasattr(chat_ids, "keys"):
        chat_ids = chat_ids["input_ids"]
    chat_text = tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    gen, margins, first = greedy(model, chat_ids, args.new_tokens)
    s = stop_index(gen, stops)
    chat = {"messages": CHAT, "add_generation_prompt": True, "rendered": chat_text, "ids": chat_ids,
            "generated_ids": gen, "stop_index": s,
            "reply": tok.decode(gen[:s] if s is not None else gen, skip_special_tokens=False),
            "min_margin": min(margins[:s + 1] if s is not None else margins)}
    last.append(first)
    print(f"chat reply: {chat['reply']!r}", flush=True)

    cases = []
    for text in TOKENIZER_CASES:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        cases.append({"text": text, "ids": ids, "decoded": tok.decode(ids)})
        assert tok.decode(ids) == text, text

    weights = os.path.join(args.model, "model.safetensors")
    goldens = {
        "model": "models/driftwood-tiny",
        "model_safetensors_sha256": sha256(weights),
        "tokenizer_json_sha256": sha256(os.path.join(args.model, "tokenizer.json")),
        "compute": "HF transformers LlamaForCausalLM, bf16 weights upcast to float32, float32 "
                   "arithmetic on the CPU, eager attention, no KV cache (full recompute per step)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
        "new_tokens": args.new_tokens,
        "stop_token_ids": stops,
        "notes": "prompt_ids = tokenizer(prompt) with <|begin_of_text|> first; generated_ids are "
                 "new_tokens greedy (argmax) tokens with no early stop; stop_index is the first "
                 "stop token among them (null if none), where generate() stops; margins are "
                 "top-1 minus top-2 logit at each step; last_logits.safetensors holds the full "
                 "float32 logits of each prompt's last position (rows in prompt order, then the "
                 "chat prompt).",
        "prompts": results,
        "chat": chat,
        "tokenizer_cases": cases,
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "goldens.json"), "w", encoding="utf-8") as f:
        json.dump(goldens, f, ensure_ascii=False, indent=1)
        f.write("\n")
    save_file({"logits": torch.stack(last).contiguous()},
              os.path.join(args.out, "last_logits.safetensors"),
              metadata={"rows": "prompts.txt order, then the chat prompt", "dtype": "float32"})


if __name__ == "__main__":
    main()
