/* The vector-width layer under the x86 kernels (kernels_x86_body.h): one f32 vector type dw_vf and
 * the few operations the kernels use, mapped onto AVX2 (8 lanes, __m256) or AVX-512 (16 lanes,
 * __m512) by DW_VF_WIDTH (256 or 512), which the including file sets after choosing its target
 * (kernels_avx2.c, kernels_avx512.c). Tails (n < DW_VF_LANES elements) load zeros past n and
 * store only n elements: masked on AVX-512, through a lane mask or a small buffer on AVX2. */
#ifndef DW_BACKEND_CPU_SIMD_X86_H
#define DW_BACKEND_CPU_SIMD_X86_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define DW_VF_INLINE static inline __attribute__((always_inline))

#if DW_VF_WIDTH == 256

#define DW_VF_LANES 8
typedef __m256 dw_vf;
typedef __m256i dw_vi; /* 256 bits of integers (read_bytes) */

/* lanes [0, n) set: an unaligned window into 8 ones and 8 zeros */
static const int32_t dw__vf_head_bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
DW_VF_INLINE __m256i dw__vf_head(int n) { return _mm256_loadu_si256((const __m256i *)(dw__vf_head_bits + 8 - n)); }

DW_VF_INLINE dw_vf dw_vf_zero(void) { return _mm256_setzero_ps(); }
DW_VF_INLINE dw_vf dw_vf_set1(float a) { return _mm256_set1_ps(a); }
DW_VF_INLINE dw_vf dw_vf_load(const float *p) { return _mm256_loadu_ps(p); }
DW_VF_INLINE void dw_vf_store(float *p, dw_vf v) { _mm256_storeu_ps(p, v); }
DW_VF_INLINE dw_vf dw_vf_load_tail(const float *p, int n) { return _mm256_maskload_ps(p, dw__vf_head(n)); }
DW_VF_INLINE void dw_vf_store_tail(float *p, dw_vf v, int n) { _mm256_maskstore_ps(p, dw__vf_head(n), v); }
DW_VF_INLINE dw_vf dw_vf_add(dw_vf a, dw_vf b) { return _mm256_add_ps(a, b); }
DW_VF_INLINE dw_vf dw_vf_sub(dw_vf a, dw_vf b) { return _mm256_sub_ps(a, b); }
DW_VF_INLINE dw_vf dw_vf_mul(dw_vf a, dw_vf b) { return _mm256_mul_ps(a, b); }
DW_VF_INLINE dw_vf dw_vf_div(dw_vf a, dw_vf b) { return _mm256_div_ps(a, b); }
DW_VF_INLINE dw_vf dw_vf_max(dw_vf a, dw_vf b) { return _mm256_max_ps(a, b); }
DW_VF_INLINE dw_vf dw_vf_min(dw_vf a, dw_vf b) { return _mm256_min_ps(a, b); }
DW_VF_INLINE dw_vf dw_vf_fma(dw_vf a, dw_vf b, dw_vf c) { return _mm256_fmadd_ps(a, b, c); }  /* a·b + c */
DW_VF_INLINE dw_vf dw_vf_fnma(dw_vf a, dw_vf b, dw_vf c) { return _mm256_fnmadd_ps(a, b, c); } /* c − a·b */
/* lanes [0, n) from a, the others from b */
DW_VF_INLINE dw_vf dw_vf_select_head(int n, dw_vf a, dw_vf b) {
    return _mm256_blendv_ps(b, a, _mm256_castsi256_ps(dw__vf_head(n)));
}
DW_VF_INLINE float dw_vf_reduce_add(dw_vf v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}
DW_VF_INLINE float dw_vf_reduce_max(dw_vf v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
DW_VF_INLINE dw_vf dw_vf_round(dw_vf v) { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
/* y · 2^e for integral e in the normal range (exp's last step) */
DW_VF_INLINE dw_vf dw_vf_mul_pow2(dw_vf y, dw_vf e) {
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(e), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
}

/* 16-bit floats: bf16 is the top half of an f32; f16 through F16C */
DW_VF_INLINE dw_vf dw_vf_load_bf16(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
DW_VF_INLINE dw_vf dw_vf_load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
DW_VF_INLINE dw_vf dw_vf_load_bf16_tail(const uint16_t *p, int n) {
    uint16_t b[8] = {0};
    memcpy(b, p, sizeof(uint16_t) * (size_t)n);
    return dw_vf_load_bf16(b);
}
DW_VF_INLINE dw_vf dw_vf_load_f16_tail(const uint16_t *p, int n) {
    uint16_t b[8] = {0};
    memcpy(b, p, sizeof(uint16_t) * (size_t)n);
    return dw_vf_load_f16(b);
}
/* f32 -> bf16 bits, round to nearest even, NaN kept (quiet) */
DW_VF_INLINE __m128i dw__vf_to_bf16(dw_vf v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i rounded = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    __m256i r = _mm256_blendv_epi8(rounded, _mm256_or_si256(u, _mm256_set1_epi32(0x00400000)), nan);
    r = _mm256_srli_epi32(r, 16);
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}
DW_VF_INLINE void dw_vf_store_bf16(uint16_t *p, dw_vf v) { _mm_storeu_si128((__m128i *)p, dw__vf_to_bf16(v)); }
DW_VF_INLINE void dw_vf_store_bf16_tail(uint16_t *p, dw_vf v, int n) {
    uint16_t b[8];
    _mm_storeu_si128((__m128i *)b, dw__vf_to_bf16(v));
    memcpy(p, b, sizeof(uint16_t) * (size_t)n);
}

DW_VF_INLINE dw_vi dw_vi_zero(void) { return _mm256_setzero_si256(); }
DW_VF_INLINE dw_vi dw_vi_load(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
DW_VF_INLINE dw_vi dw_vi_xor(dw_vi a, dw_vi b) { return _mm256_xor_si256(a, b); }
DW_VF_INLINE uint64_t dw_vi_reduce_xor(dw_vi v) {
    uint64_t w[4];
    _mm256_storeu_si256((__m256i *)w, v);
    return w[0] ^ w[1] ^ w[2] ^ w[3];
}

/* packed quantized codes (core/quant_layout.h) as f32: 8 four-bit codes of one word, 8 bytes */
DW_VF_INLINE dw_vf dw_vf_codes4(const uint32_t *words) {
    const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    __m256i v = _mm256_srlv_epi32(_mm256_set1_epi32((int)words[0]), shifts);
    return _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(15)));
}
DW_VF_INLINE dw_vf dw_vf_codes8(const uint8_t *bytes) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)bytes)));
}

