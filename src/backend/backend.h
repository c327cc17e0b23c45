/* The backend interface: everything the rest of Driftwood asks of one compute device, as one
 * struct of function pointers plus a context (one implementation per folder: cpu/, cuda/),
 * opened by name through the registry in backend.c. Design: docs/DESIGN.md ("Backends").
 * Members marked (optional) may be NULL; the caller then does what the comment says.
 *
 * Memory model. Two kinds of memory meet here.
 *  - Guest memory: a Wasm linear memory, allocated by the runtime (core/region.c) and made
 *    device-accessible without copying by range_register, piece by piece as it grows. The
 *    backend is the one owner of which host ranges are registered: device_pointer answers
 *    for any host span, and range_release drops every registration inside a reservation.
 *  - Device memory: buffers from alloc and weights from weight_load*. On the CPU these are host
 *    pointers (weights point straight into the mmap'd safetensors files); on CUDA, device
 *    memory, which only upload/download/gemm_f32 and the compute ops touch.
 * Every pointer a compute op receives is device memory unless the parameter says "host". A
 * host pointer may lie in registered guest memory, so `download` may write logits straight
 * into a guest.
 *
 * Compute ops. Activations are f32, row-major [n_tokens, width]. Ops are queued in order on
 * the backend's stream; they cannot fail one by one (the backend records the first error and
 * returns it from synchronize or download). Ops may be issued by several threads, one call at
 * a time per session; a backend serializes internally what it shares. */
#ifndef DW_BACKEND_BACKEND_H
#define DW_BACKEND_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/backend.h"
#include "driftwood/dtype.h"
#include "driftwood/error.h"
#include "driftwood/pick.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A weight on the device. Matrices are [rows × cols] row-major: the Hugging Face nn.Linear
 * layout [out_features, in_features], so a matmul computes x · Wᵀ. Vectors (norm weights,
 * biases) have rows == 1 and are always stored as f32 (weight_load converts them). */
typedef struct dw_cweight {
    const void *data;  /* device pointer */
    dw_dtype dtype;    /* F32, F16 or BF16; U32 for quantized codes */
    int64_t rows, cols;
    void *priv;        /* backend-owned (e.g. a converted copy to free); NULL on the CPU mmap path */
    /* Quantized matrices (MLX affine, core/quant_layout.h) only; qbits == 0 otherwise. Then
     * dtype is U32, data is [rows, cols·qbits/32] packed codes, rows × cols the unquantized
     * shape, and w[r][i] = scales[r][i/qgroup]·code + biases[r][i/qgroup]. */
    int qbits, qgroup;
    const void *qscales, *qbiases; /* [rows, cols/qgroup] in qsdtype (BF16, F16 or F32) */
    dw_dtype qsdtype;
} dw_cweight;

/* One layer's KV cache on the device, in the Hugging Face past_key_values layout per layer:
 * k and v are each [n_kv_heads, capacity, head_dim] in dtype (BF16 or F32). Entry
 * (h, p, :) is the key/value of the token at position p for KV head h. */
typedef struct dw_kv_view {
    void *k, *v;
    dw_dtype dtype;
    int n_kv_heads, capacity, head_dim;
} dw_kv_view;

/* Causal self-attention of n_tokens new queries at positions [pos0, pos0 + n_tokens) over the
 * cache entries [0, pos0 + n_tokens) (whose new part kv_write already stored). */
typedef struct dw_attn_params {
    int n_heads, n_kv_heads, head_dim; /* query head h reads KV head h / (n_heads / n_kv_heads) */
    int pos0, n_tokens;
    int window;  /* sliding window: the query at p sees keys in (p - window, p]; 0 = unlimited */
    float scale; /* usually 1/sqrt(head_dim) */
} dw_attn_params;

/* ---- the batched step (engine/batch_step.c) ---------------------------------------------------
 * One step advances many sequences at once: its n rows are tokens of different sequences (a
 * decode token, or a chunk of a prompt), each at its own position, over a paged KV pool.
 *
 * Batch invariance: every *_rows op below computes each row with arithmetic that depends only on
 * that row's own inputs (its activations, position and keys), never on n, on the other rows or on
 * their values; so a sequence's logits are bit-identical whether it runs alone or with 63 others,
 * and whether a token is a decode step or a row of a prompt chunk. (The plain ops above keep their
 * tuned single-session paths, which need not agree with these.) */

