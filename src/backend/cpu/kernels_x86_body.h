/* The x86 SIMD kernels (kernels.h), written once over the vector-width layer of simd_x86.h and
 * compiled once per width: kernels_avx2.c and kernels_avx512.c include this after setting
 * DW_VF_WIDTH and their target, and DW_KSUFFIX (avx2, avx512), which names the functions and the
 * set (dw__cpu_kernels_<suffix>). What differs with the width is only the register tiling below.
 * Design: docs/DESIGN.md; speed: docs/PERFORMANCE.md. */
#include <math.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/simd_x86.h"
#include "driftwood/dtype.h"

#define DW_K_CAT2(a, b) a##_##b
#define DW_K_CAT(a, b) DW_K_CAT2(a, b)
#define DW_K(name) DW_K_CAT(name, DW_KSUFFIX) /* matmul_bf16 -> matmul_bf16_avx2 */

/* Register tiles, per width (16 vector registers on AVX2, 32 on AVX-512). */
#if DW_VF_LANES == 16
#define TILE_TOKENS 4     /* prefill matmul on x as it is: 4 rows × 4 tokens */
#define GEMM_TILE_ROWS 8  /* prefill GEMM: 8 rows × 3 token vectors */
#define ACC_MULTI_NV 4    /* attention, 4 queries × 4 vectors of dimensions */
#define PREFETCH_L1 1     /* decode also prefetches into L1 (measured with it on AVX-512 only) */
#else
#define TILE_TOKENS 2
#define GEMM_TILE_ROWS 4
#define ACC_MULTI_NV 2
#define PREFETCH_L1 0
#endif
/* head_dim up to 256 keeps a query (or an accumulator) in registers across the rows */
#define ATTN_MAXV (256 / DW_VF_LANES)

/* ---- loads of weights in each dtype, full and partial ----------------------------------------- */

DW_VF_INLINE dw_vf load_vf_f32(const float *p) { return dw_vf_load(p); }
DW_VF_INLINE dw_vf load_vf_f32_tail(const float *p, int n) { return dw_vf_load_tail(p, n); }
DW_VF_INLINE dw_vf load_vf_bf16(const uint16_t *p) { return dw_vf_load_bf16(p); }
DW_VF_INLINE dw_vf load_vf_bf16_tail(const uint16_t *p, int n) { return dw_vf_load_bf16_tail(p, n); }
DW_VF_INLINE dw_vf load_vf_f16(const uint16_t *p) { return dw_vf_load_f16(p); }
DW_VF_INLINE dw_vf load_vf_f16_tail(const uint16_t *p, int n) { return dw_vf_load_f16_tail(p, n); }

/* ---- decode matmul (one token): rows in sequence, four vectors per step -----------------------
 * Each thread reads one linear stream; software prefetches 12 KB ahead into L2 (and, where
 * PREFETCH_L1, 2 KB ahead into L1) keep it near the read bandwidth (distances measured:
 * docs/PERFORMANCE.md). */
#define PREFETCH_L2_AHEAD 12288
#define PREFETCH_L1_AHEAD 2048
#define PREFETCH_LINES(p, bytes_per_step)                                                          \
    do {                                                                                           \
        _Pragma("GCC unroll 4") for (int pf_ = 0; pf_ < (bytes_per_step) / 64; pf_++) {           \
            _mm_prefetch((const char *)(p) + PREFETCH_L2_AHEAD + 64 * pf_, _MM_HINT_T1);           \
            if (PREFETCH_L1) _mm_prefetch((const char *)(p) + PREFETCH_L1_AHEAD + 64 * pf_, _MM_HINT_T0); \
        }                                                                                          \
    } while (0)

#define VL DW_VF_LANES /* lanes per vector */

