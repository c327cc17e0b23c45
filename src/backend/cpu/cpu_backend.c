/* The CPU backend's part of the backend interface: regions need no registration (the
 * device is the host), the device pointer is the host pointer, and GEMM runs in place. */
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"

static dw_status cpu_region_register(void *ctx, void *base, size_t len, dw_error *err) { return DW_OK; }
static dw_status cpu_region_unregister(void *ctx, void *base, size_t len, dw_error *err) { return DW_OK; }
static void *cpu_device_pointer(void *ctx, void *host) { return host; }
static dw_status cpu_synchronize(void *ctx, dw_error *err) { return DW_OK; }

/* Row-major C = A×B. The i-k-j order streams rows of B and C, which the compiler vectorizes;
 * blocking over k keeps a panel of B in cache for larger sizes. */
/* Cloned for AVX2+FMA and AVX-512 with a portable default; the loader picks the clone. */
#if defined(__x86_64__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void gemm_f32_rows(int m, int n, int k, const float *a, const float *b, float *c);

static dw_status cpu_gemm_f32(void *ctx, int m, int n, int k, const float *a, const float *b, float *c,
                              dw_error *err) {
    gemm_f32_rows(m, n, k, a, b, c);
    return DW_OK;
}

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

static dw_status cpu_buffer_alloc(void *ctx, size_t bytes, void **out, dw_error *err) {
    *out = aligned_alloc(64, (bytes + 63) / 64 * 64);
    return *out ? DW_OK : dw_error_set(err, DW_ERR_NO_MEMORY, "cpu: cannot allocate %zu bytes", bytes);
}
static void cpu_buffer_free(void *ctx, void *buf) { free(buf); }
static dw_status cpu_copy(void *ctx, void *dst, const void *src, size_t bytes, dw_error *err) {
    memcpy(dst, src, bytes);
    return DW_OK;
}

static void cpu_destroy(void *ctx) { free(ctx); /* ctx is the dw_backend itself */ }

static const dw_backend_ops cpu_ops = {
    /* .name               = */ "cpu",
    /* .region_register    = */ cpu_region_register,
    /* .region_unregister  = */ cpu_region_unregister,
    /* .device_pointer     = */ cpu_device_pointer,
    /* .gemm_f32           = */ cpu_gemm_f32,
    /* .synchronize        = */ cpu_synchronize,
    /* .device_memory_used = */ NULL,
    /* .buffer_alloc       = */ cpu_buffer_alloc,
    /* .buffer_free        = */ cpu_buffer_free,
    /* .copy_to_device     = */ cpu_copy,
    /* .copy_to_host       = */ cpu_copy,
    /* .destroy            = */ cpu_destroy,
};

dw_status dw__cpu_backend_create(dw_backend **out, dw_error *err) {
    dw_backend *b = calloc(1, sizeof *b);
    if (!b) return dw_error_set(err, DW_ERR_NO_MEMORY, "cpu backend: out of memory");
    b->ops = &cpu_ops;
    b->ctx = b;
    *out = b;
    return DW_OK;
}
