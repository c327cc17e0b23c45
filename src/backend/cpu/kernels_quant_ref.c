/* Scalar references of the quantized kernels (kernels_quant.h). */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels_quant.h"
#include "engine/quant.h"

static void qmatvec_ref(float *out, const float *x, const float *xsum, const dw_cweight *w, int r0, int r1) {
    const int bits = w->qbits, gs = w->qgroup, per_word = 32 / bits;
    const uint32_t mask = (1u << bits) - 1;
    const int64_t groups = w->cols / gs, words = w->cols * bits / 32;
    for (int r = r0; r < r1; r++) {
        const uint32_t *q = (const uint32_t *)w->data + (size_t)r * words;
        float acc = 0.0f;
        for (int64_t g = 0; g < groups; g++) {
            float dot = 0.0f;
            for (int i = 0; i < gs; i++) {
                int64_t c = g * gs + i;
                uint32_t code = (q[c / per_word] >> ((c % per_word) * bits)) & mask;
                dot += (float)code * x[c];
            }
            size_t si = (size_t)r * groups + g;
            acc += dw__quant_sb(w->qscales, w->qsdtype, si) * dot + dw__quant_sb(w->qbiases, w->qsdtype, si) * xsum[g];
        }
        out[r] = acc;
    }
}

static void qdequant_ref(float *dst, const dw_cweight *w, int r0, int r1) {
    dw__qtensor t = {.q = w->data, .scales = w->qscales, .biases = w->qbiases, .sdtype = w->qsdtype,
                     .bits = w->qbits, .group_size = w->qgroup, .rows = w->rows, .cols = w->cols};
    for (int r = r0; r < r1; r++) dw__dequantize_row(&t, r, dst + (size_t)(r - r0) * w->cols);
}

const dw__cpu_qkernels dw__cpu_qkernels_ref = {
    /* .isa     = */ "ref",
    /* .matvec  = */ qmatvec_ref,
    /* .dequant = */ qdequant_ref,
    /* .prep4   = */ NULL,
    /* .matvec4p= */ NULL,
};

const dw__cpu_qkernels *dw__cpu_qkernels_for(const char *isa) {
#if defined(__x86_64__)
    if (!strcmp(isa, "avx2")) return &dw__cpu_qkernels_avx2;
    if (!strncmp(isa, "avx512", 6)) {
        const char *cap = getenv("DW_CPU_QISA");
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512vnni") && !(cap && !strcmp(cap, "avx512"))) return &dw__cpu_qkernels_avx512vnni;
        return &dw__cpu_qkernels_avx512;
    }
#endif
    return &dw__cpu_qkernels_ref;
}
