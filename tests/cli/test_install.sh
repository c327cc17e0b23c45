#!/usr/bin/env bash
# `make install PREFIX=DIR` and what it installs: the program runs from the installed tree and
# names its versions; a guest builds with the installed SDK; examples/embed builds against the
# installed library only (pkg-config, shared and static) and answers as `driftwood chat` does;
# `make uninstall` removes every file. Uses the build in $DW_BUILD (make install links the
# shared library if it is missing). Each check prints "ok NAME" or "FAIL NAME".
source "$(dirname "$0")/lib.sh"

version=$(cat VERSION)
wasmtime_version=$(sed -n 's/^WASMTIME_VERSION *:= *//p' Makefile)
prefix=$DW_TMP/prefix
# Install what was built: a CPU-only build stays CPU-only (else make would rebuild with CUDA).
make_args=(--no-print-directory BUILD="$DW_BUILD")
if "$DW_BIN" --version 2>/dev/null | grep -q "cuda: not built"; then make_args+=(DW_SKIP_CUDA=1); fi
# Nothing may come from the source tree or the build by accident.
unset LD_LIBRARY_PATH PKG_CONFIG_PATH C_INCLUDE_PATH CPATH LIBRARY_PATH

# loaded_from PROGRAM LIBRARY: the file the dynamic loader picks for LIBRARY (a name prefix),
# with ".." resolved; empty when PROGRAM does not load it.
loaded_from() { ldd "$1" | awk -v lib="$2" 'index($1, lib) == 1 { print $3 }' | xargs -r readlink -f; }
# has_words TEXT WORD...: every WORD is a whole word of TEXT.
has_words() { local text=" $1 " w; shift; for w; do [[ $text == *" $w "* ]] || return 1; done; }

check "install_into_prefix" make "${make_args[@]}" install PREFIX="$prefix"

# --- the installed tree ------------------------------------------------------------------------
check "install_places_program_libraries_headers_sdk_pkgconfig" test -x "$prefix/bin/driftwood" \
    -a -f "$prefix/lib/libdriftwood.a" -a -f "$prefix/lib/libdriftwood.so.$version" \
    -a -f "$prefix/lib/libwasmtime.so" -a -f "$prefix/include/driftwood/runtime.h" \
    -a -f "$prefix/include/driftwood/version.h" -a -f "$prefix/include/driftwood/guest.h" \
    -a -f "$prefix/share/driftwood/guest.mk" -a -f "$prefix/lib/pkgconfig/driftwood.pc"
soname=$(readelf -d "$prefix/lib/libdriftwood.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
check "shared_library_soname_is_the_major_version" test "$soname" = "libdriftwood.so.${version%%.*}"
check "soname_and_dev_links_point_at_the_library" test \
    "$(readlink -f "$prefix/lib/$soname")" = "$(readlink -f "$prefix/lib/libdriftwood.so.$version")" -a \
    "$(readlink -f "$prefix/lib/libdriftwood.so")" = "$(readlink -f "$prefix/lib/libdriftwood.so.$version")"

expect_ok "installed_version_names_driftwood_and_wasmtime" \
    "^driftwood ${version//./\\.} \(wasmtime ${wasmtime_version//./\\.}, (cuda runtime [0-9.]+|cuda: not built)" \
    "$prefix/bin/driftwood" --version
check "installed_program_loads_wasmtime_from_the_prefix" \
    test "$(loaded_from "$prefix/bin/driftwood" libwasmtime.so)" = "$prefix/lib/libwasmtime.so"

pc() { PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config "$@" driftwood; }
check "pkgconfig_version_is_the_project_version" test "$(pc --modversion)" = "$version"
check "pkgconfig_cflags_name_the_installed_headers" test "$(echo $(pc --cflags))" = "-I$prefix/include"
check "pkgconfig_static_libs_name_wasmtime_and_the_makefile_libraries" \
    has_words "$(pc --static --libs)" -ldriftwood -lwasmtime -ljansson -lpcre2-8

# --- a guest built with the installed SDK, run by the installed program ----------------------
mkdir -p "$DW_TMP/guests"
cat >"$DW_TMP/guests/Makefile" <<MK
include $prefix/share/driftwood/guest.mk
all: gemm.wasm chat.wasm
gemm.wasm: $PWD/examples/gemm/main.c
	\$(DW_GUEST_CC) \$(DW_GUEST_CFLAGS) -o \$@ \$< \$(DW_GUEST_LDFLAGS)
chat.wasm: $PWD/examples/chat/actor.c
	\$(DW_GUEST_CC) \$(DW_GUEST_CFLAGS) -mexec-model=reactor -o \$@ \$< \$(DW_GUEST_LDFLAGS)
MK
check "guests_build_with_the_installed_sdk" make --no-print-directory -C "$DW_TMP/guests"
check "installed_sdk_points_at_the_installed_headers" \
    grep -q -- "-I$prefix/include" <<<"$(make --no-print-directory -C "$DW_TMP/guests" -n -B gemm.wasm)"
expect_ok "installed_program_runs_a_guest" "0 errors" "$prefix/bin/driftwood" run "$DW_TMP/guests/gemm.wasm" -- 32

# --- examples/embed, built against the installed tree only -----------------------------------
mkdir -p "$DW_TMP/embed" && cp examples/embed/embed.c examples/embed/Makefile "$DW_TMP/embed/"
check "embed_builds_against_the_shared_library" \
    env PKG_CONFIG_PATH="$prefix/lib/pkgconfig" make --no-print-directory -C "$DW_TMP/embed" embed
check "embed_builds_against_the_static_library" \
    env PKG_CONFIG_PATH="$prefix/lib/pkgconfig" make --no-print-directory -C "$DW_TMP/embed" embed-static
check "embed_loads_libdriftwood_from_the_prefix" \
    test "$(loaded_from "$DW_TMP/embed/embed" libdriftwood.so)" = "$prefix/lib/libdriftwood.so.$version"
check "embed_static_does_not_load_libdriftwood" test -z "$(loaded_from "$DW_TMP/embed/embed-static" libdriftwood)"

# The embedded chat actor answers exactly as `driftwood chat` does (greedy, 16 tokens).
model=models/driftwood-tiny
reference=$("$prefix/bin/driftwood" chat --model "$model" -n 16 --prompt "Hello" 2>/dev/null)
for program in embed embed-static; do
    answer=$("$DW_TMP/embed/$program" "$model" "$DW_TMP/guests/chat.wasm" "Hello" 2>"$DW_TMP/embed.err")
    if [ -z "$reference" ]; then fail "${program}_answers_as_driftwood_chat" "driftwood chat printed nothing"
    elif [ "$answer" != "$reference" ]; then
        fail "${program}_answers_as_driftwood_chat" "got '$answer' want '$reference' ($(tail -1 "$DW_TMP/embed.err"))"
    else pass "${program}_answers_as_driftwood_chat"; fi
done
check "embed_reports_the_library_version" grep -q "^driftwood $version (wasmtime $wasmtime_version)" "$DW_TMP/embed.err"

# --- DESTDIR and uninstall ---------------------------------------------------------------------
check "install_honours_destdir" make "${make_args[@]}" install DESTDIR="$DW_TMP/stage" PREFIX=/opt/driftwood
check "destdir_install_names_the_final_prefix" \
    grep -qx "prefix=/opt/driftwood" "$DW_TMP/stage/opt/driftwood/lib/pkgconfig/driftwood.pc"
check "uninstall_from_prefix" make "${make_args[@]}" uninstall PREFIX="$prefix"
left=$(find "$prefix" ! -type d)
check "uninstall_removes_every_installed_file" test -z "$left"
finish
