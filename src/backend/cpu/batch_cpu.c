/* The CPU backend's batched-step ops (backend.h, "the batched step"): matmul_rows, rope_rows,
 * kv_write_rows, attention_rows over a paged KV pool, gather_rows, argmax_rows, sample_rows and copy. Every
 * op computes each row from that row's inputs alone, in an order that depends on nothing else
 * (batch invariance): threads split over weight rows, rows and heads, never over a reduction.
 * matmul_rows runs the register-tiled rows_* kernels (kernels.h), or on bf16 weights, where the
 * set has it, rows_bf16_bx on the activations rounded to bf16 once per op (whatever n, so still
 * invariant); on quantized weights, the set's quantized matvec over a tile of tokens (qk->rows,
 * kernels_quant.h: each code read once for the tile) or token by token, on the tokens' group sums
 * (and 4-bit layout, qk->prep4) made once per op: each output is the bits the decode matvec
 * gives that token alone. */
#include "backend/cpu/cpu_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"

#define ROWS_MAX_MULTI 4
/* Weight rows per task: one token reads each row once (small blocks balance the threads over
 * one linear stream each); a batch does more work per row (48: a multiple of every register
 * tile's rows, kernels_avx512.c). */
#define ROWS_BLOCK_DECODE 16
#define ROWS_BLOCK_BATCH 48
#define ROWS_BLOCK_QDECODE 32 /* quantized rows are short: as the decode matvec (matmul_cpu.c) */
/* attention_rows: keys per step of the online softmax (scores live on the stack) */
#define PAGED_ATTN_CHUNK 128
#define PAGED_ATTN_MAX_HEAD_DIM 512
#define PAGED_ATTN_MAX_GROUP 32

/* ---- matmul_rows ------------------------------------------------------------------------- */

typedef struct rows_job {
    const dw__cpu *c;
    int count;
    float *out[ROWS_MAX_MULTI];
    const dw_cweight *w[ROWS_MAX_MULTI];
    const dw_cweight *bias[ROWS_MAX_MULTI];
    int first_task[ROWS_MAX_MULTI + 1]; /* task ranges per matrix */
    int block_rows;
    const float *x; /* [n, k] */
    const uint16_t *xb; /* x rounded to bf16 [n, k] where the set has rows_bf16_bx, else NULL */
    int n, k;
    /* quantized: per matrix, every token's group sums (lds floats a token) and, where the set
     * prepares 4-bit inputs and the group size allows, every token's prep4 layout (ldp floats a
     * token; NULL: the matvec reads x) */
    const float *xsum[ROWS_MAX_MULTI], *xp[ROWS_MAX_MULTI];
    size_t lds[ROWS_MAX_MULTI], ldp;
} rows_job;

static dw__matmul_fn rows_kernel(const dw__cpu_kernels *k, dw_dtype dtype) {
    switch (dtype) {
    case DW_DTYPE_BF16: return k->rows_bf16;
    case DW_DTYPE_F16: return k->rows_f16;
    default: return k->rows_f32;
    }
}

