#!/usr/bin/env bash
# Runs on a development machine: fetches llama.cpp's source (the vendor/llama.cpp of the pinned
# llama-cpp-python sdist from PyPI, the only registry reachable here) and writes a trimmed tarball
# of it to .carry/llamacpp/llama.cpp.tar.gz (git-ignored) for tools/llamacpp-batched.sh to build on
# the GPU machine, which has no internet. Kept: the CMake build of ggml (CPU and CUDA backends
# only), libllama, common, the tools llama-batched-bench and llama-quantize, and the HF -> GGUF
# converter (convert_hf_to_gguf.py, conversion/, gguf-py). Dropped: docs, vocab test files,
# tests, examples, the server and its web UI, the other backends and tools, CI files.
#
# Usage (repo root):   tools/llamacpp-prepare.sh
#   LLAMACPP_PY_VERSION=0.3.36  the llama-cpp-python sdist to take llama.cpp from
#   LLAMACPP_SMOKE=1            also configure the trimmed tree here (cmake, CPU only) as a check
#   LLAMACPP_CARRY_CMAKE=1      also put a cmake wheel in .carry/llamacpp/ (the GPU image has cmake;
#                               llamacpp-batched.sh installs the wheel only if cmake is missing there)
# Run it after tools/gpu-prepare.sh (which empties .carry/). Then pass `carry: [".carry"]` to the
# device tool and run tools/llamacpp-batched.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."

py_version="${LLAMACPP_PY_VERSION:-0.3.36}"
cmake_wheel_version="${LLAMACPP_CMAKE_VERSION:-3.31.6}"
dest=.carry/llamacpp
work=$(mktemp -d /tmp/llamacpp-prepare.XXXXXX)
trap 'rm -rf "$work"' EXIT

say() { echo "llamacpp-prepare: $*"; }

# ---- the source ---------------------------------------------------------------------------
sdist_cache="${DW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/driftwood}/llamacpp"
sdist="$sdist_cache/llama_cpp_python-$py_version.tar.gz"
if [ ! -f "$sdist" ]; then
    mkdir -p "$sdist_cache"
    say "downloading llama-cpp-python==$py_version (sdist) from PyPI"
    # (pip prepares the sdist's metadata, fetching its build backend: about a minute)
    python3 -m pip download --quiet --no-binary :all: --no-deps "llama-cpp-python==$py_version" -d "$work/dl" ||
        { say "pip download of llama-cpp-python==$py_version failed"; exit 1; }
    mv "$work"/dl/llama_cpp_python-"$py_version".tar.gz "$sdist"
fi
say "extracting vendor/llama.cpp from $(basename "$sdist")"
tar -xzf "$sdist" -C "$work" "llama_cpp_python-$py_version/vendor/llama.cpp" \
    "llama_cpp_python-$py_version/.git/modules/vendor/llama.cpp/HEAD" 2>/dev/null ||
    tar -xzf "$sdist" -C "$work" "llama_cpp_python-$py_version/vendor/llama.cpp"
src="$work/llama_cpp_python-$py_version/vendor/llama.cpp"
[ -f "$src/CMakeLists.txt" ] && [ -f "$src/tools/batched-bench/batched-bench.cpp" ] ||
    { say "the sdist has no vendor/llama.cpp with tools/batched-bench"; exit 1; }
commit=$(cat "$work/llama_cpp_python-$py_version/.git/modules/vendor/llama.cpp/HEAD" 2>/dev/null || echo unknown)

# ---- trim -----------------------------------------------------------------------------------
t="$work/llama.cpp"
mkdir -p "$t"
(cd "$src" && cp -r CMakeLists.txt LICENSE cmake include src common ggml vendor tools gguf-py conversion \
    convert_hf_to_gguf.py "$t"/)
# The converter reads models/templates only for a few non-Llama models; no vocab files needed.
rm -rf "$t/gguf-py/tests" "$t/gguf-py/examples"
# Tools: only the two this benchmark builds; the list of subdirectories is rewritten to match.
find "$t/tools" -mindepth 1 -maxdepth 1 ! -name batched-bench ! -name quantize -exec rm -rf {} +
cat >"$t/tools/CMakeLists.txt" <<'EOF'
# Trimmed by Driftwood's tools/llamacpp-prepare.sh: only the tools its benchmark builds.
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(batched-bench)
add_subdirectory(quantize)
EOF
# Third-party: miniaudio and stb serve only the multimodal tool (mtmd), which is gone.
rm -rf "$t/vendor/miniaudio" "$t/vendor/stb"
cat >"$t/vendor/CMakeLists.txt" <<'EOF'
# Trimmed by Driftwood's tools/llamacpp-prepare.sh: miniaudio and stb (multimodal only) dropped.
add_subdirectory(hash)
add_subdirectory(nlohmann)
add_subdirectory(sheredom)
if (LLAMA_BUILD_COMMON)
    add_subdirectory(cpp-httplib)
endif()
EOF
# ggml backends other than CPU and CUDA (ggml_add_backend skips a disabled backend's directory).
for b in "$t"/ggml/src/ggml-*/; do
    case "$(basename "$b")" in ggml-cpu|ggml-cuda) ;; *) rm -rf "$b" ;; esac
done
find "$t" \( -name '*.md' -o -name '.git*' -o -name '*.swift' -o -name '*.m' -o -name '*.metal' \) -prune -exec rm -rf {} +
cat >"$t/DRIFTWOOD-TRIM.txt" <<EOF
llama.cpp commit $commit, from the sdist llama-cpp-python==$py_version (PyPI), vendor/llama.cpp,
trimmed by Driftwood's tools/llamacpp-prepare.sh (tools/ and vendor/ CMakeLists.txt rewritten).
EOF

# ---- pack -----------------------------------------------------------------------------------
mkdir -p "$dest"
rm -f "$dest/llama.cpp.tar.gz"
tar -C "$work" --owner=0 --group=0 --numeric-owner -czf "$dest/llama.cpp.tar.gz" llama.cpp
echo "$py_version $commit" >"$dest/VERSION"
say "$dest/llama.cpp.tar.gz: $(du -h "$dest/llama.cpp.tar.gz" | cut -f1) (llama.cpp $commit)"

if [ "${LLAMACPP_CARRY_CMAKE:-0}" = 1 ]; then
    rm -f "$dest"/cmake-*.whl
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dest" "cmake==$cmake_wheel_version"
    say "carried $(ls "$dest"/cmake-*.whl)"
fi

# ---- optional smoke test: the trimmed tree configures -------------------------------------------
if [ "${LLAMACPP_SMOKE:-0}" = 1 ]; then
    mkdir -p "$work/smoke" && tar -xzf "$dest/llama.cpp.tar.gz" -C "$work/smoke"
    say "configuring the trimmed tree here (CPU only)"
    cmake -S "$work/smoke/llama.cpp" -B "$work/smoke/build" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
        -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=OFF >"$work/smoke.log" 2>&1 ||
        { cat "$work/smoke.log"; say "configure FAILED"; exit 1; }
    say "configure ok"
fi
say ".carry/llamacpp holds $(du -sh "$dest" | cut -f1)"
