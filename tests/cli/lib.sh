# Helpers for the CLI tests (sourced). Each check prints "ok NAME" or "FAIL NAME" and counts.
set -u
DW_BUILD=${DW_BUILD:-build}
DW_BIN=${DW_BIN:-$DW_BUILD/bin/driftwood}
DW_TMP=$(mktemp -d)
trap 'rm -rf "$DW_TMP"' EXIT
passed=0
failed=0

pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

# check NAME CMD...: passes when CMD exits 0.
check() {
    local name=$1; shift
    local out
    if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$(echo "$out" | tail -5)"; fi
}

# expect_ok NAME REGEX CMD...: exit 0 and stdout matches REGEX.
expect_ok() {
    local name=$1 re=$2; shift 2
    local out rc
    out=$("$@" 2>"$DW_TMP/stderr"); rc=$?
    if [ $rc -ne 0 ]; then fail "$name" "exit $rc: $(head -3 "$DW_TMP/stderr")"
    elif ! grep -Eq "$re" <<<"$out"; then fail "$name" "output lacks /$re/: $(head -3 <<<"$out")"
    else pass "$name"; fi
}

# expect_fail_one_line NAME TEXT CMD...: non-zero exit (not a signal), stderr is exactly one
# line, "driftwood: error: ..." containing TEXT.
expect_fail_one_line() {
    local name=$1 text=$2; shift 2
    "$@" >/dev/null 2>"$DW_TMP/stderr"; local rc=$?
    local lines; lines=$(wc -l <"$DW_TMP/stderr")
    if [ $rc -eq 0 ]; then fail "$name" "exited 0"
    elif [ $rc -ge 128 ]; then fail "$name" "killed by signal $((rc - 128))"
    elif [ "$lines" -ne 1 ]; then fail "$name" "stderr has $lines lines: $(head -3 "$DW_TMP/stderr")"
    elif ! grep -q "^driftwood: error: " "$DW_TMP/stderr"; then fail "$name" "not a driftwood error: $(cat "$DW_TMP/stderr")"
    elif ! grep -qF -- "$text" "$DW_TMP/stderr"; then fail "$name" "message lacks '$text': $(cat "$DW_TMP/stderr")"
    else pass "$name"; fi
}

finish() {
    echo "$(basename "$0" .sh): $passed passed, $failed failed"
    [ $failed -eq 0 ]
}

# expect_fail_last_line NAME TEXT CMD...: non-zero exit (not a signal); the last stderr line is a
# "driftwood: error: ..." containing TEXT (progress lines may come before it).
expect_fail_last_line() {
    local name=$1 text=$2; shift 2
    "$@" >/dev/null 2>"$DW_TMP/stderr"; local rc=$?
    local last; last=$(tail -1 "$DW_TMP/stderr")
    if [ $rc -eq 0 ]; then fail "$name" "exited 0"
    elif [ $rc -ge 128 ]; then fail "$name" "killed by signal $((rc - 128))"
    elif [[ "$last" != "driftwood: error: "* ]]; then fail "$name" "last line is not a driftwood error: $last"
    elif [[ "$last" != *"$text"* ]]; then fail "$name" "message lacks '$text': $last"
    else pass "$name"; fi
}
