# Wasmtime's C API, built once by tools/wasmtime-build (Cargo) into a per-user cache keyed by
# its version, so that fresh clones and CI reuse it.
dw_wasmtime_version=48.0.8
dw_wasmtime_root="$DW_CACHE/wasmtime-$dw_wasmtime_version"
if [ ! -f "$dw_wasmtime_root/dist/lib/libwasmtime.so" ]; then
    command -v cargo >/dev/null || { echo "setup: cargo is needed to build Wasmtime (https://rustup.rs)"; exit 1; }
    echo "setup: building Wasmtime $dw_wasmtime_version's C API (first time only; about 8 minutes on 2 cores)..."
    dw_t0=$(date +%s)
    CARGO_TARGET_DIR="$dw_wasmtime_root/target" cargo build --release --locked \
        --manifest-path tools/wasmtime-build/Cargo.toml
    mkdir -p "$dw_wasmtime_root/dist/lib" "$dw_wasmtime_root/dist/include"
    cp "$dw_wasmtime_root/target/release/libwasmtime.so" "$dw_wasmtime_root/dist/lib/"
    dw_crate_dir=$(cargo metadata --format-version 1 --manifest-path tools/wasmtime-build/Cargo.toml \
        | python3 -c 'import json,sys; m=json.load(sys.stdin); print([p["manifest_path"] for p in m["packages"] if p["name"]=="wasmtime-c-api-impl"][0].rsplit("/",1)[0])')
    cp -r "$dw_crate_dir/include/." "$dw_wasmtime_root/dist/include/"
    dw_conf=$(ls -t "$dw_wasmtime_root"/target/release/build/wasmtime-c-api-impl-*/out/include/wasmtime/conf.h | head -1)
    cp "$dw_conf" "$dw_wasmtime_root/dist/include/wasmtime/conf.h"
    echo "setup: Wasmtime built in $(( $(date +%s) - dw_t0 )) s"
fi