/* One layer's blocks of a paged KV pool. K and V are each [n_blocks, n_kv_heads, block_tokens,
 * head_dim] in dtype (BF16 or F32): the key of the token at position p of a sequence whose block
 * table is T lies at block T[p / block_tokens], entry p % block_tokens. Block ids are the same in
 * every layer. */
typedef struct dw_kv_pages {
    void *k, *v;
    dw_dtype dtype;
    int n_kv_heads, head_dim, block_tokens, n_blocks;
} dw_kv_pages;

/* Where the n rows of a step belong. All arrays are device int32 (uploaded by the engine once per
 * step). Row i is the token at position pos[i] of its sequence; its K/V go to entry slot[i] =
 * block · block_tokens + offset of the pool; its sequence's block table starts at
 * tables + table_at[i] and covers at least positions [0, pos[i]]. Rows of one sequence come in
 * position order, and a row's attention sees its sequence's keys at positions [0, pos[i]] (the
 * rows before it in the same step included: kv_write_rows runs first). */
typedef struct dw_rows {
    int n;
    const int32_t *pos, *slot, *table_at, *tables;
    int max_pos; /* host: the largest pos[i] (for sizing grids only; no result depends on it) */
} dw_rows;

/* How a batched step chooses tokens after its LM head (bits): argmax_rows, sample_rows. */
enum { DW_CHOOSE_GREEDY = 1, DW_CHOOSE_SAMPLED = 2 };

