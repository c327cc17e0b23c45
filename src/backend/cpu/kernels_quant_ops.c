/* The CPU compute ops for quantized models (kernels_quant.h): a wrapper around the CPU compute
 * context that runs matmul, matmul_multi and embed on quantized weights with the quantized
 * kernels, over the same thread pool, and passes every other op (and float weights) through. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/compute_cpu.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_quant.h"
#include "core/assert.h"
#include "driftwood/threadpool.h"

#define QMATVEC_BLOCK_ROWS 32 /* decode: rows per task */
#define QGEMM_BLOCK_ROWS 32   /* prefill: rows dequantized per task, then one f32 GEMM over the batch */
#define MAX_MULTI 4
#define MAX_GROUPS 4096       /* input groups per row (k / group size) */

typedef struct qctx {
    dw_compute inner;          /* the CPU compute this wraps */
    dw_compute_ops ops;        /* inner's ops with the overrides below */
    const dw__cpu_qkernels *qk;
    const dw__cpu_kernels *k;
    dw_threadpool *pool;
    int n_threads;
    pthread_mutex_t lock;      /* prefill scratch below: one batched quantized matmul at a time */
    float *xt;                 /* [k, ldt]: the batch transposed */
    size_t xt_cap;
    float *panels;             /* per thread [QGEMM_BLOCK_ROWS, k]: dequantized rows */
    size_t panel_cap;          /* floats per thread */
} qctx;

typedef struct qjob {
    const qctx *q;
    int count;
    float *out[MAX_MULTI];
    const dw_cweight *w[MAX_MULTI];
    const dw_cweight *bias[MAX_MULTI];
    const float *xsum[MAX_MULTI];
    int first_task[MAX_MULTI + 1];
    int block_rows;
    const float *x;  /* decode: [k] */
    const float *xp; /* decode, 4-bit: x in the layout of qk->prep4 (NULL: none) */
    int xp_group;    /* the group size xp was made for */
    const float *xt; /* prefill: [k, ldt] */
    int ldt, n, k;
} qjob;

static void qtask(void *arg, int task, int thread) {
    qjob *j = arg;
    int m = 0;
    while (task >= j->first_task[m + 1]) m++;
    const dw_cweight *w = j->w[m];
    int rows = (int)w->rows;
    int r0 = (task - j->first_task[m]) * j->block_rows;
    int r1 = r0 + j->block_rows < rows ? r0 + j->block_rows : rows;
    float *out = j->out[m];
    if (!j->xt) {
        if (w->qbits == 4 && j->xp && w->qgroup == j->xp_group) j->q->qk->matvec4p(out, j->xp, j->xsum[m], w, r0, r1);
        else j->q->qk->matvec(out, j->x, j->xsum[m], w, r0, r1);
    } else {
        float *panel = j->q->panels + (size_t)thread * j->q->panel_cap;
        j->q->qk->dequant(panel, w, r0, r1);
        j->q->k->gemm_f32(out + r0, rows, j->xt, j->ldt, j->n, panel, j->k, 0, r1 - r0);
    }
    if (j->bias[m]) {
        const float *b = j->bias[m]->data;
        for (int t = 0; t < j->n; t++)
            for (int r = r0; r < r1; r++) out[(size_t)t * rows + r] += b[r];
    }
}

static void transpose_task(void *arg, int task, int thread) {
    qjob *j = arg;
    int i0 = task * 64, i1 = i0 + 64 < j->k ? i0 + 64 : j->k;
    float *xt = (float *)j->xt;
    for (int i = i0; i < i1; i++) {
        for (int t = 0; t < j->n; t++) xt[(size_t)i * j->ldt + t] = j->x[(size_t)t * j->k + i];
        for (int t = j->n; t < j->ldt; t++) xt[(size_t)i * j->ldt + t] = 0.0f;
    }
}

/* xsum[g] = Σ of inputs g·gs .. g·gs + gs - 1 (the bias term's factor), in eight interleaved
 * partial sums (gs is a multiple of 8: MLX's 32, 64, 128), which the compiler vectorizes. */
static void group_sums(float *xsum, const float *x, int k, int gs) {
    for (int g = 0; g < k / gs; g++) {
        const float *xg = x + (size_t)g * gs;
        float p[8] = {0};
        for (int i = 0; i < gs; i += 8)
            for (int l = 0; l < 8; l++) p[l] += xg[i + l];
        xsum[g] = ((p[0] + p[4]) + (p[1] + p[5])) + ((p[2] + p[6]) + (p[3] + p[7]));
    }
}

