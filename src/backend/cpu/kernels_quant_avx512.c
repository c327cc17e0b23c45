/* The AVX-512 quantized kernel sets: dw__cpu_qkernels_avx512 (kernels_quant_x86_body.h over
 * 16-lane vectors, plus the decode matvecs below that run four rows at a time: 4-bit codes on x in
 * a layout of its own, 8-bit codes as bytes) and dw__cpu_qkernels_avx512vnni (the same with the
 * VNNI 4-bit decode of kernels_quant_vnni.c). Compiles to nothing off x86-64. */
#if defined(__x86_64__)

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")

#define DW_VF_WIDTH 512
#define DW_KSUFFIX avx512
#include "backend/cpu/kernels_quant_x86_body.h"

/* L2 prefetch distance ahead of the next rows' codes (bytes). */
#ifndef QPF_L2
#define QPF_L2 12288
#endif

/* 4-bit decode layout: a u64 of codes (16 inputs) is broadcast to the 16 lanes, lane 2m and
 * 2m+1 keep nibble m of the low and high word (mask 0xF << 4m, no shift), so the lane holds
 * code·16^m; x is pre-permuted and pre-scaled by 16^-m to match (exact: powers of two), as MLX's
 * Metal kernels do: xp[16j + 2m] = x[16j + m]·16^-m, xp[16j + 2m + 1] = x[16j + 8 + m]·16^-m. */
static void prep4_avx512(float *xp, const float *x, int k, int gs) {
    static const float inv[8] = {1.0f, 1.0f / 16, 1.0f / 256, 1.0f / 4096, 1.0f / 65536, 1.0f / 1048576,
                                 1.0f / 16777216, 1.0f / 268435456};
    for (int j = 0; j < k; j += 16)
        for (int m = 0; m < 8; m++) {
            xp[j + 2 * m] = x[j + m] * inv[m];
            xp[j + 2 * m + 1] = x[j + 8 + m] * inv[m];
        }
}

/* 16 scales or biases from i on as f32. */
DW_VF_INLINE __m512 sb16(const void *p, dw_dtype t, size_t i) {
    if (t == DW_DTYPE_BF16)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i))), 16));
    if (t == DW_DTYPE_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i)));
    return _mm512_loadu_ps((const float *)p + i);
}

/* Row r's group scales as f32 into sf[0..groups), and returns its bias term Σ_g bias_g·xsum[g]. */
static float row_scales(float *sf, const dw_cweight *w, size_t base, int64_t groups, const float *xsum) {
    __m512 acc = _mm512_setzero_ps();
    int64_t g = 0;
    for (; g + 16 <= groups; g += 16) {
        _mm512_storeu_ps(sf + g, sb16(w->qscales, w->qsdtype, base + g));
        acc = _mm512_fmadd_ps(sb16(w->qbiases, w->qsdtype, base + g), _mm512_loadu_ps(xsum + g), acc);
    }
    float tail = 0.0f;
    for (; g < groups; g++) {
        sf[g] = dw__quant_sb(w->qscales, w->qsdtype, base + g);
        tail += dw__quant_sb(w->qbiases, w->qsdtype, base + g) * xsum[g];
    }
    return _mm512_reduce_add_ps(acc) + tail;
}

/* Codes 16·v .. 16·v + 15 of a row as 32-bit integers: 4-bit, in prep4's layout (masked, no
 * shift); 8-bit, in input order. */
DW_VF_INLINE __m512i codes16(const uint64_t *q, int64_t v, int bits, __m512i mask) {
    if (bits == 4) return _mm512_and_si512(_mm512_set1_epi64((long long)q[v]), mask);
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)((const uint8_t *)q + 16 * v)));
}

/* NR rows of the matvec from r on, sharing each load of x (4-bit: prep4's xp): per group and row,
 * codes times x, scaled once per group with the row's f32 scales from sf. */
