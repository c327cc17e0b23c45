#!/usr/bin/env bash
# One-time set-up for `make demo` and `make test`: runs every tools/setup.d/*.sh in order.
# Each step checks first and does nothing when its dependency is already present.
set -euo pipefail
cd "$(dirname "$0")/.."
export DW_CACHE="${DW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/driftwood}"
for step in tools/setup.d/*.sh; do
    # shellcheck source=/dev/null
    source "$step"
done
