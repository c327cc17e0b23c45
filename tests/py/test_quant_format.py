"""Quantized weights in the MLX affine layout (src/engine/quant.h) against an independent PyTorch
implementation of MLX's affine quantize/dequantize written here (from MLX's CPU kernel and
graph fallback: f32 arithmetic, round half to even, scales/biases rounded to the input dtype):

- `driftwood quantize` gives bit-identical packed weights, scales and biases on random inputs
  (bf16, f16, f32; 4 and 8 bits; groups 32, 64, 128; constant, all-negative, zero groups);
- `driftwood quantize --dequantize` gives the same f32 weights as the PyTorch dequantization;
- the shipped model quantized to 4 and 8 bits: logits of the quantized model on the CPU engine
  against HF transformers run on its dequantized weights (f32) within 1e-2 relative error, and
  64 greedy tokens identical;
- malformed quantized models are refused with an error naming the file and tensor.

Needs torch (and transformers for the HF part): skipped where they are not installed.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st_torch = pytest.importorskip("safetensors.torch")

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("DW_BUILD", ROOT / "build"))
DW = str(BUILD / "bin" / "driftwood")
MODEL = ROOT / "models" / "driftwood-tiny"
GOLDENS = ROOT / "tests" / "data" / "tiny-goldens"


def dw(*args, check=True):
    r = subprocess.run([DW, *map(str, args)], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"driftwood {' '.join(map(str, args))} failed: {r.stderr}")
    return r


# ---- the reference: MLX's affine quantization in PyTorch -----------------------------------

def mlx_quantize(w, bits, group_size):
    """Returns (packed uint32 as int64 words, scales, biases) exactly as MLX's affine quantize."""
    rows, cols = w.shape
    n_bins = float((1 << bits) - 1)
    g = w.to(torch.float32).reshape(rows, cols // group_size, group_size)
    w_max = g.amax(dim=-1)
    w_min = g.amin(dim=-1)
    mask = w_min.abs() > w_max.abs()
    scales = torch.clamp((w_max - w_min) / n_bins, min=1e-7)
    scales = torch.where(mask, scales, -scales)
    edge = torch.where(mask, w_min, w_max)
    q0 = torch.round(edge / scales)  # torch.round: half to even, like MLX's rint
    scales = torch.where(q0 != 0, edge / q0, scales)
    biases = torch.where(q0 == 0, torch.zeros_like(edge), edge)
    q = torch.round((g - biases[..., None]) / scales[..., None]).clamp(0, n_bins).to(torch.int64)
    per_word = 32 // bits
    q = q.reshape(rows, cols // per_word, per_word)
    shifts = torch.arange(0, 32, bits, dtype=torch.int64)
    packed = (q << shifts).sum(dim=-1)
    sdtype = w.dtype if w.dtype in (torch.bfloat16, torch.float16) else torch.float32
    return packed, scales.to(sdtype), biases.to(sdtype)


def mlx_dequantize(packed, scales, biases, bits, group_size):
    rows = packed.shape[0]
    per_word = 32 // bits
    shifts = torch.arange(0, 32, bits, dtype=torch.int64)
    q = (packed.to(torch.int64)[..., None] >> shifts) & ((1 << bits) - 1)
    q = q.reshape(rows, -1, group_size).to(torch.float32)
    w = scales.to(torch.float32)[..., None] * q + biases.to(torch.float32)[..., None]
    return w.reshape(rows, -1)


def u32_as_int64(t):
    return t.view(torch.int32).to(torch.int64) & 0xFFFFFFFF


def random_weights(rows, cols, dtype, group_size, seed):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=gen) * 0.05
    w[0, :group_size] = 0.25                          # a constant positive group
    w[1, :group_size] = -0.125                        # a constant negative group
    w[2, :group_size] = 0.0                           # all zero
    w[3, :group_size] = -torch.rand(group_size, generator=gen)  # all negative
    w[4, :group_size] = torch.rand(group_size, generator=gen)   # all positive
    w[5, :group_size] = torch.linspace(-1, 1, group_size)       # symmetric: ties on |min| == |max|
    w[6, :group_size] = torch.randint(-8, 8, (group_size,), generator=gen).float() / 16  # exact grid
    return w.to(dtype)


def write_model(dirpath, tensors):
    dirpath.mkdir()
    (dirpath / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    st_torch.save_file(tensors, str(dirpath / "model.safetensors"))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_quantize_is_bit_identical_to_mlx(tmp_path, dtype, bits, group_size):
    w = random_weights(48, 384, dtype, group_size, seed=bits * 1000 + group_size)
    norm = torch.rand(384).to(dtype)
    src = tmp_path / "src"
    write_model(src, {"model.layers.0.mlp.up_proj.weight": w, "model.norm.weight": norm})
    out = tmp_path / "q"
    dw("quantize", "--model", src, "--bits", bits, "--group-size", group_size, "--out", out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["quantization"] == {"group_size": group_size, "bits": bits}
    got = st_torch.load_file(str(out / "model.safetensors"))
    assert torch.equal(got["model.norm.weight"], norm)  # norms stay in floats
    packed, scales, biases = mlx_quantize(w, bits, group_size)
    gw = got["model.layers.0.mlp.up_proj.weight"]
    assert gw.dtype == torch.uint32 and gw.shape == (48, 384 * bits // 32)
    assert torch.equal(u32_as_int64(gw), packed)
    gs, gb = got["model.layers.0.mlp.up_proj.scales"], got["model.layers.0.mlp.up_proj.biases"]
    assert gs.dtype == scales.dtype and gb.dtype == biases.dtype
    assert torch.equal(gs.view(torch.uint8), scales.contiguous().view(torch.uint8))  # bitwise (-0.0 too)
    assert torch.equal(gb.view(torch.uint8), biases.contiguous().view(torch.uint8))
    # a constant group dequantizes exactly; the zero group to zeros
    deq = mlx_dequantize(packed, scales, biases, bits, group_size)
    assert torch.equal(deq[2, :group_size], torch.zeros(group_size))

    # dequantized by driftwood == dequantized by the reference, exactly
    back = tmp_path / "deq"
    dw("quantize", "--dequantize", "--model", out, "--out", back)
    d = st_torch.load_file(str(back / "model.safetensors"))
    assert "model.layers.0.mlp.up_proj.scales" not in d
    assert torch.equal(d["model.layers.0.mlp.up_proj.weight"], deq)


# ---- the shipped model, quantized, against transformers ----------------------------------

@pytest.fixture(scope="module", params=[4, 8])
def quantized_tiny(request, tmp_path_factory):
    bits = request.param
    d = tmp_path_factory.mktemp(f"q{bits}")
    q, ref = d / "q", d / "ref"
    dw("quantize", "--model", MODEL, "--bits", bits, "--out", q)
    dw("quantize", "--dequantize", "--model", q, "--out", ref)
    return bits, q, ref


def hf_model(ref_dir):
    transformers = pytest.importorskip("transformers")
    m = transformers.AutoModelForCausalLM.from_pretrained(str(ref_dir), torch_dtype=torch.float32)
    m.eval()
    return m


def test_quantized_model_matches_transformers_on_dequantized_weights(quantized_tiny, tmp_path):
    bits, q, ref = quantized_tiny
    model = hf_model(ref)
    goldens = json.loads((GOLDENS / "goldens.json").read_text())
    from safetensors.numpy import load_file
    for p in goldens["prompts"][:4]:
        ids = list(p["prompt_ids"])
        kv = tmp_path / "p.kv"
        r = dw("generate", "--model", q, "--prompt", p["prompt"], "-n", "64", "--ids", "--ignore-eos", "--kv-f32")
        got_ids = [int(t) for t in r.stdout.split()]
        dw("generate", "--model", q, "--prompt", p["prompt"], "-n", "0", "--kv-f32", "--save-kv", kv)
        saved = load_file(str(kv))
        assert saved["tokens"].tolist() == ids
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1].double().numpy()
            seq = list(ids)
            for _ in range(64):
                nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
                seq.append(nxt)
        got = saved["logits"].astype(np.float64)
        rel = np.linalg.norm(got - logits) / np.linalg.norm(logits)
        print(f"{bits}-bit prompt {p['prompt'][:20]!r}: logits rel err {rel:.2e}")
        assert rel < 1e-2
        assert got_ids == seq[len(ids):]


# ---- bad input -----------------------------------------------------------------------------

def corrupt(q, tmp_path, fn, cfg_fn=None):
    bad = tmp_path / "bad"
    shutil.copytree(q, bad)
    t = st_torch.load_file(str(bad / "model.safetensors"))
    fn(t)
    st_torch.save_file(t, str(bad / "model.safetensors"), metadata={"format": "mlx"})
    if cfg_fn:
        cfg = json.loads((bad / "config.json").read_text())
        cfg_fn(cfg)
        (bad / "config.json").write_text(json.dumps(cfg))
    return bad


NAME = "model.layers.0.mlp.down_proj"


@pytest.mark.parametrize("case,fn,cfg_fn,expect", [
    ("scales shape", lambda t: t.__setitem__(NAME + ".scales", t[NAME + ".scales"][:, :-1].contiguous()), None,
     NAME + ".scales"),
    ("biases shape", lambda t: t.__setitem__(NAME + ".biases", t[NAME + ".biases"][:-1].contiguous()), None,
     NAME + ".biases"),
    ("biases dtype", lambda t: t.__setitem__(NAME + ".biases", t[NAME + ".biases"].to(torch.float16)), None,
     NAME + ".biases"),
    ("bits", lambda t: None, lambda c: c["quantization"].__setitem__("bits", 3), "'bits' must be 4 or 8"),
    ("group size", lambda t: None, lambda c: c["quantization"].__setitem__("group_size", 48), "'group_size'"),
    ("wrong bits for the shapes", lambda t: None, lambda c: c["quantization"].__setitem__("bits", 8),
     "'model.embed_tokens.weight' has shape"),
    ("missing biases", lambda t: t.pop(NAME + ".biases"), None, NAME + ".biases"),
])
def test_malformed_quantized_models_are_refused(quantized_tiny, tmp_path, case, fn, cfg_fn, expect):
    bits, q, _ = quantized_tiny
    if bits != 4:
        pytest.skip("once is enough")
    bad = corrupt(q, tmp_path, fn, cfg_fn)
    r = dw("generate", "--model", bad, "--prompt", "hi", "-n", "1", check=False)
    assert r.returncode != 0
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert expect in err, err
