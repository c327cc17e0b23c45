/* The CUDA backend's tuning: the choices its ops and kernels make that are options or measured
 * numbers, in one struct filled once when the backend opens (dw__cuda_tuning_init) and passed to
 * what needs it. The table of options is docs/CUDA.md ("Tuning options"); the measurements behind
 * the defaults are in docs/PERFORMANCE.md and bench/cuda/README.md. Plain C, so that C tests can
 * include it. */
#ifndef DW_BACKEND_CUDA_CUDA_TUNING_H
#define DW_BACKEND_CUDA_CUDA_TUNING_H

#include "driftwood/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dw__cuda_tuning {
    /* Options (set by the caller or the environment). */
    int graphs;         /* 1: decode steps recorded once per session as CUDA graphs and replayed
                         * (dw_backend_options.no_graphs, DW_CUDA_GRAPH=0: 0) */
    int prefill_passes; /* prefill GEMM activations: 2 = split hi + lo into two bf16 halves
                         * (f32-accurate, the GEMM's N doubled); 1 = rounded to bf16 once
                         * (dw_backend_options.prefill_bf16, DW_CUDA_PREFILL_BF16=1) */
    /* Measured numbers (their defaults in cuda_tuning.c; not settable). */
    int attn_short_keys;    /* decode lengths up to this many keys are short: attention runs one
                             * split (no partials, no combine) and one query head per block there,
                             * and a decode graph recorded at a short length replays only there */
    int attn_min_keys;      /* longer decode attention splits its keys so that a split holds at
                             * least this many... */
    int attn_blocks_per_sm; /* ...and its grid aims at this many blocks per SM (at most 64 splits) */
} dw__cuda_tuning;

/* Fills t from opts (never NULL: the registry has filled the environment's defaults). The CUDA
 * backend reads one variable itself: DW_CUBLAS_LIB, where to find cuBLAS (cublas_dl.cu). */
void dw__cuda_tuning_init(dw__cuda_tuning *t, const dw_backend_options *opts);

#ifdef __cplusplus
}
#endif

#endif
