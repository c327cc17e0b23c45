/* Element types of tensors (the safetensors set we support) and the scalar conversions
 * between f32 and the 16-bit float formats that every layer uses (inline here for speed). */
#ifndef DRIFTWOOD_DTYPE_H
#define DRIFTWOOD_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "driftwood/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dw_dtype {
    DW_DTYPE_F32,
    DW_DTYPE_F16,  /* IEEE 754 binary16 */
    DW_DTYPE_BF16, /* bfloat16: the top half of an f32 */
    DW_DTYPE_F64,
    DW_DTYPE_I8,
    DW_DTYPE_U8,
    DW_DTYPE_I16,
    DW_DTYPE_U16,
    DW_DTYPE_I32,
    DW_DTYPE_U32,
    DW_DTYPE_I64,
    DW_DTYPE_U64,
    DW_DTYPE_BOOL, /* one byte, 0 or 1 */
} dw_dtype;

#define DW_DTYPE_COUNT 13

/* Bytes per element (1, 2, 4 or 8); 0 for a value outside the enum. */
size_t dw_dtype_size(dw_dtype dtype);

/* The safetensors spelling: "F32", "F16", "BF16", "F64", "I8", "U8", ..., "BOOL".
 * Returns "?" for a value outside the enum. The string is static. */
const char *dw_dtype_name(dw_dtype dtype);

/* Parses a safetensors dtype name (exact, case-sensitive). On success writes *out and
 * returns DW_OK; an unknown name returns DW_ERR_FORMAT and leaves *out unchanged. */
dw_status dw_dtype_parse(const char *name, dw_dtype *out);

/* Converts n elements of type src at in (which may be unaligned) to f32. Integers convert
 * as C casts (64-bit values beyond 2^24 lose precision), BOOL as 0/1 (any non-zero byte is 1). */
void dw_convert_to_f32(dw_dtype src, const void *in, float *out, size_t n);

/* Converts n f32 values to dst, which must be F32, F16, BF16 or F64 (rounding to nearest
 * even); out may be unaligned. Other dtypes return DW_ERR_UNSUPPORTED and write nothing. */
dw_status dw_convert_from_f32(dw_dtype dst, const float *in, void *out, size_t n);

/* ---------------------------------------------------------------------------------------
 * Scalar conversions. Bit patterns go through memcpy (the compiler turns it into a move).
 * ------------------------------------------------------------------------------------- */

static inline uint32_t dw__f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float dw__f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* bf16 -> f32 is exact: the bf16 bits are the high half of the f32. */
static inline float dw_bf16_to_f32(uint16_t h) { return dw__f32_from_bits((uint32_t)h << 16); }

/* f32 -> bf16, round to nearest, ties to even. NaN stays NaN with its sign and the top of its
 * payload (the quiet bit is set so that truncation cannot turn it into infinity). */
static inline uint16_t dw_f32_to_bf16(float f) {
    uint32_t u = dw__f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* f16 -> f32 is exact (subnormals, infinities and NaN payloads included). */
static inline float dw_f16_to_f32(uint16_t h) {
    const uint32_t shifted_exp = 0x7c00u << 13; /* f16 exponent mask, in f32 position */
    uint32_t o = ((uint32_t)h & 0x7fffu) << 13; /* exponent and mantissa */
    uint32_t exp = shifted_exp & o;
    o += (uint32_t)(127 - 15) << 23; /* rebias the exponent */
    if (exp == shifted_exp) {
        o += (uint32_t)(128 - 16) << 23; /* Inf or NaN: exponent all ones */
    } else if (exp == 0) {
        /* zero or subnormal: renormalise with one float subtraction (exact) */
        o += 1u << 23;
        o = dw__f32_bits(dw__f32_from_bits(o) - dw__f32_from_bits(113u << 23));
    }
    return dw__f32_from_bits(o | (((uint32_t)h & 0x8000u) << 16));
}

/* f32 -> f16, round to nearest, ties to even; values beyond the f16 range become infinity,
 * NaN stays a (quiet) NaN with its sign and the top of its payload. */
static inline uint16_t dw_f32_to_f16(float f) {
    uint32_t u = dw__f32_bits(f);
    uint32_t sign = u & 0x80000000u;
    uint16_t o;
    u ^= sign;
    if (u >= (uint32_t)(127 + 16) << 23) { /* |f| >= 65536: Inf or NaN in f16 */
        if (u > 0x7f800000u) o = (uint16_t)(0x7e00u | ((u >> 13) & 0x3ffu)); /* NaN */
        else o = 0x7c00u; /* infinity (65520 and above round to it in the branch below too) */
    } else if (u < 113u << 23) {
        /* |f| < 2^-14: f16 subnormal or zero. Adding 0.5 aligns the mantissa so that the FPU's
         * own round-to-nearest-even does the rounding; the low bits are then the f16 bits. */
        const uint32_t magic = (uint32_t)((127 - 15) + (23 - 10) + 1) << 23;
        float g = dw__f32_from_bits(u) + dw__f32_from_bits(magic);
        o = (uint16_t)(dw__f32_bits(g) - magic);
    } else {
        uint32_t mant_odd = (u >> 13) & 1u;
        u += ((uint32_t)(15 - 127) << 23) + 0xfffu; /* rebias and round half up... */
        u += mant_odd;                              /* ...then make ties go to even */
        o = (uint16_t)(u >> 13);
    }
    return (uint16_t)(o | (sign >> 16));
}

#ifdef __cplusplus
}
#endif

#endif
