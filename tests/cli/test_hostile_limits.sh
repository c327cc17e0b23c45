#!/usr/bin/env bash
# Per-actor limits against a hostile guest (tests/guests/hostile.c): the time limit holds across
# host calls (dw.gemm, dw.prefill, dw.decode_greedy, dw.decode_sample), dw.tokenize, dw.detokenize and dw.sample bound what one call
# may cost the host, and --timeout takes only a finite positive number in range.
# Each check prints "ok NAME" or "FAIL NAME"; the summary line comes from tools/run-tests.sh.
source "$(dirname "$0")/lib.sh"

dw=$DW_BIN
hostile=$DW_BUILD/guests/hostile.wasm
tiny=models/driftwood-tiny

# bounded NAME MAX_SECONDS MAX_MIB CMD...: CMD finishes within MAX_SECONDS of wall time and
# MAX_MIB of peak resident memory (whatever its exit status); its stdout and stderr are kept in
# $DW_TMP/out and $DW_TMP/stderr for the checks after it.
bounded() {
    local name=$1 seconds=$2 mib=$3; shift 3
    local verdict
    verdict=$(python3 - "$seconds" "$mib" "$DW_TMP" "$@" <<'PY'
import resource, subprocess, sys, time
seconds, mib, tmp, cmd = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
t0 = time.monotonic()
with open(tmp + "/out", "wb") as out, open(tmp + "/stderr", "wb") as err:
    subprocess.run(cmd, stdout=out, stderr=err)
wall = time.monotonic() - t0
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print("ok" if wall <= seconds and peak <= mib else f"took {wall:.2f} s and {peak:.0f} MiB (at most {seconds} s, {mib} MiB)")
PY
)
    if [ "$verdict" = ok ]; then pass "$name"; else fail "$name" "$verdict"; fi
}

# An 8192×4096×4096 dw.gemm takes seconds here; under --timeout 0.3 it traps soon after the limit.
bounded "gemm_under_a_timeout_stops_soon_after_it" 2 1000 \
    "$dw" run "$hostile" --timeout 0.3 --invoke gemm_zeros 8192 4096 4096
if grep -q "dw.gemm: timeout" "$DW_TMP/stderr"; then pass "gemm_past_the_timeout_traps_naming_it"
else fail "gemm_past_the_timeout_traps_naming_it" "stderr: $(head -c 300 "$DW_TMP/stderr")"; fi
expect_ok "gemm_within_the_timeout_still_runs" "^0$" "$dw" run "$hostile" --timeout 30 --invoke gemm_zeros 256 256 256

# dw.prefill of 2048 tokens checks the limit between its batches.
expect_fail_one_line "prefill_past_the_timeout_traps_naming_it" "dw.prefill: timeout" \
    "$dw" run "$hostile" --model "$tiny" --timeout 0.15 --invoke prefill_tokens 2048
expect_ok "prefill_within_the_timeout_still_runs" "^0$" \
    "$dw" run "$hostile" --model "$tiny" --timeout 60 --invoke prefill_tokens 300

# dw.decode_greedy of 2000 tokens (seconds here) checks the limit between its pieces of 16.
expect_fail_one_line "decode_greedy_past_the_timeout_traps_naming_it" "dw.decode_greedy: timeout" \
    "$dw" run "$hostile" --model "$tiny" --timeout 0.15 --invoke greedy_tokens 2000
expect_ok "decode_greedy_within_the_timeout_still_runs" "^0$" \
    "$dw" run "$hostile" --model "$tiny" --timeout 60 --invoke greedy_tokens 40

# dw.decode_sample the same way.
expect_fail_one_line "decode_sample_past_the_timeout_traps_naming_it" "dw.decode_sample: timeout" \
    "$dw" run "$hostile" --model "$tiny" --timeout 0.15 --invoke sampled_tokens 2000
expect_ok "decode_sample_within_the_timeout_still_runs" "^0$" \
    "$dw" run "$hostile" --model "$tiny" --timeout 60 --invoke sampled_tokens 40

# One dw.tokenize takes at most 1 MiB of text; one dw.detokenize at most 65536 ids (DW_E_LIMIT).
expect_ok "tokenize_refuses_more_text_than_a_call_takes" "^-4$" \
    "$dw" run "$hostile" --model "$tiny" --invoke tokenize_bytes 2000000
expect_ok "tokenize_takes_a_megabyte" "^349526$" "$dw" run "$hostile" --model "$tiny" --invoke tokenize_bytes 1048576
# 16M ids of a 16-byte token: 64 MiB of guest memory, which the old decode turned into ~0.5 GiB on the host.
bounded "detokenize_of_many_ids_costs_the_host_little" 20 300 \
    "$dw" run "$hostile" --model "$tiny" --invoke detokenize_ids 16000000 7833 0
# 100,000 special ids left out (DW_DETOK_SKIP_SPECIAL) make no text, but are more ids than a call takes.
expect_ok "detokenize_refuses_more_ids_than_a_call_takes" "^-4$" \
    "$dw" run "$hostile" --model "$tiny" --invoke detokenize_ids 100000 8176 1
expect_ok "detokenize_takes_65536_ids" "^0$" "$dw" run "$hostile" --model "$tiny" --invoke detokenize_ids 65536 8176 1

# dw.sample's host scratch is vocabulary-sized: at most 2^21 entries a call.
expect_ok "sample_refuses_a_vocabulary_larger_than_a_call_takes" "^-4$" "$dw" run "$hostile" --invoke sample_zeros 3000000
expect_ok "sample_takes_a_large_vocabulary" "^0$" "$dw" run "$hostile" --invoke sample_zeros 262144

# --timeout: a finite positive number of seconds in range, or a one-line reason.
expect_fail_one_line "timeout_inf_is_refused" "too large" "$dw" run "$hostile" --timeout inf --invoke byte_at 0
expect_fail_one_line "timeout_1e300_is_refused" "too large" "$dw" run "$hostile" --timeout 1e300 --invoke byte_at 0
expect_fail_one_line "timeout_1e-320_is_too_small" "too small" "$dw" run "$hostile" --timeout 1e-320 --invoke byte_at 0
expect_fail_one_line "timeout_negative_is_refused" "must be positive" "$dw" run "$hostile" --timeout -1 --invoke byte_at 0

finish
