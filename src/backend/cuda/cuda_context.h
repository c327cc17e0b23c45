/* The CUDA backend's context, private to src/backend/cuda: one per opened device, shared by every
 * model and session on it (one stream, one cuBLAS handle, one recursive lock), and the functions
 * its files call in one another. Who owns what:
 *   cuda_backend.cu  open/destroy, the ops table, errors, synchronize, describe, stats, bandwidth
 *   cuda_memory.cu   guest ranges, device buffers, copies and downloads, the guest's GEMM
 *   cuda_weights.cu  weights on the device (plain and quantized)
 *   cuda_ops.cu      the forward ops and the prefill GEMM
 *   cuda_fusion.cu   the decode op held back to be fused with the next one
 *   cuda_graphs.cu   decode steps recorded as CUDA graphs and replayed, the greedy argmax
 *   cuda_batch.cu    the batched step's ops (matmul_rows, attention_rows over paged KV, ...)
 * The kernels are kernels_*.cu behind kernels.h; the tuning is cuda_tuning.h. */
#ifndef DW_BACKEND_CUDA_CUDA_CONTEXT_H
#define DW_BACKEND_CUDA_CUDA_CONTEXT_H

extern "C" {
#include "backend/backend.h"
#include "core/clock.h"
#include "backend/cuda/host_ranges.h"
}
#include "backend/cuda/cublas_dl.h"
#include "backend/cuda/cuda_tuning.h"
#include "backend/cuda/kernels.h"

#include <cuda_runtime.h>
#include <pthread.h>

#include <vector>

/* An op held back to be fused with the next one (decode only; cuda_fusion.cu). */
enum dw__cuda_pending_kind { DW_PENDING_NONE, DW_PENDING_NORM, DW_PENDING_MATVEC, DW_PENDING_ROPE, DW_PENDING_ROPE_KV };

struct dw__cuda_pending {
    dw__cuda_pending_kind kind;
    /* DW_PENDING_NORM: rmsnorm(norm_out, norm_x, norm_w) of one token */
    float *norm_out;
    const float *norm_x, *norm_w;
    int norm_dim;
    float norm_eps;
    /* DW_PENDING_MATVEC */
    dwk::mv_args mv;
    /* DW_PENDING_ROPE, DW_PENDING_ROPE_KV */
    dwk::ropekv_args rope;
};

/* What the graphs know about one session (its key; cuda_graphs.cu). */
struct dw__cuda_graph {
    const void *key;
    int state; /* 0: not seen, 1: ran once directly, 2: recorded, -1: recording failed */
    cudaGraphExec_t exec;
    int *slot;     /* device {id, pos} */
    int short_len; /* recorded at a short length (tuning.attn_short_keys): replays only there */
    /* A step with its argmax (greedy): the recording writes its token into ring[pos % ring_n]
     * and the next step {token, pos + 1} into slot itself; next_pos is then the step a replay
     * can take from the slot as it is, its token at ring[(next_pos - 1) % ring_n] (-1: none). */
    int32_t *ring;
    int ring_n;
    int next_pos;
};

