/* The CUDA backend's forward ops (src/backend/backend.h): decode (n == 1) on our own kernels
 * (kernels_*.cu) with neighbouring ops fused (cuda_fusion.cu), prefill (n > 1) on cuBLAS's
 * tensor-core GEMMs. Each op takes the context's lock; none fails by itself (the first error is
 * recorded and returned by synchronize or download). */
#include "backend/cuda/cuda_context.h"

#include <string.h>

#include <algorithm>

#define GEMM_SCRATCH_BYTES ((size_t)64 << 20)    /* stacked hi+lo GEMM output per row chunk */
#define DEQUANT_SCRATCH_BYTES ((size_t)64 << 20) /* bf16 rows of a quantized matrix per GEMM */

void dw__cuda_embed(void *ctx, float *out, const dw_cweight *table, const int32_t *ids, int n) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    dw__cuda_flush(c);
    if (table->qbits) {
        dw__cuda_check(c, dwk::launch_embed_q(out, dw__cuda_qmatrix(table), ids, n, c->cap_slot, c->stream),
                       "embed kernel");
        return;
    }
    dw__cuda_check(c,
                   dwk::launch_embed(out, table->data, dw__cuda_wtype(table->dtype), (int)table->cols, ids, n,
                                     c->cap_slot, c->stream),
                   "embed kernel");
}

void dw__cuda_rmsnorm(void *ctx, float *out, const float *x, const dw_cweight *w, int n, int dim, float eps) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    dw__cuda_flush(c);
    if (n == 1 && out != x) { /* for the matvec that reads out */
        dw__cuda_hold_norm(c, out, x, (const float *)w->data, dim, eps);
        return;
    }
    dw__cuda_check(c, dwk::launch_rmsnorm(out, x, (const float *)w->data, n, dim, eps, c->stream), "rmsnorm kernel");
}

/* ---- prefill GEMM ---------------------------------------------------------------------------
 * out [n × rows] = x [n × K] · wᵀ on the tensor cores. bf16/f16 weights take x split into two
 * halves hi + lo (each exactly representable) stacked as 2n rows, so the products keep f32
 * accuracy; the two result halves are summed (tuning.prefill_passes 1: x rounded to bf16 once
 * instead). f32 weights run an f32 GEMM. Quantized weights are dequantized to bf16 a block of
 * rows at a time (DEQUANT_SCRATCH_BYTES) and each block runs the bf16 GEMM: the weights are
 * rounded to bf16 once (a relative 2^-9 per weight), x is not. */

/* The rows [r0, r0 + cnt) of out (row stride ld) from wrows (those rows, bf16 or f16, K each),
 * with x already split into c->act. */
static void gemm_half_rows(dw__cuda_ctx *c, float *out, int ld, int r0, int n, const void *wrows, bool half, int cnt,
                           int K, const float *b) {
    const float one = 1.0f, zero = 0.0f;
    const cudaDataType_t t = half ? CUDA_R_16F : CUDA_R_16BF;
    if (c->tuning.prefill_passes == 1) {
        dw__cuda_check_blas(c,
                            c->blas->gemm_ex(c->handle, CUBLAS_OP_T, CUBLAS_OP_N, cnt, n, K, &one, wrows, t, K, c->act,
                                             t, K, &zero, out + r0, CUDA_R_32F, ld, CUBLAS_COMPUTE_32F,
                                             CUBLAS_GEMM_DEFAULT),
                            "cublasGemmEx (bf16)");
        if (b) dw__cuda_check(c, dwk::launch_add_bias(out, b, n, ld, r0, cnt, c->stream), "bias kernel");
        return;
    }
    size_t rc = GEMM_SCRATCH_BYTES / ((size_t)2 * n * sizeof(float));
    rc = rc / 128 * 128;
    if (rc < 128) rc = 128;
    if (rc > (size_t)cnt) rc = cnt;
    if (!dw__cuda_grow(c, (void **)&c->gout, &c->gout_bytes, rc * 2 * n * sizeof(float), "cudaMalloc(GEMM output)"))
        return;
    for (int q0 = 0; q0 < cnt; q0 += (int)rc) {
        const int m = cnt - q0 < (int)rc ? cnt - q0 : (int)rc;
        const char *wr = (const char *)wrows + (size_t)q0 * K * 2;
        dw__cuda_check_blas(c,
                            c->blas->gemm_ex(c->handle, CUBLAS_OP_T, CUBLAS_OP_N, m, 2 * n, K, &one, wr, t, K, c->act,
                                             t, K, &zero, c->gout, CUDA_R_32F, m, CUBLAS_COMPUTE_32F,
                                             CUBLAS_GEMM_DEFAULT),
                            "cublasGemmEx (bf16 hi+lo)");
        dw__cuda_check(c, dwk::launch_combine_hilo(out, c->gout, n, m, ld, r0 + q0, b, c->stream),
                       "hi+lo combine kernel");
    }
}

