/* The CPU implementation of the engine's compute ops (src/backend/compute.h): splits each op
 * over the thread pool and runs the kernels chosen for this CPU (kernels.h) on the slices. */
#include "backend/cpu/compute_cpu.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "driftwood/threadpool.h"

typedef struct cpu_ctx {
    dw_threadpool *pool;
    int own_pool; /* created for this context (destroyed with it) */
    int n_threads;
    const dw__cpu_kernels *k;
    /* prefill: x transposed for the GEMM kernels; shared, so one batched matmul at a time */
    pthread_mutex_t gemm_lock;
    float *xt;
    size_t xt_cap; /* floats */
} cpu_ctx;

/* Rows per matmul task. Decode (matrix-vector): small blocks balance the threads while each
 * reads long linear runs. Prefill (GEMM): each task reads its weight rows once for the whole batch. */
#define MATMUL_BLOCK_ROWS 16
#define GEMM_BLOCK_ROWS 32
/* Prefill batches are transposed in blocks of this many k. */
#define TRANSPOSE_BLOCK 64
/* Keys per block in attention's online softmax (scores live on the stack). */
#define ATTN_BLOCK 128
#define ATTN_MAX_HEAD_DIM 512
#define ATTN_MAX_GROUP 32

/* ---- memory ------------------------------------------------------------------------ */

static dw_status cpu_alloc(void *ctx, size_t bytes, void **out, dw_error *err) {
    size_t rounded = (bytes + 63) & ~(size_t)63;
    *out = aligned_alloc(64, rounded ? rounded : 64);
    if (!*out) return dw_error_set(err, DW_ERR_NO_MEMORY, "cpu: cannot allocate %zu bytes", bytes);
    return DW_OK;
}

static void cpu_free(void *ctx, void *buf) { free(buf); }

static dw_status cpu_weight_load(void *vctx, const void *host, dw_dtype dtype, int64_t rows, int64_t cols,
                                 dw_cweight *out, dw_error *err) {
    cpu_ctx *c = vctx;
    memset(out, 0, sizeof *out);
    if (dtype != DW_DTYPE_F32 && dtype != DW_DTYPE_F16 && dtype != DW_DTYPE_BF16)
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "cpu: weights of dtype %s are not supported",
                            dw_dtype_name(dtype));
    out->rows = rows;
    out->cols = cols;
    if (rows != 1) { /* matrices: use the mapping in place */
        out->data = host;
        out->dtype = dtype;
        return DW_OK;
    }
    void *copy;
    dw_status st = cpu_alloc(vctx, (size_t)cols * sizeof(float), &copy, err);
    if (st) return st;
    if (dtype == DW_DTYPE_F32) memcpy(copy, host, (size_t)cols * sizeof(float));
    else if (dtype == DW_DTYPE_BF16) c->k->bf16_to_f32(copy, host, (int)cols);
    else c->k->f16_to_f32(copy, host, (int)cols);
    out->data = copy;
    out->dtype = DW_DTYPE_F32;
    out->priv = copy;
    return DW_OK;
}

static void cpu_weight_release(void *ctx, dw_cweight *w) {
    free(w->priv);
    memset(w, 0, sizeof *w);
}

static dw_status cpu_copy(void *ctx, void *dst, const void *src, size_t bytes, dw_error *err) {
    if (dst != src && bytes) memmove(dst, src, bytes);
    return DW_OK;
}

/* ---- embedding, norms, elementwise --------------------------------------------------- */

static void convert_row(const cpu_ctx *c, float *out, const void *src, dw_dtype dtype, int n) {
    if (dtype == DW_DTYPE_BF16) c->k->bf16_to_f32(out, src, n);
    else if (dtype == DW_DTYPE_F16) c->k->f16_to_f32(out, src, n);
    else memcpy(out, src, (size_t)n * sizeof(float));
}

static void cpu_embed(void *vctx, float *out, const dw_cweight *table, const int32_t *ids, int n) {
    cpu_ctx *c = vctx;
    size_t esize = dw_dtype_size(table->dtype);
    for (int i = 0; i < n; i++) {
        DW_ASSERT(ids[i] >= 0 && ids[i] < table->rows);
        const char *row = (const char *)table->data + (size_t)ids[i] * (size_t)table->cols * esize;
        convert_row(c, out + (size_t)i * table->cols, row, table->dtype, (int)table->cols);
    }
}

