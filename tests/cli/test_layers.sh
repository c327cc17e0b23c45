#!/usr/bin/env bash
# The layer guard (tools/check_layers.py) itself: on a small tree made here, each of its rules
# refuses an include that breaks it and names the file and line; a clean tree passes.
cd "$(dirname "$0")/../.."
source tests/cli/lib.sh

tree() { # a tree with the real layer table and one file whose include is $2, at src/$1
    rm -rf "$DW_TMP/t" && mkdir -p "$DW_TMP/t/docs" "$DW_TMP/t/src/$(dirname "$1")" "$DW_TMP/t/include/driftwood"
    cp docs/DESIGN.md "$DW_TMP/t/docs/"
    printf '/* x */\n#include <stdio.h>\n%s\n' "$2" >"$DW_TMP/t/src/$1"
}

# refused NAME PATH INCLUDE TEXT: the guard exits 1 and names PATH:3 and TEXT
refused() {
    tree "$2" "$3"
    local out; out=$(python3 tools/check_layers.py --root "$DW_TMP/t" 2>&1); local rc=$?
    if [ $rc -ne 1 ]; then fail "$1" "exit $rc: $out"
    elif ! grep -qF "src/$2:3:" <<<"$out" || ! grep -qF "$4" <<<"$out"; then fail "$1" "$out"
    else pass "$1"; fi
}

refused layers_refuse_an_upward_include core/region.c '#include "engine/engine_impl.h"' "rule 1"
refused layers_refuse_the_cli_reaching_below_the_public_api cli/cmd_x.c '#include "core/file.h"' "rule 1"
refused layers_refuse_a_backends_private_header engine/model.c '#include "backend/cpu/kernels.h"' "rule 2"
refused layers_refuse_one_backend_reaching_into_another backend/cpu/x.c '#include "backend/cuda/cuda_ctx.h"' "rule 2"
refused layers_refuse_another_folders_impl_header actor/x.c '#include "engine/engine_impl.h"' "rule 3"
refused layers_refuse_http_outside_the_server actor/x.c '#include <microhttpd.h>' "rule 5"
refused layers_refuse_the_server_reaching_into_the_engine server/x.c '#include "engine/engine_impl.h"' "rule 1"
tree core/x.c '#include "core/file.h"'
printf '#include "core/file.h"\n' >"$DW_TMP/t/include/driftwood/x.h"
out=$(python3 tools/check_layers.py --root "$DW_TMP/t" 2>&1)
if [ $? -eq 1 ] && grep -qF "rule 4" <<<"$out"; then pass layers_refuse_a_public_header_including_a_private_one
else fail layers_refuse_a_public_header_including_a_private_one "$out"; fi
tree engine/model.c '#include "backend/backend.h"'
check layers_accept_a_downward_include_through_the_interface python3 tools/check_layers.py --root "$DW_TMP/t"
finish
