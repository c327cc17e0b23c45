# Debian packages: the guest toolchain (clang, wasm-ld, wasi-libc, wasm32 builtins), cmake for
# Wasmtime's header step, PCRE2, jansson and utf8proc for the tokenizer, libcrypto (libssl-dev)
# for SHA-256.
dw_debian_packages="clang lld wasi-libc libclang-rt-14-dev-wasm32 cmake libpcre2-dev libjansson-dev libutf8proc-dev libxxhash-dev libssl-dev"
# pkg-config: examples/embed finds the installed library with it (tests/cli/test_install.sh).
dw_debian_packages="$dw_debian_packages pkgconf"
# clang's sanitizer and libFuzzer runtimes: the ASan + UBSan build and the fuzz targets
# (mk/sanitize.mk, mk/fuzz.mk).
dw_debian_packages="$dw_debian_packages libclang-rt-14-dev"
# libmicrohttpd: the HTTP server (src/server/); chromium and its driver: the page's test in a
# headless browser (tests/server/test_page.py).
dw_debian_packages="$dw_debian_packages libmicrohttpd-dev chromium chromium-driver"
# NATS: the server (3 of them make the tests' JetStream cluster) and its C client (the cluster layer,
# src/server/cluster*.c: KV buckets, streams, request forwarding).
dw_debian_packages="$dw_debian_packages nats-server libnats-dev"
dw_missing=""
for p in $dw_debian_packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || dw_missing="$dw_missing $p"
done
if [ -n "$dw_missing" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing Debian packages:$dw_missing"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $dw_missing >/dev/null
    else
        echo "setup: missing Debian packages. Run:"
        echo "  sudo apt-get install -y$dw_missing"
        exit 1
    fi
fi