static void rows_task(void *arg, int task, int thread) {
    rows_job *j = arg;
    int m = 0;
    while (task >= j->first_task[m + 1]) m++;
    const dw_cweight *w = j->w[m];
    int rows = (int)w->rows, k = j->k;
    int r0 = (task - j->first_task[m]) * j->block_rows;
    int r1 = r0 + j->block_rows < rows ? r0 + j->block_rows : rows;
    float *out = j->out[m];
    if (w->qbits) {
        const dw__cpu_qkernels *qk = j->c->qk;
        const float *xs = j->xsum[m];
        size_t lds = j->lds[m];
        if (j->xp[m] && qk->rows4p) {
            qk->rows4p(out, rows, j->xp[m], j->ldp, xs, lds, j->n, w, r0, r1);
        } else if (j->xp[m]) {
            for (int t = 0; t < j->n; t++)
                qk->matvec4p(out + (size_t)t * rows, j->xp[m] + t * j->ldp, xs + t * lds, w, r0, r1);
        } else if (qk->rows) {
            qk->rows(out, rows, j->x, (size_t)k, xs, lds, j->n, w, r0, r1);
        } else {
            for (int t = 0; t < j->n; t++)
                qk->matvec(out + (size_t)t * rows, j->x + (size_t)t * k, xs + t * lds, w, r0, r1);
        }
    } else if (w->dtype == DW_DTYPE_BF16 && j->xb) {
        j->c->k->rows_bf16_bx(out, rows, j->xb, k, j->n, w->data, k, r0, r1);
    } else {
        rows_kernel(j->c->k, w->dtype)(out, rows, j->x, k, j->n, w->data, k, r0, r1);
    }
    if (j->bias[m]) {
        const float *b = j->bias[m]->data;
        for (int t = 0; t < j->n; t++)
            for (int r = r0; r < r1; r++) out[(size_t)t * rows + r] += b[r];
    }
}

/* The quantized matrices' per-token inputs, once per op: group sums per group size, and the
 * 4-bit layout (prep4) where the set has one, k is in range and the group divides 128 (the
 * decode matvec's condition, matmul_cpu.c); all from each token's row alone. */
static void quant_inputs(dw__cpu *c, rows_job *j) {
    const int n = j->n, k = j->k;
    const size_t ldp = (DW_QPREP4_FLOATS(k) + 15) & ~(size_t)15;
    size_t need = 0;
    for (int m = 0; m < j->count; m++) {
        if (!j->w[m]->qbits) continue;
        need += (size_t)n * (k / j->w[m]->qgroup);
        if (j->w[m]->qbits == 4 && c->qk->prep4 && k <= 65536 && 128 % j->w[m]->qgroup == 0) need += (size_t)n * ldp;
    }
    if (need > c->rows_qin_cap) {
        free(c->rows_qin);
        c->rows_qin = aligned_alloc(64, (need * sizeof(float) + 63) & ~(size_t)63);
        c->rows_qin_cap = c->rows_qin ? need : 0;
    }
    DW_ASSERT(c->rows_qin); /* ops cannot fail one by one: a few MB at most */
    float *at = c->rows_qin;
    j->ldp = ldp;
    for (int m = 0; m < j->count; m++) {
        const dw_cweight *w = j->w[m];
        if (!w->qbits) continue;
        int gs = w->qgroup, prep = w->qbits == 4 && c->qk->prep4 && k <= 65536 && 128 % gs == 0;
        int same = 0; /* matrices with the same group size (and use of the layout) share them */
        while (same < m && !(j->w[same]->qbits && j->w[same]->qgroup == gs && (!prep || j->xp[same]))) same++;
        j->lds[m] = (size_t)(k / gs);
        if (same < m) {
            j->xsum[m] = j->xsum[same];
            j->xp[m] = prep ? j->xp[same] : NULL;
            continue;
        }
        float *xs = at;
        at += (size_t)n * j->lds[m];
        for (int t = 0; t < n; t++) dw__cpu_group_sums(xs + t * j->lds[m], j->x + (size_t)t * k, k, gs);
        j->xsum[m] = xs;
        if (prep) {
            float *xp = at;
            at += (size_t)n * ldp;
            for (int t = 0; t < n; t++) c->qk->prep4(xp + t * ldp, j->x + (size_t)t * k, k, gs);
            j->xp[m] = xp;
        }
    }
}

