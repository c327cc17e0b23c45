#!/usr/bin/env bash
# Runs fuzz targets (mk/fuzz.mk builds them into BUILD/fuzz/) for SECONDS each, one after the
# other on one core, and prints per target the executions, the corpus size and any crash, then
# one closing line "fuzz: N passed, N failed" (a target fails when it finds a crash, a leak, a
# timeout or an out-of-memory, or does not start). Each run reads fuzz/corpus/NAME (the committed
# seeds) and BUILD/fuzz/corpus/NAME (what earlier runs found) and adds new inputs to the latter;
# reproducers go to BUILD/fuzz/crashes/ (fuzz/README.md says what to do with them).
# Usage: tools/fuzz.sh BUILD SECONDS [fuzz_NAME...]   (default: every target built)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: tools/fuzz.sh BUILD SECONDS [fuzz_NAME...]}
seconds=${2:?usage: tools/fuzz.sh BUILD SECONDS [fuzz_NAME...]}
shift 2
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in "$build"/fuzz/fuzz_*; do [ -x "$f" ] && targets+=("$(basename "$f")"); done
fi
# One input may take this long (the actor targets run a model); more is a hang.
per_input_timeout=${DW_FUZZ_TIMEOUT:-30}
# Leaks are reported at exit only when an input leaked (libFuzzer's default); RSS above this is
# an out-of-memory finding.
rss_limit_mb=${DW_FUZZ_RSS_MB:-2048}
passed=0
failed=0
mkdir -p "$build/fuzz/crashes" "$build/fuzz/logs"
for t in "${targets[@]}"; do
    name=${t#fuzz_}
    bin=$build/fuzz/$t
    log=$build/fuzz/logs/$t.log
    work=$build/fuzz/corpus/$name
    mkdir -p "$work" "fuzz/corpus/$name"
    before=$(ls "$build/fuzz/crashes" | wc -l)
    start=$(date +%s)
    "$bin" -max_total_time="$seconds" -timeout="$per_input_timeout" -rss_limit_mb="$rss_limit_mb" \
        -print_final_stats=1 -artifact_prefix="$build/fuzz/crashes/$t-" \
        "$work" "fuzz/corpus/$name" >"$log" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
    corpus=$(ls "$work" | wc -l)
    new_crashes=$(($(ls "$build/fuzz/crashes" | wc -l) - before))
    if [ "$rc" -eq 0 ] && [ "$new_crashes" -eq 0 ]; then
        echo "ok   $t: ${execs:-0} executions in ${took} s, corpus $corpus inputs, 0 crashes"
        passed=$((passed + 1))
    else
        echo "FAIL $t: exit $rc after ${execs:-?} executions in ${took} s, $new_crashes crash file(s); log $log"
        grep -E '^==[0-9]+==ERROR|^SUMMARY|runtime error|Test unit written|ERROR: libFuzzer' "$log" | head -6 | sed 's/^/       /'
        failed=$((failed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
