"""The shipped model (models/driftwood-tiny) against HF transformers' goldens
(tests/data/tiny-goldens, made by tools/train-tiny/make_goldens.py and tests/py/gen_chat_transcript.py
with float32 arithmetic from the bf16 weights). Driftwood runs with an F32 KV cache (--kv-f32), the
same function the reference computes:

- greedy generation identical for 10 prompts x 64 tokens, prompt ids identical;
- last-position logits within 1e-2 relative error (read from a KV file saved after the prompt);
- the chat actor's scripted 3-turn conversation at temperature 0 gives the reference transcript.
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("DW_BUILD", ROOT / "build"))
DW = str(BUILD / "bin" / "driftwood")
MODEL = str(ROOT / "models" / "driftwood-tiny")
GOLDENS = ROOT / "tests" / "data" / "tiny-goldens"
G = json.loads((GOLDENS / "goldens.json").read_text())


def dw(*args):
    return subprocess.run([DW, *args], check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize("case", range(len(G["prompts"])))
def test_greedy_64_tokens_match_transformers(case):
    p = G["prompts"][case]
    got = [int(t) for t in dw("generate", "--model", MODEL, "--prompt", p["prompt"], "-n", "64", "--ids",
                              "--ignore-eos", "--kv-f32").split()]
    assert got == p["generated_ids"]


@pytest.mark.parametrize("case", range(len(G["prompts"])))
def test_prompt_ids_and_last_logits_match_transformers(case, tmp_path):
    p = G["prompts"][case]
    kv = tmp_path / "prompt.kv"
    dw("generate", "--model", MODEL, "--prompt", p["prompt"], "-n", "0", "--kv-f32", "--save-kv", str(kv))
    saved = load_file(str(kv))
    assert saved["tokens"].tolist() == p["prompt_ids"]
    ref = load_file(str(GOLDENS / "last_logits.safetensors"))
    ref = next(iter(ref.values()))[case].astype(np.float64)
    got = saved["logits"].astype(np.float64)
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-2
    assert int(got.argmax()) == int(ref.argmax())


def test_chat_actor_three_turns_give_the_reference_transcript():
    t = json.loads((GOLDENS / "chat_transcript.json").read_text())
    args = ["chat", "--model", MODEL, "--kv-f32", "--temp", "0", "-n", str(t["max_tokens"]), "--system", t["system"]]
    for turn in t["turns"]:
        args += ["--prompt", turn]
    assert dw(*args) == "".join(reply + "\n" for reply in t["replies"])