void dw__cpu_matmul_rows(void *ctx, int count, float *const *out, const float *x, int n, const dw_cweight *const *w,
                         const dw_cweight *const *bias) {
    dw__cpu *c = ctx;
    DW_ASSERT(count >= 1 && count <= ROWS_MAX_MULTI && n >= 1);
    rows_job j = {.c = c, .count = count, .x = x, .n = n, .k = (int)w[0]->cols};
    int quant = 0, bf16 = 0;
    for (int m = 0; m < count; m++) quant |= w[m]->qbits != 0;
    j.block_rows = n > 1 ? ROWS_BLOCK_BATCH : quant ? ROWS_BLOCK_QDECODE : ROWS_BLOCK_DECODE;
    for (int m = 0; m < count; m++) {
        DW_ASSERT(w[m]->cols == w[0]->cols);
        j.out[m] = out[m];
        j.w[m] = w[m];
        j.bias[m] = bias ? bias[m] : NULL;
        j.first_task[m + 1] = j.first_task[m] + (int)((w[m]->rows + j.block_rows - 1) / j.block_rows);
        bf16 |= !w[m]->qbits && w[m]->dtype == DW_DTYPE_BF16;
    }
    pthread_mutex_lock(&c->rows_lock);
    if (bf16 && c->k->rows_bf16_bx) { /* round the activations once, whatever n: invariant */
        size_t need = (size_t)n * j.k;
        if (need > c->rows_xb_cap) {
            free(c->rows_xb);
            c->rows_xb = aligned_alloc(64, (need * sizeof(uint16_t) + 63) & ~(size_t)63);
            c->rows_xb_cap = c->rows_xb ? need : 0;
        }
        DW_ASSERT(c->rows_xb);
        c->k->f32_to_bf16(c->rows_xb, x, (int)need);
        j.xb = c->rows_xb;
    }
    if (quant) quant_inputs(c, &j);
    /* one token: one linear stream per thread, as the decode matvec */
    if (n == 1) dw_threadpool_run_ranges(c->pool, j.first_task[count], rows_task, &j);
    else dw_threadpool_run(c->pool, j.first_task[count], rows_task, &j);
    pthread_mutex_unlock(&c->rows_lock);
}

/* ---- rope_rows and kv_write_rows ----------------------------------------------------------- */

typedef struct {
    float *q, *k;
    const dw_rows *r;
    int n_heads, n_kv_heads, head_dim;
    const float *inv_freq;
} rope_rows_job;

static void rotate_half(float *x, int head_dim, const float *cs, const float *sn) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        float a = x[i], b = x[i + half];
        x[i] = a * cs[i] - b * sn[i];
        x[i + half] = b * cs[i] + a * sn[i];
    }
}

static void rope_rows_task(void *arg, int t, int thread) {
    rope_rows_job *j = arg;
    float cs[PAGED_ATTN_MAX_HEAD_DIM / 2], sn[PAGED_ATTN_MAX_HEAD_DIM / 2];
    int half = j->head_dim / 2;
    float pos = (float)j->r->pos[t];
    for (int i = 0; i < half; i++) {
        float angle = pos * j->inv_freq[i];
        cs[i] = cosf(angle);
        sn[i] = sinf(angle);
    }
    for (int h = 0; h < j->n_heads; h++)
        rotate_half(j->q + ((size_t)t * j->n_heads + h) * j->head_dim, j->head_dim, cs, sn);
    for (int h = 0; h < j->n_kv_heads; h++)
        rotate_half(j->k + ((size_t)t * j->n_kv_heads + h) * j->head_dim, j->head_dim, cs, sn);
}

void dw__cpu_rope_rows(void *ctx, float *q, float *k, const dw_rows *r, int n_heads, int n_kv_heads, int head_dim,
                       const float *inv_freq) {
    dw__cpu *c = ctx;
    DW_ASSERT(head_dim <= PAGED_ATTN_MAX_HEAD_DIM && head_dim % 2 == 0);
    rope_rows_job j = {q, k, r, n_heads, n_kv_heads, head_dim, inv_freq};
    if (r->n < 4) {
        for (int t = 0; t < r->n; t++) rope_rows_task(&j, t, 0);
    } else {
        dw_threadpool_run(c->pool, r->n, rope_rows_task, &j);
    }
}

/* Byte offset of entry `entry` (0 .. block_tokens) of KV head h in block b of a pool layer. */
static size_t page_offset(const dw_kv_pages *kv, int b, int h, int entry) {
    return ((((size_t)b * kv->n_kv_heads + h) * kv->block_tokens + entry) * kv->head_dim) * dw_dtype_size(kv->dtype);
}