typedef struct {
    const cpu_ctx *c;
    float *out;
    const float *x;
    const float *w;
    int dim;
    float eps;
} rmsnorm_job;

static void rmsnorm_task(void *arg, int t, int thread) {
    rmsnorm_job *j = arg;
    const float *x = j->x + (size_t)t * j->dim;
    float ss = j->c->k->sum_squares(x, j->dim);
    float scale = 1.0f / sqrtf(ss / (float)j->dim + j->eps);
    j->c->k->scale_mul(j->out + (size_t)t * j->dim, x, scale, j->w, j->dim);
}

static void cpu_rmsnorm(void *vctx, float *out, const float *x, const dw_cweight *w, int n, int dim, float eps) {
    cpu_ctx *c = vctx;
    DW_ASSERT(w->dtype == DW_DTYPE_F32 && w->cols == dim);
    rmsnorm_job j = {c, out, x, w->data, dim, eps};
    if (n < 8) {
        for (int t = 0; t < n; t++) rmsnorm_task(&j, t, 0);
    } else {
        dw_threadpool_run(c->pool, n, rmsnorm_task, &j);
    }
}

/* Elementwise ops over large counts are split in chunks; small ones run on the caller. */
#define ELEMENTWISE_CHUNK 16384

typedef struct {
    const cpu_ctx *c;
    float *out;
    const float *a, *b;
    size_t count;
    int op; /* 0 add (out += a), 1 swiglu (out = silu(a) * b) */
} elementwise_job;

static void elementwise_task(void *arg, int t, int thread) {
    elementwise_job *j = arg;
    size_t i0 = (size_t)t * ELEMENTWISE_CHUNK;
    size_t n = j->count - i0 < ELEMENTWISE_CHUNK ? j->count - i0 : ELEMENTWISE_CHUNK;
    if (j->op == 0) j->c->k->add(j->out + i0, j->a + i0, (int)n);
    else j->c->k->swiglu(j->out + i0, j->a + i0, j->b + i0, (int)n);
}

static void run_elementwise(cpu_ctx *c, elementwise_job *j) {
    int n_tasks = (int)((j->count + ELEMENTWISE_CHUNK - 1) / ELEMENTWISE_CHUNK);
    if (n_tasks <= 1) {
        for (int t = 0; t < n_tasks; t++) elementwise_task(j, t, 0);
    } else {
        dw_threadpool_run(c->pool, n_tasks, elementwise_task, j);
    }
}

static void cpu_swiglu(void *vctx, float *out, const float *gate, const float *up, size_t count) {
    elementwise_job j = {vctx, out, gate, up, count, 1};
    run_elementwise(vctx, &j);
}

static void cpu_add(void *vctx, float *x, const float *y, size_t count) {
    elementwise_job j = {vctx, x, y, NULL, count, 0};
    run_elementwise(vctx, &j);
}

/* ---- matmul ---------------------------------------------------------------------------- */

#define MAX_MULTI 4

typedef struct {
    const cpu_ctx *c;
    int count;
    float *out[MAX_MULTI];
    const dw_cweight *w[MAX_MULTI];
    const dw_cweight *bias[MAX_MULTI];
    int first_task[MAX_MULTI + 1]; /* task ranges per matrix */
    int block_rows;
    const float *x;  /* [n, k] (decode) */
    const float *xt; /* [k, ldt] (prefill) */
    int ldt;
    int n, k;
} matmul_job;

static dw__matmul_fn matmul_kernel(const dw__cpu_kernels *k, dw_dtype dtype) {
    switch (dtype) {
    case DW_DTYPE_BF16: return k->matmul_bf16;
    case DW_DTYPE_F16: return k->matmul_f16;
    default: return k->matmul_f32;
    }
}

