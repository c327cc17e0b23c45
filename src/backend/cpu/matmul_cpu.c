/* The CPU backend's matmul and matmul_multi (cpu_impl.h; the interface: backend.h) on float and
 * quantized (core/quant_layout.h) weights: the rows of the weights are cut into blocks, one per
 * pool task. Decode (one token) is a matrix-vector product that reads each weight row once;
 * prefill transposes the batch once, then each task runs the GEMM kernel on its rows (quantized
 * rows are first dequantized into a per-thread panel of f32). */
#include "backend/cpu/cpu_impl.h"

#include <stdlib.h>
#include <string.h>

#include "core/assert.h"

/* Rows per task. Float decode: small blocks balance the threads while each reads long linear
 * runs. Prefill, and quantized decode: each task reads its weight rows once for the whole batch. */
#define MATMUL_BLOCK_ROWS 16
#define GEMM_BLOCK_ROWS 32
#define QMATVEC_BLOCK_ROWS 32
/* Prefill batches are transposed in blocks of this many k. */
#define TRANSPOSE_BLOCK 64
#define MAX_MULTI 4
#define MAX_GROUPS 4096 /* quantized decode: input groups per row (k / group size) */

typedef struct matmul_job {
    const dw__cpu *c;
    int quant; /* every weight of the job is quantized (else none is) */
    int count;
    float *out[MAX_MULTI];
    const dw_cweight *w[MAX_MULTI];
    const dw_cweight *bias[MAX_MULTI];
    const float *xsum[MAX_MULTI]; /* quantized decode: x's group sums for each weight */
    int first_task[MAX_MULTI + 1]; /* task ranges per matrix */
    int block_rows;
    const float *x;  /* [n, k] */
    const float *xt; /* prefill: [k, ldt], x transposed (NULL: the tiled kernels read x) */
    const float *xp; /* quantized decode, 4-bit: x in the layout of qk->prep4 (NULL: none) */
    int xp_group;    /* the group size xp was made for */
    int ldt, n, k;
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

static void quant_rows(const matmul_job *j, const dw_cweight *w, int m, float *out, int r0, int r1, int thread) {
    const dw__cpu *c = j->c;
    if (!j->xt) {
        if (w->qbits == 4 && j->xp && w->qgroup == j->xp_group) c->qk->matvec4p(out, j->xp, j->xsum[m], w, r0, r1);
        else c->qk->matvec(out, j->x, j->xsum[m], w, r0, r1);
        return;
    }
    float *panel = c->panels + (size_t)thread * c->panel_cap;
    c->qk->dequant(panel, w, r0, r1);
    c->k->gemm_f32(out + r0, (int)w->rows, j->xt, j->ldt, j->n, panel, j->k, 0, r1 - r0);
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
    if (j->quant) quant_rows(j, w, m, out, r0, r1, thread);
    else if (j->xt) gemm_kernel(j->c->k, w->dtype)(out, rows, j->xt, j->ldt, j->n, w->data, k, r0, r1);
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

void dw__cpu_group_sums(float *xsum, const float *x, int k, int gs) {
    for (int g = 0; g < k / gs; g++) {
        const float *xg = x + (size_t)g * gs;
        float p[8] = {0};
        for (int i = 0; i < gs; i += 8)
            for (int l = 0; l < 8; l++) p[l] += xg[i + l];
        xsum[g] = ((p[0] + p[4]) + (p[1] + p[5])) + ((p[2] + p[6]) + (p[3] + p[7]));
    }
}

/* Grows a 64-byte aligned scratch buffer to `need` floats (contents dropped); 0 when out of memory. */
static int reserve(float **buf, size_t *cap, size_t need, size_t copies) {
    if (need <= *cap) return 1;
    free(*buf);
    *buf = aligned_alloc(64, (need * copies * sizeof(float) + 63) & ~(size_t)63);
    *cap = *buf ? need : 0;
    return *buf != NULL;
}

/* Decode, one pass over w[0..count) (same cols, all quantized or none). */
static void matvec_pass(dw__cpu *c, matmul_job *j) {
    if (!j->quant) {
        dw_threadpool_run_ranges(c->pool, j->first_task[j->count], matmul_task, j);
        return;
    }
    float xsum[MAX_MULTI][MAX_GROUPS];
    for (int m = 0; m < j->count; m++) {
        int gs = j->w[m]->qgroup;
        DW_ASSERT(j->k / gs <= MAX_GROUPS);
        int same = 0; /* matrices with the same group size share the sums */
        while (same < m && j->w[same]->qgroup != gs) same++;
        if (same == m) dw__cpu_group_sums(xsum[m], j->x, j->k, gs);
        j->xsum[m] = xsum[same];
    }
    int gs = j->w[0]->qgroup, prep = c->qk->prep4 && j->k <= 65536 && 128 % gs == 0;
    float xp[prep ? DW_QPREP4_FLOATS(j->k) : 1];
    if (prep) {
        c->qk->prep4(xp, j->x, j->k, gs);
        j->xp = xp;
        j->xp_group = gs;
    }
    dw_threadpool_run_ranges(c->pool, j->first_task[j->count], matmul_task, j);
}

/* Prefill: the batch transposed once into the shared scratch, then the GEMM over every task. */
static void gemm_pass(dw__cpu *c, matmul_job *j) {
    j->ldt = (j->n + 15) & ~15;
    pthread_mutex_lock(&c->gemm_lock);
    int have = reserve(&c->xt, &c->xt_cap, (size_t)j->ldt * j->k, 1); /* once per batch shape (a few MB) */
    if (j->quant) {
        have = have && reserve(&c->panels, &c->panel_cap, (size_t)GEMM_BLOCK_ROWS * j->k, (size_t)c->n_threads);
        DW_ASSERT(have);
    }
    if (!have) { /* no memory for the transposed batch: the tiled float kernels work on x as it is */
        pthread_mutex_unlock(&c->gemm_lock);
        dw_threadpool_run(c->pool, j->first_task[j->count], matmul_task, j);
        return;
    }
    j->xt = c->xt;
    dw_threadpool_run(c->pool, (j->k + TRANSPOSE_BLOCK - 1) / TRANSPOSE_BLOCK, transpose_task, j);
    dw_threadpool_run(c->pool, j->first_task[j->count], matmul_task, j);
    pthread_mutex_unlock(&c->gemm_lock);
}

/* One pass over the weights of one kind (quant = 1: the quantized ones) among w[0..count). */
static void matmul_pass(dw__cpu *c, int quant, int count, float *const *out, const float *x, int n,
                        const dw_cweight *const *w, const dw_cweight *const *bias) {
    matmul_job j = {.c = c, .quant = quant, .x = x, .n = n, .k = (int)w[0]->cols};
    j.block_rows = n > 1 ? GEMM_BLOCK_ROWS : quant ? QMATVEC_BLOCK_ROWS : MATMUL_BLOCK_ROWS;
    for (int m = 0; m < count; m++) {
        if (!w[m]->qbits != !quant) continue;
        DW_ASSERT(w[m]->cols == w[0]->cols);
        j.out[j.count] = out[m];
        j.w[j.count] = w[m];
        j.bias[j.count] = bias ? bias[m] : NULL;
        j.first_task[j.count + 1] = j.first_task[j.count] + (int)((w[m]->rows + j.block_rows - 1) / j.block_rows);
        j.count++;
    }
    if (!j.count) return;
    if (n == 1) matvec_pass(c, &j);
    else gemm_pass(c, &j);
}

void dw__cpu_matmul_multi(void *ctx, int count, float *const *out, const float *x, int n, const dw_cweight *const *w,
                          const dw_cweight *const *bias) {
    DW_ASSERT(count >= 1 && count <= MAX_MULTI);
    matmul_pass(ctx, 0, count, out, x, n, w, bias);
    matmul_pass(ctx, 1, count, out, x, n, w, bias);
}

void dw__cpu_matmul(void *ctx, float *out, const float *x, int n, const dw_cweight *w, const dw_cweight *bias) {
    dw__cpu_matmul_multi(ctx, 1, &out, x, n, &w, &bias);
}
