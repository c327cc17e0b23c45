/* The CUDA backend's batched-step ops (backend.h: matmul_rows, rope_rows, kv_write_rows,
 * attention_rows over a paged KV pool, gather_rows, argmax_rows, sample_rows, copy), on the kernels of
 * kernels_batch_matmul.cu, kernels_paged_attention.cu, kernels_batch.cu and kernels_sample.cu. Every one is batch
 * invariant: a row's result depends on that row's inputs and the shapes only (docs/CUDA.md,
 * "Batched step"). Each op takes the context's lock and flushes the decode op held back; none
 * fails by itself (the first error is recorded and returned by synchronize or download). */
#include "backend/cuda/cuda_context.h"

#include <stdio.h>
#include <string.h>

/* ---- matmul_rows ---------------------------------------------------------------------------- */

/* How the batched product takes a weight: one of the tensor-core kinds (dwk::mmr_kind), or -1
 * for the plain kernel (f32 weights, or bf16/f16 rows whose length is not a multiple of 8). */
static int mmr_kind_of(const dw_cweight *w) {
    if (w->qbits == 4) return dwk::MMR_Q4;
    if (w->qbits == 8) return dwk::MMR_Q8;
    if (w->cols % 8) return -1;
    if (w->dtype == DW_DTYPE_BF16) return dwk::MMR_BF16;
    if (w->dtype == DW_DTYPE_F16) return dwk::MMR_F16;
    return -1;
}

/* Two weights can share a launch: same kind and, quantized, same group and (scale, bias) type. */
static bool same_launch(const dw_cweight *a, const dw_cweight *b) {
    const int ka = mmr_kind_of(a);
    if (ka < 0 || ka != mmr_kind_of(b)) return false;
    if (ka == dwk::MMR_Q4 || ka == dwk::MMR_Q8)
        return a->qgroup == b->qgroup && dw__cuda_sb_wtype(a->qsdtype) == dw__cuda_sb_wtype(b->qsdtype);
    return true;
}

void dw__cuda_matmul_rows(void *ctx, int count, float *const *out, const float *x, int n, const dw_cweight *const *w,
                          const dw_cweight *const *bias) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    dw__cuda_flush(c);
    if (n <= 0 || count <= 0) return;
    const int K = (int)w[0]->cols;
    bool need_bf16 = false, need_f16 = false;
    for (int j = 0; j < count; j++) {
        if (count > 4 || w[j]->cols != K || (w[j]->qbits && w[j]->qbits != 4 && w[j]->qbits != 8)) {
            dw__cuda_record_error(c, DW_ERR_INVALID_ARGUMENT,
                                  "backend 'cuda': matmul_rows: at most 4 matrices of equal columns, 4- or 8-bit "
                                  "when quantized");
            return;
        }
        const int kind = mmr_kind_of(w[j]);
        need_bf16 = need_bf16 || kind == dwk::MMR_BF16 || kind == dwk::MMR_Q4 || kind == dwk::MMR_Q8;
        need_f16 = need_f16 || kind == dwk::MMR_F16;
    }
    /* x rounded once per op: bf16 first, then f16 behind it */
    const size_t elems = (size_t)n * K;
    const size_t need = elems * 2 * ((need_bf16 ? 1 : 0) + (need_f16 ? 1 : 0));
    if (need && !dw__cuda_grow(c, &c->xh, &c->xh_bytes, need, "cudaMalloc(matmul_rows activations)")) return;
    void *x_bf16 = c->xh, *x_f16 = (char *)c->xh + (need_bf16 ? elems * 2 : 0);
    if (need_bf16) dw__cuda_check(c, dwk::launch_round_x(x_bf16, x, elems, 0, c->stream), "x rounding kernel");
    if (need_f16) dw__cuda_check(c, dwk::launch_round_x(x_f16, x, elems, 1, c->stream), "x rounding kernel");

    for (int j = 0; j < count;) {
        const dw_cweight *wj = w[j];
        const float *bj = bias && bias[j] ? (const float *)bias[j]->data : NULL;
        const int kind = mmr_kind_of(wj);
        if (kind < 0) {
            dw__cuda_check(c,
                           dwk::launch_matmul_rows_plain(out[j], x, n, wj->data, dw__cuda_wtype(wj->dtype),
                                                         (int)wj->rows, K, bj, c->stream),
                           "matmul_rows plain kernel");
            j++;
            continue;
        }
        dwk::mmr_args a;
        memset(&a, 0, sizeof a);
        a.K = K, a.n = n, a.kind = kind;
        a.qgroup = wj->qbits ? wj->qgroup : 0;
        a.sbtype = wj->qbits ? dw__cuda_sb_wtype(wj->qsdtype) : dwk::W_BF16;
        a.xh = kind == dwk::MMR_F16 ? x_f16 : x_bf16;
        int m = 0;
        while (j < count && (m == 0 || same_launch(w[j - m], w[j]))) {
            a.w[m] = w[j]->data;
            a.sb[m] = w[j]->qscales;
            a.out[m] = out[j];
            a.bias[m] = bias && bias[j] ? (const float *)bias[j]->data : NULL;
            a.rows[m] = (int)w[j]->rows;
            m++, j++;
        }
        a.count = m;
        dw__cuda_check(c, dwk::launch_matmul_rows(a, c->stream), "matmul_rows kernel");
    }
}

