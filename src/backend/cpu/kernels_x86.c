/* x86-64 SIMD versions of the CPU kernels (kernels.h): AVX2+FMA+F16C and AVX-512
 * (F, BW, VL). Each function carries its own target attribute, so this file builds with the
 * default flags and the caller picks a set at run time. Compiles to nothing off x86-64. */
#include "backend/cpu/kernels.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "driftwood/dtype.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define AVX512_INLINE \
    static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

/* ======================================================================================
 * AVX2 (8 lanes)
 * ==================================================================================== */

AVX2_INLINE float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

AVX2_INLINE __m256 load8_bf16(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
AVX2_INLINE __m256 load8_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
AVX2_INLINE __m256 load8_f32(const float *p) { return _mm256_loadu_ps(p); }

/* Scalar element loads for tails. */
static inline float elem_bf16(const uint16_t *p, int i) { return dw_bf16_to_f32(p[i]); }
static inline float elem_f16(const uint16_t *p, int i) { return dw_f16_to_f32(p[i]); }
static inline float elem_f32(const float *p, int i) { return p[i]; }

/* Decode (one token) as on AVX-512 below: rows in sequence, 32 elements per step, prefetching. */
#define DEFINE_MATVEC_AVX2(SUFFIX, WT)                                                                 \
    AVX2_INLINE float rowdot8_##SUFFIX(const float *x, const WT *w, int k) {                            \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                    \
        int kk = 0;                                                                                    \
        for (; kk + 32 <= k; kk += 32) {                                                               \
            _mm_prefetch((const char *)(w + kk) + 12288, _MM_HINT_T1);                                 \
            if (sizeof(WT) == 4) _mm_prefetch((const char *)(w + kk) + 12288 + 64, _MM_HINT_T1);       \
            a0 = _mm256_fmadd_ps(load8_##SUFFIX(w + kk), _mm256_loadu_ps(x + kk), a0);                 \
            a1 = _mm256_fmadd_ps(load8_##SUFFIX(w + kk + 8), _mm256_loadu_ps(x + kk + 8), a1);         \
            a2 = _mm256_fmadd_ps(load8_##SUFFIX(w + kk + 16), _mm256_loadu_ps(x + kk + 16), a2);       \
            a3 = _mm256_fmadd_ps(load8_##SUFFIX(w + kk + 24), _mm256_loadu_ps(x + kk + 24), a3);       \
        }                                                                                              \
        for (; kk + 8 <= k; kk += 8) a0 = _mm256_fmadd_ps(load8_##SUFFIX(w + kk), _mm256_loadu_ps(x + kk), a0); \
        float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));                \
        for (; kk < k; kk++) s += x[kk] * elem_##SUFFIX(w, kk);                                        \
        return s;                                                                                      \
    }

/* One R×T tile: R weight rows starting at row r, T tokens starting at token t. */
#define DEFINE_TILE_AVX2(SUFFIX, WT)                                                                   \
    AVX2_INLINE void tile8_##SUFFIX(float *out, int ldo, const float *x, int ldx, const WT *w, int k,  \
                                     int r, int t, const int R, const int T) {                         \
        __m256 acc[4][2];                                                                              \
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)                                                                    \
            _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) acc[i][j] = _mm256_setzero_ps();                               \
        const WT *wr[4];                                                                               \
        const float *xt[2];                                                                            \
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) wr[i] = w + (size_t)(r + i) * k;                                   \
        _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) xt[j] = x + (size_t)(t + j) * ldx;                                 \
        int kk = 0;                                                                                    \
        for (; kk + 8 <= k; kk += 8) {                                                                 \
            __m256 wv[4];                                                                              \
            _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) wv[i] = load8_##SUFFIX(wr[i] + kk);                            \
            _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) {                                                              \
                __m256 xv = _mm256_loadu_ps(xt[j] + kk);                                               \
                _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);         \
            }                                                                                          \
        }                                                                                              \
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)                                                                    \
            _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) {                                                              \
                float s = hsum256(acc[i][j]);                                                          \
                for (int q = kk; q < k; q++) s += xt[j][q] * elem_##SUFFIX(wr[i], q);                  \
                out[(size_t)(t + j) * ldo + r + i] = s;                                                \
            }                                                                                          \
    }                                                                                                  \
    static AVX2 void matmul_##SUFFIX##_avx2(float *out, int ldo, const float *x, int ldx, int n,       \
                                             const void *wv, int k, int r0, int r1) {                  \
        const WT *w = wv;                                                                              \
        if (n == 1) {                                                                                  \
            for (int r = r0; r < r1; r++) out[r] = rowdot8_##SUFFIX(x, w + (size_t)r * k, k);          \
            return;                                                                                    \
        }                                                                                              \
        int r = r0;                                                                                    \
        for (; r + 4 <= r1; r += 4) {                                                                  \
            int t = 0;                                                                                 \
            for (; t + 2 <= n; t += 2) tile8_##SUFFIX(out, ldo, x, ldx, w, k, r, t, 4, 2);             \
            if (t < n) tile8_##SUFFIX(out, ldo, x, ldx, w, k, r, t, 4, 1);                             \
        }                                                                                              \
        for (; r < r1; r++) {                                                                          \
            int t = 0;                                                                                 \
            for (; t + 2 <= n; t += 2) tile8_##SUFFIX(out, ldo, x, ldx, w, k, r, t, 1, 2);             \
            if (t < n) tile8_##SUFFIX(out, ldo, x, ldx, w, k, r, t, 1, 1);                             \
        }                                                                                              \
    }

DEFINE_MATVEC_AVX2(bf16, uint16_t)
DEFINE_MATVEC_AVX2(f16, uint16_t)
DEFINE_MATVEC_AVX2(f32, float)
DEFINE_TILE_AVX2(bf16, uint16_t)
DEFINE_TILE_AVX2(f16, uint16_t)
DEFINE_TILE_AVX2(f32, float)

/* ---- prefill GEMM (see dw__gemm_fn), AVX2: blocks of 32 rows × 128 k converted to f32, register
 * tiles of 4 rows × 24 tokens (12 accumulators). */
#define GEMM2_RB 32
#define GEMM2_KC 128
#define GEMM2_TC 128

