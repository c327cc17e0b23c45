/* The packed layout of quantized weights (MLX affine, what mlx-lm publishes, e.g. Llama 3.2 1B
 * 4-bit): the one description that the CPU kernels (src/backend/cpu/kernels_quant*.c), the CUDA
 * kernels and the engine's loader and quantizer (src/engine/quant*.c) share. A leaf: it includes
 * only standard headers and driftwood/dtype.h, and compiles as C11 and as CUDA C++. The
 * config.json block and the quantizer's algorithm are the engine's part (engine/quant.h).
 *
 * A quantized linear layer (or the embedding) named <m> stores three tensors instead of
 * <m>.weight [out, in] in floats:
 *
 *   tensor        dtype            shape                   meaning
 *   ------------  ---------------  ----------------------  ----------------------------------------
 *   <m>.weight    U32              [out, in·bits/32]        32/bits codes per word, along the input
 *                                                          dim, lowest bits first: code of input i
 *                                                          of row r = (w[r][i·bits/32] >> (i·bits
 *                                                          mod 32)) & (2^bits − 1)
 *   <m>.scales    BF16, F16 or F32 [out, in/group_size]     one per group of group_size inputs
 *   <m>.biases    same as scales   [out, in/group_size]     ditto
 *
 *   w[r][i] = scales[r][i/g] · code + biases[r][i/g]        (computed in f32)
 *
 * bits is 4 or 8; group_size is 32, 64 or 128 and divides in. Byte layout of one row of
 * <m>.weight, bits = 4 (bits = 8: four codes per word, input 4j+t in bits [8t, 8t+8)):
 *
 *   byte offset   size   content (little-endian u32 words)
 *   -----------   ----   --------------------------------------------------------------
 *   4·j           4      codes of inputs 8j .. 8j+7; input 8j+t in bits [4t, 4t+4)
 *
 * So a row is in·bits/8 bytes, a group of g inputs g·bits/8 bytes (whole words, the word of input
 * i holds only inputs of i's group), and with bits = 8 the codes are the row's bytes in input
 * order. */
#ifndef DW_CORE_QUANT_LAYOUT_H
#define DW_CORE_QUANT_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/dtype.h"

/* A compile-time check in C11 and in C++ (CUDA). */
#ifdef __cplusplus
#define DW_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define DW_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* Helpers callable from host code and, under nvcc, from device code. */
#ifdef __CUDACC__
#define DW_QUANT_FN static inline __host__ __device__
#else
#define DW_QUANT_FN static inline
#endif

/* The allowed parameters. */
#define DW_QUANT_BITS_OK(bits) ((bits) == 4 || (bits) == 8)
#define DW_QUANT_GROUP_OK(g) ((g) == 32 || (g) == 64 || (g) == 128)
#define DW_QUANT_MAX_GROUP 128
#define DW_QUANT_WORD_BITS 32 /* one packed word: a little-endian uint32 */

/* Codes in one word, words and bytes per row of cols inputs, groups per row. */
#define DW_QUANT_CODES_PER_WORD(bits) (DW_QUANT_WORD_BITS / (bits))
#define DW_QUANT_ROW_WORDS(cols, bits) ((int64_t)(cols) * (bits) / DW_QUANT_WORD_BITS)
#define DW_QUANT_ROW_BYTES(cols, bits) ((size_t)(cols) * (size_t)(bits) / 8)
#define DW_QUANT_ROW_GROUPS(cols, group) ((int64_t)(cols) / (group))
/* The mask of one code. */
#define DW_QUANT_CODE_MASK(bits) ((1u << (bits)) - 1u)

DW_STATIC_ASSERT(sizeof(uint32_t) * 8 == DW_QUANT_WORD_BITS, "a packed word is 32 bits");
DW_STATIC_ASSERT(DW_QUANT_CODES_PER_WORD(4) == 8 && DW_QUANT_CODES_PER_WORD(8) == 4,
                 "4-bit words hold 8 codes, 8-bit words 4");
DW_STATIC_ASSERT(32 % DW_QUANT_CODES_PER_WORD(4) == 0 && 32 % DW_QUANT_CODES_PER_WORD(8) == 0,
                 "every allowed group is a whole number of words");
DW_STATIC_ASSERT(DW_QUANT_ROW_BYTES(DW_QUANT_MAX_GROUP, 4) == 64,
                 "a 4-bit group of 128 inputs is one 64-byte cache line (the CPU and CUDA kernels load it so)");
DW_STATIC_ASSERT(DW_QUANT_ROW_BYTES(32, 8) == 32 && DW_QUANT_ROW_BYTES(32, 4) == 16,
                 "the smallest group is 16 (4-bit) or 32 (8-bit) bytes");

/* Row r's packed words in a matrix of cols inputs. */
DW_QUANT_FN const uint32_t *dw__quant_row(const void *q, int64_t r, int64_t cols, int bits) {
    return (const uint32_t *)q + (size_t)r * (size_t)DW_QUANT_ROW_WORDS(cols, bits);
}

/* The code of input i in a row's words. */
DW_QUANT_FN uint32_t dw__quant_code(const uint32_t *row, int64_t i, int bits) {
    const int per_word = DW_QUANT_CODES_PER_WORD(bits);
    return (row[i / per_word] >> ((i % per_word) * bits)) & DW_QUANT_CODE_MASK(bits);
}

/* Index into scales/biases of the group holding input i of row r. */
DW_QUANT_FN size_t dw__quant_group_index(int64_t r, int64_t i, int64_t cols, int group) {
    return (size_t)r * (size_t)DW_QUANT_ROW_GROUPS(cols, group) + (size_t)(i / group);
}

#ifndef __CUDACC__
/* Element i of a scales/biases array of dtype (BF16, F16, F32) as f32 (host code; CUDA reads
 * them with its own conversions). */
static inline float dw__quant_sb(const void *p, dw_dtype dtype, size_t i) {
    if (dtype == DW_DTYPE_BF16) return dw_bf16_to_f32(((const uint16_t *)p)[i]);
    if (dtype == DW_DTYPE_F16) return dw_f16_to_f32(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}
#endif

#endif
