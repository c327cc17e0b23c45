/* Compute backends (CPU always; CUDA when built). A backend is one device, opened by name and
 * shared by every actor and model that uses it. Besides running models (model.h), a backend
 * makes host memory device-accessible without copying (the zero-copy chain: a registered range
 * is read and written by the device through the same pointer) and reports on itself. */
#ifndef DRIFTWOOD_BACKEND_H
#define DRIFTWOOD_BACKEND_H

#include <stddef.h>

#include "driftwood/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dw_backend dw_backend;

/* Options read once when a backend opens; a zeroed struct (or NULL) means the defaults.
 * Environment variables give the defaults where named (docs/DESIGN.md, "Options", lists every
 * variable Driftwood reads). */
typedef struct dw_backend_options {
    /* CPU: worker threads for the kernels; <= 0 = the process-wide pool (DW_THREADS, else one
     * per core). */
    int n_threads;
    /* CPU: the widest kernel set to use, "avx512vnni", "avx512", "avx2" or "ref"; NULL = the
     * best the processor has (DW_CPU_ISA caps it). */
    const char *cpu_kernels;
    /* CUDA: 1 runs decode steps directly instead of recording and replaying them as CUDA
     * graphs (DW_CUDA_GRAPH=0). */
    int no_graphs;
    /* CUDA: 1 rounds prefill activations to bf16 once (one GEMM pass: faster, less accurate)
     * instead of splitting them into bf16 hi + lo halves (DW_CUDA_PREFILL_BF16=1). */
    int prefill_bf16;
} dw_backend_options;

/* Opens the backend "cpu" or "cuda" (NULL: "cpu"). Fails with DW_ERR_UNSUPPORTED when the CUDA
 * backend was not built or no usable GPU is present (the message says which), with
 * DW_ERR_INVALID_ARGUMENT for an unknown name or option. */
dw_status dw_backend_open(const char *name, dw_backend **out /* OUT */, dw_error *err);
dw_status dw_backend_open_with(const char *name, const dw_backend_options *opts, dw_backend **out /* OUT */,
                               dw_error *err);
/* Closes the backend; every model made on it, and every range registered, must be gone. */
void dw_backend_close(dw_backend *backend);
const char *dw_backend_name(const dw_backend *backend);

/* What a backend is running on. */
typedef struct dw_backend_info {
    const char *name;     /* "cpu", "cuda" */
    char device[128];     /* e.g. "NVIDIA H100 80GB HBM3", "x86-64, 2 cores" */
    char kernels[32];     /* the kernel set chosen: "avx512", "avx2", "ref", "sm_90" */
    int n_threads;        /* CPU worker threads (0 elsewhere) */
    int graphs;           /* CUDA: decode steps recorded as graphs */
} dw_backend_info;
void dw_backend_describe(const dw_backend *backend, dw_backend_info *out /* OUT */);

/* Counters since the backend opened; all zero where a backend keeps none (the CPU). Decode
 * steps: replayed from a recording (graph_replays; primed_replays of them needed no set-up
 * kernel), recorded, run directly (eager_steps). Device time of decode steps (gpu_step_ms over
 * timed_steps; not every step is timed). Host seconds spent queuing steps and in downloads
 * (the wait included); downloads written straight into a registered range by the device. */
typedef struct dw_backend_stats {
    long graph_replays, graph_records, eager_steps, primed_replays;
    long timed_steps;
    double gpu_step_ms;
    double enqueue_s, download_s;
    long direct_downloads;
} dw_backend_stats;
void dw_backend_get_stats(const dw_backend *backend, dw_backend_stats *out /* OUT */);

/* ---- zero-copy ranges and device memory ----------------------------------------------- */

/* Makes [base, base+len) (page-aligned, overlapping no registered range) device-accessible
 * without a copy. The runtime does this for every Wasm memory it creates; an embedder may do
 * it for buffers of its own. */
dw_status dw_backend_register_range(dw_backend *backend, void *base, size_t len, dw_error *err);
/* Unregisters every range registered inside [base, base+len). */
void dw_backend_release_range(dw_backend *backend, void *base, size_t len);
/* The device's pointer for the host span [host, host+bytes), or NULL when some byte of it is
 * not device-accessible. On the CPU and for registered ranges on CUDA it equals host. */
void *dw_backend_device_pointer(dw_backend *backend, const void *host, size_t bytes);

/* Device buffers and copies (the copy path that zero-copy avoids, for comparisons). */
dw_status dw_backend_alloc(dw_backend *backend, size_t bytes, void **out /* OUT */, dw_error *err);
void dw_backend_free(dw_backend *backend, void *buf);
dw_status dw_backend_upload(dw_backend *backend, void *dst, const void *host_src, size_t bytes, dw_error *err);
dw_status dw_backend_download(dw_backend *backend, void *host_dst, const void *src, size_t bytes, dw_error *err);
/* C[m×n] = A[m×k] × B[k×n], f32 row-major, on device-accessible memory (registered ranges or
 * device buffers); finished when it returns. */
dw_status dw_backend_gemm_f32(dw_backend *backend, int m, int n, int k, const float *a, const float *b, float *c,
                              dw_error *err);
/* Device memory in use (DW_ERR_UNSUPPORTED where the backend does not know). */
dw_status dw_backend_memory_used(dw_backend *backend, size_t *bytes /* OUT */, dw_error *err);
/* The device's memory bandwidth in GB/s, the bound of a bandwidth-bound decode: the median of
 * `reps` passes over a buffer of `bytes` (kept for the next call of the same size). CUDA:
 * device-to-device copies, (bytes read + bytes written) / time; CPU: bytes read / time through
 * the kernels' threads. */
dw_status dw_backend_memory_bandwidth(dw_backend *backend, size_t bytes, int reps, double *gbs /* OUT */,
                                      dw_error *err);

#ifdef __cplusplus
}
#endif

#endif
