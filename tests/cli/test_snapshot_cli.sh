#!/usr/bin/env bash
# Snapshots across processes: a generation saved with --save-kv and continued in a new process
# with --resume-kv gives the same tokens as one uninterrupted run (20 random (prompt, k) cases,
# greedy, and 20 with seeded sampling); a chat actor saved between turns and resumed in a new
# process goes on with the same replies; damaged files give a one-line error.
source "$(dirname "$0")/lib.sh"
dw=$DW_BIN
model=${DW_TEST_MODEL:-models/driftwood-tiny}
backend=${DW_TEST_BACKEND:-cpu}   # tools/gpu-bench-actors.sh runs this file with cuda too
words=(the sea light house a storm old ship night morning sailor wind rope harbor lamp cold water stone bird song)
RANDOM=12345

continuation_cases() { # MODE (greedy|sampled)
    local mode=$1 bad=0 c
    for c in $(seq 1 20); do
        local prompt="" k n=24
        for _ in $(seq 1 $((1 + RANDOM % 8))); do prompt="$prompt ${words[$((RANDOM % ${#words[@]}))]}"; done
        k=$((RANDOM % (n + 1)))
        local opts=(--model "$model" --backend "$backend" --ids --ignore-eos)
        [ "$mode" = sampled ] && opts+=(--temp 0.9 --top-p 0.95 --seed "$c")
        local full first second
        full=$("$dw" generate "${opts[@]}" --prompt "$prompt" -n $n 2>/dev/null) || return 1
        first=$("$dw" generate "${opts[@]}" --prompt "$prompt" -n $k --save-kv "$DW_TMP/c.kv" 2>/dev/null) || return 1
        second=$("$dw" generate --model "$model" --backend "$backend" --ids --ignore-eos --resume-kv "$DW_TMP/c.kv" \
            -n $((n - k)) 2>/dev/null) || return 1
        if [ "$(echo $first $second)" != "$(echo $full)" ]; then
            echo "case $c ($mode, k=$k, prompt '$prompt'): '$full' vs '$first | $second'"
            bad=1
        fi
    done
    return $bad
}
check "kv_continuation_across_processes_greedy_20_cases_$backend" continuation_cases greedy
check "kv_continuation_across_processes_sampled_20_cases_$backend" continuation_cases sampled

chat_across_processes() {
    local chat=("$dw" chat --model "$model" --backend "$backend" --temp 0.8 --seed 5 -n 24 --system "You are a sailor.")
    local whole resumed
    whole=$("${chat[@]}" --prompt "Hello." --prompt "Where is the ship?" --prompt "And the storm?" 2>/dev/null) || return 1
    "${chat[@]}" --prompt "Hello." --prompt "/save $DW_TMP/chat.snap" >/dev/null 2>&1 || return 1
    resumed=$("${chat[@]}" --resume "$DW_TMP/chat.snap" --prompt "Where is the ship?" --prompt "And the storm?" 2>/dev/null) || return 1
    local tail_whole
    tail_whole=$(echo "$whole" | tail -n +2)
    [ "$tail_whole" = "$resumed" ] || { echo "whole: $tail_whole"; echo "resumed: $resumed"; return 1; }
}
check "chat_actor_resumed_in_new_process_continues_identically_$backend" chat_across_processes

# A KV file (with its saved logits) resumed on a model with another vocabulary: the cache is
# rebuilt from the history's text, and the saved logits, which belong to the first model, dropped.
resume_on_another_vocabulary() {
    "$dw" mkmodel --shape tiny --seed 4 --out "$DW_TMP/wide-vocab" >/dev/null 2>&1 || { echo "mkmodel failed"; return 1; }
    "$dw" generate --model "$model" --backend "$backend" --prompt "the old ship" -n 4 --save-kv "$DW_TMP/narrow.kv" \
        >/dev/null 2>&1 || { echo "save failed"; return 1; }
    "$dw" generate --model "$DW_TMP/wide-vocab" --backend "$backend" --resume-kv "$DW_TMP/narrow.kv" --prompt " and" -n 2 \
        >/dev/null 2>"$DW_TMP/resume.err" || { cat "$DW_TMP/resume.err"; return 1; }
    grep -q "another model: rebuilt" "$DW_TMP/resume.err" || { cat "$DW_TMP/resume.err"; return 1; }
}
check "kv_file_resumed_on_a_model_with_another_vocabulary_is_rebuilt_$backend" resume_on_another_vocabulary

"$dw" generate --model "$model" --prompt "the sea" -n 4 --save-kv "$DW_TMP/good.kv" >/dev/null 2>&1
head -c 300 "$DW_TMP/good.kv" > "$DW_TMP/truncated.kv"
expect_fail_one_line "resume_truncated_kv_file_is_refused" "truncated.kv" "$dw" generate --model "$model" --resume-kv "$DW_TMP/truncated.kv"
expect_fail_one_line "resume_truncated_kv_file_error_names_the_file_once" "snapshot $DW_TMP/truncated.kv: header length" \
    "$dw" generate --model "$model" --resume-kv "$DW_TMP/truncated.kv"
printf 'not a snapshot at all' > "$DW_TMP/junk.kv"
expect_fail_one_line "resume_junk_kv_file_is_refused" "junk.kv" "$dw" generate --model "$model" --resume-kv "$DW_TMP/junk.kv"
expect_fail_last_line "chat_resume_of_kv_file_is_refused" "a driftwood-kv file, not driftwood-actor" "$dw" chat --model "$model" --resume "$DW_TMP/good.kv" --prompt hi
expect_ok "snapshot_inspect_prints_tensor_table" "past_key_values.0.key +BF16" "$dw" snapshot inspect "$DW_TMP/good.kv"
finish
