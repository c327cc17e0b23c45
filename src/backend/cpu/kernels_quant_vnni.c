/* The 4-bit decode matrix-vector product with AVX-512 VNNI (kernels_quant.h): integer dot
 * products (vpdpwssd, 16-bit × 16-bit pairs summed into 32-bit lanes) of the codes with x
 * quantized to 16 bits per weight group, then one f32 scale per group. Numerics: x[i] is
 * replaced by d_g·round(x[i]/d_g) with d_g = max|x over group g| / 32767, a relative error of at
 * most 2^-16 of the group's largest |x| (the same order as splitting x into bf16 hi + lo); code
 * sums are exact in int32; the bias term uses the exact f32 group sums of x. */
#include "backend/cpu/kernels_quant.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <stdint.h>


#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

/* Prefetch distances ahead of the next rows' codes (bytes): L1, and L2 further on. */
#ifndef QPF_L2
#define QPF_L2 12288
#endif

/* The layout prep4 writes (k inputs, chunks of 128 inputs = 64 bytes of codes): for chunk c,
 * four vectors of 32 int16, vector s holding qx[128c + 4j + s] at word j — the order in which
 * the codes come out of a 64-byte load seen as 32 words (word j = codes 4j .. 4j+3, one per
 * nibble); a partial last chunk is zero-padded. Then the groups' d_g as f32. */
static inline int16_t *xq_of(float *xp) { return (int16_t *)xp; }
static inline int n_chunks(int k) { return (k + 127) / 128; }

/* Per group: d_g and the rounded x in the chunk layout. Groups of 32, 64 or 128 inputs: every
 * 32 inputs (two vectors) are rounded together and scattered to their words (input 128c + o goes
 * to vector o % 4, word o / 4 of chunk c) with one permute of the two vectors' 16-bit values. */
VNNI void dw__qprep4_vnni(float *xp, const float *x, int k, int gs) {
    int16_t *xq = xq_of(xp);
    int nc = n_chunks(k), groups = k / gs;
    float *d = (float *)(xq + (size_t)nc * 128);
    /* word j of the permuted vector takes value (j % 8) * 4 + j / 8 of the 32 rounded inputs: the
     * inputs o ≡ s (mod 4) of a 32-input run go to words 8s .. 8s+7 */
    uint16_t perm[32];
    for (int j = 0; j < 32; j++) perm[j] = (uint16_t)((j % 8) * 4 + j / 8);
    const __m512i pidx = _mm512_loadu_si512(perm);
    for (int g = 0; g < groups; g++) {
        const float *xg = x + (size_t)g * gs;
        __m512 amax = _mm512_setzero_ps();
        for (int i = 0; i < gs; i += 16) amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_loadu_ps(xg + i)));
        float a = _mm512_reduce_max_ps(amax);
        d[g] = a / 32767.0f;
        const __m512 inv = _mm512_set1_ps(a > 0.0f ? 32767.0f / a : 0.0f);
        const __m512 hi = _mm512_set1_ps(32767.0f), lo = _mm512_set1_ps(-32767.0f);
        for (int i = 0; i < gs; i += 32) {
            /* round half to even, clamp, pack the 32 values to 16 bits (in order), then permute */
            __m512 v0 = _mm512_mul_ps(_mm512_loadu_ps(xg + i), inv), v1 = _mm512_mul_ps(_mm512_loadu_ps(xg + i + 16), inv);
            v0 = _mm512_min_ps(_mm512_max_ps(v0, lo), hi);
            v1 = _mm512_min_ps(_mm512_max_ps(v1, lo), hi);
            __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(_mm512_cvtps_epi32(v0))),
                                           _mm512_cvtepi32_epi16(_mm512_cvtps_epi32(v1)), 1);
            w = _mm512_permutexvar_epi16(pidx, w);
            /* these 32 inputs sit in chunk c at offsets base .. base + 31 (base 0, 32, 64 or 96):
             * words 8s .. 8s+7 of w (128-bit lane s) go to vector s from word base / 4 on */
            int at = g * gs + i, c = at / 128, base = at % 128;
            int16_t *dst = xq + (size_t)c * 128 + base / 4;
            _mm_storeu_si128((__m128i *)dst, _mm512_extracti32x4_epi32(w, 0));
            _mm_storeu_si128((__m128i *)(dst + 32), _mm512_extracti32x4_epi32(w, 1));
            _mm_storeu_si128((__m128i *)(dst + 64), _mm512_extracti32x4_epi32(w, 2));
            _mm_storeu_si128((__m128i *)(dst + 96), _mm512_extracti32x4_epi32(w, 3));
        }
    }
    for (int i = k; i < nc * 128; i++) {
        int c = i / 128, o = i % 128;
        xq[c * 128 + (o % 4) * 32 + o / 4] = 0;
    }
}