#define QMV_ROWS(NR, BITS)                                                                                           \
    do {                                                                                                          \
        const uint64_t *q[NR];                                                                                    \
        float *sf[NR], bias[NR];                                                                                  \
        __m512 t[NR];                                                                                             \
        _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++) {                                                                            \
            q[i] = (const uint64_t *)((const uint32_t *)w->data + (size_t)(r + i) * words);                       \
            sf[i] = sfbuf + (size_t)i * groups;                                                                   \
            bias[i] = row_scales(sf[i], w, (size_t)(r + i) * groups, groups, xsum);                               \
            t[i] = _mm512_setzero_ps();                                                                           \
        }                                                                                                         \
        /* prefetch: the next NR rows (contiguous), spread over this pass's groups */                          \
        const char *pf_base = (const char *)((const uint32_t *)w->data + (size_t)(r + NR) * words);               \
        const int64_t pf_step = (int64_t)NR * gs * BITS / 8;                                                           \
        for (int64_t g = 0; g < groups; g++) {                                                                    \
            const float *xg = xv + g * gs;                                                                        \
            const int64_t qo = g * (gs / 16);                                                                     \
            __m512 a0[NR], a1[NR];                                                                                \
            for (int64_t o = g * pf_step; o < (g + 1) * pf_step; o += 64)                                         \
                _mm_prefetch(pf_base + o, _MM_HINT_T0), _mm_prefetch(pf_base + o + QPF_L2, _MM_HINT_T1);           \
            _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++) {                                                                        \
                a0[i] = _mm512_setzero_ps();                                                                      \
                a1[i] = _mm512_setzero_ps();                                                                      \
            }                                                                                                     \
            for (int j = 0; j < gs / 16; j += 2) {                                                                \
                __m512 x0 = _mm512_loadu_ps(xg + 16 * j), x1 = _mm512_loadu_ps(xg + 16 * j + 16);                 \
                _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++) {                                                                    \
                    __m512i v0 = codes16(q[i], qo + j, BITS, mask);                                               \
                    __m512i v1 = codes16(q[i], qo + j + 1, BITS, mask);                                           \
                    a0[i] = _mm512_fmadd_ps(_mm512_cvtepu32_ps(v0), x0, a0[i]);                                   \
                    a1[i] = _mm512_fmadd_ps(_mm512_cvtepu32_ps(v1), x1, a1[i]);                                   \
                }                                                                                                 \
            }                                                                                                     \
            _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++)                                                                          \
                t[i] = _mm512_fmadd_ps(_mm512_set1_ps(sf[i][g]), _mm512_add_ps(a0[i], a1[i]), t[i]);              \
        }                                                                                                         \
        _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++) out[r + i] = _mm512_reduce_add_ps(t[i]) + bias[i];                           \
    } while (0)

static void qmatvec4_avx512(float *out, const float *xp, const float *xsum, const dw_cweight *w, int r0,
                                   int r1) {
    const int gs = w->qgroup;
    const int64_t groups = w->cols / gs, words = w->cols / 8;
    const __m512i mask = _mm512_setr_epi32(0xF, 0xF, 0xF0, 0xF0, 0xF00, 0xF00, 0xF000, 0xF000, 0xF0000, 0xF0000,
                                           0xF00000, 0xF00000, 0xF000000, 0xF000000, (int)0xF0000000u,
                                           (int)0xF0000000u);
    const float *xv = xp;
    float sfbuf[4 * groups];
    int r = r0;
    for (; r + 4 <= r1; r += 4) QMV_ROWS(4, 4);
    for (; r < r1; r++) QMV_ROWS(1, 4);
}

static void qmatvec8_avx512(float *out, const float *x, const float *xsum, const dw_cweight *w, int r0, int r1) {
    const int gs = w->qgroup;
    const int64_t groups = w->cols / gs, words = w->cols / 4;
    const __m512i mask = _mm512_setzero_si512(); /* unused */
    const float *xv = x;
    float sfbuf[4 * groups];
    int r = r0;
    for (; r + 4 <= r1; r += 4) QMV_ROWS(4, 8);
    for (; r < r1; r++) QMV_ROWS(1, 8);
}

/* 8-bit codes by QMV_ROWS; 4-bit ones here only when x could not be prepared (k too large). */
static void qmatvec_rows_avx512(float *out, const float *x, const float *xsum, const dw_cweight *w, int r0, int r1) {
    if (w->qbits == 8) qmatvec8_avx512(out, x, xsum, w, r0, r1);
    else qmatvec_avx512(out, x, xsum, w, r0, r1);
}

const dw__cpu_qkernels dw__cpu_qkernels_avx512 = {
    /* .isa      = */ "avx512",
    /* .matvec   = */ qmatvec_rows_avx512,
    /* .dequant  = */ qdequant_avx512,
    /* .prep4    = */ prep4_avx512,
    /* .matvec4p = */ qmatvec4_avx512,
    /* .rows     = */ NULL, /* the matvec token by token */
    /* .rows4p   = */ NULL,
};

const dw__cpu_qkernels dw__cpu_qkernels_avx512vnni = {
    /* .isa      = */ "avx512vnni",
    /* .matvec   = */ qmatvec_rows_avx512,
    /* .dequant  = */ qdequant_avx512,
    /* .prep4    = */ dw__qprep4_vnni,
    /* .matvec4p = */ dw__qmatvec4_vnni,
    /* .rows     = */ NULL,
    /* .rows4p   = */ dw__qrows4_vnni,
};

#endif