void dw__cpu_kv_write_rows(void *ctx, const dw_kv_pages *kv, const float *k, const float *v, const dw_rows *r) {
    dw__cpu *c = ctx;
    int hd = kv->head_dim;
    DW_ASSERT(kv->dtype == DW_DTYPE_BF16 || kv->dtype == DW_DTYPE_F32);
    for (int i = 0; i < r->n; i++) {
        int slot = r->slot[i], b = slot / kv->block_tokens, e = slot % kv->block_tokens;
        DW_ASSERT(slot >= 0 && b < kv->n_blocks);
        for (int h = 0; h < kv->n_kv_heads; h++) {
            size_t src = ((size_t)i * kv->n_kv_heads + h) * hd, dst = page_offset(kv, b, h, e);
            if (kv->dtype == DW_DTYPE_BF16) {
                c->k->f32_to_bf16((uint16_t *)((char *)kv->k + dst), k + src, hd);
                c->k->f32_to_bf16((uint16_t *)((char *)kv->v + dst), v + src, hd);
            } else {
                memcpy((char *)kv->k + dst, k + src, (size_t)hd * sizeof(float));
                memcpy((char *)kv->v + dst, v + src, (size_t)hd * sizeof(float));
            }
        }
    }
}

/* ---- attention_rows ------------------------------------------------------------------------ */

typedef struct {
    const dw__cpu *c;
    float *out;
    const float *q;
    const dw_kv_pages *kv;
    const dw_rows *r;
    dw_attn_params p;
} paged_attn_job;

/* One task: one row and one KV head, for every query head of its group: an online softmax over
 * the row's keys in position order, a step at most PAGED_ATTN_CHUNK keys and never across a
 * block (so the steps depend on the row's position, window and the block size alone). */
static void paged_attn_task(void *arg, int task, int thread) {
    paged_attn_job *j = arg;
    const dw__cpu_kernels *K = j->c->k;
    const dw_attn_params *p = &j->p;
    const dw_kv_pages *kv = j->kv;
    int kvh = task % p->n_kv_heads, i = task / p->n_kv_heads;
    int group = p->n_heads / p->n_kv_heads, hd = p->head_dim, bt = kv->block_tokens;
    int pos = j->r->pos[i];
    int start = p->window > 0 && pos - p->window + 1 > 0 ? pos - p->window + 1 : 0;
    int end = pos + 1; /* keys [start, end) */
    const int32_t *table = j->r->tables + j->r->table_at[i];
    int bf16 = kv->dtype == DW_DTYPE_BF16;

    float acc[PAGED_ATTN_MAX_GROUP][PAGED_ATTN_MAX_HEAD_DIM];
    float mx[PAGED_ATTN_MAX_GROUP], sum[PAGED_ATTN_MAX_GROUP];
    float scores[PAGED_ATTN_CHUNK];
    for (int g = 0; g < group; g++) {
        mx[g] = -INFINITY;
        sum[g] = 0.0f;
        memset(acc[g], 0, (size_t)hd * sizeof(float));
    }
    for (int p0 = start; p0 < end;) {
        int blk = table[p0 / bt], e = p0 % bt;
        DW_ASSERT(blk >= 0 && blk < kv->n_blocks);
        int nb = bt - e < end - p0 ? bt - e : end - p0;
        if (nb > PAGED_ATTN_CHUNK) nb = PAGED_ATTN_CHUNK;
        size_t off = page_offset(kv, blk, kvh, e);
        const char *kblock = (const char *)kv->k + off, *vblock = (const char *)kv->v + off;
        for (int g = 0; g < group; g++) {
            const float *q = j->q + ((size_t)i * p->n_heads + kvh * group + g) * hd;
            if (bf16) K->attn_dot_bf16(scores, q, (const uint16_t *)kblock, nb, hd, p->scale);
            else K->attn_dot_f32(scores, q, (const float *)kblock, nb, hd, p->scale);
            float bmax = K->max_f32(scores, nb);
            float new_max = bmax > mx[g] ? bmax : mx[g];
            if (new_max > mx[g] && mx[g] != -INFINITY) {
                float f = expf(mx[g] - new_max);
                sum[g] *= f;
                for (int d = 0; d < hd; d++) acc[g][d] *= f;
            }
            mx[g] = new_max;
            sum[g] += K->exp_sum(scores, new_max, nb);
            if (bf16) K->attn_acc_bf16(acc[g], scores, (const uint16_t *)vblock, nb, hd);
            else K->attn_acc_f32(acc[g], scores, (const float *)vblock, nb, hd);
        }
        p0 += nb;
    }
    for (int g = 0; g < group; g++) {
        float *o = j->out + ((size_t)i * p->n_heads + kvh * group + g) * hd;
        float inv = 1.0f / sum[g];
        for (int d = 0; d < hd; d++) o[d] = acc[g][d] * inv;
    }
}