/* Runs the quantized weights w[0..count) (same cols) on x [n, k]. */
static void qmatmul(qctx *q, int count, float *const *out, const float *x, int n, const dw_cweight *const *w,
                    const dw_cweight *const *bias) {
    qjob j = {.q = q, .count = count, .x = x, .n = n, .k = (int)w[0]->cols};
    j.block_rows = n == 1 ? QMATVEC_BLOCK_ROWS : QGEMM_BLOCK_ROWS;
    float xsum[MAX_MULTI][n == 1 ? MAX_GROUPS : 1];
    for (int m = 0; m < count; m++) {
        j.out[m] = out[m];
        j.w[m] = w[m];
        j.bias[m] = bias ? bias[m] : NULL;
        j.first_task[m + 1] = j.first_task[m] + (int)((w[m]->rows + j.block_rows - 1) / j.block_rows);
        if (n == 1) {
            int gs = w[m]->qgroup;
            DW_ASSERT(j.k / gs <= MAX_GROUPS);
            int same = 0; /* matrices with the same group size share the sums */
            while (same < m && w[same]->qgroup != gs) same++;
            if (same == m) group_sums(xsum[m], x, j.k, gs);
            j.xsum[m] = xsum[same];
        }
    }
    if (n == 1) {
        int gs = w[0]->qgroup, prep = q->qk->prep4 && j.k <= 65536 && gs > 0 && 128 % gs == 0;
        float xp[prep ? DW_QPREP4_FLOATS(j.k) : 1];
        if (prep) {
            q->qk->prep4(xp, x, j.k, gs);
            j.xp = xp;
            j.xp_group = gs;
        }
        dw_threadpool_run_ranges(q->pool, j.first_task[count], qtask, &j);
        return;
    }
    j.ldt = (n + 15) & ~15;
    pthread_mutex_lock(&q->lock);
    size_t need_xt = (size_t)j.ldt * j.k, need_panel = (size_t)QGEMM_BLOCK_ROWS * j.k;
    if (need_xt > q->xt_cap) {
        free(q->xt);
        q->xt = aligned_alloc(64, (need_xt * sizeof(float) + 63) & ~(size_t)63);
        q->xt_cap = q->xt ? need_xt : 0;
    }
    if (need_panel > q->panel_cap) {
        free(q->panels);
        q->panels = aligned_alloc(64, (need_panel * q->n_threads * sizeof(float) + 63) & ~(size_t)63);
        q->panel_cap = q->panels ? need_panel : 0;
    }
    DW_ASSERT(q->xt && q->panels); /* a few MB, once per batch shape */
    j.xt = q->xt;
    dw_threadpool_run(q->pool, (j.k + 63) / 64, transpose_task, &j);
    dw_threadpool_run(q->pool, j.first_task[count], qtask, &j);
    pthread_mutex_unlock(&q->lock);
}

static void q_matmul_multi(void *vctx, int count, float *const *out, const float *x, int n, const dw_cweight *const *w,
                           const dw_cweight *const *bias) {
    qctx *q = vctx;
    float *qo[MAX_MULTI];
    const dw_cweight *qw[MAX_MULTI], *qb[MAX_MULTI];
    int nq = 0;
    for (int m = 0; m < count; m++) {
        const dw_cweight *b = bias ? bias[m] : NULL;
        if (w[m]->qbits) {
            qo[nq] = out[m];
            qw[nq] = w[m];
            qb[nq++] = b;
        } else {
            q->inner.ops->matmul(q->inner.ctx, out[m], x, n, w[m], b);
        }
    }
    /* one pass per group of equal input widths (q/k/v and gate/up share theirs) */
    if (nq) qmatmul(q, nq, qo, x, n, qw, qb);
}

static void q_matmul(void *vctx, float *out, const float *x, int n, const dw_cweight *w, const dw_cweight *bias) {
    q_matmul_multi(vctx, 1, &out, x, n, &w, &bias);
}

static void q_embed(void *vctx, float *out, const dw_cweight *table, const int32_t *ids, int n) {
    qctx *q = vctx;
    if (!table->qbits) {
        q->inner.ops->embed(q->inner.ctx, out, table, ids, n);
        return;
    }
    for (int i = 0; i < n; i++) {
        DW_ASSERT(ids[i] >= 0 && ids[i] < table->rows);
        q->qk->dequant(out + (size_t)i * table->cols, table, ids[i], ids[i] + 1);
    }
}

/* ---- pass-through ------------------------------------------------------------------------ */