static dw__gemm_fn gemm_kernel(const dw__cpu_kernels *k, dw_dtype dtype) {
    switch (dtype) {
    case DW_DTYPE_BF16: return k->gemm_bf16;
    case DW_DTYPE_F16: return k->gemm_f16;
    default: return k->gemm_f32;
    }
}

static void matmul_task(void *arg, int task, int thread) {
    matmul_job *j = arg;
    int m = 0;
    while (task >= j->first_task[m + 1]) m++;
    const dw_cweight *w = j->w[m];
    int rows = (int)w->rows, k = (int)w->cols;
    int r0 = (task - j->first_task[m]) * j->block_rows;
    int r1 = r0 + j->block_rows < rows ? r0 + j->block_rows : rows;
    float *out = j->out[m];
    if (j->xt) gemm_kernel(j->c->k, w->dtype)(out, rows, j->xt, j->ldt, j->n, w->data, k, r0, r1);
    else matmul_kernel(j->c->k, w->dtype)(out, rows, j->x, k, j->n, w->data, k, r0, r1);
    if (j->bias[m]) {
        const float *b = j->bias[m]->data;
        for (int t = 0; t < j->n; t++)
            for (int r = r0; r < r1; r++) out[(size_t)t * rows + r] += b[r];
    }
}

/* xt[i, t] = x[t, i] for a block of i; columns n..ldt are zeroed. */
static void transpose_task(void *arg, int task, int thread) {
    matmul_job *j = arg;
    int i0 = task * TRANSPOSE_BLOCK, i1 = i0 + TRANSPOSE_BLOCK < j->k ? i0 + TRANSPOSE_BLOCK : j->k;
    float *xt = (float *)j->xt;
    for (int t0 = 0; t0 < j->n; t0 += 16) {
        int t1 = t0 + 16 < j->n ? t0 + 16 : j->n;
        for (int i = i0; i < i1; i++)
            for (int t = t0; t < t1; t++) xt[(size_t)i * j->ldt + t] = j->x[(size_t)t * j->k + i];
    }
    for (int i = i0; i < i1; i++)
        for (int t = j->n; t < j->ldt; t++) xt[(size_t)i * j->ldt + t] = 0.0f;
}

static void cpu_matmul_multi(void *vctx, int count, float *const *out, const float *x, int n,
                             const dw_cweight *const *w, const dw_cweight *const *bias) {
    cpu_ctx *c = vctx;
    DW_ASSERT(count >= 1 && count <= MAX_MULTI);
    matmul_job j = {.c = c, .count = count, .x = x, .n = n, .k = (int)w[0]->cols};
    j.block_rows = n == 1 ? MATMUL_BLOCK_ROWS : GEMM_BLOCK_ROWS;
    j.first_task[0] = 0;
    for (int m = 0; m < count; m++) {
        j.out[m] = out[m];
        j.w[m] = w[m];
        j.bias[m] = bias ? bias[m] : NULL;
        DW_ASSERT(w[m]->cols == w[0]->cols);
        j.first_task[m + 1] = j.first_task[m] + (int)((w[m]->rows + j.block_rows - 1) / j.block_rows);
    }
    if (n == 1) { /* decode: one linear stream of weight rows per thread */
        dw_threadpool_run_ranges(c->pool, j.first_task[count], matmul_task, &j);
        return;
    }
    /* prefill: transpose the batch once, then every task runs the GEMM on its rows */
    j.ldt = (n + 15) & ~15;
    size_t need = (size_t)j.ldt * j.k;
    pthread_mutex_lock(&c->gemm_lock);
    if (need > c->xt_cap) { /* once per context and batch shape (a few MB) */
        free(c->xt);
        c->xt = aligned_alloc(64, (need * sizeof(float) + 63) & ~(size_t)63);
        c->xt_cap = c->xt ? need : 0;
    }
    if (!c->xt) { /* no memory for the transposed batch: the tiled kernels work on x as it is */
        pthread_mutex_unlock(&c->gemm_lock);
        dw_threadpool_run(c->pool, j.first_task[count], matmul_task, &j);
        return;
    }
    j.xt = c->xt;
    dw_threadpool_run(c->pool, (j.k + TRANSPOSE_BLOCK - 1) / TRANSPOSE_BLOCK, transpose_task, &j);
    dw_threadpool_run(c->pool, j.first_task[count], matmul_task, &j);
    pthread_mutex_unlock(&c->gemm_lock);
}