AVX2_INLINE void gemm_tile256(float *ct, const float *panel, const float *xt, int ldt, int kc, const int TV, int first) {
    __m256 acc[4][3];
    _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)
        _Pragma("GCC unroll 3") for (int v = 0; v < TV; v++)
            acc[i][v] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(ct + i * GEMM2_TC + 8 * v);
    for (int kk = 0; kk < kc; kk++) {
        __m256 xv[3];
        _Pragma("GCC unroll 3") for (int v = 0; v < TV; v++) xv[v] = _mm256_loadu_ps(xt + (size_t)kk * ldt + 8 * v);
        _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++) {
            __m256 b = _mm256_broadcast_ss(panel + i * GEMM2_KC + kk);
            _Pragma("GCC unroll 3") for (int v = 0; v < TV; v++) acc[i][v] = _mm256_fmadd_ps(b, xv[v], acc[i][v]);
        }
    }
    _Pragma("GCC unroll 4") for (int i = 0; i < 4; i++)
        _Pragma("GCC unroll 3") for (int v = 0; v < TV; v++) _mm256_storeu_ps(ct + i * GEMM2_TC + 8 * v, acc[i][v]);
}

#define DEFINE_GEMM_AVX2(SUFFIX, WT)                                                                    \
    static AVX2 void gemm_##SUFFIX##_avx2(float *out, int ldo, const float *xt, int ldt, int n,         \
                                          const void *wv, int k, int r0, int r1) {                     \
        const WT *w = wv;                                                                               \
        float panel[GEMM2_RB * GEMM2_KC] __attribute__((aligned(32)));                                  \
        float ctile[GEMM2_RB * GEMM2_TC] __attribute__((aligned(32)));                                  \
        for (int rb = r0; rb < r1; rb += GEMM2_RB) {                                                    \
            int nr = r1 - rb < GEMM2_RB ? r1 - rb : GEMM2_RB;                                           \
            for (int tc = 0; tc < n; tc += GEMM2_TC) {                                                  \
                int nt = n - tc < GEMM2_TC ? n - tc : GEMM2_TC, ntv = (nt + 7) / 8;                     \
                for (int k0 = 0; k0 < k; k0 += GEMM2_KC) {                                              \
                    int kc = k - k0 < GEMM2_KC ? k - k0 : GEMM2_KC;                                     \
                    for (int i = 0; i < GEMM2_RB; i++) {                                                \
                        float *dst = panel + i * GEMM2_KC;                                              \
                        if (i >= nr) {                                                                  \
                            memset(dst, 0, sizeof(float) * GEMM2_KC);                                   \
                            continue;                                                                   \
                        }                                                                               \
                        const WT *src = w + (size_t)(rb + i) * k + k0;                                  \
                        int kk = 0;                                                                     \
                        for (; kk + 8 <= kc; kk += 8) _mm256_store_ps(dst + kk, load8_##SUFFIX(src + kk)); \
                        for (; kk < kc; kk++) dst[kk] = elem_##SUFFIX(src, kk);                         \
                    }                                                                                   \
                    const float *xk = xt + (size_t)k0 * ldt + tc;                                       \
                    for (int ri = 0; ri < nr; ri += 4) {                                                \
                        int tv0 = 0;                                                                    \
                        for (; tv0 + 3 <= ntv; tv0 += 3)                                                \
                            gemm_tile256(ctile + ri * GEMM2_TC + 8 * tv0, panel + ri * GEMM2_KC, xk + 8 * tv0, \
                                         ldt, kc, 3, k0 == 0);                                          \
                        if (ntv - tv0 == 2)                                                             \
                            gemm_tile256(ctile + ri * GEMM2_TC + 8 * tv0, panel + ri * GEMM2_KC, xk + 8 * tv0, \
                                         ldt, kc, 2, k0 == 0);                                          \
                        else if (ntv - tv0 == 1)                                                        \
                            gemm_tile256(ctile + ri * GEMM2_TC + 8 * tv0, panel + ri * GEMM2_KC, xk + 8 * tv0, \
                                         ldt, kc, 1, k0 == 0);                                          \
                    }                                                                                   \
                }                                                                                       \
                for (int t = 0; t < nt; t++)                                                            \
                    for (int i = 0; i < nr; i++) out[(size_t)(tc + t) * ldo + rb + i] = ctile[i * GEMM2_TC + t]; \
            }                                                                                           \
        }                                                                                               \
    }

DEFINE_GEMM_AVX2(bf16, uint16_t)
DEFINE_GEMM_AVX2(f16, uint16_t)
DEFINE_GEMM_AVX2(f32, float)

static AVX2 float dot_f32_avx2(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static AVX2 float dot_bf16_avx2(const float *a, const uint16_t *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8_bf16(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), load8_bf16(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8_bf16(b + i), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * dw_bf16_to_f32(b[i]);
    return s;
}

static AVX2 void axpy_f32_avx2(float *y, float a, const float *x, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static AVX2 void axpy_bf16_avx2(float *y, float a, const uint16_t *x, int n) {
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, load8_bf16(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * dw_bf16_to_f32(x[i]);
}


/* Attention blocks: the row loop inlined around the dot/axpy bodies. */
static AVX2 void attn_dot_f32_avx2(float *scores, const float *q, const float *rows, int n, int hd, float scale) {
    for (int i = 0; i < n; i++) scores[i] = dot_f32_avx2(q, rows + (size_t)i * hd, hd) * scale;
}
static AVX2 void attn_dot_bf16_avx2(float *scores, const float *q, const uint16_t *rows, int n, int hd, float scale) {
    for (int i = 0; i < n; i++) scores[i] = dot_bf16_avx2(q, rows + (size_t)i * hd, hd) * scale;
}
static AVX2 void attn_acc_f32_avx2(float *acc, const float *p, const float *rows, int n, int hd) {
    for (int i = 0; i < n; i++) axpy_f32_avx2(acc, p[i], rows + (size_t)i * hd, hd);
}
static AVX2 void attn_acc_bf16_avx2(float *acc, const float *p, const uint16_t *rows, int n, int hd) {
    for (int i = 0; i < n; i++) axpy_bf16_avx2(acc, p[i], rows + (size_t)i * hd, hd);
}

static AVX2 void attn_acc_multi_avx2(float *acc, int ldacc, const float *p, int ldp, int nq, const float *rows, int n,
                                     int hd) {
    for (int q = 0; q < nq; q++) attn_acc_f32_avx2(acc + (size_t)q * ldacc, p + (size_t)q * ldp, rows, n, hd);
}

static AVX2 void attn_dot_t_avx2(float *scores, const float *q, const float *kt, int ldk, int n, int hd, float scale) {
    for (int j0 = 0; j0 < n; j0 += 32) { /* 4 vectors of 8 keys at a time */
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int d = 0; d < hd; d++) {
            __m256 b = _mm256_broadcast_ss(q + d);
            const float *row = kt + (size_t)d * ldk + j0;
            a0 = _mm256_fmadd_ps(b, _mm256_loadu_ps(row), a0);
            if (j0 + 8 < n) a1 = _mm256_fmadd_ps(b, _mm256_loadu_ps(row + 8), a1);
            if (j0 + 16 < n) a2 = _mm256_fmadd_ps(b, _mm256_loadu_ps(row + 16), a2);
            if (j0 + 24 < n) a3 = _mm256_fmadd_ps(b, _mm256_loadu_ps(row + 24), a3);
        }
        float tmp[32];
        __m256 sc = _mm256_set1_ps(scale);
        _mm256_storeu_ps(tmp, _mm256_mul_ps(a0, sc)), _mm256_storeu_ps(tmp + 8, _mm256_mul_ps(a1, sc));
        _mm256_storeu_ps(tmp + 16, _mm256_mul_ps(a2, sc)), _mm256_storeu_ps(tmp + 24, _mm256_mul_ps(a3, sc));
        for (int j = j0; j < n && j < j0 + 32; j++) scores[j] = tmp[j - j0];
    }
}

static AVX2 void bf16_to_f32_avx2(float *dst, const uint16_t *src, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8_bf16(src + i));
    for (; i < n; i++) dst[i] = dw_bf16_to_f32(src[i]);
}

static AVX2 void f16_to_f32_avx2(float *dst, const uint16_t *src, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8_f16(src + i));
    for (; i < n; i++) dst[i] = dw_f16_to_f32(src[i]);
}

/* Round to nearest even on the bit pattern (NaN kept quiet), 8 at a time. */
AVX2_INLINE __m128i f32_to_bf16x8(__m256 v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i rounded = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    __m256i quiet = _mm256_or_si256(u, _mm256_set1_epi32(0x00400000));
    __m256i r = _mm256_blendv_epi8(rounded, quiet, nan);
    r = _mm256_srli_epi32(r, 16);
    __m128i lo = _mm256_castsi256_si128(r), hi = _mm256_extracti128_si256(r, 1);
    return _mm_packus_epi32(lo, hi);
}

static AVX2 void f32_to_bf16_avx2(uint16_t *dst, const float *src, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm_storeu_si128((__m128i *)(dst + i), f32_to_bf16x8(_mm256_loadu_ps(src + i)));
    for (; i < n; i++) dst[i] = dw_f32_to_bf16(src[i]);
}

static AVX2 float sum_squares_avx2(const float *x, int n) { return dot_f32_avx2(x, x, n); }

static AVX2 void scale_mul_avx2(float *out, const float *x, float scale, const float *w, int n) {
    __m256 s = _mm256_set1_ps(scale);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), s), _mm256_loadu_ps(w + i)));
    for (; i < n; i++) out[i] = (x[i] * scale) * w[i];
}