struct dw__cuda_ctx {
    dw_backend backend; /* the record handed to the caller; freed with the context */
    pthread_mutex_t lock; /* recursive: decode_step calls back into the ops while it records */
    int device, n_sm, cc_major, cc_minor;
    char device_name[256];
    dw__cuda_tuning tuning;
    cudaStream_t stream;
    const dw__cublas_api *blas;
    cublasHandle_t handle;
    void *workspace; /* cuBLAS's scratch, allocated at open so no GEMM allocates */
    dw__host_ranges ranges; /* the registered guest ranges (host_ranges.h) */
    /* the first error of an op since the last synchronize */
    dw_status err_status;
    char err_message[DW_ERROR_MESSAGE_MAX];
    /* scratch of the ops, grown on demand (never while recording) */
    void *act; /* prefill: split activations */
    size_t act_bytes;
    float *gout; /* prefill: stacked hi+lo GEMM output per row chunk */
    size_t gout_bytes;
    void *deq; /* prefill on quantized weights: a block of rows dequantized to bf16 */
    size_t deq_bytes;
    float *part; /* attention partials: acc then (max, sum) */
    size_t part_floats;
    unsigned *counters; /* attention: the last-block counters */
    size_t counters_count;
    void *xh; /* matmul_rows: x rounded to bf16 and/or f16 */
    size_t xh_bytes;
    float *bpart; /* attention_rows: the chunks' partial results */
    size_t bpart_bytes;
    /* argmax: per-block partial results and the last-block counter (made at open) */
    float *amax_v;
    int *amax_i;
    unsigned *amax_counter;
    dw__cuda_pending pend; /* cuda_fusion.cu */
    /* decode graphs (cuda_graphs.cu) */
    int graphs_on;
    int *cap_slot; /* non-NULL while recording: kernels read id/pos there (the argmax writes it) */
    int recording_failed;
    int32_t *cap_ring; /* the ring of the argmax recorded in the step being recorded (NULL: none) */
    int cap_ring_n;
    std::vector<dw__cuda_graph> *graphs;
    /* counters, and the GPU time of decode steps: events around the last step, read at the next wait */
    dw_backend_stats stats;
    cudaEvent_t ev_step[2];
    int step_timed; /* the events hold a step not yet counted */
};

/* Holds the context's lock for a scope and makes its device current on this thread (the current
 * device is per thread, and actors call from many threads); device_status says whether that
 * worked. */
struct dw__cuda_locked {
    dw__cuda_ctx *c;
    cudaError_t device_status;
    explicit dw__cuda_locked(dw__cuda_ctx *ctx) : c(ctx) {
        pthread_mutex_lock(&c->lock);
        device_status = cudaSetDevice(c->device);
    }
    ~dw__cuda_locked() { pthread_mutex_unlock(&c->lock); }
    dw__cuda_locked(const dw__cuda_locked &) = delete;
    dw__cuda_locked &operator=(const dw__cuda_locked &) = delete;
};

/* ---- cuda_backend.cu ----------------------------------------------------------------------- */

/* A failed CUDA call as a DW_ERR_BACKEND (DW_ERR_UNSUPPORTED for no device or driver) message
 * naming the call; clears the (non-sticky) error so the next call starts clean. */
dw_status dw__cuda_fail(dw_error *err, cudaError_t e, const char *what);
/* Ops that cannot fail one by one record their first error (returned by synchronize/download);
 * an error while recording also drops the recording. */
void dw__cuda_check(dw__cuda_ctx *c, cudaError_t e, const char *what);
void dw__cuda_check_blas(dw__cuda_ctx *c, cublasStatus_t s, const char *what);
void dw__cuda_record_error(dw__cuda_ctx *c, dw_status st, const char *message);
/* Grows a scratch buffer to `bytes` (waits for queued work that may use the old one); false
 * (and the recording dropped) while recording or when cudaMalloc fails. */
bool dw__cuda_grow(dw__cuda_ctx *c, void **buf, size_t *have, size_t bytes, const char *what);
dw_status dw__cuda_synchronize(void *ctx, dw_error *err);
/* Returns (and clears) the first error recorded since the last call (under the lock). */
dw_status dw__cuda_take_error(dw__cuda_ctx *c, dw_error *err);
/* The element type of a weight's dtype in the kernels, and of a quantized matrix's (scale, bias)
 * pairs on the device (bf16 stays bf16; f16 and f32 become f32). */
int dw__cuda_wtype(dw_dtype d);
int dw__cuda_sb_wtype(dw_dtype sdt);

/* ---- cuda_memory.cu ------------------------------------------------------------------------ */