static void cpu_matmul(void *vctx, float *out, const float *x, int n, const dw_cweight *w, const dw_cweight *bias) {
    cpu_matmul_multi(vctx, 1, &out, x, n, &w, &bias);
}

/* ---- rope ---------------------------------------------------------------------------- */

typedef struct {
    float *q, *k;
    int n_heads, n_kv_heads, head_dim, pos0;
    const float *inv_freq;
} rope_job;

static void rotate(float *x, int head_dim, const float *cs, const float *sn) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        float a = x[i], b = x[i + half];
        x[i] = a * cs[i] - b * sn[i];
        x[i + half] = b * cs[i] + a * sn[i];
    }
}

static void rope_task(void *arg, int t, int thread) {
    rope_job *j = arg;
    float cs[ATTN_MAX_HEAD_DIM / 2], sn[ATTN_MAX_HEAD_DIM / 2];
    int half = j->head_dim / 2;
    float pos = (float)(j->pos0 + t);
    for (int i = 0; i < half; i++) {
        float angle = pos * j->inv_freq[i];
        cs[i] = cosf(angle);
        sn[i] = sinf(angle);
    }
    for (int h = 0; h < j->n_heads; h++)
        rotate(j->q + ((size_t)t * j->n_heads + h) * j->head_dim, j->head_dim, cs, sn);
    for (int h = 0; h < j->n_kv_heads; h++)
        rotate(j->k + ((size_t)t * j->n_kv_heads + h) * j->head_dim, j->head_dim, cs, sn);
}

static void cpu_rope(void *vctx, float *q, float *k, int n, int n_heads, int n_kv_heads, int head_dim, int pos0,
                     const float *inv_freq) {
    cpu_ctx *c = vctx;
    DW_ASSERT(head_dim <= ATTN_MAX_HEAD_DIM && head_dim % 2 == 0);
    rope_job j = {q, k, n_heads, n_kv_heads, head_dim, pos0, inv_freq};
    if (n < 4) {
        for (int t = 0; t < n; t++) rope_task(&j, t, 0);
    } else {
        dw_threadpool_run(c->pool, n, rope_task, &j);
    }
}

/* ---- KV cache and attention ------------------------------------------------------------- */

static void cpu_kv_write(void *vctx, const dw_kv_view *kv, const float *k, const float *v, int pos0, int n) {
    cpu_ctx *c = vctx;
    int hd = kv->head_dim;
    size_t esize = dw_dtype_size(kv->dtype);
    DW_ASSERT(pos0 >= 0 && pos0 + n <= kv->capacity);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < kv->n_kv_heads; h++) {
            size_t src = ((size_t)t * kv->n_kv_heads + h) * hd;
            size_t dst = ((size_t)h * kv->capacity + pos0 + t) * hd * esize;
            if (kv->dtype == DW_DTYPE_BF16) {
                c->k->f32_to_bf16((uint16_t *)((char *)kv->k + dst), k + src, hd);
                c->k->f32_to_bf16((uint16_t *)((char *)kv->v + dst), v + src, hd);
            } else {
                memcpy((char *)kv->k + dst, k + src, hd * sizeof(float));
                memcpy((char *)kv->v + dst, v + src, hd * sizeof(float));
            }
        }
}

typedef struct {
    const cpu_ctx *c;
    float *out;
    const float *q;
    const dw_kv_view *kv;
    dw_attn_params p;
} attn_job;

/* One task: one KV head and one new token, for all query heads of its group, with an online
 * softmax over blocks of keys (no scratch beyond the stack). */