static dw_status q_alloc(void *c, size_t bytes, void **out, dw_error *err) {
    return ((qctx *)c)->inner.ops->alloc(((qctx *)c)->inner.ctx, bytes, out, err);
}
static void q_free(void *c, void *buf) { ((qctx *)c)->inner.ops->free(((qctx *)c)->inner.ctx, buf); }
static dw_status q_weight_load(void *c, const void *host, dw_dtype dtype, int64_t rows, int64_t cols, dw_cweight *out,
                               dw_error *err) {
    return ((qctx *)c)->inner.ops->weight_load(((qctx *)c)->inner.ctx, host, dtype, rows, cols, out, err);
}
static void q_weight_release(void *c, dw_cweight *w) {
    if (w->qbits) { /* points into the mapping */
        memset(w, 0, sizeof *w);
        return;
    }
    ((qctx *)c)->inner.ops->weight_release(((qctx *)c)->inner.ctx, w);
}
static dw_status q_upload(void *c, void *dst, const void *src, size_t bytes, dw_error *err) {
    return ((qctx *)c)->inner.ops->upload(((qctx *)c)->inner.ctx, dst, src, bytes, err);
}
static dw_status q_download(void *c, void *dst, const void *src, size_t bytes, dw_error *err) {
    return ((qctx *)c)->inner.ops->download(((qctx *)c)->inner.ctx, dst, src, bytes, err);
}
static void q_rmsnorm(void *c, float *out, const float *x, const dw_cweight *w, int n, int dim, float eps) {
    ((qctx *)c)->inner.ops->rmsnorm(((qctx *)c)->inner.ctx, out, x, w, n, dim, eps);
}
static void q_rope(void *c, float *qv, float *k, int n, int nh, int nkv, int hd, int pos0, const float *inv_freq) {
    ((qctx *)c)->inner.ops->rope(((qctx *)c)->inner.ctx, qv, k, n, nh, nkv, hd, pos0, inv_freq);
}
static void q_kv_write(void *c, const dw_kv_view *kv, const float *k, const float *v, int pos0, int n) {
    ((qctx *)c)->inner.ops->kv_write(((qctx *)c)->inner.ctx, kv, k, v, pos0, n);
}
static void q_attention(void *c, float *out, const float *qv, const dw_kv_view *kv, const dw_attn_params *p) {
    ((qctx *)c)->inner.ops->attention(((qctx *)c)->inner.ctx, out, qv, kv, p);
}
static void q_swiglu(void *c, float *out, const float *g, const float *u, size_t count) {
    ((qctx *)c)->inner.ops->swiglu(((qctx *)c)->inner.ctx, out, g, u, count);
}
static void q_add(void *c, float *x, const float *y, size_t count) {
    ((qctx *)c)->inner.ops->add(((qctx *)c)->inner.ctx, x, y, count);
}
static dw_status q_synchronize(void *c, dw_error *err) {
    return ((qctx *)c)->inner.ops->synchronize(((qctx *)c)->inner.ctx, err);
}

static void q_destroy(void *vctx) {
    qctx *q = vctx;
    dw__compute_close(&q->inner);
    pthread_mutex_destroy(&q->lock);
    free(q->xt);
    free(q->panels);
    free(q);
}

dw_status dw__quant_compute_wrap(dw_compute *c, const char *backend_name, dw_error *err) {
    if (c->ops->weight_load_quant) return DW_OK; /* the backend runs them itself */
    if (strcmp(backend_name, "cpu") != 0)
        return dw_error_set(err, DW_ERR_UNSUPPORTED,
                            "backend '%s' does not run quantized (MLX affine) weights yet (use --backend cpu)",
                            backend_name);
    qctx *q = calloc(1, sizeof *q);
    if (!q) return dw_error_set(err, DW_ERR_NO_MEMORY, "cpu compute: out of memory");
    q->inner = *c;
    q->k = dw__cpu_compute_kernels(c);
    q->qk = dw__cpu_qkernels_for(q->k->isa);
    q->pool = dw__cpu_compute_pool(c);
    q->n_threads = dw_threadpool_size(q->pool);
    pthread_mutex_init(&q->lock, NULL);
    dw_compute_ops o = *c->ops;
    o.alloc = q_alloc;
    o.free = q_free;
    o.weight_load = q_weight_load;
    o.weight_release = q_weight_release;
    o.upload = q_upload;
    o.download = q_download;
    o.embed = q_embed;
    o.rmsnorm = q_rmsnorm;
    o.matmul = q_matmul;
    o.rope = q_rope;
    o.kv_write = q_kv_write;
    o.attention = q_attention;
    o.swiglu = q_swiglu;
    o.add = q_add;
    o.synchronize = q_synchronize;
    o.matmul_multi = q_matmul_multi;
    o.destroy = q_destroy;
    o.decode_step = NULL; /* the CPU has none */
    o.decode_forget = NULL;
    q->ops = o;
    c->ops = &q->ops;
    c->ctx = q;
    return DW_OK;
}

void dw__quant_compute_set_kernels(dw_compute *c, const dw__cpu_qkernels *qk) { ((qctx *)c->ctx)->qk = qk; }

int dw__quant_compute_is_wrapped(const dw_compute *c) { return c->ops && c->ops->destroy == q_destroy; }
