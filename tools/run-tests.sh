#!/usr/bin/env bash
# Runs every test suite (`make test` calls this after building): the include-layer guard
# (tools/check_layers.py against docs/DESIGN.md), the C unit tests, the CLI
# tests (tests/cli/test_*.sh) and the Python reference tests (tests/py, pytest), then prints
# one closing line "tests: N passed, N failed" over all suites.
set -uo pipefail
cd "$(dirname "$0")/.."
export DW_BUILD=${DW_BUILD:-build}
export PYTHONPATH="$PWD/.deps/python${PYTHONPATH:+:$PYTHONPATH}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
total_passed=0
total_failed=0

count() { # adds the "N passed, N failed" numbers of the last matching line of $log
    local line p f
    line=$(grep -E '[0-9]+ passed' "$log" | tail -1)
    p=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+' || echo 0)
    f=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+' || echo 0)
    total_passed=$((total_passed + ${p:-0}))
    total_failed=$((total_failed + ${f:-0}))
}

run_suite() { # NAME CMD...: a suite that exits non-zero without a count counts as one failure
    local name=$1; shift
    echo "== $name"
    "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    if grep -qE '[0-9]+ passed' "$log"; then count
    elif [ "$rc" -ne 0 ]; then total_failed=$((total_failed + 1))
    fi
    if [ "$rc" -ne 0 ] && ! grep -qE '[1-9][0-9]* failed' "$log"; then
        echo "$name: exited $rc"; total_failed=$((total_failed + 1))
    fi
}

run_suite "layers (docs/DESIGN.md)" python3 tools/check_layers.py
run_suite "unit tests" "$DW_BUILD/bin/dw-tests"
for t in tests/cli/test_*.sh; do run_suite "$t" bash "$t"; done
if compgen -G "tests/py/test_*.py" >/dev/null; then
    run_suite "python tests" python3 -m pytest -q -p no:cacheprovider tests/py
fi
echo "tests: $total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