void dw__cpu_attention_rows(void *ctx, float *out, const float *q, const dw_kv_pages *kv, const dw_rows *r,
                            const dw_attn_params *p) {
    dw__cpu *c = ctx;
    DW_ASSERT(p->head_dim <= PAGED_ATTN_MAX_HEAD_DIM && p->head_dim == kv->head_dim &&
              p->n_kv_heads == kv->n_kv_heads && p->n_heads % p->n_kv_heads == 0 &&
              p->n_heads / p->n_kv_heads <= PAGED_ATTN_MAX_GROUP && kv->block_tokens > 0);
    DW_ASSERT(kv->dtype == DW_DTYPE_BF16 || kv->dtype == DW_DTYPE_F32);
    paged_attn_job j = {c, out, q, kv, r, *p};
    int tasks = r->n * p->n_kv_heads;
    if (tasks < 2) {
        for (int t = 0; t < tasks; t++) paged_attn_task(&j, t, 0);
    } else {
        dw_threadpool_run(c->pool, tasks, paged_attn_task, &j);
    }
}

/* ---- gather, argmax, copy ---------------------------------------------------------------------- */

void dw__cpu_gather_rows(void *ctx, float *dst, const float *src, const int32_t *idx, int n, int width) {
    for (int i = 0; i < n; i++)
        memmove(dst + (size_t)i * width, src + (size_t)idx[i] * width, (size_t)width * sizeof(float));
}

void dw__cpu_argmax_rows(void *ctx, const float *x, int n, int width, int32_t *out) {
    for (int i = 0; i < n; i++) {
        const float *row = x + (size_t)i * width;
        int best = 0;
        for (int e = 1; e < width; e++)
            if (row[e] > row[best] || (row[best] != row[best] && row[e] == row[e])) best = e; /* NaN never wins */
        out[i] = best;
    }
}

/* One row a task: the selection scans the row once (a sorted array of at most 64 that a logit
 * enters only when it beats the smallest kept), so rows run side by side on the pool. */
typedef struct sample_job {
    const float *x;
    int width;
    const dw_pick_row *params;
    int32_t *out;
} sample_job;

static void sample_row_task(void *arg, int i, int thread) {
    (void)thread;
    const sample_job *j = arg;
    const dw_pick_row *p = &j->params[i];
    if (p->s.temperature > 0.0f) j->out[i] = dw_pick_top_k(j->x + (size_t)i * j->width, j->width, &p->s, p->u);
}

void dw__cpu_sample_rows(void *ctx, const float *x, int n, int width, const dw_pick_row *params, int32_t *out) {
    dw__cpu *c = ctx;
    sample_job j = {x, width, params, out};
    if (n > 0) dw_threadpool_run(c->pool, n, sample_row_task, &j);
}

void dw__cpu_copy(void *ctx, void *dst, const void *src, size_t bytes) {
    if (dst != src && bytes) memmove(dst, src, bytes);
}
