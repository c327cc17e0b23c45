/* The CPU backend's private room: its context (one per opened backend, shared by every model on
 * it) and the forward ops that compute_cpu.c, matmul_cpu.c and batch_cpu.c implement for the ops table in
 * cpu_backend.c. The interface they implement is src/backend/backend.h. */
#ifndef DW_BACKEND_CPU_CPU_IMPL_H
#define DW_BACKEND_CPU_CPU_IMPL_H

#include <pthread.h>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_quant.h"
#include "driftwood/threadpool.h"

typedef struct dw__cpu {
    dw_backend backend; /* the record handed out: backend.ctx points back here */
    dw_threadpool *pool;
    int own_pool;       /* made for this backend (opts->n_threads > 0), destroyed with it */
    int n_threads;
    const char *kernels_name; /* the ISA name chosen (kernels_dispatch.h) */
    const dw__cpu_kernels *k;
    const dw__cpu_qkernels *qk;
    /* prefill scratch, shared: one batched matmul at a time */
    pthread_mutex_t gemm_lock;
    float *xt;          /* [k, ldt]: the batch transposed */
    size_t xt_cap;      /* floats */
    float *panels;      /* quantized prefill: per thread [rows per task, k] of dequantized rows */
    size_t panel_cap;   /* floats per thread */
    /* matmul_rows scratch (batch_cpu.c), one op at a time */
    pthread_mutex_t rows_lock;
    float *rows_qin;       /* quantized weights: the tokens' group sums and 4-bit input layouts */
    size_t rows_qin_cap;   /* floats */
    uint16_t *rows_xb;     /* the activations rounded to bf16 (k->rows_bf16_bx) */
    size_t rows_xb_cap;    /* elements */
    /* memory_bandwidth's probe buffer, kept for the next call of the same size (a benchmark
     * measures between tokens: making a fresh buffer each time would disturb what it measures) */
    pthread_mutex_t probe_lock;
    struct dw__membw *probe;
    size_t probe_bytes;
} dw__cpu;

/* compute_cpu.c */
void dw__cpu_embed(void *ctx, float *out, const dw_cweight *table, const int32_t *ids, int n);
void dw__cpu_rmsnorm(void *ctx, float *out, const float *x, const dw_cweight *w, int n, int dim, float eps);
void dw__cpu_rope(void *ctx, float *q, float *k, int n, int n_heads, int n_kv_heads, int head_dim, int pos0,
                  const float *inv_freq);
void dw__cpu_kv_write(void *ctx, const dw_kv_view *kv, const float *k, const float *v, int pos0, int n);
void dw__cpu_attention(void *ctx, float *out, const float *q, const dw_kv_view *kv, const dw_attn_params *p);
void dw__cpu_swiglu(void *ctx, float *out, const float *gate, const float *up, size_t count);
void dw__cpu_add(void *ctx, float *x, const float *y, size_t count);
void dw__cpu_argmax(void *ctx, const float *x, int n, int32_t *ring, int ring_n, int pos);

/* matmul_cpu.c: float and quantized weights alike */
void dw__cpu_matmul(void *ctx, float *out, const float *x, int n, const dw_cweight *w, const dw_cweight *bias);
void dw__cpu_matmul_multi(void *ctx, int count, float *const *out, const float *x, int n, const dw_cweight *const *w,
                          const dw_cweight *const *bias);

/* batch_cpu.c: the batched step (batch invariant) */
/* xsum[g] = Σ of x[g·gs .. g·gs + gs) (the bias term of a quantized product), in eight interleaved
 * partial sums then a fixed tree (gs a multiple of 8; the compiler vectorizes it). One definition,
 * so the decode matvec and the batched product get the same bits (matmul_cpu.c). */
void dw__cpu_group_sums(float *xsum, const float *x, int k, int gs);
void dw__cpu_matmul_rows(void *ctx, int count, float *const *out, const float *x, int n, const dw_cweight *const *w,
                         const dw_cweight *const *bias);
void dw__cpu_rope_rows(void *ctx, float *q, float *k, const dw_rows *r, int n_heads, int n_kv_heads, int head_dim,
                       const float *inv_freq);
void dw__cpu_kv_write_rows(void *ctx, const dw_kv_pages *kv, const float *k, const float *v, const dw_rows *r);
void dw__cpu_attention_rows(void *ctx, float *out, const float *q, const dw_kv_pages *kv, const dw_rows *r,
                            const dw_attn_params *p);
void dw__cpu_gather_rows(void *ctx, float *dst, const float *src, const int32_t *idx, int n, int width);
void dw__cpu_argmax_rows(void *ctx, const float *x, int n, int width, int32_t *out);
void dw__cpu_sample_rows(void *ctx, const float *x, int n, int width, const dw_pick_row *params, int32_t *out);
void dw__cpu_copy(void *ctx, void *dst, const void *src, size_t bytes);

#endif
