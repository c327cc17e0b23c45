"""Interop of Driftwood's safetensors reader/writer with the reference (Python safetensors).

The C side is reached through a tiny helper program built by this test from the library's
sources (src/core/{safetensors_read,safetensors_write,file,dtype,error,sha256}.c):
    helper dump FILE      -> JSON: metadata, and per tensor name/dtype/shape/sha256 of its bytes
    helper copy IN OUT    -> reads IN with our reader, writes every tensor and metadata with our writer
Files made by Python are read by C (dump) and files written by C are read by Python (copy).
"""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

safetensors = pytest.importorskip("safetensors")
from safetensors import TensorSpec, deserialize, safe_open, serialize  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ["safetensors_read.c", "safetensors_write.c", "file.c", "dtype.c", "error.c", "sha256.c"]

HELPER_C = r"""
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include "core/sha256.h"
#include "driftwood/safetensors.h"

static int dump(const char *path) {
    dw_error err;
    dw_safetensors *st;
    if (dw_safetensors_open(path, &st, &err) != DW_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    json_t *root = json_object(), *meta = json_object(), *tensors = json_array();
    for (size_t i = 0; i < dw_safetensors_metadata_count(st); i++) {
        const char *k, *v;
        dw_safetensors_metadata_entry(st, i, &k, &v);
        json_object_set_new(meta, k, json_string(v));
    }
    for (size_t i = 0; i < dw_safetensors_count(st); i++) {
        const dw_tensor_info *t = dw_safetensors_tensor(st, i);
        uint8_t d[32];
        char hex[65];
        dw__sha256(t->data, t->nbytes, d);
        dw__sha256_hex(d, hex);
        json_t *shape = json_array();
        for (int k = 0; k < t->ndim; k++) json_array_append_new(shape, json_integer(t->shape[k]));
        json_array_append_new(tensors, json_pack("{s:s, s:s, s:o, s:s, s:I}", "name", t->name, "dtype",
                                                 dw_dtype_name(t->dtype), "shape", shape, "sha256", hex,
                                                 "nbytes", (json_int_t)t->nbytes));
    }
    json_object_set_new(root, "metadata", meta);
    json_object_set_new(root, "tensors", tensors);
    char *s = json_dumps(root, JSON_COMPACT);
    puts(s);
    free(s);
    json_decref(root);
    dw_safetensors_close(st);
    return 0;
}

static int copy(const char *in, const char *out) {
    dw_error err;
    dw_safetensors *st;
    dw_safetensors_writer *w;
    if (dw_safetensors_open(in, &st, &err) != DW_OK || dw_safetensors_writer_new(&w, &err) != DW_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    int rc = 0;
    for (size_t i = 0; i < dw_safetensors_metadata_count(st) && !rc; i++) {
        const char *k, *v;
        dw_safetensors_metadata_entry(st, i, &k, &v);
        rc = dw_safetensors_writer_set_metadata(w, k, v, &err) != DW_OK;
    }
    for (size_t i = 0; i < dw_safetensors_count(st) && !rc; i++) {
        const dw_tensor_info *t = dw_safetensors_tensor(st, i);
        rc = dw_safetensors_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, &err) != DW_OK;
    }
    if (!rc) rc = dw_safetensors_writer_write(w, out, &err) != DW_OK;
    if (rc) fprintf(stderr, "%s\n", err.message);
    dw_safetensors_writer_free(w);
    dw_safetensors_close(st);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "dump") == 0) return dump(argv[2]);
    if (argc == 4 && strcmp(argv[1], "copy") == 0) return copy(argv[2], argv[3]);
    fprintf(stderr, "usage: helper dump FILE | helper copy IN OUT\n");
    return 2;
}
"""

# (reference dtype name for TensorSpec, safetensors header name, numpy storage type)
DTYPES = [
    ("float32", "F32", np.float32),
    ("float16", "F16", np.float16),
    ("bfloat16", "BF16", np.uint16),
    ("float64", "F64", np.float64),
    ("int8", "I8", np.int8),
    ("uint8", "U8", np.uint8),
    ("int16", "I16", np.int16),
    ("uint16", "U16", np.uint16),
    ("int32", "I32", np.int32),
    ("uint32", "U32", np.uint32),
    ("int64", "I64", np.int64),
    ("uint64", "U64", np.uint64),
    ("bool", "BOOL", np.bool_),
]


