#!/usr/bin/env bash
# Runs on the project's GPU machine, after tools/gpu-check.sh unpacked the carried packages into
# /tmp/dw-sysroot: builds the baseline tree that `BASE=COMMIT tools/gpu-prepare.sh` put in
# .carry/base into .carry/base/build-base (its library, `driftwood` and `dw-tests`), for the
# same-run A/B scripts (tools/gpu-ab.sh, tools/gpu-batch-ab.sh). Sourced by them: exports the
# build environment, dw_build_base (the log in $OUT/ab-build.log; non-zero if it fails),
# dw_ab_run, one measured run of either side, and dw_ab_alternate, the rounds of both sides.
export WASMTIME_DIR="$PWD/.carry/wasmtime"
dw_sys=/tmp/dw-sysroot
export CPATH="$dw_sys/usr/include${CPATH:+:$CPATH}"
export LIBRARY_PATH="$dw_sys/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LD_LIBRARY_PATH="$dw_sys/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
dw_build_base() {
    [ -d .carry/base ] || { echo "no .carry/base: run BASE=COMMIT tools/gpu-prepare.sh here"; return 2; }
    (
        cd .carry/base || exit 1
        mkdir -p build-base/guests && cp ../guests/*.wasm build-base/guests/ && touch build-base/guests/*.wasm
        make -j"$(nproc)" BUILD=build-base build-base/lib/libdriftwood.a build-base/bin/driftwood build-base/bin/dw-tests
    ) >"$OUT/ab-build.log" 2>&1 || { tail -20 "$OUT/ab-build.log"; echo "the baseline did not build"; return 1; }
}

# dw_ab_run SIDE MODEL NAME CMD...: one run (at most 200 s) of CMD; its whole output appended to
# $OUT/NAME.txt under a header, its last line (the JSON) to $OUT/NAME.jsonl as "SIDE MODEL JSON".
dw_ab_run() {
    local side=$1 model=$2 name=$3
    shift 3
    echo "== $side $model $(date -u +%T)" >>"$OUT/$name.txt"
    timeout 200 "$@" >"$OUT/$name-run.txt" 2>&1
    cat "$OUT/$name-run.txt" >>"$OUT/$name.txt"
    tail -1 "$OUT/$name-run.txt" | sed "s|^|$side $model |" >>"$OUT/$name.jsonl"
}

# dw_ab_alternate MODEL...: for each model, DW_AB_ROUNDS times (default 2), the base side and then
# the new one, each by the caller's function dw_ab_side SIDE MODEL (which calls dw_ab_run).
dw_ab_alternate() {
    local model r side
    for model in "$@"; do
        for r in $(seq "${DW_AB_ROUNDS:-2}"); do
            for side in base new; do dw_ab_side "$side" "$model"; done
        done
    done
}
