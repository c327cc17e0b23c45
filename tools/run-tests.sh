#!/usr/bin/env bash
# Runs every test suite (`make test` calls this after building): the include-layer guard
# (tools/check_layers.py against docs/DESIGN.md), the C unit tests, the CLI
# tests (tests/cli/test_*.sh), the Python reference tests (tests/py, pytest) and the server tests
# (tests/server, pytest against real `driftwood serve` processes); then, on the
# ASan + UBSan build (mk/sanitize.mk, $DW_SANITIZE_BUILD), the unit and CLI tests again and a
# short pass of every fuzz target (tools/fuzz.sh: DW_FUZZ_TEST_SECONDS each, default 5); then
# prints one closing line "tests: N passed, N failed" over all suites (fuzz targets count one each).
#
# Sanitizer suites. The whole unit suite and every CLI test but one run under the sanitizers:
# on the 2-core CI machine that is about 30 s of unit tests and 30 s of CLI tests, so no subset
# is needed to stay within the 10-minute test budget. Left out there, and why:
#   - tests/cli/test_install.sh: it links programs against the installed library with the
#     system compiler, which an ASan library cannot be linked into without the sanitizer
#     runtime; it tests packaging, which the normal build's run covers;
#   - tests/unit/test_engine_alloc.c (not built there, mk/sanitize.mk): it replaces malloc,
#     which AddressSanitizer must own;
#   - the Python suites: they compare numbers with Hugging Face references; their C side is the
#     CLI, which the CLI tests already run under the sanitizers;
#   - the server tests: they time connections (slow-loris, idle hibernation) with margins sized for
#     the normal build; `make test SANITIZE=1` runs them on the sanitizer build.
# `make test SANITIZE=1` runs every suite (Python included, test_install.sh left out for the
# reason above) on the sanitizer build alone.
set -uo pipefail
cd "$(dirname "$0")/.."
export DW_BUILD=${DW_BUILD:-build}
export DW_BUILD_DIR=${DW_BUILD_DIR:-$DW_BUILD}
sanitize_build=${DW_SANITIZE_BUILD:-}
fuzz_seconds=${DW_FUZZ_TEST_SECONDS:-5}
# Every UBSan report is fatal (-fno-sanitize-recover); print where it happened.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
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

# Whether a build is the sanitizer build (its objects call AddressSanitizer).
is_sanitized() { nm "$1/lib/libdriftwood.a" 2>/dev/null | grep __asan_report >/dev/null; }
skip_on_sanitizer() { [ "$(basename "$1")" = test_install.sh ]; }

run_suite "layers (docs/DESIGN.md)" python3 tools/check_layers.py
run_suite "unit tests" "$DW_BUILD/bin/dw-tests"
for t in tests/cli/test_*.sh; do
    if is_sanitized "$DW_BUILD" && skip_on_sanitizer "$t"; then echo "== $t: not on the sanitizer build (see the top of $0)"; continue; fi
    run_suite "$t" bash "$t"
done
if compgen -G "tests/py/test_*.py" >/dev/null; then
    run_suite "python tests" python3 -m pytest -q -p no:cacheprovider tests/py
fi
# The server against real clients (openai, httpx, sockets, headless chromium): about 30 s.
if compgen -G "tests/server/test_*.py" >/dev/null; then
    run_suite "server tests" python3 -m pytest -q -p no:cacheprovider tests/server
fi
if [ -n "$sanitize_build" ] && [ "$sanitize_build" != "$DW_BUILD" ]; then
    if ! is_sanitized "$sanitize_build"; then
        echo "== sanitizer build $sanitize_build: missing or not built with SANITIZE=1"; total_failed=$((total_failed + 1))
    else
        run_suite "unit tests (ASan + UBSan, $sanitize_build)" env DW_BUILD_DIR="$sanitize_build" "$sanitize_build/bin/dw-tests"
        for t in tests/cli/test_*.sh; do
            skip_on_sanitizer "$t" && continue
            run_suite "$t (ASan + UBSan)" env DW_BUILD="$sanitize_build" DW_BUILD_DIR="$sanitize_build" bash "$t"
        done
    fi
fi
fuzz_build=${sanitize_build:-$DW_BUILD}
if compgen -G "$fuzz_build/fuzz/fuzz_*" >/dev/null; then
    run_suite "fuzz targets ($fuzz_seconds s each)" tools/fuzz.sh "$fuzz_build" "$fuzz_seconds"
elif [ -n "$sanitize_build" ]; then
    echo "== fuzz targets: none built in $fuzz_build (make fuzz-build)"; total_failed=$((total_failed + 1))
fi
echo "tests: $total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
