"""Makes tests/data/tiny-goldens/chat_transcript.json: the reference for the chat actor's scripted
3-turn conversation at temperature 0, computed with HF transformers (float32 arithmetic from the
model's bf16 weights, on the CPU) following the token protocol of examples/chat/actor.c:

    <|begin_of_text|> [system message]                          (first turn only)
    <|eot_id|>                                                  (closes the previous reply)
    <|start_header_id|>user<|end_header_id|>\\n\\n{text}<|eot_id|>
    <|start_header_id|>assistant<|end_header_id|>\\n\\n          then greedy tokens until a stop id

Each piece is tokenized on its own (add_special_tokens=False), as the actor does; a reply's own
token ids (not its re-tokenized text) stay in the context. Run where torch and transformers are
installed:  python3 tests/py/gen_chat_transcript.py
"""
import json
from pathlib import Path

import tokenizers
import torch
import transformers

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "driftwood-tiny"
OUT = ROOT / "tests" / "data" / "tiny-goldens" / "chat_transcript.json"
SYSTEM = "You are a helpful assistant."
TURNS = ["What is a cat?", "Recite Genesis 1:1.", "What is a hacker?"]
MAX_TOKENS = 48


def main():
    tok = tokenizers.Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(MODEL), torch_dtype=torch.float32).eval()
    special = {name: tok.token_to_id(name) for name in
               ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]}
    gen_cfg = json.loads((MODEL / "generation_config.json").read_text())
    cfg = json.loads((MODEL / "config.json").read_text())
    stops = set()
    for source in (cfg.get("eos_token_id"), gen_cfg.get("eos_token_id")):
        stops.update(source if isinstance(source, list) else [source] if source is not None else [])
    stops.update([special["<|eot_id|>"], tok.token_to_id("<|end_of_text|>")])

    def text(s):
        return tok.encode(s, add_special_tokens=False).ids

    def message(role, content, close=True):
        ids = [special["<|start_header_id|>"], *text(role), special["<|end_header_id|>"], *text("\n\n"),
               *text(content.strip())]
        return ids + ([special["<|eot_id|>"]] if close else [])

    ids = [special["<|begin_of_text|>"], *message("system", SYSTEM)]
    replies, reply_ids = [], []
    for turn, user in enumerate(TURNS):
        if turn:
            ids.append(special["<|eot_id|>"])
        ids += message("user", user) + message("assistant", "", close=False)
        new = []
        with torch.no_grad():
            for _ in range(MAX_TOKENS):  # full recompute each step: no cache in the reference
                nxt = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
                if nxt in stops:
                    break
                new.append(nxt)
        ids += new
        reply_ids.append(new)
        replies.append(tok.decode(new, skip_special_tokens=True))
    OUT.write_text(json.dumps({
        "model": "models/driftwood-tiny", "system": SYSTEM, "turns": TURNS, "max_tokens": MAX_TOKENS,
        "stop_ids": sorted(stops), "compute": "HF transformers, float32 from bf16 weights, CPU, greedy",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "reply_ids": reply_ids, "replies": replies, "context_ids": ids}, indent=1) + "\n")
    for r in replies:
        print(repr(r))


if __name__ == "__main__":
    main()
