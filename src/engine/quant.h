/* The engine's part of quantized weights (MLX affine): config.json's "quantization" block, the
 * loader's lookups and the quantizer (`driftwood quantize`). The packed layout itself (tensors,
 * shapes, bit positions) is core/quant_layout.h, shared with the CPU and CUDA kernels. Design:
 * docs/QUANT.md.
 *
 * config.json: "quantization": {"group_size": 32|64|128, "bits": 4|8} (newer mlx-lm also writes
 * the same object as "quantization_config"; an optional "mode" must be "affine"). Keys naming a
 * module ("model.layers.0.mlp.down_proj") override the default for that module: an object with
 * its own group_size and bits, or false (left in floats). As in mlx-lm, a module is quantized iff
 * <m>.scales exists; then bits and group size must agree with the config for that module.
 * Norms stay in floats. A tied LM head (tie_word_embeddings) uses the quantized embedding.
 *
 * Quantization (MLX's affine quantize, CPU kernel and graph fallback: everything in f32), per
 * group of g inputs with w_min, w_max its extremes and n = 2^bits − 1:
 *   scale = max((w_max − w_min) / n, 1e-7); if |w_min| > |w_max| edge = w_min, else edge = w_max
 *   and scale = −scale; q0 = rint(edge / scale);
 *   if q0 != 0: scale = edge / q0, bias = edge; else bias = 0;
 *   code = clamp(rint((w − bias) / scale), 0, n)    (rint: round half to even)
 * and scale, bias are stored rounded (to nearest even) to the input's dtype. */
#ifndef DW_ENGINE_QUANT_H
#define DW_ENGINE_QUANT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/quant_layout.h"
#include "driftwood/dtype.h"
#include "driftwood/error.h"

#define DW_QUANT_EPS 1e-7f

/* The "quantization" block of config.json. */
typedef struct dw__quant_config {
    int enabled;       /* the block is present */
    int bits;          /* 4 or 8 */
    int group_size;    /* 32, 64 or 128 */
    json_t *block;     /* the block itself (per-module overrides), owned; NULL when absent */
    char path[4096];   /* config.json, for messages */
} dw__quant_config;

/* Reads the block from a parsed config.json (root); absent means enabled = 0. Errors name path:
 * bits not 4 or 8, group size not 32/64/128, a mode other than "affine", a malformed override. */
dw_status dw__quant_config_parse(const char *path, json_t *root, dw__quant_config *out /* OUT */, dw_error *err);
void dw__quant_config_free(dw__quant_config *qc);

/* Bits and group size for module (e.g. "model.layers.3.self_attn.q_proj"): its override, else
 * the default. *quantized = 0 when the block is absent or the override is false. */
void dw__quant_params_for(const dw__quant_config *qc, const char *module, int *quantized /* OUT */,
                          int *bits /* OUT */, int *group_size /* OUT */);

/* A quantized matrix found in the weight files (pointers into the mapping). */
typedef struct dw__qtensor {
    const uint32_t *q;             /* [rows, cols·bits/32] */
    const void *scales, *biases;   /* [rows, cols/group_size] in sdtype */
    dw_dtype sdtype;               /* BF16, F16 or F32 */
    int bits, group_size;
    int64_t rows, cols;
    size_t nbytes;                 /* bytes of q + scales + biases */
} dw__qtensor;

/* Validates one quantized row-major layout and returns 0, or fills msg (one line, no file name)
 * and returns -1: bits in {4, 8}, group size in {32, 64, 128} dividing cols, word count. Used by
 * the loader and the quantizer. */
int dw__quant_check_shape(int bits, int group_size, int64_t cols, char *msg, size_t msg_size);

/* Quantizes rows × cols elements of src (dtype F32, F16 or BF16, row-major) as MLX does: q gets
 * [rows, cols·bits/32] words, scales and biases [rows, cols/group_size] in sdtype (the input's
 * dtype for BF16/F16 inputs; F32 for F32). Checks nothing (see dw__quant_check_shape). */
void dw__quantize(const void *src, dw_dtype dtype, int64_t rows, int64_t cols, int bits, int group_size,
                  uint32_t *q, void *scales, void *biases, dw_dtype sdtype);

/* dw_model_quantize and dw_model_dequantize (driftwood/model.h) are in quant_write.c. */

/* Dequantizes row r of a quantized matrix into out[cols] (f32): out[i] = scale·code + bias. */
void dw__dequantize_row(const dw__qtensor *t, int64_t r, float *out);

/* ---- loader (quant_load.c) ---------------------------------------------------------- */

struct dw__weight_files;

/* 1 when the weight files hold <module>.scales (mlx-lm's rule: then the module is quantized). */
int dw__quant_present(const struct dw__weight_files *wf, const char *module);

/* Finds and validates module's quantized matrix of rows × cols (the unquantized shape):
 * DW_ERR_NOT_FOUND without setting err when <module>.scales is absent (and the weight is not
 * packed); otherwise a one-line error naming the file and tensor for a config that does not
 * quantize the module, bits/group size it does not allow, wrong dtypes, or shapes of weight,
 * scales and biases that do not agree with rows, cols, bits and group size. */
dw_status dw__quant_find(const struct dw__weight_files *wf, const dw__quant_config *qc, const char *module,
                         int64_t rows, int64_t cols, dw__qtensor *out /* OUT */, dw_error *err);

#endif