typedef struct dw_backend_ops {
    const char *name; /* "cpu", "cuda" */

    /* ---- guest memory ------------------------------------------------------------------ */

    /* (optional) Makes [base, base+len) usable by the device without copying; base and len
     * are page-aligned and the range overlaps no registered one. CUDA: cudaHostRegister
     * (mapped) and a check that the device pointer equals base. NULL: every host address is
     * device-accessible (CPU). */
    dw_status (*range_register)(void *ctx, void *base, size_t len, dw_error *err);
    /* (optional, with range_register) Unregisters every range registered inside
     * [base, base+len) (a whole reservation, when a Wasm memory is freed). */
    void (*range_release)(void *ctx, void *base, size_t len);
    /* The pointer the device computes on for the host span [host, host+bytes), or NULL when
     * some byte of it is not device-accessible. CPU: host. CUDA: host, inside registered
     * ranges (the zero-copy identity). */
    void *(*device_pointer)(void *ctx, const void *host, size_t bytes);

    /* ---- device memory ----------------------------------------------------------------- */

    /* Device buffer of at least `bytes`, aligned to 64 bytes, contents undefined. */
    dw_status (*alloc)(void *ctx, size_t bytes, void **out, dw_error *err);
    void (*free)(void *ctx, void *buf);
    /* Host -> device and device -> host copies after the queued work (host pointers may lie in
     * registered ranges). Both complete before returning. */
    dw_status (*upload)(void *ctx, void *dst, const void *host_src, size_t bytes, dw_error *err);
    dw_status (*download)(void *ctx, void *host_dst, const void *src, size_t bytes, dw_error *err);
    /* (optional) Device memory in use, bytes (CUDA: total − free). NULL: not known. */
    dw_status (*memory_used)(void *ctx, size_t *bytes_out, dw_error *err);
    /* (optional) The device's memory bandwidth, the bound of a bandwidth-bound step, over a
     * `bytes` buffer (which the backend may keep for the next call of the same size), median of
     * `reps` passes. CUDA: device-to-device copies, *gbs = (bytes read + written) / time. CPU:
     * reads through the kernels' threads, *gbs = bytes read / time. */
    dw_status (*memory_bandwidth)(void *ctx, size_t bytes, int reps, double *gbs, dw_error *err);

    /* ---- the guest's own compute (dw.gemm) ---------------------------------------------- */

    /* C[m×n] = A[m×k] × B[k×n], f32, row-major; operands are host pointers in device-
     * accessible memory (registered guest memory) or device buffers. DW_ERR_INVALID_ARGUMENT
     * when an operand is neither. Finished when it returns. */
    dw_status (*gemm_f32)(void *ctx, int m, int n, int k, const float *a, const float *b, float *c,
                          dw_error *err);

    /* ---- weights ------------------------------------------------------------------------ */

    /* Makes a weight from host data of rows × cols elements of dtype (F32, F16 or BF16) that
     * stays mapped for the model's life. CPU: points at `host` (no copy) for matrices,
     * converts vectors (rows == 1) to an f32 copy. CUDA: uploads (and may convert). */
    dw_status (*weight_load)(void *ctx, const void *host, dw_dtype dtype, int64_t rows, int64_t cols,
                             dw_cweight *out, dw_error *err);
    /* Makes a weight from a quantized matrix in host memory (host: qbits set; data, qscales
     * and qbiases host pointers that stay mapped). matmul, matmul_multi and embed take it. */
    dw_status (*weight_load_quant)(void *ctx, const dw_cweight *host, dw_cweight *out, dw_error *err);
    void (*weight_release)(void *ctx, dw_cweight *w);

    /* ---- forward ops -------------------------------------------------------------------- */

    /* out[i, :] = table[ids[i], :] as f32. ids is a HOST pointer of n ids, already checked to be
     * in [0, table->rows). */
    void (*embed)(void *ctx, float *out, const dw_cweight *table, const int32_t *ids, int n);
    /* out[i, :] = x[i, :] / sqrt(mean(x[i, :]^2) + eps) * w   (w: f32 vector of dim). out may be x. */
    void (*rmsnorm)(void *ctx, float *out, const float *x, const dw_cweight *w, int n, int dim, float eps);
    /* out[n × w->rows] = x[n × w->cols] · wᵀ (+ bias, an f32 vector of w->rows, when not NULL).
     * n == 1 is decode (bandwidth-bound matrix-vector); larger n is prefill, where each weight
     * row must be read once per batch, not once per token. out must not alias x. */
    void (*matmul)(void *ctx, float *out, const float *x, int n, const dw_cweight *w, const dw_cweight *bias);
    /* (optional) Several matmuls that share one input x, in one pass (e.g. q/k/v, gate/up):
     * out[j] = x · w[j]ᵀ (+ bias[j]) for j < count (count <= 4). NULL: the engine calls matmul. */
    void (*matmul_multi)(void *ctx, int count, float *const *out, const float *x, int n,
                         const dw_cweight *const *w, const dw_cweight *const *bias);
    /* Rotary position embedding in place on q [n, n_heads·head_dim] and k [n, n_kv_heads·head_dim]
     * for tokens at positions pos0.., in the Hugging Face "rotate_half" layout: dimension i pairs
     * with i + head_dim/2, angle = (float)pos · inv_freq[i] (inv_freq: device f32 [head_dim/2]). */
    void (*rope)(void *ctx, float *q, float *k, int n, int n_heads, int n_kv_heads, int head_dim, int pos0,
                 const float *inv_freq);
    /* Stores k and v ([n, n_kv_heads·head_dim] f32) at positions [pos0, pos0 + n) of the cache,
     * converting to the cache dtype (round to nearest even for BF16). */
    void (*kv_write)(void *ctx, const dw_kv_view *kv, const float *k, const float *v, int pos0, int n);
    /* out [n, n_heads·head_dim] = softmax(q·kᵀ·scale, causal) · v for every head (f32 softmax). */
    void (*attention)(void *ctx, float *out, const float *q, const dw_kv_view *kv, const dw_attn_params *p);
    /* out[i] = silu(gate[i]) · up[i] over count elements. out may be gate. */
    void (*swiglu)(void *ctx, float *out, const float *gate, const float *up, size_t count);
    /* x[i] += y[i] over count elements (the residual connection). */
    void (*add)(void *ctx, float *x, const float *y, size_t count);
    /* (optional) Greedy decoding without the host in the loop: ring[pos % ring_n] (device
     * int32s) = the first index of the largest of x[0, n) (NaN never wins), pos being the
     * step's position. An argmax issued by a decode step's step() is part of its recording;
     * each replay writes its own position's entry (and may prepare the next step of the chain).
     * NULL: the engine downloads the logits and takes the argmax on the host. */
    void (*argmax)(void *ctx, const float *x, int n, int32_t *ring, int ring_n, int pos);

    /* ---- the batched step (batch invariant: see dw_rows) ------------------------------------
     * (optional as a group: a backend provides all of these or none; NULL: no batching.) */

    /* out[j][n × w[j]->rows] = x[n × k] · w[j]ᵀ (+ bias[j]) for j < count (count <= 4), any n >= 1,
     * float or quantized weights. Each output element's reduction order depends on k alone. */
    void (*matmul_rows)(void *ctx, int count, float *const *out, const float *x, int n,
                        const dw_cweight *const *w, const dw_cweight *const *bias);
    /* rope() with each row at its own position r->pos[i]. */
    void (*rope_rows)(void *ctx, float *q, float *k, const dw_rows *r, int n_heads, int n_kv_heads,
                      int head_dim, const float *inv_freq);
    /* Stores row i's k and v ([n, n_kv_heads·head_dim] f32) at entry r->slot[i] of the pool layer,
     * converted to the pool dtype (round to nearest even for BF16). */
    void (*kv_write_rows)(void *ctx, const dw_kv_pages *kv, const float *k, const float *v, const dw_rows *r);
    /* out[i] = causal attention of query row i over its sequence's keys [0, r->pos[i]] (through its
     * block table), every head; p gives the heads, window and scale (p->pos0, p->n_tokens unused). */
    void (*attention_rows)(void *ctx, float *out, const float *q, const dw_kv_pages *kv, const dw_rows *r,
                           const dw_attn_params *p);
    /* dst[i, :] = src[idx[i], :] for i < n (idx: device int32), width floats a row. */
    void (*gather_rows)(void *ctx, float *dst, const float *src, const int32_t *idx, int n, int width);
    /* out[i] (device int32) = the first index of the largest of x[i, 0..width) (NaN never wins), i < n. */
    void (*argmax_rows)(void *ctx, const float *x, int n, int width, int32_t *out);
    /* For each row i < n with params[i].s.temperature > 0 (params: device memory): out[i] = the
     * token the device sampler's rule (driftwood/pick.h) draws from x[i, 0..width) with
     * params[i]; the other rows' out[i] are left as they are. */
    void (*sample_rows)(void *ctx, const float *x, int n, int width, const dw_pick_row *params, int32_t *out);
    /* Device to device copy of bytes, after the queued work (a block copied on write). */
    void (*copy)(void *ctx, void *dst, const void *src, size_t bytes);

    /* ---- decode steps ------------------------------------------------------------------- */

    /* (optional) Runs one decode step: step(arg) issues the ops of one token, from embed to the
     * LM head's logits in a device buffer. The backend may record the ops step issues for `key`
     * (a session) once and replay the recording on later calls, with the token id and position
     * taken from `id` and `pos` instead of the values the ops were recorded with; so step must
     * issue the same ops on the same buffers every time for a key. The step is queued when this
     * returns; errors surface at synchronize or download. NULL: the engine calls step(arg). */
    void (*decode_step)(void *ctx, const void *key, int32_t id, int pos, void (*step)(void *arg), void *arg);
    /* (optional) As decode_step, but the token id is read from the device int32 at id_dev when
     * the step runs, so a step can follow an argmax without the host waiting for it; returns 0,
     * queuing nothing, when it cannot (nothing recorded for key yet, graphs off): the caller
     * then waits for the id and calls decode_step. */
    int (*decode_step_from)(void *ctx, const void *key, const int32_t *id_dev, int pos, void (*step)(void *arg),
                            void *arg);
    /* (optional) Forgets what decode_step recorded for key (before a session's buffers are freed). */
    void (*decode_forget)(void *ctx, const void *key);

    /* ---- the device as a whole ---------------------------------------------------------- */

    /* Waits for queued work; returns the first error an op hit since the last call. */
    dw_status (*synchronize)(void *ctx, dw_error *err);
    /* Describes the device and what was chosen when it opened (dw_backend_info). */
    void (*describe)(void *ctx, dw_backend_info *out);
    /* (optional) Counters since the backend opened (dw_backend_stats); NULL: all zero. */
    void (*stats)(void *ctx, dw_backend_stats *out);
    /* Releases the context and the dw_backend record (after every buffer, weight and
     * registered range it made is released). */
    void (*destroy)(void *ctx);
} dw_backend_ops;

struct dw_backend {
    const dw_backend_ops *ops;
    void *ctx;
};

/* Constructors, one per backend folder, listed in the registry (backend.c). opts is never
 * NULL there (the registry fills the defaults). dw__cuda_backend_open exists only when
 * DW_HAVE_CUDA is defined. */
dw_status dw__cpu_backend_open(const dw_backend_options *opts, dw_backend **out, dw_error *err);
#ifdef DW_HAVE_CUDA
dw_status dw__cuda_backend_open(const dw_backend_options *opts, dw_backend **out, dw_error *err);
/* The CUDA runtime linked in, the driver and whether a device answers (cuda_version.cu). */
const char *dw__cuda_version(void);
#endif

#ifdef __cplusplus
}
#endif

#endif