/* exp(x) for x in float range: Cephes' range reduction and degree-5 polynomial (~2 ulp). */
AVX2_INLINE __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.37f));
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

static AVX2 void swiglu_avx2(float *out, const float *gate, const float *up, int n) {
    int i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static AVX2 void add_avx2(float *x, const float *y, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) x[i] += y[i];
}

static AVX2 float max_f32_avx2(const float *x, int n) {
    int i = 0;
    float m = x[0];
    if (n >= 8) {
        __m256 v = _mm256_loadu_ps(x);
        for (i = 8; i + 8 <= n; i += 8) v = _mm256_max_ps(v, _mm256_loadu_ps(x + i));
        float t[8];
        _mm256_storeu_ps(t, v);
        for (int k = 0; k < 8; k++)
            if (t[k] > m) m = t[k];
    }
    for (; i < n; i++)
        if (x[i] > m) m = x[i];
    return m;
}

static AVX2 float exp_sum_avx2(float *x, float max, int n) {
    __m256 m = _mm256_set1_ps(max), s = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
        _mm256_storeu_ps(x + i, e);
        s = _mm256_add_ps(s, e);
    }
    float sum = hsum256(s);
    for (; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    return sum;
}

static AVX2 uint64_t read_bytes_avx2(const void *p, size_t n) {
    const __m256i *q = p;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0, nv = n / 32;
    for (; i + 4 <= nv; i += 4) {
        _mm_prefetch((const char *)(q + i) + 4096, _MM_HINT_T0);
        _mm_prefetch((const char *)(q + i) + 4096 + 64, _MM_HINT_T0);
        a0 = _mm256_xor_si256(a0, _mm256_loadu_si256(q + i));
        a1 = _mm256_xor_si256(a1, _mm256_loadu_si256(q + i + 1));
        a2 = _mm256_xor_si256(a2, _mm256_loadu_si256(q + i + 2));
        a3 = _mm256_xor_si256(a3, _mm256_loadu_si256(q + i + 3));
    }
    for (; i < nv; i++) a0 = _mm256_xor_si256(a0, _mm256_loadu_si256(q + i));
    a0 = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, a0);
    return out[0] ^ out[1] ^ out[2] ^ out[3];
}