#elif DW_VF_WIDTH == 512

#define DW_VF_LANES 16
typedef __m512 dw_vf;
typedef __m512i dw_vi;

DW_VF_INLINE __mmask16 dw__vf_head(int n) { return (__mmask16)((1u << n) - 1u); }

DW_VF_INLINE dw_vf dw_vf_zero(void) { return _mm512_setzero_ps(); }
DW_VF_INLINE dw_vf dw_vf_set1(float a) { return _mm512_set1_ps(a); }
DW_VF_INLINE dw_vf dw_vf_load(const float *p) { return _mm512_loadu_ps(p); }
DW_VF_INLINE void dw_vf_store(float *p, dw_vf v) { _mm512_storeu_ps(p, v); }
DW_VF_INLINE dw_vf dw_vf_load_tail(const float *p, int n) { return _mm512_maskz_loadu_ps(dw__vf_head(n), p); }
DW_VF_INLINE void dw_vf_store_tail(float *p, dw_vf v, int n) { _mm512_mask_storeu_ps(p, dw__vf_head(n), v); }
DW_VF_INLINE dw_vf dw_vf_add(dw_vf a, dw_vf b) { return _mm512_add_ps(a, b); }
DW_VF_INLINE dw_vf dw_vf_sub(dw_vf a, dw_vf b) { return _mm512_sub_ps(a, b); }
DW_VF_INLINE dw_vf dw_vf_mul(dw_vf a, dw_vf b) { return _mm512_mul_ps(a, b); }
DW_VF_INLINE dw_vf dw_vf_div(dw_vf a, dw_vf b) { return _mm512_div_ps(a, b); }
DW_VF_INLINE dw_vf dw_vf_max(dw_vf a, dw_vf b) { return _mm512_max_ps(a, b); }
DW_VF_INLINE dw_vf dw_vf_min(dw_vf a, dw_vf b) { return _mm512_min_ps(a, b); }
DW_VF_INLINE dw_vf dw_vf_fma(dw_vf a, dw_vf b, dw_vf c) { return _mm512_fmadd_ps(a, b, c); }
DW_VF_INLINE dw_vf dw_vf_fnma(dw_vf a, dw_vf b, dw_vf c) { return _mm512_fnmadd_ps(a, b, c); }
DW_VF_INLINE dw_vf dw_vf_select_head(int n, dw_vf a, dw_vf b) { return _mm512_mask_blend_ps(dw__vf_head(n), b, a); }
DW_VF_INLINE float dw_vf_reduce_add(dw_vf v) { return _mm512_reduce_add_ps(v); }
DW_VF_INLINE float dw_vf_reduce_max(dw_vf v) { return _mm512_reduce_max_ps(v); }
DW_VF_INLINE dw_vf dw_vf_round(dw_vf v) {
    return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
DW_VF_INLINE dw_vf dw_vf_mul_pow2(dw_vf y, dw_vf e) { return _mm512_scalef_ps(y, e); }

DW_VF_INLINE dw_vf dw_vf_load_bf16(const uint16_t *p) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
DW_VF_INLINE dw_vf dw_vf_load_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
DW_VF_INLINE dw_vf dw_vf_load_bf16_tail(const uint16_t *p, int n) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(dw__vf_head(n), p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
DW_VF_INLINE dw_vf dw_vf_load_f16_tail(const uint16_t *p, int n) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(dw__vf_head(n), p));
}
DW_VF_INLINE __m256i dw__vf_to_bf16(dw_vf v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    __m512i r = _mm512_mask_or_epi32(rounded, nan, u, _mm512_set1_epi32(0x00400000));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}
DW_VF_INLINE void dw_vf_store_bf16(uint16_t *p, dw_vf v) { _mm256_storeu_si256((__m256i *)p, dw__vf_to_bf16(v)); }
DW_VF_INLINE void dw_vf_store_bf16_tail(uint16_t *p, dw_vf v, int n) {
    _mm256_mask_storeu_epi16(p, dw__vf_head(n), dw__vf_to_bf16(v));
}