/* ---- the rest ------------------------------------------------------------------------------- */

static dwk::rows_args rows_of(const dw_rows *r) {
    dwk::rows_args a;
    a.n = r->n, a.pos = r->pos, a.slot = r->slot, a.table_at = r->table_at, a.tables = r->tables;
    return a;
}

void dw__cuda_rope_rows(void *ctx, float *q, float *k, const dw_rows *r, int n_heads, int n_kv_heads, int head_dim,
                        const float *inv_freq) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    dw__cuda_flush(c);
    dw__cuda_check(c, dwk::launch_rope_rows(q, k, rows_of(r), n_heads, n_kv_heads, head_dim, inv_freq, c->stream),
                   "rope_rows kernel");
}

void dw__cuda_kv_write_rows(void *ctx, const dw_kv_pages *kv, const float *k, const float *v, const dw_rows *r) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    dw__cuda_flush(c);
    if (kv->block_tokens <= 0) {
        dw__cuda_record_error(c, DW_ERR_INVALID_ARGUMENT, "backend 'cuda': kv_write_rows: block_tokens must be > 0");
        return;
    }
    dw__cuda_check(c,
                   dwk::launch_kv_write_rows(kv->k, kv->v, kv->dtype == DW_DTYPE_F32, kv->n_kv_heads, kv->head_dim,
                                             kv->block_tokens, k, v, rows_of(r), c->stream),
                   "kv_write_rows kernel");
}

void dw__cuda_attention_rows(void *ctx, float *out, const float *q, const dw_kv_pages *kv, const dw_rows *r,
                             const dw_attn_params *p) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    dw__cuda_flush(c);
    if (r->n <= 0) return;
    if (p->head_dim <= 0 || p->head_dim > 256 || p->n_kv_heads <= 0 || p->n_heads % p->n_kv_heads ||
        p->head_dim != kv->head_dim || p->n_kv_heads != kv->n_kv_heads || kv->block_tokens <= 0 || r->max_pos < 0 ||
        r->n > 65535) {
        dw__cuda_record_error(c, DW_ERR_UNSUPPORTED,
                              "backend 'cuda': attention_rows: head_dim must be at most 256, n_heads a multiple of "
                              "n_kv_heads, the pool's heads those of the attention, and at most 65535 rows");
        return;
    }
    dwk::paged_attn_args a;
    memset(&a, 0, sizeof a);
    a.out = out, a.q = q, a.k = kv->k, a.v = kv->v, a.kv_f32 = kv->dtype == DW_DTYPE_F32;
    a.n_heads = p->n_heads, a.n_kv = p->n_kv_heads, a.hd = p->head_dim, a.block_tokens = kv->block_tokens;
    a.window = p->window, a.scale = p->scale;
    a.r = rows_of(r);
    a.max_chunks = r->max_pos / DWK_PAGED_CHUNK + 1;
    const size_t bytes = dwk::paged_attention_part_floats(r->n, p->n_heads, p->head_dim, a.max_chunks) * sizeof(float);
    if (!dw__cuda_grow(c, (void **)&c->bpart, &c->bpart_bytes, bytes, "cudaMalloc(attention_rows partials)")) return;
    a.part = c->bpart;
    dw__cuda_check(c, dwk::launch_paged_attention(a, c->stream), "attention_rows kernel");
}

void dw__cuda_gather_rows(void *ctx, float *dst, const float *src, const int32_t *idx, int n, int width) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    dw__cuda_flush(c);
    dw__cuda_check(c, dwk::launch_gather_rows(dst, src, idx, n, width, c->stream), "gather_rows kernel");
}

void dw__cuda_argmax_rows(void *ctx, const float *x, int n, int width, int32_t *out) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    dw__cuda_flush(c);
    dw__cuda_check(c, dwk::launch_argmax_rows(x, n, width, out, c->stream), "argmax_rows kernel");
}

void dw__cuda_sample_rows(void *ctx, const float *x, int n, int width, const dw_pick_row *params, int32_t *out) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    dw__cuda_flush(c);
    dw__cuda_check(c, dwk::launch_sample_rows(x, n, width, params, out, c->stream), "sample_rows kernel");
}

void dw__cuda_copy(void *ctx, void *dst, const void *src, size_t bytes) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    dw__cuda_flush(c);
    if (!bytes) return;
    dw__cuda_check(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream), "cudaMemcpyAsync (copy)");
}