const dw__cpu_kernels dw__cpu_kernels_avx2 = {
    /* .isa          = */ "avx2",
    /* .matmul_bf16  = */ matmul_bf16_avx2,
    /* .matmul_f16   = */ matmul_f16_avx2,
    /* .matmul_f32   = */ matmul_f32_avx2,
    /* .gemm_bf16    = */ gemm_bf16_avx2,
    /* .gemm_f16     = */ gemm_f16_avx2,
    /* .gemm_f32     = */ gemm_f32_avx2,
    /* .dot_f32      = */ dot_f32_avx2,
    /* .dot_bf16     = */ dot_bf16_avx2,
    /* .axpy_f32     = */ axpy_f32_avx2,
    /* .axpy_bf16    = */ axpy_bf16_avx2,
    /* .attn_dot_f32 = */ attn_dot_f32_avx2,
    /* .attn_dot_bf16 = */ attn_dot_bf16_avx2,
    /* .attn_acc_f32 = */ attn_acc_f32_avx2,
    /* .attn_acc_bf16 = */ attn_acc_bf16_avx2,
    /* .attn_acc_multi = */ attn_acc_multi_avx2,
    /* .attn_dot_t   = */ attn_dot_t_avx2,
    /* .bf16_to_f32  = */ bf16_to_f32_avx2,
    /* .f16_to_f32   = */ f16_to_f32_avx2,
    /* .f32_to_bf16  = */ f32_to_bf16_avx2,
    /* .sum_squares  = */ sum_squares_avx2,
    /* .scale_mul    = */ scale_mul_avx2,
    /* .swiglu       = */ swiglu_avx2,
    /* .add          = */ add_avx2,
    /* .max_f32      = */ max_f32_avx2,
    /* .exp_sum      = */ exp_sum_avx2,
    /* .read_bytes   = */ read_bytes_avx2,
};

/* ======================================================================================
 * AVX-512 (16 lanes); tails use masked loads, so there is no scalar remainder loop
 * ==================================================================================== */

AVX512_INLINE __m512 load16_bf16(const uint16_t *p) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
AVX512_INLINE __m512 load16_bf16_mask(const uint16_t *p, __mmask16 m) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
AVX512_INLINE __m512 load16_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
AVX512_INLINE __m512 load16_f16_mask(const uint16_t *p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
AVX512_INLINE __m512 load16_f32(const float *p) { return _mm512_loadu_ps(p); }
AVX512_INLINE __m512 load16_f32_mask(const float *p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }

AVX512_INLINE __mmask16 tail_mask(int rem) { return (__mmask16)((1u << rem) - 1u); }

/* Decode (one token): rows one after another, so each thread reads one linear stream, 64
 * elements per step in four independent sums, with software prefetches 12 KB ahead into L2 and
 * 2 KB ahead into L1 (measured on the 2-core Xeon: ~60% of the read bandwidth without them,
 * ~85-90% with them; 4 KB / 1 KB was ~5% slower, shorter distances worse). */
#define PREFETCH_AHEAD 12288
#define PREFETCH_LINES(p, bytes_per_step)                                                   \
    do {                                                                                    \
        _Pragma("GCC unroll 4") for (int pf_ = 0; pf_ < (bytes_per_step) / 64; pf_++)      \
            _mm_prefetch((const char *)(p) + PREFETCH_AHEAD + 64 * pf_, _MM_HINT_T1),       \
            _mm_prefetch((const char *)(p) + 2048 + 64 * pf_, _MM_HINT_T0);                 \
    } while (0)
#define DEFINE_MATVEC_AVX512(SUFFIX, WT)                                                              \
    AVX512_INLINE float rowdot16_##SUFFIX(const float *x, const WT *w, int k) {                        \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                                    \
        int kk = 0;                                                                                    \
        for (; kk + 64 <= k; kk += 64) {                                                               \
            PREFETCH_LINES(w + kk, 64 * (int)sizeof(WT));                                              \
            a0 = _mm512_fmadd_ps(load16_##SUFFIX(w + kk), _mm512_loadu_ps(x + kk), a0);                \
            a1 = _mm512_fmadd_ps(load16_##SUFFIX(w + kk + 16), _mm512_loadu_ps(x + kk + 16), a1);      \
            a2 = _mm512_fmadd_ps(load16_##SUFFIX(w + kk + 32), _mm512_loadu_ps(x + kk + 32), a2);      \
            a3 = _mm512_fmadd_ps(load16_##SUFFIX(w + kk + 48), _mm512_loadu_ps(x + kk + 48), a3);      \
        }                                                                                              \
        for (; kk + 16 <= k; kk += 16) a0 = _mm512_fmadd_ps(load16_##SUFFIX(w + kk), _mm512_loadu_ps(x + kk), a0); \
        if (kk < k) {                                                                                  \
            __mmask16 m = tail_mask(k - kk);                                                           \
            a1 = _mm512_fmadd_ps(load16_##SUFFIX##_mask(w + kk, m), _mm512_maskz_loadu_ps(m, x + kk), a1); \
        }                                                                                              \
        return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));     \
    }

#define DEFINE_TILE_AVX512(SUFFIX, WT)                                                                 \
    AVX512_INLINE void tile16_##SUFFIX(float *out, int ldo, const float *x, int ldx, const WT *w,       \
                                       int k, int r, int t, const int R, const int T) {                \
        __m512 acc[4][4];                                                                              \
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)                                                                    \
            _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) acc[i][j] = _mm512_setzero_ps();                               \
        const WT *wr[4];                                                                               \
        const float *xt[4];                                                                            \
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) wr[i] = w + (size_t)(r + i) * k;                                   \
        _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) xt[j] = x + (size_t)(t + j) * ldx;                                 \
        int kk = 0;                                                                                    \
        for (; kk + 16 <= k; kk += 16) {                                                               \
            __m512 wv[4];                                                                              \
            _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) wv[i] = load16_##SUFFIX(wr[i] + kk);                           \
            _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) {                                                              \
                __m512 xv = _mm512_loadu_ps(xt[j] + kk);                                               \
                _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);         \
            }                                                                                          \
        }                                                                                              \
        if (kk < k) {                                                                                  \
            __mmask16 m = tail_mask(k - kk);                                                           \
            __m512 wv[4];                                                                              \
            _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) wv[i] = load16_##SUFFIX##_mask(wr[i] + kk, m);                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) {                                                              \
                __m512 xv = _mm512_maskz_loadu_ps(m, xt[j] + kk);                                      \
                _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);         \
            }                                                                                          \
        }                                                                                              \
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)                                                                    \
            _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) out[(size_t)(t + j) * ldo + r + i] = _mm512_reduce_add_ps(acc[i][j]); \
    }                                                                                                  \
    static AVX512 void matmul_##SUFFIX##_avx512(float *out, int ldo, const float *x, int ldx, int n,   \
                                                 const void *wv, int k, int r0, int r1) {              \
        const WT *w = wv;                                                                              \
        if (n == 1) {                                                                                  \
            for (int r = r0; r < r1; r++) out[r] = rowdot16_##SUFFIX(x, w + (size_t)r * k, k);         \
            return;                                                                                    \
        }                                                                                              \
        int r = r0;                                                                                    \
        for (; r + 4 <= r1; r += 4) {                                                                  \
            int t = 0;                                                                                 \
            for (; t + 4 <= n; t += 4) tile16_##SUFFIX(out, ldo, x, ldx, w, k, r, t, 4, 4);            \
            switch (n - t) {                                                                           \
            case 3: tile16_##SUFFIX(out, ldo, x, ldx, w, k, r, t, 4, 3); break;                        \
            case 2: tile16_##SUFFIX(out, ldo, x, ldx, w, k, r, t, 4, 2); break;                        \
            case 1: tile16_##SUFFIX(out, ldo, x, ldx, w, k, r, t, 4, 1); break;                        \
            default: break;                                                                            \
            }                                                                                          \
        }                                                                                              \
        for (; r < r1; r++) {                                                                          \
            int t = 0;                                                                                 \
            for (; t + 4 <= n; t += 4) tile16_##SUFFIX(out, ldo, x, ldx, w, k, r, t, 1, 4);            \
            for (; t < n; t++) tile16_##SUFFIX(out, ldo, x, ldx, w, k, r, t, 1, 1);                    \
        }                                                                                              \
    }

