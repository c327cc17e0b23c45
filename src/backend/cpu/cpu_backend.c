/* The CPU backend (backend.h): its context and ops table, memory (the device is the host: guest
 * ranges need no registration, device pointers are host pointers, copies are memmove), weights
 * (pointing into the mapped safetensors files, quantized ones included), the guest's dw.gemm and
 * the description. The forward ops are compute_cpu.c and matmul_cpu.c; the batched step's,
 * batch_cpu.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/cpu_impl.h"
#include "backend/cpu/kernels_dispatch.h"
#include "backend/cpu/membw.h"

/* ---- memory ------------------------------------------------------------------------------ */

static void *cpu_device_pointer(void *ctx, const void *host, size_t bytes) { return (void *)host; }

static dw_status cpu_alloc(void *ctx, size_t bytes, void **out, dw_error *err) {
    size_t rounded = (bytes + 63) & ~(size_t)63;
    *out = aligned_alloc(64, rounded ? rounded : 64);
    if (!*out) return dw_error_set(err, DW_ERR_NO_MEMORY, "cpu: cannot allocate %zu bytes", bytes);
    return DW_OK;
}

static void cpu_free(void *ctx, void *buf) { free(buf); }

static dw_status cpu_copy(void *ctx, void *dst, const void *src, size_t bytes, dw_error *err) {
    if (dst != src && bytes) memmove(dst, src, bytes);
    return DW_OK;
}

/* The read bandwidth the kernels reach (membw.c): on the CPU the bound of decode is reading the
 * weights, so *gbs counts the bytes read. Median of reps passes over a probe buffer that is kept
 * for the next call of the same size. */
static dw_status cpu_memory_bandwidth(void *ctx, size_t bytes, int reps, double *gbs, dw_error *err) {
    dw__cpu *c = ctx;
    *gbs = 0;
    if (reps < 1) reps = 1;
    double *rates = malloc(sizeof(double) * (size_t)reps);
    if (!rates) return dw_error_set(err, DW_ERR_NO_MEMORY, "cpu: out of memory");
    pthread_mutex_lock(&c->probe_lock);
    dw_status st = DW_OK;
    if (c->probe && c->probe_bytes != bytes) {
        dw__membw_free(c->probe);
        c->probe = NULL;
    }
    if (!c->probe && !(st = dw__membw_create(c->pool, c->k, bytes, &c->probe, err))) c->probe_bytes = bytes;
    for (int r = 0; !st && r < reps; r++) {
        double g = dw__membw_pass(c->probe, c->pool);
        int i = r;
        for (; i > 0 && rates[i - 1] > g; i--) rates[i] = rates[i - 1]; /* insertion: kept sorted */
        rates[i] = g;
    }
    pthread_mutex_unlock(&c->probe_lock);
    if (!st) *gbs = reps % 2 ? rates[reps / 2] : (rates[reps / 2 - 1] + rates[reps / 2]) / 2;
    free(rates);
    return st;
}

/* ---- the guest's compute (dw.gemm) ----------------------------------------------------------- */

/* Row-major C = A×B. The i-k-j order streams rows of B and C, which the compiler vectorizes;
 * blocking over k keeps a panel of B in cache for larger sizes. Cloned for AVX-512 and AVX2+FMA
 * with a portable default; the loader picks the clone. */
#if defined(__x86_64__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
__attribute__((optimize("O3"))) static void gemm_f32_rows(int m, int n, int k, const float *a, const float *b,
                                                          float *c) {
    enum { KB = 256 };
    for (int i = 0; i < m; i++) memset(c + (size_t)i * n, 0, (size_t)n * sizeof *c);
    for (int k0 = 0; k0 < k; k0 += KB) {
        int k1 = k0 + KB < k ? k0 + KB : k;
        for (int i = 0; i < m; i++) {
            float *restrict ci = c + (size_t)i * n;
            const float *ai = a + (size_t)i * k;
            for (int p = k0; p < k1; p++) {
                const float aip = ai[p];
                const float *restrict bp = b + (size_t)p * n;
                for (int j = 0; j < n; j++) ci[j] += aip * bp[j];
            }
        }
    }
}

static dw_status cpu_gemm_f32(void *ctx, int m, int n, int k, const float *a, const float *b, float *c,
                              dw_error *err) {
    gemm_f32_rows(m, n, k, a, b, c);
    return DW_OK;
}

/* ---- weights ------------------------------------------------------------------------------- */

static dw_status cpu_weight_load(void *ctx, const void *host, dw_dtype dtype, int64_t rows, int64_t cols,
                                 dw_cweight *out, dw_error *err) {
    dw__cpu *c = ctx;
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
    dw_status st = cpu_alloc(ctx, (size_t)cols * sizeof(float), &copy, err);
    if (st) return st;
    if (dtype == DW_DTYPE_F32) memcpy(copy, host, (size_t)cols * sizeof(float));
    else if (dtype == DW_DTYPE_BF16) c->k->bf16_to_f32(copy, host, (int)cols);
    else c->k->f16_to_f32(copy, host, (int)cols);
    out->data = copy;
    out->dtype = DW_DTYPE_F32;
    out->priv = copy;
    return DW_OK;
}

