/* The AVX-512 kernel sets: dw__cpu_kernels_avx512 (kernels_x86_body.h over 16-lane vectors, F,
 * BW, VL and DQ) and dw__cpu_kernels_avx512bf16 (the same with its own bf16 decode matvec, below).
 * The whole file is compiled for AVX-512; the dispatcher (kernels_dispatch.c) runs a set only
 * where the CPU has it. Compiles to nothing off x86-64. */
#if defined(__x86_64__)

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")

#define DW_VF_WIDTH 512
#define DW_KSUFFIX avx512
#include "backend/cpu/kernels_x86_body.h"

/* ======================================================================================
 * AVX-512 BF16 (vdpbf16ps): the decode matrix-vector product on bf16 weights with x split
 * into bf16 hi + lo parts (x ≈ hi + lo to ~2^-16 relative), so the products keep f32 accuracy
 * while each 32 weights need one load and two dot-product instructions instead of
 * conversions and FMAs. Everything else is the AVX-512 set.
 * ==================================================================================== */

#define AVX512BF16 __attribute__((target("avx512bf16")))
#define DP_MAX_K 16384

static AVX512BF16 float rowdot_bf16_dp(const __m512bh *xh, const __m512bh *xl, const uint16_t *w, int k) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int nv = (k + 31) / 32, v = 0;
    for (; v + 2 <= nv && 32 * (v + 2) <= k; v += 2) {
        const uint16_t *p = w + 32 * v;
        _mm_prefetch((const char *)p + PREFETCH_L2_AHEAD, _MM_HINT_T1);
        _mm_prefetch((const char *)p + PREFETCH_L2_AHEAD + 64, _MM_HINT_T1);
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
        __mmask16 m0 = rem >= 16 ? 0xffff : (__mmask16)((1u << (rem > 0 ? rem : 0)) - 1u);
        __mmask16 m1 = rem >= 32 ? 0xffff : (__mmask16)((1u << (rem > 16 ? rem - 16 : 0)) - 1u);
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

/* ======================================================================================
 * The batched step's product on bf16 activations (kernels.h, rows_bf16_bx): one vdpbf16ps
 * takes 32 weights × 32 inputs into 16 f32 lanes. Each out[t, r] is one accumulator that takes
 * dpbf16(w[r][kk..kk+32), xb[t][kk..kk+32)) for kk = 0, 32, 64, ... in order (the last group
 * masked: zeros past k), then one horizontal sum; every register tile runs that same sequence
 * for each of its elements, so a result depends on k alone (not on n, the tile, r0 / r1).
 * Tiles are BX_R rows × up to BX_T tokens (each weight vector feeds BX_T tokens, each input
 * vector BX_R rows), one tile of BX_R_FEW rows × all the tokens for 3 to 8 tokens (one pass
 * over each weight line: a second tile of the same rows measured slower), 8 rows × 1 or 2 tokens
 * for one or two (memory-bound). The first tile of a row block prefetches
 * the next block's rows into L2 (small batches are memory-bound too). k is cut in chunks of BX_KC whose accumulators wait in a stack buffer
 * (a store and a load change no bit), so a row block's chunk of weights stays in L1 while it
 * serves every tile of up to BX_TC tokens.
 * ==================================================================================== */

#define BX_KC 1024 /* a multiple of 32 */
#define BX_TC 32
#define BX_R 4 /* many tokens: 4 rows × 6 tokens */
#define BX_T 6
#define BX_R_FEW 3 /* 3..8 tokens: one tile of 3 rows × all of them */
#define BX_T_FEW 8
#define BX_RMAX 8
#define BX_INLINE static inline __attribute__((always_inline)) AVX512BF16

BX_INLINE void bx_tile(__m512 *acc, const uint16_t *xb, int ldx, const uint16_t *w, int k, int k0, int k1, int first,
                       int prefetch, const int R, const int T) {
    __m512 a[BX_RMAX][BX_T_FEW];
    _Pragma("GCC unroll 8") for (int i = 0; i < R; i++)
        _Pragma("GCC unroll 8") for (int j = 0; j < T; j++) a[i][j] = first ? _mm512_setzero_ps() : acc[i * BX_TC + j];
    int kk = k0;
    for (; kk + 32 <= k1; kk += 32) {
        __m512bh wv[BX_RMAX];
        if (prefetch) /* the next R rows' line at this place, into L2 (the weights stream once) */
            _Pragma("GCC unroll 8") for (int i = 0; i < R; i++)
                _mm_prefetch((const char *)(w + (size_t)(R + i) * k + kk), _MM_HINT_T1);
        _Pragma("GCC unroll 8") for (int i = 0; i < R; i++)
            wv[i] = (__m512bh)_mm512_loadu_si512(w + (size_t)i * k + kk);
        _Pragma("GCC unroll 8") for (int j = 0; j < T; j++) {
            __m512bh xv = (__m512bh)_mm512_loadu_si512(xb + (size_t)j * ldx + kk);
            _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) a[i][j] = _mm512_dpbf16_ps(a[i][j], wv[i], xv);
        }
    }
    if (kk < k1) {
        __mmask32 m = (__mmask32)((1ull << (k1 - kk)) - 1u);
        __m512bh wv[BX_RMAX];
        _Pragma("GCC unroll 8") for (int i = 0; i < R; i++)
            wv[i] = (__m512bh)_mm512_maskz_loadu_epi16(m, w + (size_t)i * k + kk);
        _Pragma("GCC unroll 8") for (int j = 0; j < T; j++) {
            __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, xb + (size_t)j * ldx + kk);
            _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) a[i][j] = _mm512_dpbf16_ps(a[i][j], wv[i], xv);
        }
    }
    _Pragma("GCC unroll 8") for (int i = 0; i < R; i++)
        _Pragma("GCC unroll 8") for (int j = 0; j < T; j++) acc[i * BX_TC + j] = a[i][j];
}