DEFINE_MATVEC_AVX512(bf16, uint16_t)
DEFINE_MATVEC_AVX512(f16, uint16_t)
DEFINE_MATVEC_AVX512(f32, float)
DEFINE_TILE_AVX512(bf16, uint16_t)
DEFINE_TILE_AVX512(f16, uint16_t)
DEFINE_TILE_AVX512(f32, float)

/* ---- prefill GEMM (see dw__gemm_fn): weight rows converted to f32 in blocks of 32 rows × 128 k,
 * register tiles of 8 rows × 48 tokens (24 accumulators): per k, 3 token vectors are loaded and
 * each row's weight is broadcast against them. Partial sums live in a [32 × 128 tokens] tile. */
#define GEMM_RB 32
#define GEMM_KC 128
#define GEMM_TC 128

AVX512_INLINE void gemm_tile512(float *ct, const float *panel, const float *xt, int ldt, int kc, const int TV,
                                int first) {
    __m512 acc[8][3];
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
        _Pragma("GCC unroll 3") for (int v = 0; v < TV; v++)
            acc[i][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(ct + i * GEMM_TC + 16 * v);
    for (int kk = 0; kk < kc; kk++) {
        __m512 xv[3];
        _Pragma("GCC unroll 3") for (int v = 0; v < TV; v++) xv[v] = _mm512_loadu_ps(xt + (size_t)kk * ldt + 16 * v);
        _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) {
            __m512 b = _mm512_set1_ps(panel[i * GEMM_KC + kk]);
            _Pragma("GCC unroll 3") for (int v = 0; v < TV; v++) acc[i][v] = _mm512_fmadd_ps(b, xv[v], acc[i][v]);
        }
    }
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
        _Pragma("GCC unroll 3") for (int v = 0; v < TV; v++) _mm512_storeu_ps(ct + i * GEMM_TC + 16 * v, acc[i][v]);
}

