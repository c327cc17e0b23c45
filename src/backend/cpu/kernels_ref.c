/* Scalar reference versions of every CPU kernel (kernels.h): the definition the SIMD
 * versions are tested against, and the kernels used on CPUs without them (e.g. aarch64). */
#include "backend/cpu/kernels.h"

#include <math.h>

#include "driftwood/dtype.h"

static void matmul_bf16_ref(float *out, int ldo, const float *x, int ldx, int n, const void *w, int k,
                            int r0, int r1) {
    const uint16_t *wb = w;
    for (int r = r0; r < r1; r++) {
        const uint16_t *row = wb + (size_t)r * k;
        for (int t = 0; t < n; t++) {
            const float *xt = x + (size_t)t * ldx;
            float acc = 0.0f;
            for (int i = 0; i < k; i++) acc += xt[i] * dw_bf16_to_f32(row[i]);
            out[(size_t)t * ldo + r] = acc;
        }
    }
}

static void matmul_f16_ref(float *out, int ldo, const float *x, int ldx, int n, const void *w, int k,
                           int r0, int r1) {
    const uint16_t *wh = w;
    for (int r = r0; r < r1; r++) {
        const uint16_t *row = wh + (size_t)r * k;
        for (int t = 0; t < n; t++) {
            const float *xt = x + (size_t)t * ldx;
            float acc = 0.0f;
            for (int i = 0; i < k; i++) acc += xt[i] * dw_f16_to_f32(row[i]);
            out[(size_t)t * ldo + r] = acc;
        }
    }
}

static void matmul_f32_ref(float *out, int ldo, const float *x, int ldx, int n, const void *w, int k,
                           int r0, int r1) {
    const float *wf = w;
    for (int r = r0; r < r1; r++) {
        const float *row = wf + (size_t)r * k;
        for (int t = 0; t < n; t++) {
            const float *xt = x + (size_t)t * ldx;
            float acc = 0.0f;
            for (int i = 0; i < k; i++) acc += xt[i] * row[i];
            out[(size_t)t * ldo + r] = acc;
        }
    }
}

#define DEFINE_GEMM_REF(SUFFIX, WT, CONV)                                                            \
    static void gemm_##SUFFIX##_ref(float *out, int ldo, const float *xt, int ldt, int n, const void *wv, int k, \
                                    int r0, int r1) {                                                    \
        const WT *w = wv;                                                                              \
        for (int r = r0; r < r1; r++)                                                                  \
            for (int t = 0; t < n; t++) {                                                              \
                float acc = 0.0f;                                                                      \
                for (int i = 0; i < k; i++) acc += xt[(size_t)i * ldt + t] * CONV(w[(size_t)r * k + i]); \
                out[(size_t)t * ldo + r] = acc;                                                        \
            }                                                                                          \
    }
#define CONV_F32(v) (v)
DEFINE_GEMM_REF(bf16, uint16_t, dw_bf16_to_f32)
DEFINE_GEMM_REF(f16, uint16_t, dw_f16_to_f32)
DEFINE_GEMM_REF(f32, float, CONV_F32)