DW_VF_INLINE dw_vi dw_vi_zero(void) { return _mm512_setzero_si512(); }
DW_VF_INLINE dw_vi dw_vi_load(const void *p) { return _mm512_loadu_si512(p); }
DW_VF_INLINE dw_vi dw_vi_xor(dw_vi a, dw_vi b) { return _mm512_xor_si512(a, b); }
DW_VF_INLINE uint64_t dw_vi_reduce_xor(dw_vi v) {
    uint64_t w[8], r = 0;
    _mm512_storeu_si512(w, v);
    for (int i = 0; i < 8; i++) r ^= w[i];
    return r;
}

/* packed quantized codes (core/quant_layout.h) as f32: 16 four-bit codes of two words, 16 bytes */
DW_VF_INLINE dw_vf dw_vf_codes4(const uint32_t *words) {
    const __m512i shifts = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    const __m512i word_of_lane = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m512i pair = _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)words));
    __m512i v = _mm512_srlv_epi32(_mm512_permutexvar_epi32(word_of_lane, pair), shifts);
    return _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(15)));
}
DW_VF_INLINE dw_vf dw_vf_codes8(const uint8_t *bytes) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)bytes)));
}

#else
#error "simd_x86.h: set DW_VF_WIDTH to 256 or 512"
#endif

/* Bytes in one f32 vector and in one integer vector. */
#define DW_VF_BYTES (DW_VF_LANES * 4)

#endif