#define DEFINE_ROWDOT(SUFFIX, WT)                                                                  \
    DW_VF_INLINE float rowdot_##SUFFIX(const float *x, const WT *w, int k) {                       \
        dw_vf a0 = dw_vf_zero(), a1 = a0, a2 = a0, a3 = a0;                                        \
        int kk = 0;                                                                                \
        for (; kk + 4 * VL <= k; kk += 4 * VL) {                                                     \
            PREFETCH_LINES(w + kk, 4 * VL * (int)sizeof(WT));                                       \
            a0 = dw_vf_fma(load_vf_##SUFFIX(w + kk), dw_vf_load(x + kk), a0);                      \
            a1 = dw_vf_fma(load_vf_##SUFFIX(w + kk + VL), dw_vf_load(x + kk + VL), a1);              \
            a2 = dw_vf_fma(load_vf_##SUFFIX(w + kk + 2 * VL), dw_vf_load(x + kk + 2 * VL), a2);      \
            a3 = dw_vf_fma(load_vf_##SUFFIX(w + kk + 3 * VL), dw_vf_load(x + kk + 3 * VL), a3);      \
        }                                                                                          \
        for (; kk + VL <= k; kk += VL) a0 = dw_vf_fma(load_vf_##SUFFIX(w + kk), dw_vf_load(x + kk), a0); \
        if (kk < k) a1 = dw_vf_fma(load_vf_##SUFFIX##_tail(w + kk, k - kk), dw_vf_load_tail(x + kk, k - kk), a1); \
        return dw_vf_reduce_add(dw_vf_add(dw_vf_add(a0, a1), dw_vf_add(a2, a3)));                 \
    }

/* One R×T tile of the prefill matmul on x as it is: R weight rows from r, T tokens from t. */
#define DEFINE_TILE(SUFFIX, WT)                                                                    \
    DW_VF_INLINE void tile_##SUFFIX(float *out, int ldo, const float *x, int ldx, const WT *w, int k, int r, \
                                    int t, const int R, const int T) {                             \
        dw_vf acc[4][4];                                                                           \
        const WT *wr[4];                                                                           \
        const float *xt[4];                                                                        \
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) {                                      \
            wr[i] = w + (size_t)(r + i) * k;                                                       \
            _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) acc[i][j] = dw_vf_zero();          \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) xt[j] = x + (size_t)(t + j) * ldx;     \
        int kk = 0;                                                                                \
        for (; kk + VL <= k; kk += VL) {                                                             \
            dw_vf wv[4];                                                                           \
            _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) wv[i] = load_vf_##SUFFIX(wr[i] + kk); \
            _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) {                                  \
                dw_vf xv = dw_vf_load(xt[j] + kk);                                                 \
                _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) acc[i][j] = dw_vf_fma(wv[i], xv, acc[i][j]); \
            }                                                                                      \
        }                                                                                          \
        if (kk < k) {                                                                              \
            dw_vf wv[4];                                                                           \
            _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) wv[i] = load_vf_##SUFFIX##_tail(wr[i] + kk, k - kk); \
            _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) {                                  \
                dw_vf xv = dw_vf_load_tail(xt[j] + kk, k - kk);                                    \
                _Pragma("GCC unroll 4") for (int i = 0; i < R; i++) acc[i][j] = dw_vf_fma(wv[i], xv, acc[i][j]); \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)                                        \
            _Pragma("GCC unroll 4") for (int j = 0; j < T; j++)                                    \
                out[(size_t)(t + j) * ldo + r + i] = dw_vf_reduce_add(acc[i][j]);                  \
    }                                                                                              \
    /* the leftover tokens of a row block, fewer than TILE_TOKENS */                               \
    DW_VF_INLINE void tile_rest_##SUFFIX(float *out, int ldo, const float *x, int ldx, const WT *w, int k, int r, \
                                         int t, int n, const int R) {                              \
        switch (n - t) {                                                                           \
        case 3: tile_##SUFFIX(out, ldo, x, ldx, w, k, r, t, R, 3); break;                          \
        case 2: tile_##SUFFIX(out, ldo, x, ldx, w, k, r, t, R, 2); break;                          \
        case 1: tile_##SUFFIX(out, ldo, x, ldx, w, k, r, t, R, 1); break;                          \
        default: break;                                                                            \
        }                                                                                          \
    }                                                                                              \
    static void DW_K(matmul_##SUFFIX)(float *out, int ldo, const float *x, int ldx, int n, const void *wv, int k, \
                                      int r0, int r1) {                                            \
        const WT *w = wv;                                                                          \
        if (n == 1) {                                                                              \
            for (int r = r0; r < r1; r++) out[r] = rowdot_##SUFFIX(x, w + (size_t)r * k, k);       \
            return;                                                                                \
        }                                                                                          \
        int r = r0;                                                                                \
        for (; r + 4 <= r1; r += 4) {                                                              \
            int t = 0;                                                                             \
            for (; t + TILE_TOKENS <= n; t += TILE_TOKENS) tile_##SUFFIX(out, ldo, x, ldx, w, k, r, t, 4, TILE_TOKENS); \
            tile_rest_##SUFFIX(out, ldo, x, ldx, w, k, r, t, n, 4);                                \
        }                                                                                          \
        for (; r < r1; r++) {                                                                      \
            int t = 0;                                                                             \
            for (; t + TILE_TOKENS <= n; t += TILE_TOKENS) tile_##SUFFIX(out, ldo, x, ldx, w, k, r, t, 1, TILE_TOKENS); \
            for (; t < n; t++) tile_##SUFFIX(out, ldo, x, ldx, w, k, r, t, 1, 1);                  \
        }                                                                                          \
    }

DEFINE_ROWDOT(bf16, uint16_t)
DEFINE_ROWDOT(f16, uint16_t)
DEFINE_ROWDOT(f32, float)
DEFINE_TILE(bf16, uint16_t)
DEFINE_TILE(f16, uint16_t)
DEFINE_TILE(f32, float)

/* ---- prefill GEMM (see dw__gemm_fn): weight rows converted to f32 in blocks of 32 rows × 128 k,
 * register tiles of GEMM_TILE_ROWS rows × 3 token vectors: per k, 3 token vectors are loaded and
 * each row's weight is broadcast against them. Partial sums live in a [32 × 128 tokens] tile. */
#define GEMM_RB 32
#define GEMM_KC 128
#define GEMM_TC 128