@pytest.fixture(scope="module")
def helper(tmp_path_factory):
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if not cc:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("helper") / "st-helper"
    src = out.with_suffix(".c")
    src.write_text(HELPER_C)
    cmd = [cc, "-std=c11", "-D_GNU_SOURCE", "-O1", "-I", str(ROOT / "include"), "-I", str(ROOT / "src"),
           str(src), *[str(ROOT / "src" / "core" / s) for s in SOURCES], "-ljansson", "-lcrypto", "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 and "jansson" in r.stderr:
        pytest.skip("jansson is not installed: " + r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr
    return str(out)


def random_tensors(seed):
    """Name -> (reference dtype, header dtype, shape, raw bytes), random data, every dtype."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, (ref, hdr, np_t) in enumerate(DTYPES):
        shape = [int(d) for d in rng.integers(1, 6, size=int(rng.integers(1, 4)))]
        if np_t == np.bool_:
            arr = rng.integers(0, 2, size=shape).astype(np.bool_)
        else:
            nbytes = int(np.prod(shape)) * np.dtype(np_t).itemsize
            arr = np.frombuffer(rng.bytes(nbytes), dtype=np_t).reshape(shape)
        out[f"layers.{i}.{hdr.lower()}"] = (ref, hdr, shape, arr.tobytes())
    out["scalar"] = ("float32", "F32", [], np.float32(rng.standard_normal()).tobytes())
    out["empty"] = ("bfloat16", "BF16", [3, 0], b"")
    out["名前.weight"] = ("float16", "F16", [2], rng.bytes(4))
    return out


def python_serialize(tensors, metadata):
    """Serializes with the reference implementation; buffers are kept alive across the call."""
    keep, specs = [], {}
    for name, (ref, _hdr, shape, raw) in tensors.items():
        buf = np.frombuffer(raw, dtype=np.uint8).copy() if raw else np.zeros(1, dtype=np.uint8)
        keep.append(buf)
        specs[name] = TensorSpec(dtype=ref, shape=shape, data_ptr=buf.ctypes.data, data_len=len(raw))
    data = serialize(specs, metadata=metadata)
    del keep
    return bytes(data)


def dump(helper, path):
    r = subprocess.run([helper, "dump", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


METADATA = {"format": "pt", "driftwood.note": "héllo \"quoted\"\nline two", "empty": ""}


def test_c_reader_reads_files_written_by_python_safetensors(helper, tmp_path):
    tensors = random_tensors(1)
    path = tmp_path / "py.safetensors"
    path.write_bytes(python_serialize(tensors, METADATA))

    got = dump(helper, path)
    assert got["metadata"] == METADATA
    by_name = {t["name"]: t for t in got["tensors"]}
    assert set(by_name) == set(tensors)
    for name, (_ref, hdr, shape, raw) in tensors.items():
        t = by_name[name]
        assert t["dtype"] == hdr, name
        assert t["shape"] == shape, name
        assert t["nbytes"] == len(raw), name
        assert t["sha256"] == hashlib.sha256(raw).hexdigest(), name


def test_python_safetensors_reads_files_written_by_the_c_writer(helper, tmp_path):
    tensors = random_tensors(2)
    src = tmp_path / "src.safetensors"
    out = tmp_path / "c.safetensors"
    src.write_bytes(python_serialize(tensors, METADATA))
    r = subprocess.run([helper, "copy", str(src), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    raw = out.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    assert header_len % 8 == 0  # padded like the reference

    loaded = dict(deserialize(raw))
    assert set(loaded) == set(tensors)
    for name, (_ref, hdr, shape, data) in tensors.items():
        assert loaded[name]["dtype"] == hdr, name
        assert list(loaded[name]["shape"]) == shape, name
        assert bytes(loaded[name]["data"]) == data, name
    with safe_open(str(out), framework="numpy") as f:
        assert f.metadata() == METADATA
        # numpy view of a dtype numpy has: values, not just bytes
        name = "layers.0.f32"
        np.testing.assert_array_equal(
            f.get_tensor(name), np.frombuffer(tensors[name][3], dtype=np.float32).reshape(tensors[name][2]))


def test_c_writer_file_round_trips_through_python_and_back(helper, tmp_path):
    """C writes, Python re-serializes what it read, C reads the result: same bytes everywhere."""
    tensors = random_tensors(3)
    src = tmp_path / "a.safetensors"
    mid = tmp_path / "b.safetensors"
    src.write_bytes(python_serialize(tensors, METADATA))
    assert subprocess.run([helper, "copy", str(src), str(mid)]).returncode == 0
    loaded = dict(deserialize(mid.read_bytes()))
    ref_names = {hdr: ref for ref, hdr, _ in DTYPES}
    again = {n: (ref_names[v["dtype"]], v["dtype"], list(v["shape"]), bytes(v["data"])) for n, v in loaded.items()}
    final = tmp_path / "c.safetensors"
    final.write_bytes(python_serialize(again, METADATA))
    a, b = dump(helper, final), dump(helper, src)
    assert a["metadata"] == b["metadata"] == METADATA
    key = lambda t: t["name"]  # noqa: E731  (layouts differ: the reference sorts by name)
    assert sorted(a["tensors"], key=key) == sorted(b["tensors"], key=key)
    assert len(a["tensors"]) == len(tensors)


def test_c_reader_refuses_truncated_python_file_with_one_line_naming_it(helper, tmp_path):
    tensors = random_tensors(4)
    data = python_serialize(tensors, METADATA)
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:-3])
    r = subprocess.run([helper, "dump", str(path)], capture_output=True, text=True)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], r.stderr
