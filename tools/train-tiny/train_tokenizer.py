#!/usr/bin/env python3
# Trains the Llama-3-style byte-level BPE tokenizer of models/driftwood-tiny from the prepared corpus
# and writes tokenizer.json and tokenizer_config.json. See README.md beside this.
"""Usage: train_tokenizer.py DOCS.jsonl MODEL_DIR

Needs the `tokenizers` package (0.23.2). Deterministic for a given DOCS.jsonl.
"""
import json
import os
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

VOCAB_SIZE = 8192
# Llama 3's pre-tokenizer regex (tokenizer.json of Meta-Llama-3), unchanged.
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# The last 16 ids, laid out like Llama 3.0's first 16 special tokens (128000..128015).
SPECIALS = [
    "<|begin_of_text|>", "<|end_of_text|>",
    "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
    "<|reserved_special_token_2|>", "<|reserved_special_token_3|>",
    "<|start_header_id|>", "<|end_header_id|>",
    "<|reserved_special_token_4|>", "<|eot_id|>",
] + [f"<|reserved_special_token_{i}|>" for i in range(5, 11)]
BPE_VOCAB = VOCAB_SIZE - len(SPECIALS)

# Meta-Llama-3-8B-Instruct's chat template, unchanged.
CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def build(texts):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB, min_frequency=2, show_progress=False, special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    if tok.get_vocab_size() != BPE_VOCAB:
        raise SystemExit(f"BPE vocabulary is {tok.get_vocab_size()}, expected {BPE_VOCAB}")
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    bos = tok.token_to_id(SPECIALS[0])
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
            special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    # ignore_merges must survive serialization (the trainer may rebuild the model).
    j = json.loads(tok.to_str())
    j["model"]["ignore_merges"] = True
    return Tokenizer.from_str(json.dumps(j)), j


def tokenizer_config(tok):
    decoder = {}
    for s in SPECIALS:
        decoder[str(tok.token_to_id(s))] = {
            "content": s, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": True}
    return {
        "added_tokens_decoder": decoder,
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|end_of_text|>",
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 2048,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    docs_path, out = sys.argv[1:]
    texts = [json.loads(l)["text"] for l in open(docs_path, encoding="utf-8")]
    tok, j = build(texts)
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == BPE_VOCAB + i, s
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=2)
        f.write("\n")
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(tok), f, ensure_ascii=False, indent=2)
        f.write("\n")
    sample = "In the beginning God created the heaven and the earth. “Hacker’s” 1983"
    ids = tok.encode(sample).ids
    print(f"vocabulary {tok.get_vocab_size()} ({BPE_VOCAB} BPE + {len(SPECIALS)} special)")
    print(f"sample: {len(ids)} ids {ids}")
    assert tok.decode(ids, skip_special_tokens=True) == sample


if __name__ == "__main__":
    main()
