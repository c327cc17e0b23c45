/* The CUDA implementation of the engine's compute ops (src/backend/compute.h): constructor and
 * the few internals that tests and bench/cuda/ reach. C-callable; the code is compute_cuda.cu,
 * the kernels kernels_*.cu (their launchers: compute_cuda_kernels.h). Design: compute_cuda.cu
 * (header comment); measurements: bench/cuda/README.md, docs/PERFORMANCE.md. */
#ifndef DW_BACKEND_CUDA_COMPUTE_CUDA_H
#define DW_BACKEND_CUDA_COMPUTE_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

#include "backend/compute.h"
#include "driftwood/backend.h"

/* Opens the compute ops on the CUDA backend `backend` (device 0; CUDA_VISIBLE_DEVICES picks
 * it): one stream, one cuBLAS handle. DW_ERR_UNSUPPORTED without a usable GPU.
 * Environment: DW_CUDA_GRAPH=0 runs decode steps without CUDA graphs; DW_CUDA_PREFILL_BF16=1
 * rounds prefill activations to bf16 once (one GEMM pass) instead of the default hi+lo split
 * (two bf16 halves: f32-accurate activations, the GEMM's N doubled). Tuning knobs, read once:
 * DW_CUDA_PDL=0 launches the matvec without programmatic dependent launch (on by default),
 * DW_CUDA_MV_BPS=N caps the matvec at N blocks per SM (default: as many as fit at once),
 * DW_CUDA_MV_KSPLIT=N (1, 2, 4) reads every row with N warps (kernels_matvec.cu warps_per_row;
 * default: gate/up pairs up to 4, single matrices 1); DW_CUDA_MV_DEEP=0 reads long rows (3 rounds
 * or more) with 8 loads in flight per lane like the others instead of 16 at 2 blocks per SM;
 * DW_CUDA_NORM_STAGE=0 has the matvecs read the RMSNorm weights after the PDL wait, from L2,
 * instead of copying them into shared memory before it;
 * DW_CUDA_ATTN_SHORT=N makes decode lengths up to N keys short (default 320: one split, one
 * query head per block; a decode graph is recorded again when a session's length leaves that
 * class); DW_CUDA_ATTN_ONE=N gives decode attention one split (no combine) up to N keys
 * (default: the short lengths); DW_CUDA_ATTN_GT=N puts at most N query heads in an attention
 * block at every length (default 1 for short lengths, else 2);
 * DW_CUDA_ATTN_MIN_KEYS=N makes its splits at least N keys (default 64) and DW_CUDA_ATTN_BPS=N
 * aims its grid at N blocks per SM (default 2; at most 64 splits); DW_CUDA_ATTN_DECODE=0 runs
 * decode on a bf16 cache with the general attention kernel instead of its own
 * (kernels_attention_decode.cuh), DW_CUDA_ATTN_DEC_B=2 gives that one 2 keys per lane group and
 * round instead of 4, DW_CUDA_ATTN_CAP=0 lets more than DW_CUDA_ATTN_BPS of its blocks share an SM,
 * DW_CUDA_LATE_QKV=0 lets the q/k/v matvec start the kernel after it at once rather than from each
 * warp's last row; DW_CUDA_ATTN_THREADS=128 runs the general kernel's decode in blocks of 128
 * threads instead of 256; DW_CUDA_SKIP=... leaves decode launches out (profiling only,
 * compute_cuda.cu);
 * DW_CUDA_DIRECT_DOWNLOAD=0 makes
 * downloads into registered regions use the copy engine (wait, then cudaMemcpy per piece)
 * instead of one kernel that writes the region after the queued work; DW_CUDA_FUSE_ATTN=0 keeps
 * RoPE + KV store a kernel of their own instead of folding them into decode attention;
 * DW_CUDA_PERSIST=1 runs each decode step's matvecs and attentions as the phases of one
 * persistent kernel (kernels_fused.cu; off by default: slower so far, bench/cuda/README.md v11)
 * and DW_CUDA_PERSIST_TRACE=1 records its phase times (dw__cuda_persist_trace); DW_CUDA_X_WIDE=0
 * stages x of long rows (K >= 4096) 2 float4 per thread and L2 round trip, like the others,
 * instead of 8; DW_CUDA_NORM_LATE=0 has the matvecs with a fused RMSNorm scale x before their
 * products rather than each row's sum after; DW_CUDA_STEP_PRIME=0 keeps the argmax from writing
 * the next greedy step into its graph's slot (every replay then starts with the set_step kernel). */
dw_status dw__cuda_compute_create(dw_backend *backend, dw_compute *out, dw_error *err);

/* Switches CUDA-graph decode on or off for a context made by dw__cuda_compute_create (for
 * tests and benchmarks; recorded graphs are kept but not used while off). */
void dw__cuda_compute_set_graphs(dw_compute *c, int on);

/* Device-to-device copy bandwidth of the context's GPU: a `bytes` buffer copied `reps` times,
 * median time; *gbs = (bytes read + bytes written) / time, in GB/s. */
dw_status dw__cuda_copy_bandwidth(dw_compute *c, size_t bytes, int reps, double *gbs, dw_error *err);

/* Counters since the context opened: decode steps replayed from a graph, recorded, run directly;
 * the GPU time of decode steps (CUDA events around each step's work: from its first kernel's
 * start to its last one's end; a step is timed when no earlier one is uncounted, so
 * timed_steps may be fewer than the steps); host seconds spent queuing decode steps (launches,
 * graph replay) and in downloads (the wait for the GPU included); downloads written straight
 * into a registered region by a kernel. */
typedef struct dw__cuda_compute_stats {
    long graph_replays, graph_records, eager_steps;
    long primed_replays; /* replays whose step the argmax before had written (no set_step kernel) */
    long persistent_launches; /* launches of the persistent decode kernel */
    long timed_steps;
    double gpu_step_ms;
    double enqueue_s, download_s;
    long direct_downloads;
} dw__cuda_compute_stats;
void dw__cuda_compute_get_stats(dw_compute *c, dw__cuda_compute_stats *out);

/* With DW_CUDA_PERSIST_TRACE=1 (a profile): the last persistent launch's phases, us[2i] when the
 * grid passed phase i's barrier and us[2i + 1] when its last block finished it, in µs from the
 * end of phase 0 (-1: not recorded); returns the phases (at most max / 2), 0 without a trace. */
int dw__cuda_persist_trace(dw_compute *c, double *us, int max);

#ifdef __cplusplus
}
#endif

#endif