#define DEFINE_GEMM_AVX512(SUFFIX, WT)                                                                  \
    static AVX512 void gemm_##SUFFIX##_avx512(float *out, int ldo, const float *xt, int ldt, int n,     \
                                              const void *wv, int k, int r0, int r1) {                 \
        const WT *w = wv;                                                                               \
        float panel[GEMM_RB * GEMM_KC] __attribute__((aligned(64)));                                    \
        float ctile[GEMM_RB * GEMM_TC] __attribute__((aligned(64)));                                    \
        for (int rb = r0; rb < r1; rb += GEMM_RB) {                                                     \
            int nr = r1 - rb < GEMM_RB ? r1 - rb : GEMM_RB;                                             \
            for (int tc = 0; tc < n; tc += GEMM_TC) {                                                   \
                int nt = n - tc < GEMM_TC ? n - tc : GEMM_TC, ntv = (nt + 15) / 16;                     \
                for (int k0 = 0; k0 < k; k0 += GEMM_KC) {                                               \
                    int kc = k - k0 < GEMM_KC ? k - k0 : GEMM_KC;                                       \
                    for (int i = 0; i < GEMM_RB; i++) {                                                 \
                        float *dst = panel + i * GEMM_KC;                                               \
                        if (i >= nr) {                                                                  \
                            memset(dst, 0, sizeof(float) * GEMM_KC);                                    \
                            continue;                                                                   \
                        }                                                                               \
                        const WT *src = w + (size_t)(rb + i) * k + k0;                                  \
                        int kk = 0;                                                                     \
                        for (; kk + 16 <= kc; kk += 16) _mm512_store_ps(dst + kk, load16_##SUFFIX(src + kk)); \
                        if (kk < kc) _mm512_storeu_ps(dst + kk, load16_##SUFFIX##_mask(src + kk, tail_mask(kc - kk))); \
                    }                                                                                   \
                    const float *xk = xt + (size_t)k0 * ldt + tc;                                       \
                    /* token groups outer: their slice of xt stays in L1 across the row groups */  \
                    for (int tv0 = 0; tv0 < ntv; tv0 += 3) {                                            \
                        int tv = ntv - tv0 < 3 ? ntv - tv0 : 3;                                         \
                        for (int ri = 0; ri < nr; ri += 8) {                                            \
                            float *ct = ctile + ri * GEMM_TC + 16 * tv0;                                \
                            const float *pn = panel + ri * GEMM_KC, *xv = xk + 16 * tv0;                \
                            if (tv == 3) gemm_tile512(ct, pn, xv, ldt, kc, 3, k0 == 0);                 \
                            else if (tv == 2) gemm_tile512(ct, pn, xv, ldt, kc, 2, k0 == 0);            \
                            else gemm_tile512(ct, pn, xv, ldt, kc, 1, k0 == 0);                         \
                        }                                                                               \
                    }                                                                                   \
                }                                                                                       \
                for (int t = 0; t < nt; t++)                                                            \
                    for (int i = 0; i < nr; i++) out[(size_t)(tc + t) * ldo + rb + i] = ctile[i * GEMM_TC + t]; \
            }                                                                                           \
        }                                                                                               \
    }

DEFINE_GEMM_AVX512(bf16, uint16_t)
DEFINE_GEMM_AVX512(f16, uint16_t)
DEFINE_GEMM_AVX512(f32, float)

static AVX512 float dot_f32_avx512(const float *a, const float *b, int n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static AVX512 float dot_bf16_avx512(const float *a, const uint16_t *b, int n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), load16_bf16(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), load16_bf16(b + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), load16_bf16(b + i), s0);
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), load16_bf16_mask(b + i, m), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static AVX512 void axpy_f32_avx512(float *y, float a, const float *x, int n) {
    __m512 av = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

static AVX512 void axpy_bf16_avx512(float *y, float a, const uint16_t *x, int n) {
    __m512 av = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, load16_bf16(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_fmadd_ps(av, load16_bf16_mask(x + i, m), _mm512_maskz_loadu_ps(m, y + i)));
    }
}


/* Attention blocks. For head_dim a multiple of 16 up to 256 the query (or the accumulator)
 * stays in registers across the rows; other sizes go through the generic dot/axpy. */
#define ATTN_MAXV 16
#define DEFINE_ATTN_AVX512(SUFFIX, WT)                                                                  \
    static AVX512 void attn_dot_##SUFFIX##_avx512(float *scores, const float *q, const WT *rows, int n,  \
                                                  int hd, float scale) {                               \
        if (hd % 16 || hd > 16 * ATTN_MAXV) {                                                           \
            for (int i = 0; i < n; i++) scores[i] = attn_generic_dot_##SUFFIX(q, rows + (size_t)i * hd, hd) * scale; \
            return;                                                                                     \
        }                                                                                               \
        int nv = hd / 16;                                                                               \
        __m512 qv[ATTN_MAXV];                                                                           \
        for (int v = 0; v < nv; v++) qv[v] = _mm512_loadu_ps(q + 16 * v);                               \
        for (int i = 0; i < n; i++) {                                                                   \
            const WT *r = rows + (size_t)i * hd;                                                        \
            __m512 a0 = _mm512_mul_ps(qv[0], load16_##SUFFIX(r)), a1 = _mm512_setzero_ps();             \
            for (int v = 1; v + 1 < nv; v += 2) {                                                       \
                a1 = _mm512_fmadd_ps(qv[v], load16_##SUFFIX(r + 16 * v), a1);                           \
                a0 = _mm512_fmadd_ps(qv[v + 1], load16_##SUFFIX(r + 16 * v + 16), a0);                  \
            }                                                                                           \
            if (nv % 2 == 0) a1 = _mm512_fmadd_ps(qv[nv - 1], load16_##SUFFIX(r + 16 * (nv - 1)), a1);  \
            scores[i] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) * scale;                            \
        }                                                                                               \
    }                                                                                                   \
    static AVX512 void attn_acc_##SUFFIX##_avx512(float *acc, const float *p, const WT *rows, int n,     \
                                                  int hd) {                                             \
        if (hd % 16 || hd > 16 * ATTN_MAXV) {                                                           \
            for (int i = 0; i < n; i++) attn_generic_axpy_##SUFFIX(acc, p[i], rows + (size_t)i * hd, hd); \
            return;                                                                                     \
        }                                                                                               \
        int nv = hd / 16;                                                                               \
        __m512 av[ATTN_MAXV];                                                                           \
        for (int v = 0; v < nv; v++) av[v] = _mm512_loadu_ps(acc + 16 * v);                            \
        for (int i = 0; i < n; i++) {                                                                   \
            __m512 pv = _mm512_set1_ps(p[i]);                                                           \
            const WT *r = rows + (size_t)i * hd;                                                        \
            for (int v = 0; v < nv; v++) av[v] = _mm512_fmadd_ps(pv, load16_##SUFFIX(r + 16 * v), av[v]); \
        }                                                                                               \
        for (int v = 0; v < nv; v++) _mm512_storeu_ps(acc + 16 * v, av[v]);                             \
    }

#define attn_generic_dot_f32 dot_f32_avx512
#define attn_generic_dot_bf16 dot_bf16_avx512
#define attn_generic_axpy_f32 axpy_f32_avx512
#define attn_generic_axpy_bf16 axpy_bf16_avx512
DEFINE_ATTN_AVX512(f32, float)
DEFINE_ATTN_AVX512(bf16, uint16_t)

/* Up to 4 queries × 64 dimensions of accumulators in registers; each value row is loaded once. */
AVX512_INLINE void acc_multi_chunk(float *acc, int ldacc, const float *p, int ldp, const float *rows, int n, int hd,
                                   int d0, const int NQ, const int NV) {
    __m512 a[4][4];
    _Pragma("GCC unroll 4") for (int q = 0; q < NQ; q++)
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) a[q][v] = _mm512_loadu_ps(acc + (size_t)q * ldacc + d0 + 16 * v);
    for (int j = 0; j < n; j++) {
        __m512 r[4];
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) r[v] = _mm512_loadu_ps(rows + (size_t)j * hd + d0 + 16 * v);
        _Pragma("GCC unroll 4") for (int q = 0; q < NQ; q++) {
            __m512 b = _mm512_set1_ps(p[(size_t)q * ldp + j]);
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) a[q][v] = _mm512_fmadd_ps(b, r[v], a[q][v]);
        }
    }
    _Pragma("GCC unroll 4") for (int q = 0; q < NQ; q++)
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) _mm512_storeu_ps(acc + (size_t)q * ldacc + d0 + 16 * v, a[q][v]);
}

static AVX512 void attn_acc_multi_avx512(float *acc, int ldacc, const float *p, int ldp, int nq, const float *rows,
                                         int n, int hd) {
    if (hd % 16 || nq != 4) {
        for (int q = 0; q < nq; q++) attn_acc_f32_avx512(acc + (size_t)q * ldacc, p + (size_t)q * ldp, rows, n, hd);
        return;
    }
    for (int d0 = 0; d0 < hd; d0 += 64) {
        switch ((hd - d0) / 16 < 4 ? (hd - d0) / 16 : 4) {
        case 4: acc_multi_chunk(acc, ldacc, p, ldp, rows, n, hd, d0, 4, 4); break;
        case 3: acc_multi_chunk(acc, ldacc, p, ldp, rows, n, hd, d0, 4, 3); break;
        case 2: acc_multi_chunk(acc, ldacc, p, ldp, rows, n, hd, d0, 4, 2); break;
        default: acc_multi_chunk(acc, ldacc, p, ldp, rows, n, hd, d0, 4, 1); break;
        }
    }
}

