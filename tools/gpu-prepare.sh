#!/usr/bin/env bash
# Runs on a development machine: fills .carry/ (git-ignored) with what the project's H100 machine
# lacks, for tools/gpu-check.sh to use there: the Wasmtime library built here (that machine has
# no Rust), the compiled guest modules (no clang there), and the Debian packages of PCRE2,
# jansson, utf8proc, libcrypto and libmicrohttpd (no headers there, and no utf8proc or
# libmicrohttpd at all), httpx with its dependencies for tools/loadgen.py (PYTHONPATH=.carry/python),
# and the Llama 3 tokenizer (compressed; gpu-check.sh unpacks it). Pass `carry: [".carry"]` to the
# device tool (docs/CUDA.md).
set -euo pipefail
cd "$(dirname "$0")/.."

dw_version=$(sed -n 's/^WASMTIME_VERSION *:= *//p' Makefile)
dw_cache="${DW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/driftwood}"
dw_wasmtime="$dw_cache/wasmtime-$dw_version/dist"
[ -f "$dw_wasmtime/lib/libwasmtime.so" ] || { echo "gpu-prepare: no $dw_wasmtime/lib/libwasmtime.so: run 'make setup' first"; exit 1; }

rm -rf .carry
mkdir -p .carry/wasmtime/lib .carry/debs .carry/guests

cp -r "$dw_wasmtime/include" .carry/wasmtime/
strip --strip-unneeded -o .carry/wasmtime/lib/libwasmtime.so "$dw_wasmtime/lib/libwasmtime.so"

make -s guests
cp build/guests/*.wasm .carry/guests/

# Runtime and development packages; dpkg -x'd into a private prefix there (gpu-check.sh).
# libssl-dev: libcrypto's headers and libcrypto.so, a link to libcrypto.so.3, which libssl3 brings
# (the same soname as Ubuntu 24.04's libssl3t64 there).
# libmicrohttpd: the HTTP server (`driftwood serve`); it links GnuTLS (libgnutls.so.30), which
# Ubuntu 24.04 has (libgnutls30t64).
# libnats: the NATS C client the server links for its cluster mode (src/server/cluster*.c); it
# needs libprotobuf-c1.
dw_debs="libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libjansson-dev libjansson4 libutf8proc-dev libutf8proc2 libxxhash-dev
         libssl-dev libssl3 libmicrohttpd-dev libmicrohttpd12 libnats-dev libnats3.4 libprotobuf-c1"
if ! (cd .carry/debs && apt-get download $dw_debs >/dev/null 2>&1); then
    apt-get update -qq
    (cd .carry/debs && apt-get download $dw_debs >/dev/null)
fi

# tools/loadgen.py's client (pure Python), from the pinned test packages (tools/setup.d/30-python.sh).
mkdir -p .carry/python
for dw_pkg in httpx httpcore h11 anyio sniffio certifi idna typing_extensions.py; do
    [ -e ".deps/python/$dw_pkg" ] && cp -r ".deps/python/$dw_pkg" .carry/python/
done

# The Llama 3 tokenizer (mkmodel's --tokenizer-dir there), compressed: 9 MB as it is, 1.6 MB so.
[ -d .deps/llama3-tokenizer ] && tar cJf .carry/llama3-tokenizer.tar.xz -C .deps llama3-tokenizer

# BASE=COMMIT: that commit's source and tests too, for the same-run A/B scripts (tools/gpu-ab.sh, tools/gpu-batch-ab.sh).
if [ -n "${BASE:-}" ]; then
    mkdir -p .carry/base
    git archive "$BASE" Makefile VERSION web mk src include sdk bench tools examples tests | tar -x -C .carry/base
fi

echo "gpu-prepare: .carry holds $(du -sh .carry | cut -f1): Wasmtime $dw_version, $(ls .carry/guests | wc -l) guests, $(ls .carry/debs | wc -l) packages"
