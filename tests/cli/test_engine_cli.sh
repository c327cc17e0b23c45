#!/usr/bin/env bash
# Bad input to the inference commands: each gives a non-zero exit and one line
# "driftwood: error: ..." naming the file or option and the problem, never a crash.
source "$(dirname "$0")/lib.sh"
dw=$DW_BIN
model=${DW_TEST_MODEL:-models/driftwood-tiny}

bad_model() { # NAME: a copy of the model to damage
    local d="$DW_TMP/$1"
    mkdir -p "$d" && cp "$model"/*.json "$model"/*.safetensors "$d"/
    echo "$d"
}

expect_fail_one_line "generate_requires_a_prompt" "--prompt" "$dw" generate --model "$model"
expect_fail_one_line "generate_rejects_bad_temperature" "--temp" "$dw" generate --model "$model" --prompt hi --temp warm
expect_fail_one_line "generate_rejects_missing_model_dir" "nope" "$dw" generate --model "$DW_TMP/nope" --prompt hi
long=$(printf 'the sea %.0s' $(seq 1 200))
expect_fail_one_line "generate_rejects_prompt_longer_than_context" "context" "$dw" generate --model "$model" --ctx 32 --prompt "$long"
expect_fail_one_line "mkmodel_rejects_unknown_shape" "shape" "$dw" mkmodel --shape huge --dtype bf16 --out "$DW_TMP/m"

d=$(bad_model truncated); head -c 100000 "$model/model.safetensors" > "$d/model.safetensors"
expect_fail_one_line "truncated_safetensors_is_named" "model.safetensors" "$dw" generate --model "$d" --prompt hi

d=$(bad_model lying); python3 - "$d/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); name = next(k for k in h if k != "__metadata__")
h[name]["data_offsets"][1] += 4  # the header claims 4 more bytes than the tensor has
s = json.dumps(h).encode(); s += b" " * ((8 - len(s) % 8) % 8)
open(p, "wb").write(struct.pack("<Q", len(s)) + s + b[8 + n:])
PY
expect_fail_one_line "header_that_lies_about_sizes_is_refused" "model.safetensors" "$dw" generate --model "$d" --prompt hi

d=$(bad_model wrongdtype); python3 - "$d/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); name = next(k for k in h if k != "__metadata__" and k.endswith("q_proj.weight"))
h[name]["dtype"] = "I16"  # same size as bf16, but not a weight dtype
s = json.dumps(h).encode(); s += b" " * ((8 - len(s) % 8) % 8)
open(p, "wb").write(struct.pack("<Q", len(s)) + s + b[8 + n:])
PY
expect_fail_one_line "wrong_weight_dtype_is_refused" "q_proj" "$dw" generate --model "$d" --prompt hi

d=$(bad_model missing); python3 - "$d/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); name = next(k for k in h if k.endswith("layers.0.mlp.up_proj.weight"))
h[name.replace("up_proj", "upp_proj")] = h.pop(name)  # the tensor is there under another name
s = json.dumps(h).encode(); s += b" " * ((8 - len(s) % 8) % 8)
open(p, "wb").write(struct.pack("<Q", len(s)) + s + b[8 + n:])
PY
expect_fail_one_line "missing_tensor_is_named" "up_proj" "$dw" generate --model "$d" --prompt hi

d=$(bad_model arch); sed -i 's/LlamaForCausalLM/GPTNeoXForCausalLM/' "$d/config.json"
expect_fail_one_line "unknown_architecture_is_refused" "GPTNeoXForCausalLM" "$dw" generate --model "$d" --prompt hi

d=$(bad_model tok); python3 - "$d/tokenizer.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1])); t["model"]["type"] = "WordLevel"; json.dump(t, open(sys.argv[1], "w"))
PY
expect_fail_one_line "tokenizer_of_unknown_type_is_refused" "tokenizer.json" "$dw" generate --model "$d" --prompt hi

# --timings: one stderr line splitting the time to the first token (its parts add up to it;
# not a bad-input case, but this file holds the generate command's checks)
"$dw" generate --model "$model" --prompt hi -n 1 --timings >/dev/null 2>"$DW_TMP/timings.txt"
if python3 - "$DW_TMP/timings.txt" <<'PY'; then pass generate_timings_split_the_first_token; else fail generate_timings_split_the_first_token "$(tail -1 "$DW_TMP/timings.txt")"; fi
import re, sys
m = re.search(r"first token ([\d.]+) ms after the command started: backend ([\d.]+), "
              r"model load \(config, weights, tokenizer\) ([\d.]+), session and prompt ([\d.]+), prefill and sampling ([\d.]+) ms", open(sys.argv[1]).read())
sys.exit(0 if m and abs(sum(map(float, m.groups()[1:])) - float(m.group(1))) < 0.6 else 1)
PY

# bench compare: both models required, a missing one named; on the model and its 4-bit copy it
# reports both speeds and a ratio that agrees with them
expect_fail_one_line "bench_compare_requires_two_models" "--model-b" "$dw" bench compare --model "$model"
expect_fail_one_line "bench_compare_names_a_missing_model" "nope" "$dw" bench compare --model "$model" --model-b "$DW_TMP/nope"
"$dw" quantize --model "$model" --bits 4 --out "$DW_TMP/q4" >/dev/null 2>&1
"$dw" bench compare --model "$model" --model-b "$DW_TMP/q4" --prompt-tokens 8 --gen-tokens 8 --json >"$DW_TMP/compare.json" 2>&1
if python3 - "$DW_TMP/compare.json" <<'PY'; then pass bench_compare_reports_both_speeds_and_their_ratio; else fail bench_compare_reports_both_speeds_and_their_ratio "$(tail -1 "$DW_TMP/compare.json")"; fi
import json, sys
r = json.load(open(sys.argv[1]))
ok = r["decode_tok_s"] > 0 and r["decode_tok_s_b"] > 0 and r["pair_ratio_median"] > 0
sys.exit(0 if ok and abs(r["speed_ratio_b_over_a"] - r["decode_tok_s_b"] / r["decode_tok_s"]) < 1e-3 * r["speed_ratio_b_over_a"] + 1e-4 else 1)
PY

# bench batch --tokens-per-call: several tokens a decode call keep the sessions in the steps
# together (4 sessions: about 4 decode rows a step); refused where the guests pick the tokens
expect_fail_one_line "bench_batch_tokens_per_call_is_engine_only" "--tokens-per-call" "$dw" bench batch --model "$model" --tokens-per-call 8
"$dw" bench batch --model "$model" --actors 4 --prompt-tokens 8 --gen-tokens 32 --tokens-per-call 8 --mode engine --reps 1 --json >"$DW_TMP/batch.json" 2>&1
if python3 - "$DW_TMP/batch.json" <<'PY'; then pass bench_batch_tokens_per_call_fills_the_steps; else fail bench_batch_tokens_per_call_fills_the_steps "$(tail -1 "$DW_TMP/batch.json")"; fi
import json, sys
d = json.load(open(sys.argv[1]))
r = d["results"][0]
sys.exit(0 if d["tokens_per_call"] == 8 and r["actors"] == 4 and r["decode_tok_s"] > 0 and r["tokens_per_step"] > 3.0 else 1)
PY

printf 'caf\xe9 \xff\n' > "$DW_TMP/bad-utf8.txt"
expect_fail_one_line "tokenize_rejects_invalid_utf8" "UTF-8" "$dw" tokenize --model "$model" < "$DW_TMP/bad-utf8.txt"
finish