static AVX512 void attn_dot_t_avx512(float *scores, const float *q, const float *kt, int ldk, int n, int hd,
                                     float scale) {
    for (int j0 = 0; j0 < n; j0 += 64) { /* 4 vectors of 16 keys at a time */
        int nv = (n - j0 + 15) / 16;
        if (nv > 4) nv = 4;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int d = 0; d < hd; d++) {
            __m512 b = _mm512_set1_ps(q[d]);
            const float *row = kt + (size_t)d * ldk + j0;
            a0 = _mm512_fmadd_ps(b, _mm512_loadu_ps(row), a0);
            if (nv > 1) a1 = _mm512_fmadd_ps(b, _mm512_loadu_ps(row + 16), a1);
            if (nv > 2) a2 = _mm512_fmadd_ps(b, _mm512_loadu_ps(row + 32), a2);
            if (nv > 3) a3 = _mm512_fmadd_ps(b, _mm512_loadu_ps(row + 48), a3);
        }
        __m512 sc = _mm512_set1_ps(scale);
        __m512 v[4] = {_mm512_mul_ps(a0, sc), _mm512_mul_ps(a1, sc), _mm512_mul_ps(a2, sc), _mm512_mul_ps(a3, sc)};
        for (int i = 0; i < nv; i++) {
            int rem = n - j0 - 16 * i;
            _mm512_mask_storeu_ps(scores + j0 + 16 * i, rem >= 16 ? (__mmask16)0xffff : tail_mask(rem), v[i]);
        }
    }
}

static AVX512 void bf16_to_f32_avx512(float *dst, const uint16_t *src, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16_bf16(src + i));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(dst + i, m, load16_bf16_mask(src + i, m));
    }
}

static AVX512 void f16_to_f32_avx512(float *dst, const uint16_t *src, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16_f16(src + i));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(dst + i, m, load16_f16_mask(src + i, m));
    }
}

AVX512_INLINE __m256i f32_to_bf16x16(__m512 v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    __m512i r = _mm512_mask_or_epi32(rounded, nan, u, _mm512_set1_epi32(0x00400000));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}

static AVX512 void f32_to_bf16_avx512(uint16_t *dst, const float *src, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm256_storeu_si256((__m256i *)(dst + i), f32_to_bf16x16(_mm512_loadu_ps(src + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm256_mask_storeu_epi16(dst + i, m, f32_to_bf16x16(_mm512_maskz_loadu_ps(m, src + i)));
    }
}

static AVX512 float sum_squares_avx512(const float *x, int n) { return dot_f32_avx512(x, x, n); }

static AVX512 void scale_mul_avx512(float *out, const float *x, float scale, const float *w, int n) {
    __m512 s = _mm512_set1_ps(scale);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), s), _mm512_loadu_ps(w + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(out + i, m,
                              _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), s),
                                            _mm512_maskz_loadu_ps(m, w + i)));
    }
}

AVX512_INLINE __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.37f));
    __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(y, fx);
}

static AVX512 void swiglu_avx512(float *out, const float *gate, const float *up, int n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    int i = 0;
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : tail_mask(n - i);
        __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
        __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, up + i)));
    }
}

static AVX512 void add_avx512(float *x, const float *y, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

static AVX512 float max_f32_avx512(const float *x, int n) {
    __m512 v = _mm512_set1_ps(x[0]);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : tail_mask(n - i);
        v = _mm512_mask_max_ps(v, m, v, _mm512_maskz_loadu_ps(m, x + i));
    }
    return _mm512_reduce_max_ps(v);
}

static AVX512 float exp_sum_avx512(float *x, float max, int n) {
    __m512 mx = _mm512_set1_ps(max), s = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : tail_mask(n - i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mx));
        _mm512_mask_storeu_ps(x + i, m, e);
        s = _mm512_mask_add_ps(s, m, s, e);
    }
    return _mm512_reduce_add_ps(s);
}

static AVX512 uint64_t read_bytes_avx512(const void *p, size_t n) {
    const __m512i *q = p;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0, nv = n / 64;
    for (; i + 4 <= nv; i += 4) {
        _mm_prefetch((const char *)(q + i) + 4096, _MM_HINT_T0);
        _mm_prefetch((const char *)(q + i) + 4096 + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)(q + i) + 4096 + 128, _MM_HINT_T0);
        _mm_prefetch((const char *)(q + i) + 4096 + 192, _MM_HINT_T0);
        a0 = _mm512_xor_si512(a0, _mm512_loadu_si512(q + i));
        a1 = _mm512_xor_si512(a1, _mm512_loadu_si512(q + i + 1));
        a2 = _mm512_xor_si512(a2, _mm512_loadu_si512(q + i + 2));
        a3 = _mm512_xor_si512(a3, _mm512_loadu_si512(q + i + 3));
    }
    for (; i < nv; i++) a0 = _mm512_xor_si512(a0, _mm512_loadu_si512(q + i));
    a0 = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
    uint64_t out[8], r = 0;
    _mm512_storeu_si512(out, a0);
    for (int i = 0; i < 8; i++) r ^= out[i];
    return r;
}

const dw__cpu_kernels dw__cpu_kernels_avx512 = {
    /* .isa          = */ "avx512",
    /* .matmul_bf16  = */ matmul_bf16_avx512,
    /* .matmul_f16   = */ matmul_f16_avx512,
    /* .matmul_f32   = */ matmul_f32_avx512,
    /* .gemm_bf16    = */ gemm_bf16_avx512,
    /* .gemm_f16     = */ gemm_f16_avx512,
    /* .gemm_f32     = */ gemm_f32_avx512,
    /* .dot_f32      = */ dot_f32_avx512,
    /* .dot_bf16     = */ dot_bf16_avx512,
    /* .axpy_f32     = */ axpy_f32_avx512,
    /* .axpy_bf16    = */ axpy_bf16_avx512,
    /* .attn_dot_f32 = */ attn_dot_f32_avx512,
    /* .attn_dot_bf16 = */ attn_dot_bf16_avx512,
    /* .attn_acc_f32 = */ attn_acc_f32_avx512,
    /* .attn_acc_bf16 = */ attn_acc_bf16_avx512,
    /* .attn_acc_multi = */ attn_acc_multi_avx512,
    /* .attn_dot_t   = */ attn_dot_t_avx512,
    /* .bf16_to_f32  = */ bf16_to_f32_avx512,
    /* .f16_to_f32   = */ f16_to_f32_avx512,
    /* .f32_to_bf16  = */ f32_to_bf16_avx512,
    /* .sum_squares  = */ sum_squares_avx512,
    /* .scale_mul    = */ scale_mul_avx512,
    /* .swiglu       = */ swiglu_avx512,
    /* .add          = */ add_avx512,
    /* .max_f32      = */ max_f32_avx512,
    /* .exp_sum      = */ exp_sum_avx512,
    /* .read_bytes   = */ read_bytes_avx512,
};

