/* The MLX affine quantization format (quant.h; the packed layout: core/quant_layout.h):
 * config.json's "quantization" block, shape checks, the quantizer (MLX's algorithm, bit for bit)
 * and row dequantization. */
#include "engine/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int valid_bits(long b) { return DW_QUANT_BITS_OK(b); }
static int valid_group(long g) { return DW_QUANT_GROUP_OK(g); }

/* Reads {"group_size": g, "bits": b} from obj; what = where it came from (for messages). */
static dw_status parse_params(const char *path, const char *what, json_t *obj, int *bits, int *group_size,
                              dw_error *err) {
    json_t *b = json_object_get(obj, "bits"), *g = json_object_get(obj, "group_size");
    if (!json_is_integer(b) || !valid_bits(json_integer_value(b)))
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "%s: %s: 'bits' must be 4 or 8", path, what);
    if (!json_is_integer(g) || !valid_group(json_integer_value(g)))
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "%s: %s: 'group_size' must be 32, 64 or 128", path, what);
    json_t *mode = json_object_get(obj, "mode");
    if (mode && (!json_is_string(mode) || strcmp(json_string_value(mode), "affine") != 0))
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "%s: %s: 'mode' must be \"affine\"", path, what);
    *bits = (int)json_integer_value(b);
    *group_size = (int)json_integer_value(g);
    return DW_OK;
}

dw_status dw__quant_config_parse(const char *path, json_t *root, dw__quant_config *out, dw_error *err) {
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", path);
    json_t *block = json_object_get(root, "quantization");
    if (!block) block = json_object_get(root, "quantization_config");
    if (!block || json_is_null(block)) return DW_OK;
    if (!json_is_object(block)) return dw_error_set(err, DW_ERR_FORMAT, "%s: 'quantization' is not an object", path);
    dw_status st = parse_params(path, "quantization", block, &out->bits, &out->group_size, err);
    if (st) return st;
    const char *key;
    json_t *val;
    json_object_foreach(block, key, val) {
        if (!strcmp(key, "bits") || !strcmp(key, "group_size") || !strcmp(key, "mode")) continue;
        if (json_is_false(val) || json_is_true(val)) continue;
        if (!json_is_object(val))
            return dw_error_set(err, DW_ERR_FORMAT, "%s: quantization override '%s' is neither an object nor a boolean",
                                path, key);
        int b, g;
        char what[300];
        snprintf(what, sizeof what, "quantization override '%s'", key);
        if ((st = parse_params(path, what, val, &b, &g, err))) return st;
    }
    out->enabled = 1;
    out->block = json_incref(block);
    return DW_OK;
}

void dw__quant_config_free(dw__quant_config *qc) {
    if (qc->block) json_decref(qc->block);
    qc->block = NULL;
    qc->enabled = 0;
}

void dw__quant_params_for(const dw__quant_config *qc, const char *module, int *quantized, int *bits, int *group_size) {
    *quantized = qc->enabled;
    *bits = qc->bits;
    *group_size = qc->group_size;
    if (!qc->enabled) return;
    json_t *o = json_object_get(qc->block, module);
    if (json_is_false(o)) *quantized = 0;
    else if (json_is_object(o)) {
        *bits = (int)json_integer_value(json_object_get(o, "bits"));
        *group_size = (int)json_integer_value(json_object_get(o, "group_size"));
    }
}

int dw__quant_check_shape(int bits, int group_size, int64_t cols, char *msg, size_t msg_size) {
    if (!valid_bits(bits)) {
        snprintf(msg, msg_size, "bits %d not supported (4 or 8)", bits);
        return -1;
    }
    if (!valid_group(group_size)) {
        snprintf(msg, msg_size, "group size %d not supported (32, 64 or 128)", group_size);
        return -1;
    }
    if (cols <= 0 || cols % group_size) {
        snprintf(msg, msg_size, "group size %d does not divide the input dimension %lld", group_size, (long long)cols);
        return -1;
    }
    return 0;
}

static inline float load_elem(const void *src, dw_dtype dtype, size_t i) {
    if (dtype == DW_DTYPE_BF16) return dw_bf16_to_f32(((const uint16_t *)src)[i]);
    if (dtype == DW_DTYPE_F16) return dw_f16_to_f32(((const uint16_t *)src)[i]);
    return ((const float *)src)[i];
}

static inline void store_sb(void *dst, dw_dtype dtype, size_t i, float v) {
    if (dtype == DW_DTYPE_BF16) ((uint16_t *)dst)[i] = dw_f32_to_bf16(v);
    else if (dtype == DW_DTYPE_F16) ((uint16_t *)dst)[i] = dw_f32_to_f16(v);
    else ((float *)dst)[i] = v;
}

void dw__quantize(const void *src, dw_dtype dtype, int64_t rows, int64_t cols, int bits, int group_size,
                  uint32_t *q, void *scales, void *biases, dw_dtype sdtype) {
    const float n_bins = (float)((1 << bits) - 1);
    const int per_word = DW_QUANT_CODES_PER_WORD(bits);
    const int64_t groups = cols / group_size;
    float w[128];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < groups; g++) {
            size_t base = (size_t)r * cols + (size_t)g * group_size;
            float w_min = INFINITY, w_max = -INFINITY;
            for (int j = 0; j < group_size; j++) {
                w[j] = load_elem(src, dtype, base + j);
                w_max = fmaxf(w_max, w[j]);
                w_min = fminf(w_min, w[j]);
            }
            int side = fabsf(w_min) > fabsf(w_max);
            float scale = fmaxf((w_max - w_min) / n_bins, DW_QUANT_EPS);
            scale = side ? scale : -scale;
            float edge = side ? w_min : w_max;
            float q0 = rintf(edge / scale);
            float bias = 0.0f;
            if (q0 != 0.0f) {
                scale = edge / q0;
                bias = edge;
            }
            uint32_t *qw = q + (size_t)r * DW_QUANT_ROW_WORDS(cols, bits) + (size_t)g * group_size / per_word;
            for (int j0 = 0; j0 < group_size; j0 += per_word) {
                uint32_t word = 0;
                for (int t = 0; t < per_word; t++) {
                    float v = rintf((w[j0 + t] - bias) / scale);
                    v = fminf(fmaxf(v, 0.0f), n_bins);
                    word |= (uint32_t)v << (t * bits);
                }
                qw[j0 / per_word] = word;
            }
            store_sb(scales, sdtype, (size_t)r * groups + g, scale);
            store_sb(biases, sdtype, (size_t)r * groups + g, bias);
        }
}

void dw__dequantize_row(const dw__qtensor *t, int64_t r, float *out) {
    const uint32_t *qw = dw__quant_row(t->q, r, t->cols, t->bits);
    for (int64_t i = 0; i < t->cols; i++) {
        size_t g = dw__quant_group_index(r, i, t->cols, t->group_size);
        float s = dw__quant_sb(t->scales, t->sdtype, g), b = dw__quant_sb(t->biases, t->sdtype, g);
        out[i] = s * (float)dw__quant_code(qw, i, t->bits) + b;
    }
}