/* T tokens (1..8) of rows [r, r + R): R == BX_R (T <= BX_T), R == BX_R_FEW, R == 8 with T <= 2, or
 * single rows */
#define BX_TILE_T(R_, TMAX, ACC, W)                                                                \
    switch (T) {                                                                                   \
    case 8: bx_tile(ACC, xb, ldx, W, k, k0, k1, first, prefetch, R_, 8 <= TMAX ? 8 : 1); break;     \
    case 7: bx_tile(ACC, xb, ldx, W, k, k0, k1, first, prefetch, R_, 7 <= TMAX ? 7 : 1); break;     \
    case 6: bx_tile(ACC, xb, ldx, W, k, k0, k1, first, prefetch, R_, 6 <= TMAX ? 6 : 1); break;     \
    case 5: bx_tile(ACC, xb, ldx, W, k, k0, k1, first, prefetch, R_, 5 <= TMAX ? 5 : 1); break;     \
    case 4: bx_tile(ACC, xb, ldx, W, k, k0, k1, first, prefetch, R_, 4); break;                              \
    case 3: bx_tile(ACC, xb, ldx, W, k, k0, k1, first, prefetch, R_, 3); break;                              \
    case 2: bx_tile(ACC, xb, ldx, W, k, k0, k1, first, prefetch, R_, 2); break;                              \
    default: bx_tile(ACC, xb, ldx, W, k, k0, k1, first, prefetch, R_, 1); break;                             \
    }

static AVX512BF16 void bx_tiles(__m512 *acc, const uint16_t *xb, int ldx, const uint16_t *w, int k, int k0, int k1,
                                int first, int prefetch, int R, int T) {
    if (R == 8 && T <= 2) { /* one or two tokens: memory-bound, 8 rows in flight */
        if (T == 2) bx_tile(acc, xb, ldx, w, k, k0, k1, first, 1, 8, 2);
        else bx_tile(acc, xb, ldx, w, k, k0, k1, first, 1, 8, 1);
        return;
    }
    if (R == BX_R) {
        BX_TILE_T(BX_R, BX_T, acc, w)
        return;
    }
    if (R == BX_R_FEW) {
        BX_TILE_T(BX_R_FEW, BX_T_FEW, acc, w)
        return;
    }
    prefetch = 0;
    for (int i = 0; i < R; i++) {
        __m512 *ai = acc + i * BX_TC;
        const uint16_t *wi = w + (size_t)i * k;
        BX_TILE_T(1, BX_T_FEW, ai, wi)
    }
}

static AVX512BF16 void rows_bf16_bx_avx512(float *out, int ldo, const uint16_t *xb, int ldx, int n, const void *wv,
                                           int k, int r0, int r1) {
    const uint16_t *w = wv;
    __m512 acc[BX_RMAX * BX_TC];
    int few = n <= BX_T_FEW, rb = n <= 2 ? 8 : few ? BX_R_FEW : BX_R, tmax = few ? BX_T_FEW : BX_T;
    for (int tc = 0; tc < n; tc += BX_TC) {
        int nt = n - tc < BX_TC ? n - tc : BX_TC;
        int tiles = (nt + tmax - 1) / tmax, tt = (nt + tiles - 1) / tiles; /* even tiles: 12 = 6 + 6 */
        const uint16_t *xc = xb + (size_t)tc * ldx;
        for (int r = r0; r < r1; r += rb) {
            int R = r1 - r < rb ? r1 - r : rb;
            for (int k0 = 0; k0 < k; k0 += BX_KC) {
                int k1 = k - k0 < BX_KC ? k : k0 + BX_KC;
                for (int t = 0; t < nt; t += tt) {
                    int T = nt - t < tt ? nt - t : tt;
                    bx_tiles(acc + t, xc + (size_t)t * ldx, ldx, w + (size_t)r * k, k, k0, k1, k0 == 0, t == 0, R,
                             T);
                }
            }
            for (int t = 0; t < nt; t++)
                for (int i = 0; i < R; i++) out[(size_t)(tc + t) * ldo + r + i] = _mm512_reduce_add_ps(acc[i * BX_TC + t]);
        }
    }
}

const dw__cpu_kernels dw__cpu_kernels_avx512bf16 =
    DW_K_TABLE("avx512bf16", matmul_bf16_avx512bf16, rows_bf16_bx_avx512);
const dw__cpu_kernels dw__cpu_kernels_avx512dp = DW_K_TABLE("avx512dp", matmul_bf16_avx512, rows_bf16_bx_avx512);

#endif
