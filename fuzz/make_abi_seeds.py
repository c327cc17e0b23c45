"""Writes the seed programs of the `dw` ABI fuzz target (fuzz/corpus/fuzz_abi/): host-call
programs in the format fuzz/guests/fuzz_abi_driver.c reads, each a plausible use of the API
(open the model, make a session, tokenize, prefill, decode, sample, detokenize...) that the
fuzzer then mutates. Usage: python3 fuzz/make_abi_seeds.py OUT_DIR"""
import os
import struct
import sys

CALLS = ["nop", "now", "last_error", "emit", "message_read", "gemm", "model_open", "model_info",
         "session_create", "session_free", "session_info", "session_truncate", "tokenize",
         "detokenize", "prefill", "decode", "sample", "grow", "decode_greedy", "decode_sample"]
DATA = 1024         # where the seed's data (names, text, params) starts in the message
LOGITS = 64 * 1024  # an area past the message for logits and other outputs


class Program:
    def __init__(self):
        self.code = bytearray()
        self.data = bytearray()
        self.calls = 0

    def put(self, blob, align=8):
        """Places blob in the data area; returns its offset in the message."""
        while (DATA + len(self.data)) % align:
            self.data.append(0)
        at = DATA + len(self.data)
        self.data += blob
        return at

    def call(self, name, *args):
        """Appends a call; returns its index (for ref)."""
        self.code.append(CALLS.index(name))
        for a in args:
            self.code += struct.pack("<I", a & 0xFFFFFFFF)
        self.calls += 1
        return self.calls - 1

    def ref(self, index):
        """An argument naming the result of call number `index` (counted back from the last)."""
        return 0x7FFFFF00 + (self.calls - 1 - index)

    def bytes(self):
        assert len(self.code) <= DATA
        return bytes(self.code) + bytes(DATA - len(self.code)) + bytes(self.data)


def generate(p, text=b"Once upon a time", temperature=0.0):
    name = p.put(b"tiny")
    txt = p.put(text)
    params = p.put(struct.pack("<ffffiiQ", temperature, 0.9, 0.0, 1.1, 40, 16, 7))
    state = p.put(bytes(72))
    ids = LOGITS - 4096
    m = p.call("model_open", name, 4)
    p.call("model_info", p.ref(m), LOGITS)
    s = p.call("session_create", p.ref(m), 32)
    n = p.call("tokenize", p.ref(m), txt, len(text), 2, ids, 64)
    p.call("prefill", p.ref(s), ids, p.ref(n), LOGITS, 8192)
    t = p.call("sample", LOGITS, 8192, params, state, ids, p.ref(n))
    p.call("decode", p.ref(s), p.ref(t), LOGITS, 8192)
    p.call("session_info", p.ref(s), LOGITS - 64)
    p.call("detokenize", p.ref(m), ids, p.ref(n), 1, LOGITS - 2048, 256)
    p.call("session_truncate", p.ref(s), 2)
    p.call("session_free", p.ref(s))
    p.call("last_error", LOGITS - 512, 256)
    return p


def main(out):
    os.makedirs(out, exist_ok=True)
    seeds = {}
    seeds["generate"] = generate(Program())
    seeds["generate_sampled"] = generate(Program(), "Wie geht's? 東京 🙂".encode(), 0.7)
    p = Program()
    a = p.put(struct.pack("<16f", *range(16)))
    p.call("gemm", 4, 4, 4, a, a, LOGITS)
    p.call("gemm", 2, 8, 2, a, a, LOGITS)
    p.call("emit", a, 64)
    p.call("grow", 1)
    p.call("now")
    p.call("nop")
    seeds["gemm_emit_grow"] = p
    p = Program()
    name = p.put(b"tiny")
    m = p.call("model_open", name, 4)
    s1 = p.call("session_create", p.ref(m), 16)
    s2 = p.call("session_create", p.ref(m), 0)
    p.call("session_free", p.ref(s1))
    p.call("session_info", p.ref(s1), LOGITS)  # a freed handle
    p.call("decode", p.ref(s2), 8191, LOGITS, 8192)
    p.call("decode", p.ref(s2), 8192, LOGITS, 8192)  # out of the vocabulary
    p.call("decode", p.ref(s2), 1, LOGITS, 100)       # logits buffer too small
    p.call("message_read", LOGITS, 4096)
    p.call("last_error", LOGITS, 256)
    seeds["handles_and_limits"] = p
    p = Program()
    name = p.put(b"tiny")
    txt = p.put(b"The old ship")
    params = p.put(struct.pack("<ffii", 0.8, 0.9, 20, 0))
    u = p.put(struct.pack("<4d", 0.1, 0.5, 0.9, 0.999))
    ids = LOGITS - 4096
    m = p.call("model_open", name, 4)
    s = p.call("session_create", p.ref(m), 32)
    n = p.call("tokenize", p.ref(m), txt, 12, 2, ids, 64)
    p.call("prefill", p.ref(s), ids, p.ref(n), LOGITS, 8192)
    p.call("decode_greedy", p.ref(s), 5, 4, LOGITS - 128)
    p.call("decode_sample", p.ref(s), 6, 4, params, u, LOGITS - 96)
    p.call("session_info", p.ref(s), LOGITS - 64)
    p.call("last_error", LOGITS - 512, 256)
    seeds["device_decoding"] = p
    for label, prog in seeds.items():
        with open(os.path.join(out, label), "wb") as f:
            f.write(prog.bytes())


if __name__ == "__main__":
    main(sys.argv[1])