/* Up to 16 scales or biases from i on as f32 (lanes outside m are zero). */
static VNNI inline __m512 sb16(const void *p, dw_dtype t, size_t i, __mmask16 m) {
    if (t == DW_DTYPE_BF16)
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i)), 16));
    if (t == DW_DTYPE_F16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + i));
    return _mm512_maskz_loadu_ps(m, (const float *)p + i);
}

/* NR rows from r on, in blocks of 16 groups: the block's factors scale_g·d_g of each row are
 * made in one register (and its bias terms bias_g·xsum[g] added up), then per 64-byte chunk of
 * codes in the block: four nibble vectors (mask, shift), four vpdpwssd against the shared x
 * vectors, the 32-bit lane sums (lane l = codes 8l .. 8l+7 of the chunk, all in one group) to
 * f32, times their group's factor (one permute picks them from the block's register). */
#define QMV_VNNI_ROWS(NR)                                                                                   \
    do {                                                                                                   \
        const uint8_t *q[NR];                                                                              \
        __m512 t[NR], bacc[NR];                                                                            \
        const size_t sbase = (size_t)r * groups;                                                           \
        _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++) {                                              \
            q[i] = (const uint8_t *)w->data + (size_t)(r + i) * rowbytes;                                   \
            t[i] = _mm512_setzero_ps();                                                                    \
            bacc[i] = _mm512_setzero_ps();                                                                 \
        }                                                                                                  \
        const char *pf = (const char *)w->data + (size_t)(r + NR) * rowbytes;                              \
        for (size_t o = 0; o < (size_t)NR * groups * ssize; o += 64) { /* the next rows' scales, biases */ \
            _mm_prefetch((const char *)w->qscales + (sbase + (size_t)NR * groups) * ssize + o, _MM_HINT_T0);  \
            _mm_prefetch((const char *)w->qbiases + (sbase + (size_t)NR * groups) * ssize + o, _MM_HINT_T0);  \
        }                                                                                                  \
        for (int g0 = 0; g0 < groups; g0 += 16) {                                                          \
            const __mmask16 gm = groups - g0 >= 16 ? 0xFFFF : (__mmask16)((1u << (groups - g0)) - 1);      \
            const __m512 dv = _mm512_maskz_loadu_ps(gm, d + g0), xs = _mm512_maskz_loadu_ps(gm, xsum + g0); \
            __m512 f[NR];                                                                                  \
            _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++) {                                          \
                f[i] = _mm512_mul_ps(sb16(w->qscales, w->qsdtype, sbase + (size_t)i * groups + g0, gm), dv); \
                bacc[i] = _mm512_fmadd_ps(sb16(w->qbiases, w->qsdtype, sbase + (size_t)i * groups + g0, gm), xs, \
                                          bacc[i]);                                                        \
            }                                                                                              \
            const int c1 = ((g0 + 16 < groups ? g0 + 16 : groups) * gs + 127) / 128;                       \
            for (int c = g0 * gs / 128; c < c1; c++) {                                                     \
                const __m512i idx = _mm512_add_epi32(lane_group, _mm512_set1_epi32(c * 128 / gs - g0));    \
                const __mmask64 cm = c + 1 < nc || full_last ? ~(__mmask64)0 : (__mmask64)0xFFFFFFFFu;    \
                _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++) {                                      \
                    _mm_prefetch(pf + ((size_t)c * NR + i) * 64, _MM_HINT_T0);                             \
                    _mm_prefetch(pf + ((size_t)c * NR + i) * 64 + QPF_L2, _MM_HINT_T1);                    \
                }                                                                                          \
                const __m512i *xc = (const __m512i *)(xq + (size_t)c * 128);                               \
                const __m512i x0 = _mm512_loadu_si512(xc), x1 = _mm512_loadu_si512(xc + 1);                \
                const __m512i x2 = _mm512_loadu_si512(xc + 2), x3 = _mm512_loadu_si512(xc + 3);            \
                _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++) {                                      \
                    __m512i z = _mm512_maskz_loadu_epi8(cm, q[i] + (size_t)c * 64);                        \
                    __m512i acc = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_and_si512(z, low4), x0); \
                    acc = _mm512_dpwssd_epi32(acc, _mm512_and_si512(_mm512_srli_epi16(z, 4), low4), x1);   \
                    acc = _mm512_dpwssd_epi32(acc, _mm512_and_si512(_mm512_srli_epi16(z, 8), low4), x2);   \
                    acc = _mm512_dpwssd_epi32(acc, _mm512_srli_epi16(z, 12), x3);                          \
                    t[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_permutexvar_ps(idx, f[i]), t[i]); \
                }                                                                                          \
            }                                                                                              \
        }                                                                                                  \
        _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++) out[r + i] =                                   \
            _mm512_reduce_add_ps(t[i]) + _mm512_reduce_add_ps(bacc[i]);                                    \
    } while (0)

