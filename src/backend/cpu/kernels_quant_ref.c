/* Scalar references of the quantized kernels (kernels_quant.h), written straight from the
 * layout in core/quant_layout.h: the definition the SIMD versions are tested against. */
#include "backend/cpu/kernels_quant.h"

static void qmatvec_ref(float *out, const float *x, const float *xsum, const dw_cweight *w, int r0, int r1) {
    const int bits = w->qbits, gs = w->qgroup;
    const int64_t groups = DW_QUANT_ROW_GROUPS(w->cols, gs);
    for (int r = r0; r < r1; r++) {
        const uint32_t *q = dw__quant_row(w->data, r, w->cols, bits);
        float acc = 0.0f;
        for (int64_t g = 0; g < groups; g++) {
            float dot = 0.0f;
            for (int i = 0; i < gs; i++) dot += (float)dw__quant_code(q, g * gs + i, bits) * x[g * gs + i];
            size_t si = dw__quant_group_index(r, g * gs, w->cols, gs);
            acc += dw__quant_sb(w->qscales, w->qsdtype, si) * dot + dw__quant_sb(w->qbiases, w->qsdtype, si) * xsum[g];
        }
        out[r] = acc;
    }
}

/* w = scale·code + bias, multiply then add (no fused rounding): every set dequantizes to the
 * same bits. */
static void qdequant_ref(float *dst, const dw_cweight *w, int r0, int r1) {
    for (int r = r0; r < r1; r++) {
        const uint32_t *q = dw__quant_row(w->data, r, w->cols, w->qbits);
        float *d = dst + (size_t)(r - r0) * w->cols;
        for (int64_t i = 0; i < w->cols; i++) {
            size_t g = dw__quant_group_index(r, i, w->cols, w->qgroup);
            float s = dw__quant_sb(w->qscales, w->qsdtype, g), b = dw__quant_sb(w->qbiases, w->qsdtype, g);
            d[i] = s * (float)dw__quant_code(q, i, w->qbits) + b;
        }
    }
}

const dw__cpu_qkernels dw__cpu_qkernels_ref = {
    /* .isa      = */ "ref",
    /* .matvec   = */ qmatvec_ref,
    /* .dequant  = */ qdequant_ref,
    /* .prep4    = */ NULL,
    /* .matvec4p = */ NULL,
    /* .rows     = */ NULL, /* the matvec token by token */
    /* .rows4p   = */ NULL,
};