DW_VF_INLINE void gemm_tile(float *ct, const float *panel, const float *xt, int ldt, int kc, const int TV, int first) {
    dw_vf acc[GEMM_TILE_ROWS][3];
    _Pragma("GCC unroll 8") for (int i = 0; i < GEMM_TILE_ROWS; i++)
        _Pragma("GCC unroll 3") for (int v = 0; v < TV; v++)
            acc[i][v] = first ? dw_vf_zero() : dw_vf_load(ct + i * GEMM_TC + VL * v);
    for (int kk = 0; kk < kc; kk++) {
        dw_vf xv[3];
        _Pragma("GCC unroll 3") for (int v = 0; v < TV; v++) xv[v] = dw_vf_load(xt + (size_t)kk * ldt + VL * v);
        _Pragma("GCC unroll 8") for (int i = 0; i < GEMM_TILE_ROWS; i++) {
            dw_vf b = dw_vf_set1(panel[i * GEMM_KC + kk]);
            _Pragma("GCC unroll 3") for (int v = 0; v < TV; v++) acc[i][v] = dw_vf_fma(b, xv[v], acc[i][v]);
        }
    }
    _Pragma("GCC unroll 8") for (int i = 0; i < GEMM_TILE_ROWS; i++)
        _Pragma("GCC unroll 3") for (int v = 0; v < TV; v++) dw_vf_store(ct + i * GEMM_TC + VL * v, acc[i][v]);
}