VNNI void dw__qmatvec4_vnni(float *out, const float *xp, const float *xsum, const dw_cweight *w, int r0, int r1) {
    const int gs = w->qgroup, k = (int)w->cols, groups = k / gs, nc = n_chunks(k), full_last = k % 128 == 0;
    const size_t rowbytes = (size_t)k / 2, ssize = w->qsdtype == DW_DTYPE_F32 ? 4 : 2;
    const int16_t *xq = (const int16_t *)xp;
    const float *d = (const float *)(xq + (size_t)nc * 128);
    /* lane l of a chunk covers inputs 8l .. 8l+7: group offset 8l / gs within the chunk */
    const __m512i lane_group = _mm512_srli_epi32(_mm512_slli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                                                      11, 12, 13, 14, 15), 3),
                                                 __builtin_ctz((unsigned)gs));
    const __m512i low4 = _mm512_set1_epi16(0x000F);
    int r = r0;
    for (; r + 4 <= r1; r += 4) QMV_VNNI_ROWS(4);
    for (; r < r1; r++) QMV_VNNI_ROWS(1);
}

/* The batched product (kernels_quant.h, rows4p): NR rows × NT tokens at once, each 64-byte chunk
 * of a row's codes loaded and split into nibbles once for the NT tokens. Per (row, token) the very
 * operations of QMV_VNNI_ROWS on that token alone, in its order: the factors scale_g·d_g of each
 * 16-group block (kept on the stack), the chunk's four vpdpwssd from zero, to f32, times the
 * permuted factor, added into the pair's sum; the bias terms (bias_g·xsum[g], in blocks of 16)
 * summed first, apart. */
