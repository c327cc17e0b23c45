/* Fills the CUDA backend's tuning (cuda_tuning.h) when it opens: the defaults, the caller's
 * options, and the one option read from the environment here. */
#ifdef DW_HAVE_CUDA
#include "backend/cuda/cuda_tuning.h"

#include <stdlib.h>

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
    const char *bf16 = getenv("DW_CUDA_PREFILL_BF16");
    if (bf16 && *bf16 == '1') t->prefill_passes = 1;
}
#endif
