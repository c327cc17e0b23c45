#!/usr/bin/env bash
# Hostile tokenizer.json files through the commands (issue 21): a pre-tokenizer regex that hits
# PCRE2's match limit is an error naming it in `tokenize` (no double free), `generate` (not "the
# prompt does not fit") and `chat` (not a reply to an empty turn); a chain of Replace steps
# fails fast naming the step instead of taking gigabytes; a Split on a String pattern loads; and
# "bos_token": null makes --bos an error naming the cause.
source "$(dirname "$0")/lib.sh"
dw=$DW_BIN
model=${DW_TEST_MODEL:-models/driftwood-tiny}

# hostile_model NAME PYTHON: a copy of the model whose tokenizer.json (t) and tokenizer_config.json
# (c) PYTHON edits.
hostile_model() {
    local d="$DW_TMP/$1"
    mkdir -p "$d" && cp "$model"/*.json "$d"/ && ln -s "$(realpath "$model"/model.safetensors)" "$d"/
    python3 - "$d" "$2" <<'PY'
import json, sys
d, edit = sys.argv[1], sys.argv[2]
t = json.load(open(d + "/tokenizer.json")); c = json.load(open(d + "/tokenizer_config.json"))
def pre_first(step):
    p = t["pre_tokenizer"]
    t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [step] + (p["pretokenizers"] if p and p["type"] == "Sequence" else [p] if p else [])}
exec(edit)
json.dump(t, open(d + "/tokenizer.json", "w")); json.dump(c, open(d + "/tokenizer_config.json", "w"))
PY
    echo "$d"
}

a_run=$(printf 'a%.0s' $(seq 40))b
d=$(hostile_model backtrack 'pre_first({"type": "Split", "pattern": {"Regex": "(a+)+$"}, "behavior": "Isolated", "invert": False})')
expect_fail_one_line "tokenize_regex_match_limit_is_named_not_a_double_free" "match limit" \
    "$dw" tokenize --model "$d" < <(printf 'hi\n%s\n' "$a_run")
out=$(printf 'hi\n%s\n' "$a_run" | "$dw" tokenize --model "$d" 2>/dev/null)
if [ "$(wc -l <<<"$out")" -eq 1 ] && [ -n "$out" ]; then pass "tokenize_prints_the_lines_before_the_failure"
else fail "tokenize_prints_the_lines_before_the_failure" "stdout: $out"; fi
expect_fail_one_line "generate_regex_match_limit_is_named_not_context" "match limit" \
    "$dw" generate --model "$d" --prompt "$a_run" -n 2
expect_fail_last_line "chat_regex_match_limit_is_named_not_dropped" "match limit" \
    "$dw" chat --model "$d" --prompt "$a_run" -n 2 --temp 0

# eight Replace steps "a" -> 1,000 x "a": 10^24 bytes from one "a" without a bound. The fixed
# tokenizer fails before allocating; the memory cap keeps an unbounded one from taking the
# machine (not under AddressSanitizer, which reserves terabytes of address space).
thousand='"'$(printf 'a%.0s' $(seq 1000))'"'
bomb='[{"type": "Replace", "pattern": {"String": "a"}, "content": '$thousand'}] * 8'
# AddressSanitizer reserves terabytes of shadow address space: no address-space cap under it
# (gcc links its runtime as libasan.so, clang into the binary).
is_asan() { ldd "$dw" 2>/dev/null | grep -q libasan || nm "$dw" 2>/dev/null | grep -q __asan_init; }
run_capped() { if is_asan; then "$@"; else (ulimit -v 2000000; "$@"); fi; }
d=$(hostile_model norm_bomb "t['normalizer'] = {'type': 'Sequence', 'normalizers': $bomb}")
expect_fail_one_line "normalizer_replace_chain_is_bounded_naming_the_step" "normalizer.normalizers[0] (Replace)" \
    run_capped "$dw" tokenize --model "$d" < <(echo aaaaaaaaaaaaaaaa)
d=$(hostile_model dec_bomb "t['decoder'] = {'type': 'Sequence', 'decoders': $bomb}")
expect_fail_one_line "decoder_replace_chain_is_refused_at_load_naming_the_step" "decoder.decoders[0] (Replace)" \
    run_capped "$dw" tokenize --model "$d" < <(echo hi)

# Gemma 3 style: a Split on a String pattern, here one with regex metacharacters
d=$(hostile_model string_split 'pre_first({"type": "Split", "pattern": {"String": "a+"}, "behavior": "Removed", "invert": False})')
plain=$("$dw" tokenize --model "$model" <<<"x y" 2>&1)
expect_ok "split_on_a_literal_string_removes_only_that_text" "^$plain\$" "$dw" tokenize --model "$d" < <(echo "xa+ y")

# Qwen3 style: bos_token null, while the vocabulary still has <|begin_of_text|>
d=$(hostile_model bos_null 'c["bos_token"] = None')
expect_fail_one_line "bos_token_null_makes_bos_an_error_naming_it" "bos_token to null" \
    "$dw" tokenize --model "$d" --bos < <(echo hi)
expect_ok "bos_token_null_still_tokenizes_without_bos" "^[0-9]" "$dw" tokenize --model "$d" < <(echo hi)

finish
