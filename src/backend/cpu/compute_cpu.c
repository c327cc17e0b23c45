/* The CPU backend's forward ops other than matmul (cpu_impl.h; the interface: backend.h):
 * embedding, RMSNorm, rope, the KV cache, attention, the elementwise ops and argmax, each split
 * over the backend's thread pool with the kernels it chose (kernels.h) run on the slices. */
#include "backend/cpu/cpu_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "driftwood/threadpool.h"

/* Keys per block in attention's online softmax (scores live on the stack). */
#define ATTN_BLOCK 128
#define ATTN_MAX_HEAD_DIM 512
#define ATTN_MAX_GROUP 32

/* ---- embedding, norms, elementwise --------------------------------------------------- */

static void convert_row(const dw__cpu *c, float *out, const void *src, dw_dtype dtype, int n) {
    if (dtype == DW_DTYPE_BF16) c->k->bf16_to_f32(out, src, n);
    else if (dtype == DW_DTYPE_F16) c->k->f16_to_f32(out, src, n);
    else memcpy(out, src, (size_t)n * sizeof(float));
}

/* A quantized table (qbits set) is dequantized row by row. */
void dw__cpu_embed(void *vctx, float *out, const dw_cweight *table, const int32_t *ids, int n) {
    dw__cpu *c = vctx;
    size_t esize = dw_dtype_size(table->dtype);
    for (int i = 0; i < n; i++) {
        DW_ASSERT(ids[i] >= 0 && ids[i] < table->rows);
        if (table->qbits) {
            c->qk->dequant(out + (size_t)i * table->cols, table, ids[i], ids[i] + 1);
            continue;
        }
        const char *row = (const char *)table->data + (size_t)ids[i] * (size_t)table->cols * esize;
        convert_row(c, out + (size_t)i * table->cols, row, table->dtype, (int)table->cols);
    }
}

typedef struct {
    const dw__cpu *c;
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

void dw__cpu_rmsnorm(void *vctx, float *out, const float *x, const dw_cweight *w, int n, int dim, float eps) {
    dw__cpu *c = vctx;
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
    const dw__cpu *c;
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

static void run_elementwise(dw__cpu *c, elementwise_job *j) {
    int n_tasks = (int)((j->count + ELEMENTWISE_CHUNK - 1) / ELEMENTWISE_CHUNK);
    if (n_tasks <= 1) {
        for (int t = 0; t < n_tasks; t++) elementwise_task(j, t, 0);
    } else {
        dw_threadpool_run(c->pool, n_tasks, elementwise_task, j);
    }
}

void dw__cpu_swiglu(void *vctx, float *out, const float *gate, const float *up, size_t count) {
    elementwise_job j = {vctx, out, gate, up, count, 1};
    run_elementwise(vctx, &j);
}

void dw__cpu_add(void *vctx, float *x, const float *y, size_t count) {
    elementwise_job j = {vctx, x, y, NULL, count, 0};
    run_elementwise(vctx, &j);
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

void dw__cpu_rope(void *vctx, float *q, float *k, int n, int n_heads, int n_kv_heads, int head_dim, int pos0,
                     const float *inv_freq) {
    dw__cpu *c = vctx;
    DW_ASSERT(head_dim <= ATTN_MAX_HEAD_DIM && head_dim % 2 == 0);
    rope_job j = {q, k, n_heads, n_kv_heads, head_dim, pos0, inv_freq};
    if (n < 4) {
        for (int t = 0; t < n; t++) rope_task(&j, t, 0);
    } else {
        dw_threadpool_run(c->pool, n, rope_task, &j);
    }
}

/* ---- KV cache and attention ------------------------------------------------------------- */

void dw__cpu_kv_write(void *vctx, const dw_kv_view *kv, const float *k, const float *v, int pos0, int n) {
    dw__cpu *c = vctx;
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
    const dw__cpu *c;
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

void dw__cpu_attention(void *vctx, float *out, const float *q, const dw_kv_view *kv, const dw_attn_params *p) {
    dw__cpu *c = vctx;
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

void dw__cpu_argmax(void *ctx, const float *x, int n, int32_t *ring, int ring_n, int pos) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best] || (x[best] != x[best] && x[i] == x[i])) best = i; /* NaN never wins */
    ring[pos % ring_n] = best;
}
