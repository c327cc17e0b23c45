/* The x86 quantized kernels that every width shares (kernels_quant.h): the decode matvec on
 * packed 4- and 8-bit codes as the layout reads (core/quant_layout.h), and row dequantization,
 * written once over simd_x86.h and compiled per width by kernels_quant_avx2.c and
 * kernels_quant_avx512.c (DW_VF_WIDTH, DW_KSUFFIX as for kernels_x86_body.h). Per group: codes
 * times x in two accumulators, scaled once per group; the bias term uses the group sums of x. */
#include "backend/cpu/kernels_quant.h"
#include "backend/cpu/simd_x86.h"

#define DW_QK_CAT2(a, b) a##_##b
#define DW_QK_CAT(a, b) DW_QK_CAT2(a, b)
#define DW_QK(name) DW_QK_CAT(name, DW_KSUFFIX) /* qmatvec -> qmatvec_avx2 */
#define QVL DW_VF_LANES

/* Prefetch distance ahead of the packed codes (bytes). */
#define QPREFETCH 2048

static void DW_QK(qmatvec)(float *out, const float *x, const float *xsum, const dw_cweight *w, int r0, int r1) {
    const int bits = w->qbits, gs = w->qgroup;
    const int64_t groups = DW_QUANT_ROW_GROUPS(w->cols, gs);
    for (int r = r0; r < r1; r++) {
        const uint32_t *q = dw__quant_row(w->data, r, w->cols, bits);
        const size_t sbase = (size_t)r * groups;
        dw_vf total = dw_vf_zero();
        float bias_acc = 0.0f;
        for (int64_t g = 0; g < groups; g++) {
            const float *xg = x + g * gs;
            dw_vf a0 = dw_vf_zero(), a1 = dw_vf_zero();
            if (bits == 4) {
                const uint32_t *qg = q + g * (gs / 8); /* 8 codes per word */
                _mm_prefetch((const char *)qg + QPREFETCH, _MM_HINT_T0);
                for (int j = 0; j < gs; j += 2 * QVL, qg += 2 * QVL / 8) {
                    a0 = dw_vf_fma(dw_vf_codes4(qg), dw_vf_load(xg + j), a0);
                    a1 = dw_vf_fma(dw_vf_codes4(qg + QVL / 8), dw_vf_load(xg + j + QVL), a1);
                }
            } else {
                const uint8_t *qg = (const uint8_t *)(q + g * (gs / 4));
                _mm_prefetch((const char *)qg + QPREFETCH, _MM_HINT_T0);
                _mm_prefetch((const char *)qg + QPREFETCH + 64, _MM_HINT_T0);
                for (int j = 0; j < gs; j += 2 * QVL) {
                    a0 = dw_vf_fma(dw_vf_codes8(qg + j), dw_vf_load(xg + j), a0);
                    a1 = dw_vf_fma(dw_vf_codes8(qg + j + QVL), dw_vf_load(xg + j + QVL), a1);
                }
            }
            total = dw_vf_fma(dw_vf_set1(dw__quant_sb(w->qscales, w->qsdtype, sbase + g)), dw_vf_add(a0, a1), total);
            bias_acc += dw__quant_sb(w->qbiases, w->qsdtype, sbase + g) * xsum[g];
        }
        out[r] = dw_vf_reduce_add(total) + bias_acc;
    }
}

/* Same arithmetic as the reference (multiply, then add: no fused rounding), so every set
 * dequantizes to the same bits. */
static void DW_QK(qdequant)(float *dst, const dw_cweight *w, int r0, int r1) {
    const int bits = w->qbits, gs = w->qgroup;
    const int64_t groups = DW_QUANT_ROW_GROUPS(w->cols, gs);
    for (int r = r0; r < r1; r++) {
        const uint32_t *q = dw__quant_row(w->data, r, w->cols, bits);
        float *d = dst + (size_t)(r - r0) * w->cols;
        for (int64_t g = 0; g < groups; g++) {
            dw_vf s = dw_vf_set1(dw__quant_sb(w->qscales, w->qsdtype, (size_t)r * groups + g));
            dw_vf b = dw_vf_set1(dw__quant_sb(w->qbiases, w->qsdtype, (size_t)r * groups + g));
            const uint32_t *qw = q + g * (gs / 8);                           /* 4-bit: 8 codes a word */
            const uint8_t *qb = (const uint8_t *)q + (size_t)g * gs;         /* 8-bit: one a byte */
            float *dg = d + g * gs;
            for (int j = 0; j < gs; j += QVL) {
                dw_vf v = bits == 4 ? dw_vf_codes4(qw + j / 8) : dw_vf_codes8(qb + j);
                dw_vf_store(dg + j, dw_vf_add(dw_vf_mul(s, v), b));
            }
        }
    }
}