static void attn_task(void *arg, int task, int thread) {
    attn_job *j = arg;
    const dw__cpu_kernels *K = j->c->k;
    const dw_attn_params *p = &j->p;
    int kvh = task % p->n_kv_heads, t = task / p->n_kv_heads;
    int group = p->n_heads / p->n_kv_heads, hd = p->head_dim;
    int pos = p->pos0 + t;
    int start = p->window > 0 && pos - p->window + 1 > 0 ? pos - p->window + 1 : 0;
    int end = pos + 1; /* keys [start, end) */
    int bf16 = j->kv->dtype == DW_DTYPE_BF16;
    size_t esize = bf16 ? 2 : 4;
    const char *kbase = (const char *)j->kv->k + (size_t)kvh * j->kv->capacity * hd * esize;
    const char *vbase = (const char *)j->kv->v + (size_t)kvh * j->kv->capacity * hd * esize;

    float acc[ATTN_MAX_GROUP][ATTN_MAX_HEAD_DIM];
    float mx[ATTN_MAX_GROUP], sum[ATTN_MAX_GROUP];
    float scores[ATTN_BLOCK];
    for (int g = 0; g < group; g++) {
        mx[g] = -INFINITY;
        sum[g] = 0.0f;
        memset(acc[g], 0, (size_t)hd * sizeof(float));
    }
    for (int b0 = start; b0 < end; b0 += ATTN_BLOCK) {
        int nb = end - b0 < ATTN_BLOCK ? end - b0 : ATTN_BLOCK;
        for (int g = 0; g < group; g++) {
            int h = kvh * group + g;
            const float *q = j->q + ((size_t)t * p->n_heads + h) * hd;
            const char *kblock = kbase + (size_t)b0 * hd * esize;
            if (bf16) K->attn_dot_bf16(scores, q, (const uint16_t *)kblock, nb, hd, p->scale);
            else K->attn_dot_f32(scores, q, (const float *)kblock, nb, hd, p->scale);
            float bmax = K->max_f32(scores, nb);
            float new_max = bmax > mx[g] ? bmax : mx[g];
            if (new_max > mx[g] && mx[g] != -INFINITY) {
                float r = expf(mx[g] - new_max);
                sum[g] *= r;
                for (int d = 0; d < hd; d++) acc[g][d] *= r;
            }
            mx[g] = new_max;
            sum[g] += K->exp_sum(scores, new_max, nb);
            const char *vblock = vbase + (size_t)b0 * hd * esize;
            if (bf16) K->attn_acc_bf16(acc[g], scores, (const uint16_t *)vblock, nb, hd);
            else K->attn_acc_f32(acc[g], scores, (const float *)vblock, nb, hd);
        }
    }
    for (int g = 0; g < group; g++) {
        int h = kvh * group + g;
        float *o = j->out + ((size_t)t * p->n_heads + h) * hd;
        float inv = 1.0f / sum[g];
        for (int d = 0; d < hd; d++) o[d] = acc[g][d] * inv;
    }
}


/* Prefill attention, tiled: one task is one KV head and a tile of query tokens (all query heads
 * of the group). Each block of keys is converted once into f32 (K transposed, V as rows) and
 * serves every query of the tile; scores are vectorized across keys (no horizontal sums). */
#define TILE_KEYS 64
#define TILE_QUERIES 64
#define TILE_MAX_HEAD_DIM 128

