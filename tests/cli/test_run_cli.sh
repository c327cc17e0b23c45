#!/usr/bin/env bash
# CLI behaviour of `driftwood run` and the benchmarks: exit codes and one-line errors.
# Each check prints "ok NAME" or "FAIL NAME"; the summary line comes from tools/run-tests.sh.
source "$(dirname "$0")/lib.sh"

dw=$DW_BIN
probe=$DW_BUILD/guests/probe.wasm
gemm=$DW_BUILD/guests/gemm.wasm

expect_ok "run_gemm_actor_verifies_product" "0 errors" "$dw" run "$gemm"
expect_ok "run_gemm_actor_takes_size_argument" "gemm 64x64: 0 errors" "$dw" run "$gemm" -- 64
expect_ok "run_invoke_prints_each_result" "^42$" "$dw" run "$probe" --invoke add 40 2

printf 'this is not wasm' > "$DW_TMP/garbage.wasm"
expect_fail_one_line "run_rejects_non_wasm_file" "not a WebAssembly module" "$dw" run "$DW_TMP/garbage.wasm"
head -c 40 "$gemm" > "$DW_TMP/truncated.wasm"
expect_fail_one_line "run_rejects_truncated_module" "truncated.wasm: invalid WebAssembly module" "$dw" run "$DW_TMP/truncated.wasm"
: > "$DW_TMP/empty.wasm"
expect_fail_one_line "run_rejects_empty_file" "not a WebAssembly module" "$dw" run "$DW_TMP/empty.wasm"
expect_fail_one_line "run_rejects_missing_file" "cannot open" "$dw" run "$DW_TMP/nope.wasm"
expect_fail_one_line "run_names_the_trap" "trap: integer divide by zero" "$dw" run "$probe" --invoke trap_divide_by_zero 1
expect_fail_one_line "run_timeout_stops_runaway_actor" "interrupt" "$dw" run "$probe" --timeout 0.1 --invoke loop_forever
expect_fail_one_line "run_rejects_bad_argument" "not a valid i32" "$dw" run "$probe" --invoke add 1 x
expect_fail_one_line "run_rejects_unknown_option" "unknown or incomplete option" "$dw" run "$probe" --bogus
expect_fail_one_line "run_rejects_unknown_backend" "unknown backend" "$dw" run "$gemm" --backend tpu
expect_fail_one_line "run_rejects_bad_timeout" "--timeout expects a number" "$dw" run "$gemm" --timeout soon
expect_fail_one_line "unknown_command_is_an_error" "unknown command" "$dw" frobnicate

# Models by name: --model DIR is "default", --model NAME=DIR another name; guests open names only.
llm=$DW_BUILD/guests/llm_probe.wasm
expect_ok "run_registers_the_default_model_for_guests" "^8192$" "$dw" run "$llm" --model models/driftwood-tiny --invoke vocab
expect_ok "run_guest_cannot_open_a_name_not_registered" "^-3$" "$dw" run "$llm" --model other=models/driftwood-tiny --invoke vocab
expect_fail_one_line "run_rejects_empty_model_name" "the name before '='" "$dw" run "$llm" --model =models/driftwood-tiny --invoke vocab

# The zero-copy table on the CPU: identity true, registering costs < 0.1 MiB, copying ~16 MiB.
out=$("$dw" bench zerocopy --backend cpu --json --reps 100)
check "bench_zerocopy_cpu_identity_and_rss" python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
assert r["pointer_identity"] is True, r
assert r["rss_delta_bytes"] < 0.1 * 2**20, r
assert 15 * 2**20 <= r["copy_rss_delta_bytes"] <= 17.5 * 2**20, r
assert r["errors"] == 0, r
assert r["gemm_ms"] > 0 and r["copy_gemm_ms"] > 0, r
PY
finish
