#!/usr/bin/env python3
# Tokenizes the prepared documents with models/driftwood-tiny/tokenizer.json and adds short chat
# conversations in the Llama 3 format; writes the uint16 id streams train.py reads. See README.md.
"""Usage: tokenize_corpus.py DOCS.jsonl MODEL_DIR OUT_DIR

Writes OUT_DIR/train.bin, OUT_DIR/val.bin (little-endian uint16 token ids, documents concatenated)
and OUT_DIR/meta.json. Each plain document is <|begin_of_text|> text <|end_of_text|>; each
conversation is the Llama 3 chat template's rendering followed by <|end_of_text|>. Deterministic.
"""
import json
import os
import random
import re
import sys

import numpy as np
from tokenizers import Tokenizer

SEED = 1234
VAL_FRACTION = 0.02
N_CONVERSATIONS = 3500

SYSTEMS = [
    "You are a helpful assistant.",
    "You are Driftwood, a small language model that has read the King James Bible, "
    "The Devil's Dictionary and the Jargon File.",
    "Answer briefly.",
]
WORD_QUESTIONS = ["What is {w}?", "Define {w}.", "What does {w} mean?", "What is the meaning of {w}?",
                  "Tell me about {w}."]
VERSE_QUESTIONS = ["Recite {r}.", "What does {r} say?", "Quote {r}."]


def render_chat(messages, bos="<|begin_of_text|>"):
    """The string Meta-Llama-3-Instruct's chat template renders (no generation prompt)."""
    out = bos
    for m in messages:
        out += f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>"
    return out


def clip(text, limit=600):
    """At most `limit` characters, cut at a sentence end when the text is longer."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    return cut[:end + 1] if end > 100 else cut.rsplit(" ", 1)[0] + " ..."


def qa_pool(docs):
    pool = []
    for d in docs:
        if d["source"] == "kjv":
            for ref, verse in d["entries"]:
                pool.append(("verse", ref, verse))
        elif d.get("definition"):
            w = d["headword"]
            if d["source"] == "devil":
                w = w.lower()
            pool.append(("word", w, clip(d["definition"])))
    return pool


def conversation(rng, pool):
    msgs = []
    if rng.random() < 0.5:
        msgs.append({"role": "system", "content": rng.choice(SYSTEMS)})
    for _ in range(rng.choice([1, 1, 2, 3])):
        kind, key, answer = rng.choice(pool)
        q = rng.choice(VERSE_QUESTIONS if kind == "verse" else WORD_QUESTIONS)
        q = q.format(r=key, w=key)
        msgs.append({"role": "user", "content": q})
        msgs.append({"role": "assistant", "content": answer})
    return msgs


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    docs_path, model_dir, out = sys.argv[1:]
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    bos, eos = tok.token_to_id("<|begin_of_text|>"), tok.token_to_id("<|end_of_text|>")
    docs = [json.loads(l) for l in open(docs_path, encoding="utf-8")]
    rng = random.Random(SEED)
    order = list(range(len(docs)))
    rng.shuffle(order)
    n_val = int(len(docs) * VAL_FRACTION)
    val_docs = set(order[:n_val])

    pool = qa_pool(docs)
    convs = [conversation(rng, pool) for _ in range(N_CONVERSATIONS)]
    n_val_conv = int(N_CONVERSATIONS * VAL_FRACTION)

    # Items in a random order: ("doc", i) or ("chat", i); each goes to train or val.
    items = [("doc", i) for i in range(len(docs))] + [("chat", i) for i in range(len(convs))]
    rng.shuffle(items)
    streams = {"train": [], "val": []}
    counts = {"train": {"doc": 0, "chat": 0}, "val": {"doc": 0, "chat": 0}}
    texts = [docs[i]["text"] if k == "doc" else render_chat(convs[i]) for k, i in items]
    encs = tok.encode_batch(texts, add_special_tokens=False)
    for (k, i), enc in zip(items, encs):
        split = "val" if (k == "doc" and i in val_docs) or (k == "chat" and i < n_val_conv) else "train"
        ids = ([bos] + enc.ids if k == "doc" else enc.ids) + [eos]
        streams[split].extend(ids)
        counts[split][k] += 1
    os.makedirs(out, exist_ok=True)
    meta = {"vocab_size": tok.get_vocab_size(), "bos_token_id": bos, "eos_token_id": eos,
            "eot_token_id": tok.token_to_id("<|eot_id|>"), "seed": SEED, "counts": counts}
    for split, ids in streams.items():
        arr = np.asarray(ids, dtype="<u2")
        assert arr.max() < tok.get_vocab_size()
        arr.tofile(os.path.join(out, f"{split}.bin"))
        meta[f"{split}_tokens"] = int(arr.size)
    chat_tokens = sum(len(e.ids) + 1 for (k, _), e in zip(items, encs) if k == "chat")
    meta["chat_tokens"] = chat_tokens
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(json.dumps(meta))
    print("example conversation:", render_chat(convs[0])[:400])


if __name__ == "__main__":
    main()