static void gemm(dw__cuda_ctx *c, float *out, const float *x, int n, const dw_cweight *w, const dw_cweight *bias) {
    const int rows = (int)w->rows, K = (int)w->cols;
    const float *b = bias ? (const float *)bias->data : NULL;
    if (w->dtype == DW_DTYPE_F32) {
        const float one = 1.0f, zero = 0.0f;
        dw__cuda_check_blas(c,
                            c->blas->gemm_ex(c->handle, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, K, &one, w->data,
                                             CUDA_R_32F, K, x, CUDA_R_32F, K, &zero, out, CUDA_R_32F, rows,
                                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                            "cublasGemmEx (f32)");
        if (b) dw__cuda_check(c, dwk::launch_add_bias(out, b, n, rows, 0, rows, c->stream), "bias kernel");
        return;
    }
    const bool half = !w->qbits && w->dtype == DW_DTYPE_F16;
    const int passes = c->tuning.prefill_passes;
    if (!dw__cuda_grow(c, &c->act, &c->act_bytes, (size_t)passes * n * K * 2, "cudaMalloc(GEMM activations)")) return;
    dw__cuda_check(c, dwk::launch_split_act(c->act, x, n, K, half, passes, c->stream), "activation split kernel");
    if (!w->qbits) {
        gemm_half_rows(c, out, rows, 0, n, w->data, half, rows, K, b);
        return;
    }
    int block = (int)(DEQUANT_SCRATCH_BYTES / ((size_t)K * 2));
    if (block > rows) block = rows;
    if (!dw__cuda_grow(c, &c->deq, &c->deq_bytes, (size_t)block * K * 2, "cudaMalloc(dequantized rows)")) return;
    const dwk::qmatrix m = dw__cuda_qmatrix(w);
    for (int r0 = 0; r0 < rows; r0 += block) {
        const int cnt = rows - r0 < block ? rows - r0 : block;
        dw__cuda_check(c, dwk::launch_dequant_bf16(c->deq, m, r0, cnt, c->stream), "dequantize kernel");
        gemm_half_rows(c, out, rows, r0, n, c->deq, false, cnt, K, b);
    }
}

/* ---- matrix products --------------------------------------------------------------------- */

void dw__cuda_matmul_multi(void *ctx, int count, float *const *out, const float *x, int n, const dw_cweight *const *w,
                           const dw_cweight *const *bias) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    if (n > 1) {
        dw__cuda_flush(c);
        for (int j = 0; j < count; j++) gemm(c, out[j], x, n, w[j], bias ? bias[j] : NULL);
        return;
    }
    dwk::mv_args a;
    memset(&a, 0, sizeof a);
    a.count = count;
    a.K = (int)w[0]->cols;
    a.wtype = dw__cuda_wtype(w[0]->dtype);
    a.x = x;
    a.qbits = w[0]->qbits;
    a.qgroup = w[0]->qgroup;
    a.sbtype = dw__cuda_sb_wtype(w[0]->qsdtype);
    bool same_type = true;
    for (int j = 0; j < count; j++) {
        a.w[j] = w[j]->data;
        a.sb[j] = w[j]->qscales;
        a.out[j] = out[j];
        a.bias[j] = bias && bias[j] ? (const float *)bias[j]->data : NULL;
        a.row_start[j + 1] = a.row_start[j] + (int)w[j]->rows;
        same_type = same_type && w[j]->dtype == w[0]->dtype && w[j]->qbits == w[0]->qbits &&
                    (!w[0]->qbits || (w[j]->qgroup == w[0]->qgroup && w[j]->qsdtype == w[0]->qsdtype));
    }
    if (!same_type) { /* mixed dtypes: one launch per matrix */
        for (int j = 0; j < count; j++) {
            float *o = out[j];
            const dw_cweight *wj = w[j], *bj = bias ? bias[j] : NULL;
            dw__cuda_matmul_multi(ctx, 1, &o, x, 1, &wj, &bj); /* the lock is recursive */
        }
        return;
    }
    dw__cuda_take_norm(c, &a);
    if (count <= 2) { /* may fuse with a following add or swiglu */
        dw__cuda_hold_matvec(c, a);
        return;
    }
    /* q, k, v: the attention comes next, and its blocks would take SM room from this kernel's
     * blocks not yet started, so the kernel lets it start only from each warp's last row */
    a.trigger_late = count == 3;
    dw__cuda_run_matvec(c, a);
}

void dw__cuda_matmul(void *ctx, float *out, const float *x, int n, const dw_cweight *w, const dw_cweight *bias) {
    dw__cuda_matmul_multi(ctx, 1, &out, x, n, &w, &bias);
}

/* ---- elementwise ------------------------------------------------------------------------- */

void dw__cuda_add(void *ctx, float *x, const float *y, size_t count) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    if (dw__cuda_fuse_add(c, x, y, count)) return;
    dw__cuda_flush(c);
    dw__cuda_check(c, dwk::launch_add(x, y, count, c->stream), "add kernel");
}

void dw__cuda_swiglu(void *ctx, float *out, const float *gate, const float *up, size_t count) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    if (dw__cuda_fuse_swiglu(c, out, gate, up, count)) return;
    dw__cuda_flush(c);
    dw__cuda_check(c, dwk::launch_swiglu(out, gate, up, count, c->stream), "swiglu kernel");
}