/* Quantized matrices stay in the mapping too: the weight is the host description itself. */
static dw_status cpu_weight_load_quant(void *ctx, const dw_cweight *host, dw_cweight *out, dw_error *err) {
    if (!DW_QUANT_BITS_OK(host->qbits) || !DW_QUANT_GROUP_OK(host->qgroup) || host->cols % host->qgroup)
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "cpu: quantized weight of %d bits, group %d, %lld inputs",
                            host->qbits, host->qgroup, (long long)host->cols);
    *out = *host;
    out->priv = NULL;
    return DW_OK;
}

static void cpu_weight_release(void *ctx, dw_cweight *w) {
    free(w->priv);
    memset(w, 0, sizeof *w);
}

/* ---- the device as a whole ------------------------------------------------------------------ */

static dw_status cpu_synchronize(void *ctx, dw_error *err) { return DW_OK; }

static void cpu_describe(void *ctx, dw_backend_info *out) {
    dw__cpu *c = ctx;
#if defined(__x86_64__)
    const char *arch = "x86-64";
#elif defined(__aarch64__)
    const char *arch = "aarch64";
#else
    const char *arch = "cpu";
#endif
    snprintf(out->device, sizeof out->device, "%s, %ld cores", arch, sysconf(_SC_NPROCESSORS_ONLN));
    snprintf(out->kernels, sizeof out->kernels, "%s", c->kernels_name);
    out->n_threads = c->n_threads;
}

static void cpu_destroy(void *ctx) {
    dw__cpu *c = ctx;
    if (c->own_pool) dw_threadpool_destroy(c->pool);
    pthread_mutex_destroy(&c->gemm_lock);
    pthread_mutex_destroy(&c->probe_lock);
    pthread_mutex_destroy(&c->rows_lock);
    free(c->rows_qin);
    free(c->rows_xb);
    dw__membw_free(c->probe);
    free(c->xt);
    free(c->panels);
    free(c);
}

static const dw_backend_ops cpu_ops = {
    /* .name              = */ "cpu",
    /* .range_register    = */ NULL, /* every host address is device-accessible */
    /* .range_release     = */ NULL,
    /* .device_pointer    = */ cpu_device_pointer,
    /* .alloc             = */ cpu_alloc,
    /* .free              = */ cpu_free,
    /* .upload            = */ cpu_copy,
    /* .download          = */ cpu_copy,
    /* .memory_used       = */ NULL,
    /* .memory_bandwidth  = */ cpu_memory_bandwidth,
    /* .gemm_f32          = */ cpu_gemm_f32,
    /* .weight_load       = */ cpu_weight_load,
    /* .weight_load_quant = */ cpu_weight_load_quant,
    /* .weight_release    = */ cpu_weight_release,
    /* .embed             = */ dw__cpu_embed,
    /* .rmsnorm           = */ dw__cpu_rmsnorm,
    /* .matmul            = */ dw__cpu_matmul,
    /* .matmul_multi      = */ dw__cpu_matmul_multi,
    /* .rope              = */ dw__cpu_rope,
    /* .kv_write          = */ dw__cpu_kv_write,
    /* .attention         = */ dw__cpu_attention,
    /* .swiglu            = */ dw__cpu_swiglu,
    /* .add               = */ dw__cpu_add,
    /* .argmax            = */ dw__cpu_argmax,
    /* .matmul_rows       = */ dw__cpu_matmul_rows,
    /* .rope_rows         = */ dw__cpu_rope_rows,
    /* .kv_write_rows     = */ dw__cpu_kv_write_rows,
    /* .attention_rows    = */ dw__cpu_attention_rows,
    /* .gather_rows       = */ dw__cpu_gather_rows,
    /* .argmax_rows       = */ dw__cpu_argmax_rows,
    /* .sample_rows       = */ dw__cpu_sample_rows,
    /* .copy              = */ dw__cpu_copy,
    /* .decode_step       = */ NULL, /* the engine runs each step's ops directly */
    /* .decode_step_from  = */ NULL,
    /* .decode_forget     = */ NULL,
    /* .synchronize       = */ cpu_synchronize,
    /* .describe          = */ cpu_describe,
    /* .stats             = */ NULL,
    /* .destroy           = */ cpu_destroy,
};

dw_status dw__cpu_backend_open(const dw_backend_options *opts, dw_backend **out, dw_error *err) {
    *out = NULL;
    dw__cpu_kernel_choice kc;
    dw_status st = dw__cpu_kernels_choose(opts->cpu_kernels, &kc, err);
    if (st) return st;
    dw__cpu *c = calloc(1, sizeof *c);
    if (!c) return dw_error_set(err, DW_ERR_NO_MEMORY, "cpu backend: out of memory");
    if (opts->n_threads > 0) {
        if ((st = dw_threadpool_create(opts->n_threads, &c->pool, err))) {
            free(c);
            return st;
        }
        c->own_pool = 1;
    } else if (!(c->pool = dw_threadpool_global())) {
        free(c);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "cpu backend: could not start the thread pool");
    }
    c->n_threads = dw_threadpool_size(c->pool);
    c->kernels_name = kc.name;
    c->k = kc.k;
    c->qk = kc.qk;
    pthread_mutex_init(&c->gemm_lock, NULL);
    pthread_mutex_init(&c->probe_lock, NULL);
    pthread_mutex_init(&c->rows_lock, NULL);
    c->backend.ops = &cpu_ops;
    c->backend.ctx = c;
    *out = &c->backend;
    return DW_OK;
}