dw_status dw__cuda_range_register(void *ctx, void *base, size_t len, dw_error *err);
void dw__cuda_range_release(void *ctx, void *base, size_t len);
void *dw__cuda_device_pointer(void *ctx, const void *host, size_t bytes);
dw_status dw__cuda_alloc(void *ctx, size_t bytes, void **out, dw_error *err);
void dw__cuda_free(void *ctx, void *buf);
dw_status dw__cuda_upload(void *ctx, void *dst, const void *host_src, size_t bytes, dw_error *err);
dw_status dw__cuda_download(void *ctx, void *host_dst, const void *src, size_t bytes, dw_error *err);
dw_status dw__cuda_memory_used(void *ctx, size_t *bytes_out, dw_error *err);
dw_status dw__cuda_gemm_f32(void *ctx, int m, int n, int k, const float *a, const float *b, float *c, dw_error *err);
/* Unregisters every range still registered (at destroy). */
void dw__cuda_release_all_ranges(dw__cuda_ctx *c);

/* ---- cuda_weights.cu ----------------------------------------------------------------------- */

dw_status dw__cuda_weight_load(void *ctx, const void *host, dw_dtype dtype, int64_t rows, int64_t cols,
                               dw_cweight *out, dw_error *err);
dw_status dw__cuda_weight_load_quant(void *ctx, const dw_cweight *host, dw_cweight *out, dw_error *err);
void dw__cuda_weight_release(void *ctx, dw_cweight *w);
/* A quantized weight as the kernels take it. */
dwk::qmatrix dw__cuda_qmatrix(const dw_cweight *w);

/* ---- cuda_ops.cu ----------------------------------------------------------------------------- */

void dw__cuda_embed(void *ctx, float *out, const dw_cweight *table, const int32_t *ids, int n);
void dw__cuda_rmsnorm(void *ctx, float *out, const float *x, const dw_cweight *w, int n, int dim, float eps);
void dw__cuda_matmul(void *ctx, float *out, const float *x, int n, const dw_cweight *w, const dw_cweight *bias);
void dw__cuda_matmul_multi(void *ctx, int count, float *const *out, const float *x, int n,
                           const dw_cweight *const *w, const dw_cweight *const *bias);
void dw__cuda_rope(void *ctx, float *q, float *k, int n, int n_heads, int n_kv_heads, int head_dim, int pos0,
                   const float *inv_freq);
void dw__cuda_kv_write(void *ctx, const dw_kv_view *kv, const float *k, const float *v, int pos0, int n);
void dw__cuda_attention(void *ctx, float *out, const float *q, const dw_kv_view *kv, const dw_attn_params *p);
void dw__cuda_swiglu(void *ctx, float *out, const float *gate, const float *up, size_t count);
void dw__cuda_add(void *ctx, float *x, const float *y, size_t count);

/* ---- cuda_batch.cu: the batched step (backend.h, batch invariant) ------------------------- */

void dw__cuda_matmul_rows(void *ctx, int count, float *const *out, const float *x, int n,
                          const dw_cweight *const *w, const dw_cweight *const *bias);
void dw__cuda_rope_rows(void *ctx, float *q, float *k, const dw_rows *r, int n_heads, int n_kv_heads, int head_dim,
                        const float *inv_freq);
void dw__cuda_kv_write_rows(void *ctx, const dw_kv_pages *kv, const float *k, const float *v, const dw_rows *r);
void dw__cuda_attention_rows(void *ctx, float *out, const float *q, const dw_kv_pages *kv, const dw_rows *r,
                             const dw_attn_params *p);
void dw__cuda_gather_rows(void *ctx, float *dst, const float *src, const int32_t *idx, int n, int width);
void dw__cuda_argmax_rows(void *ctx, const float *x, int n, int width, int32_t *out);
void dw__cuda_sample_rows(void *ctx, const float *x, int n, int width, const dw_pick_row *params, int32_t *out);
void dw__cuda_copy(void *ctx, void *dst, const void *src, size_t bytes);

