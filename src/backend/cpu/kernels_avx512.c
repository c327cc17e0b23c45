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

const dw__cpu_kernels dw__cpu_kernels_avx512bf16 = DW_K_TABLE("avx512bf16", matmul_bf16_avx512bf16);

#endif