/* ---- RoPE, the KV store, attention --------------------------------------------------------- */

void dw__cuda_rope(void *ctx, float *q, float *k, int n, int n_heads, int n_kv_heads, int head_dim, int pos0,
                   const float *inv_freq) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    dw__cuda_flush(c);
    dwk::ropekv_args a;
    memset(&a, 0, sizeof a);
    a.q = q, a.k = k, a.n = n, a.n_heads = n_heads, a.n_kv = n_kv_heads;
    a.hd = head_dim, a.pos0 = pos0, a.inv_freq = inv_freq, a.rope = 1;
    a.dslot = c->cap_slot;
    dw__cuda_hold_rope(c, a, false); /* for the kv_write after it */
}

void dw__cuda_kv_write(void *ctx, const dw_kv_view *kv, const float *k, const float *v, int pos0, int n) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    dwk::ropekv_args a;
    if (!dw__cuda_take_rope(c, k, pos0, n, kv, &a)) { /* no RoPE of this k held: the store alone */
        memset(&a, 0, sizeof a);
        a.k = (float *)k, a.n = n, a.n_heads = 0, a.n_kv = kv->n_kv_heads, a.hd = kv->head_dim, a.pos0 = pos0;
        a.dslot = c->cap_slot;
    }
    a.v = v;
    a.kc = kv->k, a.vc = kv->v;
    a.kv_f32 = kv->dtype == DW_DTYPE_F32;
    a.capacity = kv->capacity;
    if (n == 1) { /* may fuse with the attention that follows */
        dw__cuda_hold_rope(c, a, true);
        return;
    }
    dw__cuda_check(c, dwk::launch_rope_kv(a, c->stream), "rope/kv_write kernel");
}

void dw__cuda_attention(void *ctx, float *out, const float *q, const dw_kv_view *kv, const dw_attn_params *p) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    /* the held RoPE + KV store of this very token and cache, with q as rope's: fused (it stays
     * held until the launch below; an early return leaves it to a flush) */
    const dwk::ropekv_args *fused = dw__cuda_held_rope_kv(c, q, kv, p);
    if (!fused) dw__cuda_flush(c);
    if (!dwk::attention_supported(p->head_dim) || p->n_heads % p->n_kv_heads) {
        dw__cuda_record_error(c, DW_ERR_UNSUPPORTED,
                              "backend 'cuda': attention: head_dim must be even and at most 256, and n_heads a "
                              "multiple of n_kv_heads");
        return;
    }
    const dw__cuda_tuning &t = c->tuning;
    int gt, tiles;
    int len = p->pos0 + p->n_tokens;
    dwk::attention_tiles(t, p->n_heads / p->n_kv_heads, len, p->n_tokens, &gt, &tiles);
    /* recorded steps use the most splits (the length changes between replays) */
    int splits = dwk::attention_splits(t, p->n_kv_heads, tiles, c->n_sm, c->cap_slot ? 0 : len, p->n_tokens);
    int splits_graph = p->n_tokens == 1 ? dwk::attention_splits(t, p->n_kv_heads, tiles, c->n_sm, 0, 1) : splits;
    size_t rows = (size_t)p->n_tokens * p->n_heads;
    size_t need = rows * (size_t)std::max(splits, splits_graph) * (p->head_dim + 2);
    size_t counters = (size_t)p->n_tokens * p->n_kv_heads * tiles;
    if (splits > 1 || splits_graph > 1) {
        size_t have = c->part_floats * sizeof(float);
        if (!dw__cuda_grow(c, (void **)&c->part, &have, need * sizeof(float), "cudaMalloc(attention partials)")) return;
        c->part_floats = have / sizeof(float);
        if (c->counters_count < counters) {
            size_t cbytes = c->counters_count * sizeof(unsigned);
            if (!dw__cuda_grow(c, (void **)&c->counters, &cbytes, counters * sizeof(unsigned),
                               "cudaMalloc(attention counters)"))
                return;
            c->counters_count = counters;
            dw__cuda_check(c, cudaMemsetAsync(c->counters, 0, counters * sizeof(unsigned), c->stream),
                           "cudaMemsetAsync");
        }
    }
    dwk::attn_args a;
    memset(&a, 0, sizeof a);
    a.out = out, a.q = q, a.k = kv->k, a.v = kv->v, a.kv_f32 = kv->dtype == DW_DTYPE_F32;
    a.part = c->part;
    a.part_ml = c->part + rows * (size_t)splits * p->head_dim;
    a.counters = c->counters;
    a.n_heads = p->n_heads, a.n_kv = p->n_kv_heads, a.hd = p->head_dim, a.capacity = kv->capacity;
    a.pos0 = p->pos0, a.n_tokens = p->n_tokens, a.window = p->window, a.splits = splits, a.scale = p->scale;
    a.dslot = c->cap_slot;
    if (fused) {
        a.inv_freq = fused->rope ? fused->inv_freq : NULL;
        a.k_new = fused->k, a.v_new = fused->v;
        dw__cuda_drop_held(c);
    }
    dw__cuda_check(c, dwk::launch_attention(a, t, c->stream), "attention kernel");
}