/* ---- cuda_fusion.cu: the decode op held back (caller holds the lock) -------------------------
 * The engine issues decode as small ops; on the GPU each costs a launch. Some are held back one
 * op to be fused with the next when the next consumes their result:
 *   rmsnorm(xn, x)            + matmul(.., xn, ..)      -> the norm runs in the matvec's prologue
 *   matmul(o, ..) [1 matrix]  + add(x, o)               -> the matvec adds its rows into x
 *   matmul_multi(gate, up)    + swiglu(gate, gate, up)  -> the matvec computes both rows per warp
 *   rope(q, k)                + kv_write(.., k, v)      -> one kernel rotates and stores
 *   that (decode)             + attention(.., q, kv)    -> the attention kernel rotates q as it
 *                                reads it and stores the new k, v row itself
 * Every other op (and synchronize, download, free, recording) first flushes what is held, so
 * the order of effects on the stream is the order of the calls. */

/* Launches the held op, if any. */
void dw__cuda_flush(dw__cuda_ctx *c);
/* Holds rmsnorm(out, x, w) of one token for the matvec that reads out. */
void dw__cuda_hold_norm(dw__cuda_ctx *c, float *out, const float *x, const float *w, int dim, float eps);
/* Folds a held norm producing a->x (of a->K inputs) into the matvec a; else flushes what is held. */
void dw__cuda_take_norm(dw__cuda_ctx *c, dwk::mv_args *a);
/* Holds the matvec a (one or two matrices) for an add or swiglu that consumes it. */
void dw__cuda_hold_matvec(dw__cuda_ctx *c, const dwk::mv_args &a);
/* Folds add(x, y) / swiglu(out, gate, up) into the held matvec and launches it; false (nothing
 * done) when it does not fit. */
bool dw__cuda_fuse_add(dw__cuda_ctx *c, float *x, const float *y, size_t count);
bool dw__cuda_fuse_swiglu(dw__cuda_ctx *c, float *out, const float *gate, const float *up, size_t count);
/* Holds a RoPE for the kv_write after it (with_kv false), or a RoPE + KV store of one token for
 * the attention after it (with_kv true). */
void dw__cuda_hold_rope(dw__cuda_ctx *c, const dwk::ropekv_args &a, bool with_kv);
/* The held RoPE when it rotates k for kv_write(k, pos0, n) on kv (*a receives it, true); else
 * flushes and returns false. */
bool dw__cuda_take_rope(dw__cuda_ctx *c, const float *k, int pos0, int n, const dw_kv_view *kv,
                        dwk::ropekv_args *a);
/* The held RoPE + KV store when it is this attention's token and cache, with q as its query
 * (nothing changes: the caller drops it with dw__cuda_drop_held once the attention takes it);
 * NULL when nothing such is held. */
const dwk::ropekv_args *dw__cuda_held_rope_kv(const dw__cuda_ctx *c, const float *q, const dw_kv_view *kv,
                                              const dw_attn_params *p);
/* Forgets the held op (it was folded into the op after it). */
void dw__cuda_drop_held(dw__cuda_ctx *c);
/* Launches a matvec (held or not). */
void dw__cuda_run_matvec(dw__cuda_ctx *c, const dwk::mv_args &a);

/* ---- cuda_graphs.cu ------------------------------------------------------------------------ */

void dw__cuda_decode_step(void *ctx, const void *key, int32_t id, int pos, void (*step)(void *arg), void *arg);
int dw__cuda_decode_step_from(void *ctx, const void *key, const int32_t *id_dev, int pos, void (*step)(void *arg),
                              void *arg);
void dw__cuda_decode_forget(void *ctx, const void *key);
void dw__cuda_argmax(void *ctx, const float *x, int n, int32_t *ring, int ring_n, int pos);
/* After a wait on the stream: adds the GPU time of the step the events hold (lock held). */
void dw__cuda_count_step_time(dw__cuda_ctx *c);
/* Frees every recording (at destroy). */
void dw__cuda_graphs_free(dw__cuda_ctx *c);

#endif
