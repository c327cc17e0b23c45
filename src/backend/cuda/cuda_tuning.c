/* Fills the CUDA backend's tuning (cuda_tuning.h) when it opens: the defaults and the caller's
 * options (whose environment defaults the registry, backend.c, has read). */
#ifdef DW_HAVE_CUDA
#include "backend/cuda/cuda_tuning.h"

/* The defaults: each number the best of its measurements (docs/PERFORMANCE.md). */
static const dw__cuda_tuning defaults = {
    .graphs = 1,
    .prefill_passes = 2,
    .attn_short_keys = 320,
    .attn_min_keys = 64,
    .attn_blocks_per_sm = 2,
};

void dw__cuda_tuning_init(dw__cuda_tuning *t, const dw_backend_options *opts) {
    *t = defaults;
    if (opts->no_graphs) t->graphs = 0;
    if (opts->prefill_bf16) t->prefill_passes = 1;
}
#endif