static void attn_tile_task(void *arg, int task, int thread) {
    attn_job *j = arg;
    const dw__cpu_kernels *K = j->c->k;
    const dw_attn_params *p = &j->p;
    int group = p->n_heads / p->n_kv_heads, hd = p->head_dim;
    int tile_tokens = TILE_QUERIES / group > 0 ? TILE_QUERIES / group : 1;
    int kvh = task % p->n_kv_heads, tile = task / p->n_kv_heads;
    int t0 = tile * tile_tokens, t1 = t0 + tile_tokens < p->n_tokens ? t0 + tile_tokens : p->n_tokens;
    int nq = (t1 - t0) * group;
    int bf16 = j->kv->dtype == DW_DTYPE_BF16;
    size_t esize = bf16 ? 2 : 4;
    const char *kbase = (const char *)j->kv->k + (size_t)kvh * j->kv->capacity * hd * esize;
    const char *vbase = (const char *)j->kv->v + (size_t)kvh * j->kv->capacity * hd * esize;

    float kt[TILE_MAX_HEAD_DIM * TILE_KEYS], vf[TILE_KEYS * TILE_MAX_HEAD_DIM], probs[TILE_QUERIES * TILE_KEYS];
    float acc[TILE_QUERIES * TILE_MAX_HEAD_DIM], mx[TILE_QUERIES], sum[TILE_QUERIES];
    for (int i = 0; i < nq; i++) mx[i] = -INFINITY, sum[i] = 0.0f;
    memset(acc, 0, sizeof(float) * (size_t)nq * hd);

    int first_pos = p->pos0 + t0, last_pos = p->pos0 + t1 - 1;
    int kstart = p->window > 0 && first_pos - p->window + 1 > 0 ? first_pos - p->window + 1 : 0;
    for (int b0 = kstart; b0 <= last_pos; b0 += TILE_KEYS) {
        int nb = last_pos + 1 - b0 < TILE_KEYS ? last_pos + 1 - b0 : TILE_KEYS;
        /* this block's keys (transposed) and values, in f32 */
        for (int r = 0; r < nb; r++) {
            const char *krow = kbase + (size_t)(b0 + r) * hd * esize, *vrow = vbase + (size_t)(b0 + r) * hd * esize;
            float tmp[TILE_MAX_HEAD_DIM];
            if (bf16) {
                K->bf16_to_f32(tmp, (const uint16_t *)krow, hd);
                K->bf16_to_f32(vf + (size_t)r * hd, (const uint16_t *)vrow, hd);
            } else {
                memcpy(tmp, krow, sizeof(float) * hd);
                memcpy(vf + (size_t)r * hd, vrow, sizeof(float) * hd);
            }
            for (int d = 0; d < hd; d++) kt[d * TILE_KEYS + r] = tmp[d];
        }
        /* probabilities of this block for every query (zero outside its causal/window range) */
        for (int i = 0; i < nq; i++) {
            int ti = t0 + i / group, h = kvh * group + i % group;
            int pos = p->pos0 + ti;
            int lo = p->window > 0 && pos - p->window + 1 > 0 ? pos - p->window + 1 : 0;
            int j0 = lo > b0 ? lo - b0 : 0, j1 = pos + 1 - b0 < nb ? pos + 1 - b0 : nb; /* keys [j0, j1) */
            float *prob = probs + (size_t)i * TILE_KEYS;
            memset(prob, 0, sizeof(float) * TILE_KEYS);
            if (j1 <= j0) continue;
            const float *q = j->q + ((size_t)ti * p->n_heads + h) * hd;
            K->attn_dot_t(prob, q, kt, TILE_KEYS, j1, hd, p->scale);
            if (j0) memset(prob, 0, sizeof(float) * (size_t)j0);
            float bmax = K->max_f32(prob + j0, j1 - j0);
            if (bmax > mx[i]) {
                if (mx[i] != -INFINITY) {
                    float r = expf(mx[i] - bmax);
                    sum[i] *= r;
                    float *a = acc + (size_t)i * hd;
                    for (int d = 0; d < hd; d++) a[d] *= r;
                }
                mx[i] = bmax;
            }
            sum[i] += K->exp_sum(prob + j0, mx[i], j1 - j0);
        }
        for (int i = 0; i < nq; i += 4) {
            int m = nq - i < 4 ? nq - i : 4;
            K->attn_acc_multi(acc + (size_t)i * hd, hd, probs + (size_t)i * TILE_KEYS, TILE_KEYS, m, vf, nb, hd);
        }
    }
    for (int i = 0; i < nq; i++) {
        int ti = t0 + i / group, h = kvh * group + i % group;
        float *o = j->out + ((size_t)ti * p->n_heads + h) * hd, inv = 1.0f / sum[i];
        for (int d = 0; d < hd; d++) o[d] = acc[(size_t)i * hd + d] * inv;
    }
}

