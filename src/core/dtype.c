/* Element types: sizes, safetensors names, and bulk conversion to and from f32
 * (the scalar conversions are inline in include/driftwood/dtype.h). */
#include "driftwood/dtype.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_table[DW_DTYPE_COUNT] = {
    [DW_DTYPE_F32] = {"F32", 4},  [DW_DTYPE_F16] = {"F16", 2}, [DW_DTYPE_BF16] = {"BF16", 2},
    [DW_DTYPE_F64] = {"F64", 8},  [DW_DTYPE_I8] = {"I8", 1},   [DW_DTYPE_U8] = {"U8", 1},
    [DW_DTYPE_I16] = {"I16", 2},  [DW_DTYPE_U16] = {"U16", 2}, [DW_DTYPE_I32] = {"I32", 4},
    [DW_DTYPE_U32] = {"U32", 4},  [DW_DTYPE_I64] = {"I64", 8}, [DW_DTYPE_U64] = {"U64", 8},
    [DW_DTYPE_BOOL] = {"BOOL", 1},
};

size_t dw_dtype_size(dw_dtype dtype) {
    if ((unsigned)dtype >= DW_DTYPE_COUNT) return 0;
    return dtype_table[dtype].size;
}

const char *dw_dtype_name(dw_dtype dtype) {
    if ((unsigned)dtype >= DW_DTYPE_COUNT) return "?";
    return dtype_table[dtype].name;
}

dw_status dw_dtype_parse(const char *name, dw_dtype *out) {
    if (!name) return DW_ERR_FORMAT;
    for (int i = 0; i < DW_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            *out = (dw_dtype)i;
            return DW_OK;
        }
    }
    return DW_ERR_FORMAT;
}

/* One loop per source type. memcpy loads keep unaligned input legal. `restrict` on in/out
 * and blocks of 8 with a fixed trip count are what gcc's -O2 (very-cheap cost model) needs
 * to vectorise these loops (the F16 branches become selects); checked with -fopt-info-vec. */
#define CONVERT_LOOP(T, expr)                                                                  \
    do {                                                                                       \
        const unsigned char *p = in;                                                           \
        size_t i = 0;                                                                          \
        for (; i + 8 <= n; i += 8) {                                                           \
            for (size_t k = 0; k < 8; k++) {                                                   \
                T v;                                                                           \
                memcpy(&v, p + (i + k) * sizeof(T), sizeof(T));                                \
                out[i + k] = (expr);                                                           \
            }                                                                                  \
        }                                                                                      \
        for (; i < n; i++) {                                                                   \
            T v;                                                                               \
            memcpy(&v, p + i * sizeof(T), sizeof(T));                                          \
            out[i] = (expr);                                                                   \
        }                                                                                      \
    } while (0)

void dw_convert_to_f32(dw_dtype src, const void *restrict in, float *restrict out, size_t n) {
    switch (src) {
    case DW_DTYPE_F32: memcpy(out, in, n * sizeof(float)); return;
    case DW_DTYPE_F16: CONVERT_LOOP(uint16_t, dw_f16_to_f32(v)); return;
    case DW_DTYPE_BF16: CONVERT_LOOP(uint16_t, dw_bf16_to_f32(v)); return;
    case DW_DTYPE_F64: CONVERT_LOOP(double, (float)v); return;
    case DW_DTYPE_I8: CONVERT_LOOP(int8_t, (float)v); return;
    case DW_DTYPE_U8: CONVERT_LOOP(uint8_t, (float)v); return;
    case DW_DTYPE_I16: CONVERT_LOOP(int16_t, (float)v); return;
    case DW_DTYPE_U16: CONVERT_LOOP(uint16_t, (float)v); return;
    case DW_DTYPE_I32: CONVERT_LOOP(int32_t, (float)v); return;
    case DW_DTYPE_U32: CONVERT_LOOP(uint32_t, (float)v); return;
    case DW_DTYPE_I64: CONVERT_LOOP(int64_t, (float)v); return;
    case DW_DTYPE_U64: CONVERT_LOOP(uint64_t, (float)v); return;
    case DW_DTYPE_BOOL: CONVERT_LOOP(uint8_t, v ? 1.0f : 0.0f); return;
    }
}

dw_status dw_convert_from_f32(dw_dtype dst, const float *restrict in, void *restrict out, size_t n) {
    unsigned char *p = out;
    switch (dst) {
    case DW_DTYPE_F32: memcpy(out, in, n * sizeof(float)); return DW_OK;
    case DW_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = dw_f32_to_f16(in[i]);
            memcpy(p + 2 * i, &h, 2);
        }
        return DW_OK;
    case DW_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = dw_f32_to_bf16(in[i]);
            memcpy(p + 2 * i, &h, 2);
        }
        return DW_OK;
    case DW_DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            double d = in[i];
            memcpy(p + 8 * i, &d, 8);
        }
        return DW_OK;
    default: return DW_ERR_UNSUPPORTED;
    }
}
