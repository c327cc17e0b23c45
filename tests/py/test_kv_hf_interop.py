"""KV snapshots interoperate with Hugging Face transformers (the reference implementation).

1. A cache Driftwood saved (``generate --save-kv``) is loaded with Python safetensors into
   transformers as ``past_key_values``; transformers continues greedy generation exactly as
   Driftwood does (``generate --resume-kv``).
2. A cache transformers computed is written by this test in Driftwood's KV format (metadata,
   fingerprint from ``driftwood snapshot fingerprint``, XXH3-128 checksum computed here from the
   documented manifest) and Driftwood continues from it exactly as transformers does.

Runs where torch and transformers are importable (the GPU machine; or any machine with them
installed); skipped elsewhere. Model: $DW_TEST_MODEL, else models/driftwood-tiny.
"""
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
xxhash = pytest.importorskip("xxhash")
from safetensors.numpy import save_file  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("DW_BUILD", ROOT / "build"))
DW = str(BUILD / "bin" / "driftwood")
MODEL = Path(os.environ.get("DW_TEST_MODEL", ROOT / "models" / "driftwood-tiny"))
N_CONTINUE = 24

if not (MODEL / "model.safetensors").exists():
    pytest.skip(f"no model weights in {MODEL}", allow_module_level=True)


def dw(*args):
    return subprocess.run([DW, *args], check=True, capture_output=True, text=True).stdout


def hf_model():
    # float32 compute from the bf16 weights (an exact upcast), as Driftwood computes
    model = transformers.AutoModelForCausalLM.from_pretrained(str(MODEL), torch_dtype=torch.float32)
    return model.eval()


def hf_greedy(model, cache, first_token, n):
    """Greedy continuation from a cache: feeds first_token, then each argmax."""
    out, token = [], first_token
    with torch.no_grad():
        for _ in range(n):
            out.append(token)
            pos = cache.get_seq_length()
            logits = model(input_ids=torch.tensor([[token]]), past_key_values=cache, use_cache=True,
                           position_ids=torch.tensor([[pos]])).logits
            token = int(logits[0, -1].argmax())
    return out


def cache_from(layers):
    cache = transformers.DynamicCache()
    for i, (k, v) in enumerate(layers):
        cache.update(k, v, i)
    return cache


def test_driftwood_cache_continues_in_transformers(tmp_path):
    kv = tmp_path / "dw.kv"
    dw("generate", "--model", str(MODEL), "--prompt", "Once upon a time, an old sailor", "-n", "6", "--ids",
       "--ignore-eos", "--save-kv", str(kv))
    expected = [int(t) for t in dw("generate", "--model", str(MODEL), "--resume-kv", str(kv), "-n", str(N_CONTINUE),
                                   "--ids", "--ignore-eos").split()]
    t = load_file(str(kv))
    n_layers = sum(1 for name in t if name.endswith(".key"))
    layers = [(t[f"past_key_values.{i}.key"].float(), t[f"past_key_values.{i}.value"].float()) for i in range(n_layers)]
    first = int(t["logits"].argmax())  # the saved logits of the last position pick the next token
    got = hf_greedy(hf_model(), cache_from(layers), first, N_CONTINUE)
    assert got == expected


def history_text(ids):
    """The history as text with special tokens written out (what a model swap re-tokenizes)."""
    import tokenizers
    return tokenizers.Tokenizer.from_file(str(MODEL / "tokenizer.json")).decode(ids, skip_special_tokens=False)


def checksum(tensors, metadata):
    """The manifest of src/snapshot/snapshot_file.h, hashed with XXH3-128."""
    h = xxhash.xxh3_128()
    for name in sorted(tensors):
        a = tensors[name]
        dtype = {np.dtype("float32"): "F32", np.dtype("int32"): "I32", np.dtype("uint8"): "U8"}[a.dtype]
        h.update(name.encode() + b"\0" + dtype.encode() + b"\0" + struct.pack("<I", a.ndim))
        h.update(b"".join(struct.pack("<q", d) for d in a.shape))
        d = xxhash.xxh3_128_intdigest(np.ascontiguousarray(a).tobytes())
        h.update(struct.pack("<QQ", d >> 64, d & (2**64 - 1)))
    for key in sorted(metadata):
        if key != "checksum":
            h.update(key.encode() + b"\0" + metadata[key].encode() + b"\0")
    return "xxh3-128:" + h.hexdigest()


def test_transformers_cache_continues_in_driftwood(tmp_path):
    out = subprocess.run([DW, "tokenize", "--model", str(MODEL)], input="The harbor lamp was lit at night\n",
                         check=True, capture_output=True, text=True).stdout
    ids = [int(x) for x in out.split()]
    model = hf_model()
    cfg = model.config
    cache = transformers.DynamicCache()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids]), past_key_values=cache, use_cache=True).logits[0, -1]
    n = len(ids)
    tensors = {"tokens": np.array(ids, dtype=np.int32),
               "text": np.frombuffer(history_text(ids).encode(), dtype=np.uint8).copy(),
               "logits": logits.float().numpy()}
    for i in range(cfg.num_hidden_layers):
        k, v = cache.layers[i].keys, cache.layers[i].values
        tensors[f"past_key_values.{i}.key"] = k.float().numpy()
        tensors[f"past_key_values.{i}.value"] = v.float().numpy()
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    fingerprint = json.loads(dw("snapshot", "fingerprint", "--model", str(MODEL)))
    metadata = {"format": "driftwood-kv", "format_version": "1", "creator": "transformers " + transformers.__version__,
                **fingerprint, "n_layers": str(cfg.num_hidden_layers), "n_kv_heads": str(cfg.num_key_value_heads),
                "head_dim": str(head_dim), "n_tokens": str(n), "ctx": str(n + 64), "dtype": "F32",
                "rope_theta": str(cfg.rope_theta if hasattr(cfg, "rope_theta") else ""), "rope_scaling": "null"}
    metadata["checksum"] = checksum(tensors, metadata)
    kv = tmp_path / "hf.kv"
    save_file(tensors, str(kv), metadata=metadata)
    got = [int(t) for t in dw("generate", "--model", str(MODEL), "--resume-kv", str(kv), "-n", str(N_CONTINUE),
                              "--ids", "--ignore-eos").split()]
    expected = hf_greedy(model, cache, int(logits.argmax()), N_CONTINUE)
    assert got == expected
