#!/usr/bin/env python3
"""Trains the small tokenizer.json files committed beside this script, with HF `tokenizers`
(tests/py/requirements.txt), on corpus.txt. They cover the tokenizer kinds besides Llama 3's:

  sp_bpe.json              Llama 2 style (legacy): normalizer Prepend("▁") + Replace(" ", "▁"),
                           no pre-tokenizer, BPE with byte_fallback and <0x00>..<0xFF> in the
                           vocabulary, decoder Replace/ByteFallback/Fuse/Strip, BOS template.
  sp_metaspace.json        the same vocabulary behind a Metaspace pre-tokenizer
                           (prepend_scheme "first", split false) and a Metaspace decoder.
  sp_metaspace_split.json  Metaspace with prepend_scheme "always" and split true.
  bytelevel_bpe.json       GPT-2 style: ByteLevel pre-tokenizer (add_prefix_space, GPT-2 regex),
                           ByteLevel decoder, plus added tokens with lstrip/rstrip, special or not.
  nfc_bytelevel_bpe.json   Qwen2 style: NFC normalizer, Split with Qwen2's regex, ByteLevel.

Run from the repository root:  python3 tests/data/tokenizer/make_small_tokenizers.py
The trainer may break ties differently from run to run: the committed files are the ones the tests
use, and any regenerated set must pass them as well."""
import json
import os

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))


def corpus_lines():
    lines = []
    with open(os.path.join(HERE, "corpus.txt"), encoding="utf-8") as f:
        for raw in f.read().split("\n")[:-1]:
            lines.append(json.loads(raw[5:]) if raw.startswith("json:") else raw)
    return lines


def with_byte_tokens(tok_json):
    """Puts <0x00>..<0xFF> at ids 3..258 as Llama 2 does, moving the learned pieces up."""
    d = json.loads(tok_json)
    vocab = d["model"]["vocab"]
    specials = {t["content"]: t["id"] for t in d["added_tokens"] if t["content"] in vocab}
    learned = sorted((i, t) for t, i in vocab.items() if t not in specials)
    new = dict(specials)
    for b in range(256):
        new["<0x%02X>" % b] = len(new)
    for _, t in learned:
        if t not in new:
            new[t] = len(new)
    d["model"]["vocab"] = new
    next_id = len(new)
    for t in d["added_tokens"]:  # added tokens outside the vocabulary follow it
        if t["content"] not in vocab:
            t["id"] = next_id
            next_id += 1
    return d


def save(d, name):
    path = os.path.join(HERE, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(d, f, ensure_ascii=False, indent=1)
        f.write("\n")
    Tokenizer.from_file(path)  # HF must accept what we commit
    print("wrote", path, len(d["model"]["vocab"]), "tokens")


def sentencepiece_style(lines):
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=120,
                                  show_progress=False)
    tok.train_from_iterator(lines, trainer)
    tok.pre_tokenizer = None
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1, right=0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    # a non-special token written in normalized form ("▁hello▁world" after the normalizer)
    tok.add_tokens([AddedToken("hello world", special=False, normalized=True)])
    legacy = with_byte_tokens(tok.to_str())
    save(legacy, "sp_bpe.json")

    meta = json.loads(json.dumps(legacy))
    meta["normalizer"] = None
    meta["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    meta["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
        {"type": "ByteFallback"}, {"type": "Fuse"}]}
    for t in meta["added_tokens"]:
        if t["content"] == "hello world":
            t["normalized"] = False
    save(meta, "sp_metaspace.json")

    split = json.loads(json.dumps(meta))
    split["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
    split["decoder"]["decoders"][0]["prepend_scheme"] = "always"
    save(split, "sp_metaspace_split.json")


def byte_level_style(lines):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
    tok.add_tokens([AddedToken("[TOOL]", special=False, normalized=False),
                    AddedToken("@@", rstrip=True, special=False, normalized=True)])
    save(json.loads(tok.to_str()), "bytelevel_bpe.json")


QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def qwen2_style(lines):
    tok = Tokenizer(models.BPE(ignore_merges=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, trainer)
    save(json.loads(tok.to_str()), "nfc_bytelevel_bpe.json")


if __name__ == "__main__":
    lines = corpus_lines()
    sentencepiece_style(lines)
    byte_level_style(lines)
    qwen2_style(lines)