/* ======================================================================================
 * AVX-512 BF16 (vdpbf16ps): the decode matrix-vector product on bf16 weights with x split
 * into bf16 hi + lo parts (x ≈ hi + lo to ~2^-16 relative), so the products keep f32 accuracy
 * while each 32 weights need one load and two dot-product instructions instead of
 * conversions and FMAs. Everything else is the AVX-512 set.
 * ==================================================================================== */

#define AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c")))
#define DP_MAX_K 16384

static AVX512BF16 float rowdot_bf16_dp(const __m512bh *xh, const __m512bh *xl, const uint16_t *w, int k) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int nv = (k + 31) / 32, v = 0;
    for (; v + 2 <= nv && 32 * (v + 2) <= k; v += 2) {
        const uint16_t *p = w + 32 * v;
        _mm_prefetch((const char *)p + PREFETCH_AHEAD, _MM_HINT_T1);
        _mm_prefetch((const char *)p + PREFETCH_AHEAD + 64, _MM_HINT_T1);
        _mm_prefetch((const char *)p + 1024, _MM_HINT_T0);
        _mm_prefetch((const char *)p + 1024 + 64, _MM_HINT_T0);
        __m512bh w0 = (__m512bh)_mm512_loadu_si512(p), w1 = (__m512bh)_mm512_loadu_si512(p + 32);
        a0 = _mm512_dpbf16_ps(a0, w0, xh[v]);
        a1 = _mm512_dpbf16_ps(a1, w0, xl[v]);
        a2 = _mm512_dpbf16_ps(a2, w1, xh[v + 1]);
        a3 = _mm512_dpbf16_ps(a3, w1, xl[v + 1]);
    }
    for (; v < nv; v++) { /* the last vector may be partial: zero the missing weights */
        int rem = k - 32 * v;
        __mmask32 m = rem >= 32 ? 0xffffffffu : (__mmask32)((1u << rem) - 1u);
        __m512bh w0 = (__m512bh)_mm512_maskz_loadu_epi16(m, w + 32 * v);
        a0 = _mm512_dpbf16_ps(a0, w0, xh[v]);
        a1 = _mm512_dpbf16_ps(a1, w0, xl[v]);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a2), _mm512_add_ps(a1, a3)));
}

static AVX512BF16 void matmul_bf16_avx512bf16(float *out, int ldo, const float *x, int ldx, int n, const void *wv,
                                              int k, int r0, int r1) {
    if (n != 1 || k > DP_MAX_K) {
        matmul_bf16_avx512(out, ldo, x, ldx, n, wv, k, r0, r1);
        return;
    }
    const uint16_t *w = wv;
    __m512bh xh[DP_MAX_K / 32], xl[DP_MAX_K / 32];
    int nv = (k + 31) / 32;
    for (int v = 0; v < nv; v++) { /* hi = bf16(x), lo = bf16(x - hi); zero past k */
        int rem = k - 32 * v;
        __mmask16 m0 = rem >= 16 ? 0xffff : tail_mask(rem > 0 ? rem : 0);
        __mmask16 m1 = rem >= 32 ? 0xffff : tail_mask(rem > 16 ? rem - 16 : 0);
        __m512 x0 = _mm512_maskz_loadu_ps(m0, x + 32 * v), x1 = _mm512_maskz_loadu_ps(m1, x + 32 * v + 16);
        __m512bh h = _mm512_cvtne2ps_pbh(x1, x0);
        __m512 h0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256((__m512i)h)), 16));
        __m512 h1 = _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64((__m512i)h, 1)), 16));
        xh[v] = h;
        xl[v] = _mm512_cvtne2ps_pbh(_mm512_sub_ps(x1, h1), _mm512_sub_ps(x0, h0));
    }
    for (int r = r0; r < r1; r++) out[r] = rowdot_bf16_dp(xh, xl, w + (size_t)r * k, k);
}

const dw__cpu_kernels dw__cpu_kernels_avx512bf16 = {
    /* .isa          = */ "avx512bf16",
    /* .matmul_bf16  = */ matmul_bf16_avx512bf16,
    /* .matmul_f16   = */ matmul_f16_avx512,
    /* .matmul_f32   = */ matmul_f32_avx512,
    /* .gemm_bf16    = */ gemm_bf16_avx512,
    /* .gemm_f16     = */ gemm_f16_avx512,
    /* .gemm_f32     = */ gemm_f32_avx512,
    /* .dot_f32      = */ dot_f32_avx512,
    /* .dot_bf16     = */ dot_bf16_avx512,
    /* .axpy_f32     = */ axpy_f32_avx512,
    /* .axpy_bf16    = */ axpy_bf16_avx512,
    /* .attn_dot_f32 = */ attn_dot_f32_avx512,
    /* .attn_dot_bf16 = */ attn_dot_bf16_avx512,
    /* .attn_acc_f32 = */ attn_acc_f32_avx512,
    /* .attn_acc_bf16 = */ attn_acc_bf16_avx512,
    /* .attn_acc_multi = */ attn_acc_multi_avx512,
    /* .attn_dot_t   = */ attn_dot_t_avx512,
    /* .bf16_to_f32  = */ bf16_to_f32_avx512,
    /* .f16_to_f32   = */ f16_to_f32_avx512,
    /* .f32_to_bf16  = */ f32_to_bf16_avx512,
    /* .sum_squares  = */ sum_squares_avx512,
    /* .scale_mul    = */ scale_mul_avx512,
    /* .swiglu       = */ swiglu_avx512,
    /* .add          = */ add_avx512,
    /* .max_f32      = */ max_f32_avx512,
    /* .exp_sum      = */ exp_sum_avx512,
    /* .read_bytes   = */ read_bytes_avx512,
};


#endif /* __x86_64__ */