static void cpu_attention(void *vctx, float *out, const float *q, const dw_kv_view *kv, const dw_attn_params *p) {
    cpu_ctx *c = vctx;
    DW_ASSERT(p->head_dim <= ATTN_MAX_HEAD_DIM && p->n_heads % p->n_kv_heads == 0 &&
              p->n_heads / p->n_kv_heads <= ATTN_MAX_GROUP);
    DW_ASSERT(p->pos0 + p->n_tokens <= kv->capacity);
    attn_job j = {c, out, q, kv, *p};
    if (p->n_tokens > 1 && p->head_dim <= TILE_MAX_HEAD_DIM) {
        int group = p->n_heads / p->n_kv_heads;
        int tile_tokens = TILE_QUERIES / group > 0 ? TILE_QUERIES / group : 1;
        int tiles = (p->n_tokens + tile_tokens - 1) / tile_tokens;
        dw_threadpool_run(c->pool, p->n_kv_heads * tiles, attn_tile_task, &j);
        return;
    }
    dw_threadpool_run(c->pool, p->n_kv_heads * p->n_tokens, attn_task, &j);
}

static dw_status cpu_synchronize(void *ctx, dw_error *err) { return DW_OK; }

static void cpu_argmax(void *ctx, const float *x, int n, int32_t *ring, int ring_n, int pos) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best] || (x[best] != x[best] && x[i] == x[i])) best = i; /* NaN never wins */
    ring[pos % ring_n] = best;
}

static void cpu_destroy(void *vctx) {
    cpu_ctx *c = vctx;
    if (c->own_pool) dw_threadpool_destroy(c->pool);
    pthread_mutex_destroy(&c->gemm_lock);
    free(c->xt);
    free(c);
}

static const dw_compute_ops cpu_ops = {
    /* .name           = */ "cpu",
    /* .alloc          = */ cpu_alloc,
    /* .free           = */ cpu_free,
    /* .weight_load    = */ cpu_weight_load,
    /* .weight_release = */ cpu_weight_release,
    /* .upload         = */ cpu_copy,
    /* .download       = */ cpu_copy,
    /* .embed          = */ cpu_embed,
    /* .rmsnorm        = */ cpu_rmsnorm,
    /* .matmul         = */ cpu_matmul,
    /* .rope           = */ cpu_rope,
    /* .kv_write       = */ cpu_kv_write,
    /* .attention      = */ cpu_attention,
    /* .swiglu         = */ cpu_swiglu,
    /* .add            = */ cpu_add,
    /* .synchronize    = */ cpu_synchronize,
    /* .matmul_multi   = */ cpu_matmul_multi,
    /* .destroy        = */ cpu_destroy,
    /* .decode_step    = */ NULL,
    /* .decode_forget  = */ NULL,
    /* .argmax         = */ cpu_argmax,
    /* .decode_step_from = */ NULL,
    /* .weight_load_quant = */ NULL, /* quantized models: kernels_quant_ops.c wraps these ops */
};

dw_status dw__cpu_compute_create(int n_threads, dw_compute *out, dw_error *err) {
    out->ops = NULL;
    out->ctx = NULL;
    cpu_ctx *c = calloc(1, sizeof *c);
    if (!c) return dw_error_set(err, DW_ERR_NO_MEMORY, "cpu compute: out of memory");
    if (n_threads > 0) {
        dw_status st = dw_threadpool_create(n_threads, &c->pool, err);
        if (st) {
            free(c);
            return st;
        }
        c->own_pool = 1;
    } else {
        c->pool = dw_threadpool_global();
        if (!c->pool) {
            free(c);
            return dw_error_set(err, DW_ERR_NO_MEMORY, "cpu compute: could not start the thread pool");
        }
    }
    c->n_threads = dw_threadpool_size(c->pool);
    pthread_mutex_init(&c->gemm_lock, NULL);
    c->k = dw__cpu_kernels_best();
    out->ops = &cpu_ops;
    out->ctx = c;
    return DW_OK;
}

void dw__cpu_compute_set_kernels(dw_compute *c, const dw__cpu_kernels *kernels) {
    ((cpu_ctx *)c->ctx)->k = kernels;
}

const dw__cpu_kernels *dw__cpu_compute_kernels(const dw_compute *c) { return ((const cpu_ctx *)c->ctx)->k; }

dw_threadpool *dw__cpu_compute_pool(const dw_compute *c) { return ((const cpu_ctx *)c->ctx)->pool; }
