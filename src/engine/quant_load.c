/* The loader's side of quantized weights (quant.h): finds <m>.weight/.scales/.biases in a
 * model's weight files and checks them against config.json's quantization block. */
#include <stdio.h>
#include <string.h>

#include "engine/engine_impl.h"
#include "engine/quant.h"

/* Finds a tensor of any dtype; NULL when absent. *path names its file. */
static const dw_tensor_info *raw_find(const dw__weight_files *wf, const char *name, const char **path) {
    int file = 0;
    if (wf->weight_map) {
        json_t *f = json_object_get(wf->weight_map, name);
        if (!json_is_string(f)) return NULL;
        file = -1;
        for (int i = 0; i < wf->n_files; i++)
            if (!strcmp(wf->file_names[i], json_string_value(f))) file = i;
        if (file < 0) return NULL;
    } else if (wf->n_files < 1) {
        return NULL;
    }
    *path = dw_safetensors_path(wf->files[file]);
    return dw_safetensors_find(wf->files[file], name);
}

static dw_status check_2d(const dw_tensor_info *ti, const char *path, const char *name, int64_t d0, int64_t d1,
                          const char *why, dw_error *err) {
    if (ti->ndim != 2 || ti->shape[0] != d0 || ti->shape[1] != d1) {
        char got[64];
        if (ti->ndim == 2) snprintf(got, sizeof got, "[%lld, %lld]", (long long)ti->shape[0], (long long)ti->shape[1]);
        else snprintf(got, sizeof got, "%d dimensions", ti->ndim);
        return dw_error_set(err, DW_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected [%lld, %lld] (%s)", path, name,
                            got, (long long)d0, (long long)d1, why);
    }
    return DW_OK;
}

int dw__quant_present(const dw__weight_files *wf, const char *module) {
    char name[300];
    const char *path;
    snprintf(name, sizeof name, "%s.scales", module);
    return raw_find(wf, name, &path) != NULL;
}

dw_status dw__quant_find(const dw__weight_files *wf, const dw__quant_config *qc, const char *module, int64_t rows,
                         int64_t cols, dw__qtensor *out, dw_error *err) {
    memset(out, 0, sizeof *out);
    char wname[300], sname[300], bname[300], msg[200];
    snprintf(wname, sizeof wname, "%s.weight", module);
    snprintf(sname, sizeof sname, "%s.scales", module);
    snprintf(bname, sizeof bname, "%s.biases", module);
    const char *wpath = "", *spath = "", *bpath = "";
    const dw_tensor_info *ts = raw_find(wf, sname, &spath);
    const dw_tensor_info *tw = raw_find(wf, wname, &wpath);
    if (!ts) {
        if (tw && tw->dtype == DW_DTYPE_U32)
            return dw_error_set(err, DW_ERR_FORMAT, "%s: tensor '%s' is packed (U32) but '%s' is missing", wpath, wname,
                                sname);
        return DW_ERR_NOT_FOUND; /* not quantized */
    }
    int quantized, bits, gs;
    dw__quant_params_for(qc, module, &quantized, &bits, &gs);
    if (!quantized)
        return dw_error_set(err, DW_ERR_FORMAT, "%s: tensor '%s' is present but %s does not quantize '%s'", spath, sname,
                            qc->path, module);
    if (!tw) return dw_error_set(err, DW_ERR_FORMAT, "%s: tensor '%s' is missing (its scales exist)", spath, wname);
    const dw_tensor_info *tb = raw_find(wf, bname, &bpath);
    if (!tb) return dw_error_set(err, DW_ERR_FORMAT, "%s: tensor '%s' is missing (its scales exist)", spath, bname);
    if (dw__quant_check_shape(bits, gs, cols, msg, sizeof msg))
        return dw_error_set(err, DW_ERR_FORMAT, "%s: tensor '%s': %s", wpath, wname, msg);
    if (tw->dtype != DW_DTYPE_U32)
        return dw_error_set(err, DW_ERR_FORMAT, "%s: tensor '%s' has dtype %s, a quantized weight is U32", wpath, wname,
                            dw_dtype_name(tw->dtype));
    if (ts->dtype != DW_DTYPE_BF16 && ts->dtype != DW_DTYPE_F16 && ts->dtype != DW_DTYPE_F32)
        return dw_error_set(err, DW_ERR_FORMAT, "%s: tensor '%s' has dtype %s (scales are BF16, F16 or F32)", spath,
                            sname, dw_dtype_name(ts->dtype));
    if (tb->dtype != ts->dtype)
        return dw_error_set(err, DW_ERR_FORMAT, "%s: tensor '%s' has dtype %s, its scales %s", bpath, bname,
                            dw_dtype_name(tb->dtype), dw_dtype_name(ts->dtype));
    char why[128];
    snprintf(why, sizeof why, "%d bits: %lld inputs, %d per word", bits, (long long)cols, DW_QUANT_CODES_PER_WORD(bits));
    dw_status st = check_2d(tw, wpath, wname, rows, DW_QUANT_ROW_WORDS(cols, bits), why, err);
    if (st) return st;
    snprintf(why, sizeof why, "group size %d over %lld inputs", gs, (long long)cols);
    if ((st = check_2d(ts, spath, sname, rows, cols / gs, why, err))) return st;
    if ((st = check_2d(tb, bpath, bname, rows, cols / gs, "the shape of the scales", err))) return st;
    if ((uintptr_t)tw->data % 4 || (uintptr_t)ts->data % dw_dtype_size(ts->dtype) ||
        (uintptr_t)tb->data % dw_dtype_size(tb->dtype))
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "%s: tensor '%s' is not aligned to its element size", wpath, wname);
    out->q = tw->data;
    out->scales = ts->data;
    out->biases = tb->data;
    out->sdtype = ts->dtype;
    out->bits = bits;
    out->group_size = gs;
    out->rows = rows;
    out->cols = cols;
    out->nbytes = tw->nbytes + ts->nbytes + tb->nbytes;
    return DW_OK;
}