#define QRV_TILE(NR, NT)                                                                                        \
    do {                                                                                                       \
        const uint8_t *q[NR];                                                                                  \
        __m512 t[NR][NT], f[NR][NT];                                                                           \
        float bias[NR][NT];                                                                                    \
        const char *pf = (const char *)w->data + (size_t)(r + NR) * rowbytes; /* the next rows */              \
        _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++) {                                                  \
            q[i] = (const uint8_t *)w->data + (size_t)(r + i) * rowbytes;                                       \
            _Pragma("GCC unroll 4") for (int u = 0; u < NT; u++) {                                              \
                const float *xs = xsum + (size_t)(tk + u) * lds;                                                \
                __m512 bacc = _mm512_setzero_ps();                                                             \
                for (int g0 = 0; g0 < groups; g0 += 16) {                                                      \
                    const __mmask16 gm = groups - g0 >= 16 ? 0xFFFF : (__mmask16)((1u << (groups - g0)) - 1);  \
                    bacc = _mm512_fmadd_ps(sb16(w->qbiases, w->qsdtype, (size_t)(r + i) * groups + g0, gm),    \
                                           _mm512_maskz_loadu_ps(gm, xs + g0), bacc);                          \
                }                                                                                              \
                bias[i][u] = _mm512_reduce_add_ps(bacc);                                                       \
                t[i][u] = _mm512_setzero_ps();                                                                 \
            }                                                                                                  \
        }                                                                                                      \
        for (int g0 = 0; g0 < groups; g0 += 16) {                                                              \
            const __mmask16 gm = groups - g0 >= 16 ? 0xFFFF : (__mmask16)((1u << (groups - g0)) - 1);          \
            _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++) {                                              \
                const __m512 s = sb16(w->qscales, w->qsdtype, (size_t)(r + i) * groups + g0, gm);              \
                _Pragma("GCC unroll 4") for (int u = 0; u < NT; u++) f[i][u] =                                  \
                    _mm512_mul_ps(s, _mm512_maskz_loadu_ps(gm, dof(tk + u) + g0));                              \
            }                                                                                                  \
            const int c1 = ((g0 + 16 < groups ? g0 + 16 : groups) * gs + 127) / 128;                           \
            for (int c = g0 * gs / 128; c < c1; c++) {                                                         \
                const __m512i idx = _mm512_add_epi32(lane_group, _mm512_set1_epi32(c * 128 / gs - g0));        \
                const __mmask64 cm = c + 1 < nc || full_last ? ~(__mmask64)0 : (__mmask64)0xFFFFFFFFu;        \
                _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++) {                                          \
                    _mm_prefetch(pf + ((size_t)c * NR + i) * 64, _MM_HINT_T0);                                 \
                    _mm_prefetch(pf + ((size_t)c * NR + i) * 64 + QPF_L2, _MM_HINT_T1);                        \
                }                                                                                              \
                _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++) {                                          \
                    __m512i z = _mm512_maskz_loadu_epi8(cm, q[i] + (size_t)c * 64);                            \
                    const __m512i n0 = _mm512_and_si512(z, low4);                                              \
                    const __m512i n1 = _mm512_and_si512(_mm512_srli_epi16(z, 4), low4);                        \
                    const __m512i n2 = _mm512_and_si512(_mm512_srli_epi16(z, 8), low4);                        \
                    const __m512i n3 = _mm512_srli_epi16(z, 12);                                               \
                    _Pragma("GCC unroll 4") for (int u = 0; u < NT; u++) {                                      \
                        const __m512i *xc = (const __m512i *)(xqof(tk + u) + (size_t)c * 128);                 \
                        __m512i acc = _mm512_dpwssd_epi32(_mm512_setzero_si512(), n0, _mm512_loadu_si512(xc)); \
                        acc = _mm512_dpwssd_epi32(acc, n1, _mm512_loadu_si512(xc + 1));                        \
                        acc = _mm512_dpwssd_epi32(acc, n2, _mm512_loadu_si512(xc + 2));                        \
                        acc = _mm512_dpwssd_epi32(acc, n3, _mm512_loadu_si512(xc + 3));                        \
                        t[i][u] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_permutexvar_ps(idx, f[i][u]), \
                                                  t[i][u]);                                                    \
                    }                                                                                          \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        _Pragma("GCC unroll 4") for (int i = 0; i < NR; i++)                                                    \
            _Pragma("GCC unroll 4") for (int u = 0; u < NT; u++) out[(size_t)(tk + u) * ldo + r + i] =          \
                _mm512_reduce_add_ps(t[i][u]) + bias[i][u];                                                    \
    } while (0)

/* Rows in pairs, each pair's tokens in tiles of 4 (then 2); a last lone token by the matvec. */
VNNI void dw__qrows4_vnni(float *out, int ldo, const float *xp, size_t ldx, const float *xsum, size_t lds, int n,
                          const dw_cweight *w, int r0, int r1) {
    const int gs = w->qgroup, k = (int)w->cols, groups = k / gs, nc = n_chunks(k), full_last = k % 128 == 0;
    const size_t rowbytes = (size_t)k / 2;
    const __m512i lane_group = _mm512_srli_epi32(_mm512_slli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                                                      11, 12, 13, 14, 15), 3),
                                                 __builtin_ctz((unsigned)gs));
    const __m512i low4 = _mm512_set1_epi16(0x000F);
#define xqof(u) ((const int16_t *)(xp + (size_t)(u) * ldx))
#define dof(u) ((const float *)(xqof(u) + (size_t)nc * 128))
    /* the token tiles of a row (pair) one after the other, while its codes are in L1 */
    int r = r0;
    for (; r + 2 <= r1; r += 2) {
        int tk = 0;
        for (; tk + 4 <= n; tk += 4) QRV_TILE(2, 4);
        for (; tk + 2 <= n; tk += 2) QRV_TILE(2, 2);
        if (tk < n) dw__qmatvec4_vnni(out + (size_t)tk * ldo, xp + (size_t)tk * ldx, xsum + (size_t)tk * lds, w, r, r + 2);
    }
    for (; r < r1; r++) {
        int tk = 0;
        for (; tk + 4 <= n; tk += 4) QRV_TILE(1, 4);
        for (; tk + 2 <= n; tk += 2) QRV_TILE(1, 2);
        if (tk < n) dw__qmatvec4_vnni(out + (size_t)tk * ldo, xp + (size_t)tk * ldx, xsum + (size_t)tk * lds, w, r, r + 1);
    }
#undef xqof
#undef dof
}

#endif