static float dot_f32_ref(const float *a, const float *b, int n) {
    float acc = 0.0f;
    for (int i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

static float dot_bf16_ref(const float *a, const uint16_t *b, int n) {
    float acc = 0.0f;
    for (int i = 0; i < n; i++) acc += a[i] * dw_bf16_to_f32(b[i]);
    return acc;
}

static void axpy_f32_ref(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void axpy_bf16_ref(float *y, float a, const uint16_t *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * dw_bf16_to_f32(x[i]);
}

static void attn_dot_f32_ref(float *scores, const float *q, const float *rows, int n, int hd, float scale) {
    for (int i = 0; i < n; i++) scores[i] = dot_f32_ref(q, rows + (size_t)i * hd, hd) * scale;
}

static void attn_dot_bf16_ref(float *scores, const float *q, const uint16_t *rows, int n, int hd, float scale) {
    for (int i = 0; i < n; i++) scores[i] = dot_bf16_ref(q, rows + (size_t)i * hd, hd) * scale;
}

static void attn_acc_f32_ref(float *acc, const float *p, const float *rows, int n, int hd) {
    for (int i = 0; i < n; i++) axpy_f32_ref(acc, p[i], rows + (size_t)i * hd, hd);
}

static void attn_acc_bf16_ref(float *acc, const float *p, const uint16_t *rows, int n, int hd) {
    for (int i = 0; i < n; i++) axpy_bf16_ref(acc, p[i], rows + (size_t)i * hd, hd);
}

static void attn_dot_t_ref(float *scores, const float *q, const float *kt, int ldk, int n, int hd, float scale) {
    for (int j = 0; j < n; j++) {
        float acc = 0.0f;
        for (int d = 0; d < hd; d++) acc += q[d] * kt[(size_t)d * ldk + j];
        scores[j] = acc * scale;
    }
}

static void attn_acc_multi_ref(float *acc, int ldacc, const float *p, int ldp, int nq, const float *rows, int n,
                               int hd) {
    for (int q = 0; q < nq; q++) attn_acc_f32_ref(acc + (size_t)q * ldacc, p + (size_t)q * ldp, rows, n, hd);
}

static void bf16_to_f32_ref(float *dst, const uint16_t *src, int n) {
    for (int i = 0; i < n; i++) dst[i] = dw_bf16_to_f32(src[i]);
}

static void f16_to_f32_ref(float *dst, const uint16_t *src, int n) {
    for (int i = 0; i < n; i++) dst[i] = dw_f16_to_f32(src[i]);
}

static void f32_to_bf16_ref(uint16_t *dst, const float *src, int n) {
    for (int i = 0; i < n; i++) dst[i] = dw_f32_to_bf16(src[i]);
}

static float sum_squares_ref(const float *x, int n) {
    float acc = 0.0f;
    for (int i = 0; i < n; i++) acc += x[i] * x[i];
    return acc;
}

static void scale_mul_ref(float *out, const float *x, float scale, const float *w, int n) {
    for (int i = 0; i < n; i++) out[i] = (x[i] * scale) * w[i];
}

static void swiglu_ref(float *out, const float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static void add_ref(float *x, const float *y, int n) {
    for (int i = 0; i < n; i++) x[i] += y[i];
}

static float max_f32_ref(const float *x, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > m) m = x[i];
    return m;
}

static float exp_sum_ref(float *x, float max, int n) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    return sum;
}

static uint64_t read_bytes_ref(const void *p, size_t n) {
    const uint64_t *q = p;
    uint64_t acc = 0;
    for (size_t i = 0; i < n / 8; i++) acc ^= q[i];
    return acc;
}

const dw__cpu_kernels dw__cpu_kernels_ref = {
    /* .isa          = */ "ref",
    /* .matmul_bf16  = */ matmul_bf16_ref,
    /* .matmul_f16   = */ matmul_f16_ref,
    /* .matmul_f32   = */ matmul_f32_ref,
    /* .gemm_bf16    = */ gemm_bf16_ref,
    /* .gemm_f16     = */ gemm_f16_ref,
    /* .gemm_f32     = */ gemm_f32_ref,
    /* .rows_bf16    = */ matmul_bf16_ref, /* one scalar sum per element in k order: batch invariant */
    /* .rows_f16     = */ matmul_f16_ref,
    /* .rows_f32     = */ matmul_f32_ref,
    /* .dot_f32      = */ dot_f32_ref,
    /* .dot_bf16     = */ dot_bf16_ref,
    /* .axpy_f32     = */ axpy_f32_ref,
    /* .axpy_bf16    = */ axpy_bf16_ref,
    /* .attn_dot_f32 = */ attn_dot_f32_ref,
    /* .attn_dot_bf16 = */ attn_dot_bf16_ref,
    /* .attn_acc_f32 = */ attn_acc_f32_ref,
    /* .attn_acc_bf16 = */ attn_acc_bf16_ref,
    /* .attn_acc_multi = */ attn_acc_multi_ref,
    /* .attn_dot_t   = */ attn_dot_t_ref,
    /* .bf16_to_f32  = */ bf16_to_f32_ref,
    /* .f16_to_f32   = */ f16_to_f32_ref,
    /* .f32_to_bf16  = */ f32_to_bf16_ref,
    /* .sum_squares  = */ sum_squares_ref,
    /* .scale_mul    = */ scale_mul_ref,
    /* .swiglu       = */ swiglu_ref,
    /* .add          = */ add_ref,
    /* .max_f32      = */ max_f32_ref,
    /* .exp_sum      = */ exp_sum_ref,
    /* .read_bytes   = */ read_bytes_ref,
    /* .rows_bf16_bx = */ NULL,
};