#define DEFINE_GEMM(SUFFIX, WT)                                                                    \
    static void DW_K(gemm_##SUFFIX)(float *out, int ldo, const float *xt, int ldt, int n, const void *wv, int k, \
                                    int r0, int r1) {                                              \
        const WT *w = wv;                                                                          \
        float panel[GEMM_RB * GEMM_KC] __attribute__((aligned(64)));                               \
        float ctile[GEMM_RB * GEMM_TC] __attribute__((aligned(64)));                               \
        for (int rb = r0; rb < r1; rb += GEMM_RB) {                                                \
            int nr = r1 - rb < GEMM_RB ? r1 - rb : GEMM_RB;                                        \
            for (int tc = 0; tc < n; tc += GEMM_TC) {                                              \
                int nt = n - tc < GEMM_TC ? n - tc : GEMM_TC, ntv = (nt + VL - 1) / VL;              \
                for (int k0 = 0; k0 < k; k0 += GEMM_KC) {                                          \
                    int kc = k - k0 < GEMM_KC ? k - k0 : GEMM_KC;                                  \
                    for (int i = 0; i < GEMM_RB; i++) {                                            \
                        float *dst = panel + i * GEMM_KC;                                          \
                        if (i >= nr) {                                                             \
                            memset(dst, 0, sizeof(float) * GEMM_KC);                               \
                            continue;                                                              \
                        }                                                                          \
                        const WT *src = w + (size_t)(rb + i) * k + k0;                             \
                        int kk = 0;                                                                \
                        for (; kk + VL <= kc; kk += VL) dw_vf_store(dst + kk, load_vf_##SUFFIX(src + kk)); \
                        if (kk < kc) dw_vf_store(dst + kk, load_vf_##SUFFIX##_tail(src + kk, kc - kk)); \
                    }                                                                              \
                    const float *xk = xt + (size_t)k0 * ldt + tc;                                  \
                    /* token groups outer: their slice of xt stays in L1 across the row groups */  \
                    for (int tv0 = 0; tv0 < ntv; tv0 += 3) {                                       \
                        int tv = ntv - tv0 < 3 ? ntv - tv0 : 3;                                    \
                        for (int ri = 0; ri < nr; ri += GEMM_TILE_ROWS) {                          \
                            float *ct = ctile + ri * GEMM_TC + VL * tv0;                            \
                            const float *pn = panel + ri * GEMM_KC, *xv = xk + VL * tv0;            \
                            if (tv == 3) gemm_tile(ct, pn, xv, ldt, kc, 3, k0 == 0);               \
                            else if (tv == 2) gemm_tile(ct, pn, xv, ldt, kc, 2, k0 == 0);          \
                            else gemm_tile(ct, pn, xv, ldt, kc, 1, k0 == 0);                       \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
                for (int t = 0; t < nt; t++)                                                       \
                    for (int i = 0; i < nr; i++) out[(size_t)(tc + t) * ldo + rb + i] = ctile[i * GEMM_TC + t]; \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_GEMM(bf16, uint16_t)
DEFINE_GEMM(f16, uint16_t)
DEFINE_GEMM(f32, float)

/* ---- the batched step's product (kernels.h, rows_*): batch invariant -------------------------
 * out[t, r] is the horizontal sum (dw_vf_reduce_add) of one vector accumulator that takes
 * acc = fma(w[r][kk..], x[t][kk..], acc) for kk = 0, VL, 2·VL, ... in order, the last vector
 * partial (zeros past k). Every register tile runs that same sequence for each of its elements,
 * so a result does not depend on n, on the tile its token falls in, or on r0 / r1. Tiles are
 * R rows × T tokens (R·T independent accumulators hide the FMA latency: 8 rows × 1 token for one
 * token); k is cut in chunks of ROWS_KC whose accumulators wait in a stack buffer between
 * chunks (a store and a load change no bit), so a row block's chunk of weights stays in L1
 * while it serves every tile of up to ROWS_TC tokens. */
#define ROWS_KC 1024 /* a multiple of every VL */
#define ROWS_TC 32
#define ROWS_RMAX 8
#define ROWS_T 4
#if DW_VF_LANES == 16
#define ROWS_R 4 /* 4 rows × 4 tokens: 16 accumulators, 4 weight vectors, 1 input */
#else
#define ROWS_R 2
#endif

#define DEFINE_ROWS(SUFFIX, WT)                                                                    \
    DW_VF_INLINE void rows_tile_##SUFFIX(dw_vf *acc, const float *x, int ldx, const WT *w, int k, int k0, int k1, \
                                         int first, const int R, const int T) {                    \
        dw_vf a[ROWS_RMAX][ROWS_T];                                                                \
        _Pragma("GCC unroll 8") for (int i = 0; i < R; i++)                                        \
            _Pragma("GCC unroll 4") for (int j = 0; j < T; j++)                                    \
                a[i][j] = first ? dw_vf_zero() : acc[i * ROWS_TC + j];                             \
        int kk = k0;                                                                               \
        for (; kk + VL <= k1; kk += VL) {                                                          \
            dw_vf wv[ROWS_RMAX];                                                                   \
            /* one token: the next 8 rows' lines at this place, into L2 (a line per 64 bytes) */   \
            if (R == 8 && T == 1 && (kk * (int)sizeof(WT)) % 64 == 0)                              \
                _Pragma("GCC unroll 8") for (int i = 0; i < R; i++)                                \
                    _mm_prefetch((const char *)(w + (size_t)(R + i) * k + kk), _MM_HINT_T1);       \
            _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) wv[i] = load_vf_##SUFFIX(w + (size_t)i * k + kk); \
            _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) {                                  \
                dw_vf xv = dw_vf_load(x + (size_t)j * ldx + kk);                                   \
                _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) a[i][j] = dw_vf_fma(wv[i], xv, a[i][j]); \
            }                                                                                      \
        }                                                                                          \
        if (kk < k1) {                                                                             \
            dw_vf wv[ROWS_RMAX];                                                                   \
            _Pragma("GCC unroll 8") for (int i = 0; i < R; i++)                                    \
                wv[i] = load_vf_##SUFFIX##_tail(w + (size_t)i * k + kk, k1 - kk);                  \
            _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) {                                  \
                dw_vf xv = dw_vf_load_tail(x + (size_t)j * ldx + kk, k1 - kk);                     \
                _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) a[i][j] = dw_vf_fma(wv[i], xv, a[i][j]); \
            }                                                                                      \
        }                                                                                          \
        _Pragma("GCC unroll 8") for (int i = 0; i < R; i++)                                        \
            _Pragma("GCC unroll 4") for (int j = 0; j < T; j++) acc[i * ROWS_TC + j] = a[i][j];    \
    }                                                                                              \
    /* T tokens (1..ROWS_T) of rows [r, r + R): R == ROWS_R, R == 8 with T == 1, or single rows */ \
    static void rows_tiles_##SUFFIX(dw_vf *acc, const float *x, int ldx, const WT *w, int k, int k0, int k1, \
                                    int first, int R, int T) {                                     \
        if (R == 8 && T == 1) {                                                                    \
            rows_tile_##SUFFIX(acc, x, ldx, w, k, k0, k1, first, 8, 1);                            \
            return;                                                                                \
        }                                                                                          \
        if (R == ROWS_R) {                                                                         \
            switch (T) {                                                                           \
            case 4: rows_tile_##SUFFIX(acc, x, ldx, w, k, k0, k1, first, ROWS_R, 4); return;       \
            case 3: rows_tile_##SUFFIX(acc, x, ldx, w, k, k0, k1, first, ROWS_R, 3); return;       \
            case 2: rows_tile_##SUFFIX(acc, x, ldx, w, k, k0, k1, first, ROWS_R, 2); return;       \
            default: rows_tile_##SUFFIX(acc, x, ldx, w, k, k0, k1, first, ROWS_R, 1); return;      \
            }                                                                                      \
        }                                                                                          \
        for (int i = 0; i < R; i++) {                                                              \
            dw_vf *ai = acc + i * ROWS_TC;                                                         \
            const WT *wi = w + (size_t)i * k;                                                      \
            switch (T) {                                                                           \
            case 4: rows_tile_##SUFFIX(ai, x, ldx, wi, k, k0, k1, first, 1, 4); break;             \
            case 3: rows_tile_##SUFFIX(ai, x, ldx, wi, k, k0, k1, first, 1, 3); break;             \
            case 2: rows_tile_##SUFFIX(ai, x, ldx, wi, k, k0, k1, first, 1, 2); break;             \
            default: rows_tile_##SUFFIX(ai, x, ldx, wi, k, k0, k1, first, 1, 1); break;            \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    static void DW_K(rows_##SUFFIX)(float *out, int ldo, const float *x, int ldx, int n, const void *wv, int k, \
                                    int r0, int r1) {                                              \
        const WT *w = wv;                                                                          \
        dw_vf acc[ROWS_RMAX * ROWS_TC];                                                            \
        int rb = n == 1 ? 8 : ROWS_R;                                                              \
        for (int tc = 0; tc < n; tc += ROWS_TC) {                                                  \
            int nt = n - tc < ROWS_TC ? n - tc : ROWS_TC;                                          \
            const float *xc = x + (size_t)tc * ldx;                                                \
            for (int r = r0; r < r1; r += rb) {                                                    \
                int R = r1 - r < rb ? r1 - r : rb;                                                 \
                for (int k0 = 0; k0 < k; k0 += ROWS_KC) {                                          \
                    int k1 = k - k0 < ROWS_KC ? k : k0 + ROWS_KC;                                  \
                    for (int t = 0; t < nt; t += ROWS_T) {                                         \
                        int T = nt - t < ROWS_T ? nt - t : ROWS_T;                                 \
                        rows_tiles_##SUFFIX(acc + t, xc + (size_t)t * ldx, ldx, w + (size_t)r * k, k, k0, k1, k0 == 0, \
                                            R, T);                                                 \
                    }                                                                              \
                }                                                                                  \
                for (int t = 0; t < nt; t++)                                                       \
                    for (int i = 0; i < R; i++)                                                    \
                        out[(size_t)(tc + t) * ldo + r + i] = dw_vf_reduce_add(acc[i * ROWS_TC + t]); \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_ROWS(bf16, uint16_t)
DEFINE_ROWS(f16, uint16_t)
DEFINE_ROWS(f32, float)

/* ---- dot products and axpy ---------------------------------------------------------------------- */

#define DEFINE_DOT_AXPY(SUFFIX, WT)                                                                \
    static float DW_K(dot_##SUFFIX)(const float *a, const WT *b, int n) {                          \
        dw_vf s0 = dw_vf_zero(), s1 = dw_vf_zero();                                                \
        int i = 0;                                                                                 \
        for (; i + 2 * VL <= n; i += 2 * VL) {                                                       \
            s0 = dw_vf_fma(dw_vf_load(a + i), load_vf_##SUFFIX(b + i), s0);                        \
            s1 = dw_vf_fma(dw_vf_load(a + i + VL), load_vf_##SUFFIX(b + i + VL), s1);                \
        }                                                                                          \
        for (; i + VL <= n; i += VL) s0 = dw_vf_fma(dw_vf_load(a + i), load_vf_##SUFFIX(b + i), s0); \
        if (i < n) s1 = dw_vf_fma(dw_vf_load_tail(a + i, n - i), load_vf_##SUFFIX##_tail(b + i, n - i), s1); \
        return dw_vf_reduce_add(dw_vf_add(s0, s1));                                                \
    }                                                                                              \
    static void DW_K(axpy_##SUFFIX)(float *y, float a, const WT *x, int n) {                       \
        dw_vf av = dw_vf_set1(a);                                                                  \
        int i = 0;                                                                                 \
        for (; i + VL <= n; i += VL) dw_vf_store(y + i, dw_vf_fma(av, load_vf_##SUFFIX(x + i), dw_vf_load(y + i))); \
        if (i < n)                                                                                 \
            dw_vf_store_tail(y + i, dw_vf_fma(av, load_vf_##SUFFIX##_tail(x + i, n - i), dw_vf_load_tail(y + i, n - i)), \
                             n - i);                                                               \
    }

DEFINE_DOT_AXPY(f32, float)
DEFINE_DOT_AXPY(bf16, uint16_t)

/* ---- attention blocks ----------------------------------------------------------------------------
 * For head_dim a multiple of the width up to 256 the query (or the accumulator) stays in
 * registers across the rows; other sizes go through the dot/axpy above. */
#define DEFINE_ATTN(SUFFIX, WT)                                                                    \
    static void DW_K(attn_dot_##SUFFIX)(float *scores, const float *q, const WT *rows, int n, int hd, float scale) { \
        if (hd % VL || hd > VL * ATTN_MAXV) {                                                        \
            for (int i = 0; i < n; i++) scores[i] = DW_K(dot_##SUFFIX)(q, rows + (size_t)i * hd, hd) * scale; \
            return;                                                                                \
        }                                                                                          \
        int nv = hd / VL;                                                                           \
        dw_vf qv[ATTN_MAXV];                                                                       \
        for (int v = 0; v < nv; v++) qv[v] = dw_vf_load(q + VL * v);                                \
        for (int i = 0; i < n; i++) {                                                              \
            const WT *r = rows + (size_t)i * hd;                                                   \
            dw_vf a0 = dw_vf_mul(qv[0], load_vf_##SUFFIX(r)), a1 = dw_vf_zero();                   \
            for (int v = 1; v + 1 < nv; v += 2) {                                                  \
                a1 = dw_vf_fma(qv[v], load_vf_##SUFFIX(r + VL * v), a1);                            \
                a0 = dw_vf_fma(qv[v + 1], load_vf_##SUFFIX(r + VL * v + VL), a0);                    \
            }                                                                                      \
            if (nv % 2 == 0) a1 = dw_vf_fma(qv[nv - 1], load_vf_##SUFFIX(r + VL * (nv - 1)), a1);   \
            scores[i] = dw_vf_reduce_add(dw_vf_add(a0, a1)) * scale;                               \
        }                                                                                          \
    }                                                                                              \
    static void DW_K(attn_acc_##SUFFIX)(float *acc, const float *p, const WT *rows, int n, int hd) { \
        if (hd % VL || hd > VL * ATTN_MAXV) {                                                        \
            for (int i = 0; i < n; i++) DW_K(axpy_##SUFFIX)(acc, p[i], rows + (size_t)i * hd, hd); \
            return;                                                                                \
        }                                                                                          \
        int nv = hd / VL;                                                                           \
        dw_vf av[ATTN_MAXV];                                                                       \
        for (int v = 0; v < nv; v++) av[v] = dw_vf_load(acc + VL * v);                              \
        for (int i = 0; i < n; i++) {                                                              \
            dw_vf pv = dw_vf_set1(p[i]);                                                           \
            const WT *r = rows + (size_t)i * hd;                                                   \
            for (int v = 0; v < nv; v++) av[v] = dw_vf_fma(pv, load_vf_##SUFFIX(r + VL * v), av[v]); \
        }                                                                                          \
        for (int v = 0; v < nv; v++) dw_vf_store(acc + VL * v, av[v]);                              \
    }

DEFINE_ATTN(f32, float)
DEFINE_ATTN(bf16, uint16_t)

/* Up to 4 queries × ACC_MULTI_NV vectors of accumulators in registers; each value row is
 * loaded once for the queries. */
DW_VF_INLINE void acc_multi_chunk(float *acc, int ldacc, const float *p, int ldp, const float *rows, int n, int hd,
                                  int d0, const int NQ, const int NV) {
    dw_vf a[4][ACC_MULTI_NV];
    _Pragma("GCC unroll 4") for (int q = 0; q < NQ; q++)
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) a[q][v] = dw_vf_load(acc + (size_t)q * ldacc + d0 + VL * v);
    for (int j = 0; j < n; j++) {
        dw_vf r[ACC_MULTI_NV];
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) r[v] = dw_vf_load(rows + (size_t)j * hd + d0 + VL * v);
        _Pragma("GCC unroll 4") for (int q = 0; q < NQ; q++) {
            dw_vf b = dw_vf_set1(p[(size_t)q * ldp + j]);
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) a[q][v] = dw_vf_fma(b, r[v], a[q][v]);
        }
    }
    _Pragma("GCC unroll 4") for (int q = 0; q < NQ; q++)
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) dw_vf_store(acc + (size_t)q * ldacc + d0 + VL * v, a[q][v]);
}

static void DW_K(attn_acc_multi)(float *acc, int ldacc, const float *p, int ldp, int nq, const float *rows, int n,
                                 int hd) {
    if (hd % VL || nq != 4) {
        for (int q = 0; q < nq; q++) DW_K(attn_acc_f32)(acc + (size_t)q * ldacc, p + (size_t)q * ldp, rows, n, hd);
        return;
    }
    for (int d0 = 0; d0 < hd; d0 += VL * ACC_MULTI_NV) {
        switch ((hd - d0) / VL < ACC_MULTI_NV ? (hd - d0) / VL : ACC_MULTI_NV) {
#if ACC_MULTI_NV == 4
        case 4: acc_multi_chunk(acc, ldacc, p, ldp, rows, n, hd, d0, 4, 4); break;
        case 3: acc_multi_chunk(acc, ldacc, p, ldp, rows, n, hd, d0, 4, 3); break;
#endif
        case 2: acc_multi_chunk(acc, ldacc, p, ldp, rows, n, hd, d0, 4, 2); break;
        default: acc_multi_chunk(acc, ldacc, p, ldp, rows, n, hd, d0, 4, 1); break;
        }
    }
}

/* Scores against a transposed block: four vectors of keys at a time. */
static void DW_K(attn_dot_t)(float *scores, const float *q, const float *kt, int ldk, int n, int hd, float scale) {
    for (int j0 = 0; j0 < n; j0 += 4 * VL) {
        int nv = (n - j0 + VL - 1) / VL;
        if (nv > 4) nv = 4;
        dw_vf a0 = dw_vf_zero(), a1 = a0, a2 = a0, a3 = a0;
        for (int d = 0; d < hd; d++) {
            dw_vf b = dw_vf_set1(q[d]);
            const float *row = kt + (size_t)d * ldk + j0;
            a0 = dw_vf_fma(b, dw_vf_load(row), a0);
            if (nv > 1) a1 = dw_vf_fma(b, dw_vf_load(row + VL), a1);
            if (nv > 2) a2 = dw_vf_fma(b, dw_vf_load(row + 2 * VL), a2);
            if (nv > 3) a3 = dw_vf_fma(b, dw_vf_load(row + 3 * VL), a3);
        }
        dw_vf sc = dw_vf_set1(scale);
        dw_vf v[4] = {dw_vf_mul(a0, sc), dw_vf_mul(a1, sc), dw_vf_mul(a2, sc), dw_vf_mul(a3, sc)};
        for (int i = 0; i < nv; i++) {
            int rem = n - j0 - VL * i;
            if (rem >= VL) dw_vf_store(scores + j0 + VL * i, v[i]);
            else dw_vf_store_tail(scores + j0 + VL * i, v[i], rem);
        }
    }
}

/* ---- conversions -------------------------------------------------------------------------------- */

#define DEFINE_TO_F32(SUFFIX)                                                                      \
    static void DW_K(SUFFIX##_to_f32)(float *dst, const uint16_t *src, int n) {                    \
        int i = 0;                                                                                 \
        for (; i + VL <= n; i += VL) dw_vf_store(dst + i, load_vf_##SUFFIX(src + i));                \
        if (i < n) dw_vf_store_tail(dst + i, load_vf_##SUFFIX##_tail(src + i, n - i), n - i);      \
    }

DEFINE_TO_F32(bf16)
DEFINE_TO_F32(f16)

static void DW_K(f32_to_bf16)(uint16_t *dst, const float *src, int n) {
    int i = 0;
    for (; i + VL <= n; i += VL) dw_vf_store_bf16(dst + i, dw_vf_load(src + i));
    if (i < n) dw_vf_store_bf16_tail(dst + i, dw_vf_load_tail(src + i, n - i), n - i);
}

/* ---- norms and elementwise -------------------------------------------------------------------- */

static float DW_K(sum_squares)(const float *x, int n) { return DW_K(dot_f32)(x, x, n); }

static void DW_K(scale_mul)(float *out, const float *x, float scale, const float *w, int n) {
    dw_vf s = dw_vf_set1(scale);
    int i = 0;
    for (; i + VL <= n; i += VL) dw_vf_store(out + i, dw_vf_mul(dw_vf_mul(dw_vf_load(x + i), s), dw_vf_load(w + i)));
    if (i < n)
        dw_vf_store_tail(out + i, dw_vf_mul(dw_vf_mul(dw_vf_load_tail(x + i, n - i), s), dw_vf_load_tail(w + i, n - i)),
                         n - i);
}

/* exp(x) for x in float range: Cephes' range reduction and degree-5 polynomial (~2 ulp). */
DW_VF_INLINE dw_vf exp_vf(dw_vf x) {
    x = dw_vf_min(dw_vf_max(x, dw_vf_set1(-87.3f)), dw_vf_set1(88.37f));
    dw_vf fx = dw_vf_round(dw_vf_mul(x, dw_vf_set1(1.44269504088896341f)));
    x = dw_vf_fnma(fx, dw_vf_set1(0.693359375f), x);
    x = dw_vf_fnma(fx, dw_vf_set1(-2.12194440e-4f), x);
    dw_vf y = dw_vf_set1(1.9875691500e-4f);
    y = dw_vf_fma(y, x, dw_vf_set1(1.3981999507e-3f));
    y = dw_vf_fma(y, x, dw_vf_set1(8.3334519073e-3f));
    y = dw_vf_fma(y, x, dw_vf_set1(4.1665795894e-2f));
    y = dw_vf_fma(y, x, dw_vf_set1(1.6666665459e-1f));
    y = dw_vf_fma(y, x, dw_vf_set1(5.0000001201e-1f));
    y = dw_vf_fma(y, dw_vf_mul(x, x), dw_vf_add(x, dw_vf_set1(1.0f)));
    return dw_vf_mul_pow2(y, fx);
}

DW_VF_INLINE dw_vf silu_mul(dw_vf g, dw_vf u) {
    dw_vf e = exp_vf(dw_vf_sub(dw_vf_zero(), g));
    return dw_vf_mul(dw_vf_div(g, dw_vf_add(dw_vf_set1(1.0f), e)), u);
}

static void DW_K(swiglu)(float *out, const float *gate, const float *up, int n) {
    int i = 0;
    for (; i + VL <= n; i += VL) dw_vf_store(out + i, silu_mul(dw_vf_load(gate + i), dw_vf_load(up + i)));
    if (i < n) dw_vf_store_tail(out + i, silu_mul(dw_vf_load_tail(gate + i, n - i), dw_vf_load_tail(up + i, n - i)), n - i);
}

static void DW_K(add)(float *x, const float *y, int n) {
    int i = 0;
    for (; i + VL <= n; i += VL) dw_vf_store(x + i, dw_vf_add(dw_vf_load(x + i), dw_vf_load(y + i)));
    if (i < n) dw_vf_store_tail(x + i, dw_vf_add(dw_vf_load_tail(x + i, n - i), dw_vf_load_tail(y + i, n - i)), n - i);
}

static float DW_K(max_f32)(const float *x, int n) {
    dw_vf first = dw_vf_set1(x[0]), v = first;
    int i = 0;
    for (; i + VL <= n; i += VL) v = dw_vf_max(v, dw_vf_load(x + i));
    if (i < n) v = dw_vf_max(v, dw_vf_select_head(n - i, dw_vf_load_tail(x + i, n - i), first));
    return dw_vf_reduce_max(v);
}

static float DW_K(exp_sum)(float *x, float max, int n) {
    dw_vf m = dw_vf_set1(max), s = dw_vf_zero();
    int i = 0;
    for (; i + VL <= n; i += VL) {
        dw_vf e = exp_vf(dw_vf_sub(dw_vf_load(x + i), m));
        dw_vf_store(x + i, e);
        s = dw_vf_add(s, e);
    }
    if (i < n) {
        dw_vf e = exp_vf(dw_vf_sub(dw_vf_load_tail(x + i, n - i), m));
        dw_vf_store_tail(x + i, e, n - i);
        s = dw_vf_add(s, dw_vf_select_head(n - i, e, dw_vf_zero()));
    }
    return dw_vf_reduce_add(s);
}

/* Streams n bytes, four vectors per step, prefetching every line 4 KB ahead. */
static uint64_t DW_K(read_bytes)(const void *p, size_t n) {
    const char *q = p;
    dw_vi a0 = dw_vi_zero(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0, step = 4 * sizeof(dw_vi);
    for (; i + step <= n; i += step) {
        _Pragma("GCC unroll 4") for (size_t l = 0; l < step; l += 64) _mm_prefetch(q + i + 4096 + l, _MM_HINT_T0);
        a0 = dw_vi_xor(a0, dw_vi_load(q + i));
        a1 = dw_vi_xor(a1, dw_vi_load(q + i + sizeof(dw_vi)));
        a2 = dw_vi_xor(a2, dw_vi_load(q + i + 2 * sizeof(dw_vi)));
        a3 = dw_vi_xor(a3, dw_vi_load(q + i + 3 * sizeof(dw_vi)));
    }
    for (; i + sizeof(dw_vi) <= n; i += sizeof(dw_vi)) a0 = dw_vi_xor(a0, dw_vi_load(q + i));
    return dw_vi_reduce_xor(dw_vi_xor(dw_vi_xor(a0, a1), dw_vi_xor(a2, a3)));
}

#define DW_K_SET DW_K_CAT(dw__cpu_kernels, DW_KSUFFIX)
#define DW_K_STR2(s) #s
#define DW_K_STR(s) DW_K_STR2(s)

/* The set's table; ISA names it, MATMUL_BF16 is its bf16 matmul (a wider set may bring its own),
 * ROWS_BX its rows_bf16_bx (NULL: none). */
#define DW_K_TABLE(ISA, MATMUL_BF16, ROWS_BX)                                                                   \
    {                                                                                              \
    /* .isa            = */ ISA,                                                                   \
    /* .matmul_bf16    = */ MATMUL_BF16,                                                           \
    /* .matmul_f16     = */ DW_K(matmul_f16),                                                      \
    /* .matmul_f32     = */ DW_K(matmul_f32),                                                      \
    /* .gemm_bf16      = */ DW_K(gemm_bf16),                                                       \
    /* .gemm_f16       = */ DW_K(gemm_f16),                                                        \
    /* .gemm_f32       = */ DW_K(gemm_f32),                                                        \
    /* .rows_bf16      = */ DW_K(rows_bf16),                                                       \
    /* .rows_f16       = */ DW_K(rows_f16),                                                        \
    /* .rows_f32       = */ DW_K(rows_f32),                                                        \
    /* .dot_f32        = */ DW_K(dot_f32),                                                         \
    /* .dot_bf16       = */ DW_K(dot_bf16),                                                        \
    /* .axpy_f32       = */ DW_K(axpy_f32),                                                        \
    /* .axpy_bf16      = */ DW_K(axpy_bf16),                                                       \
    /* .attn_dot_f32   = */ DW_K(attn_dot_f32),                                                    \
    /* .attn_dot_bf16  = */ DW_K(attn_dot_bf16),                                                   \
    /* .attn_acc_f32   = */ DW_K(attn_acc_f32),                                                    \
    /* .attn_acc_bf16  = */ DW_K(attn_acc_bf16),                                                   \
    /* .attn_acc_multi = */ DW_K(attn_acc_multi),                                                  \
    /* .attn_dot_t     = */ DW_K(attn_dot_t),                                                      \
    /* .bf16_to_f32    = */ DW_K(bf16_to_f32),                                                     \
    /* .f16_to_f32     = */ DW_K(f16_to_f32),                                                      \
    /* .f32_to_bf16    = */ DW_K(f32_to_bf16),                                                     \
    /* .sum_squares    = */ DW_K(sum_squares),                                                     \
    /* .scale_mul      = */ DW_K(scale_mul),                                                       \
    /* .swiglu         = */ DW_K(swiglu),                                                          \
    /* .add            = */ DW_K(add),                                                             \
    /* .max_f32        = */ DW_K(max_f32),                                                         \
    /* .exp_sum        = */ DW_K(exp_sum),                                                         \
    /* .read_bytes     = */ DW_K(read_bytes),                                                      \
    /* .rows_bf16_bx   = */ ROWS_BX,                                                               \
    }

const dw__cpu_kernels DW_K_SET = DW_K_TABLE(DW_K_STR(DW_KSUFFIX), DW_K(matmul_bf16), NULL);

#undef VL
