/* The weight files of a Hugging Face model directory: model.safetensors, or the shards
 * named by model.safetensors.index.json ({"weight_map": {tensor: file}}), mmap'd and
 * validated by the safetensors reader; lookups check shape and dtype. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "engine/engine_impl.h"

#define MAX_INDEX_BYTES (64u << 20)
#define MAX_SHARDS 1024

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Asks for transparent huge pages over the tensor data of a freshly mapped file, before any of
 * it is touched: the kernel then reads the file into 2 MB page-cache folios and maps them with
 * one TLB entry each. Decode streams every weight once per token, and with 4 KB pages the page
 * walks cost a measurable share of the matrix-vector bandwidth (docs/PERFORMANCE-HISTORY.md). Pages the page cache
 * already holds in small folios (a file just written) stay small until the cache drops them.
 * Advice only: failure changes nothing. */
static void advise_huge_pages(const dw_safetensors *st) {
    size_t n = dw_safetensors_count(st);
    if (n == 0) return;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (size_t i = 0; i < n; i++) {
        const dw_tensor_info *t = dw_safetensors_tensor(st, i);
        if (!t->nbytes) continue;
        uintptr_t a = (uintptr_t)t->data, b = a + t->nbytes;
        if (a < lo) lo = a;
        if (b > hi) hi = b;
    }
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    lo = (lo + page - 1) & ~(page - 1);
    hi &= ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
}

static dw_status open_one(dw__weight_files *wf, const char *name, dw_error *err) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", wf->dir, name) >= (int)sizeof path)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "%s/%s: path too long", wf->dir, name);
    dw_safetensors *st;
    dw_status s = dw_safetensors_open(path, &st, err);
    if (s) return s;
    advise_huge_pages(st);
    wf->files[wf->n_files] = st;
    wf->file_names[wf->n_files] = strdup(name);
    wf->n_files++;
    return DW_OK;
}

dw_status dw__weights_open(const char *dir, dw__weight_files *wf, dw_error *err) {
    memset(wf, 0, sizeof *wf);
    wf->dir = dir;
    snprintf(wf->index_path, sizeof wf->index_path, "%s/model.safetensors.index.json", dir);
    char single[PATH_MAX];
    snprintf(single, sizeof single, "%s/model.safetensors", dir);
    dw_status st;
    if (file_exists(wf->index_path)) {
        char *text;
        size_t len;
        if ((st = dw_file_read_all(wf->index_path, MAX_INDEX_BYTES, &text, &len, err))) return st;
        json_error_t jerr;
        json_t *root = json_loads(text, 0, &jerr);
        free(text);
        if (!root) return dw_error_set(err, DW_ERR_FORMAT, "%s: invalid JSON at line %d: %s", wf->index_path, jerr.line, jerr.text);
        json_t *map = json_object_get(root, "weight_map");
        if (!json_is_object(map)) {
            json_decref(root);
            return dw_error_set(err, DW_ERR_FORMAT, "%s: no 'weight_map' object", wf->index_path);
        }
        wf->weight_map = json_incref(map);
        json_decref(root);
        wf->files = calloc(MAX_SHARDS, sizeof *wf->files);
        wf->file_names = calloc(MAX_SHARDS, sizeof *wf->file_names);
        if (!wf->files || !wf->file_names) {
            dw_error_set(err, DW_ERR_NO_MEMORY, "%s: out of memory", wf->index_path);
            dw__weights_close(wf);
            return DW_ERR_NO_MEMORY;
        }
        const char *tensor;
        json_t *file;
        json_object_foreach(wf->weight_map, tensor, file) {
            const char *fname = json_is_string(file) ? json_string_value(file) : NULL;
            /* the message is written before closing: closing frees the map (tensor) and clears wf */
            if (!fname || !*fname || strchr(fname, '/') || !strcmp(fname, "..")) {
                dw_error_set(err, DW_ERR_FORMAT, "%s: tensor '%s' maps to an invalid file name", wf->index_path, tensor);
                dw__weights_close(wf);
                return DW_ERR_FORMAT;
            }
            int known = 0;
            for (int i = 0; i < wf->n_files && !known; i++) known = !strcmp(wf->file_names[i], fname);
            if (known) continue;
            if (wf->n_files == MAX_SHARDS) {
                dw_error_set(err, DW_ERR_LIMIT, "%s: more than %d shards", wf->index_path, MAX_SHARDS);
                dw__weights_close(wf);
                return DW_ERR_LIMIT;
            }
            if ((st = open_one(wf, fname, err))) {
                dw__weights_close(wf);
                return st;
            }
        }
        return DW_OK;
    }
    if (!file_exists(single))
        return dw_error_set(err, DW_ERR_NOT_FOUND, "%s: no model.safetensors or model.safetensors.index.json", dir);
    wf->files = calloc(1, sizeof *wf->files);
    wf->file_names = calloc(1, sizeof *wf->file_names);
    if (!wf->files || !wf->file_names) {
        dw__weights_close(wf);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "%s: out of memory", single);
    }
    if ((st = open_one(wf, "model.safetensors", err))) {
        dw__weights_close(wf);
        return st;
    }
    return DW_OK;
}

void dw__weights_close(dw__weight_files *wf) {
    for (int i = 0; i < wf->n_files; i++) {
        dw_safetensors_close(wf->files[i]);
        free(wf->file_names[i]);
    }
    free(wf->files);
    free(wf->file_names);
    if (wf->weight_map) json_decref(wf->weight_map);
    memset(wf, 0, sizeof *wf);
}

static void format_shape(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, size - off, "[");
    for (int i = 0; i < ndim && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (off < size) snprintf(buf + off, size - off, "]");
}

dw_status dw__weights_find(const dw__weight_files *wf, const char *name, int ndim, const int64_t *shape, int required,
                           const dw_tensor_info **out, dw_error *err) {
    *out = NULL;
    const dw_tensor_info *ti = NULL;
    int file = -1;
    if (wf->weight_map) {
        json_t *f = json_object_get(wf->weight_map, name);
        if (!f) {
            if (!required) return DW_ERR_NOT_FOUND;
            return dw_error_set(err, DW_ERR_NOT_FOUND, "%s: tensor '%s' is missing from weight_map", wf->index_path, name);
        }
        for (int i = 0; i < wf->n_files; i++)
            if (!strcmp(wf->file_names[i], json_string_value(f))) file = i;
        ti = dw_safetensors_find(wf->files[file], name);
        if (!ti)
            return dw_error_set(err, DW_ERR_NOT_FOUND, "%s: tensor '%s' is missing (weight_map names this file)",
                                dw_safetensors_path(wf->files[file]), name);
    } else {
        file = 0;
        ti = dw_safetensors_find(wf->files[0], name);
        if (!ti) {
            if (!required) return DW_ERR_NOT_FOUND;
            return dw_error_set(err, DW_ERR_NOT_FOUND, "%s: tensor '%s' is missing", dw_safetensors_path(wf->files[0]), name);
        }
    }
    const char *path = dw_safetensors_path(wf->files[file]);
    if (ti->dtype != DW_DTYPE_BF16 && ti->dtype != DW_DTYPE_F16 && ti->dtype != DW_DTYPE_F32)
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (supported: BF16, F16, F32)", path, name,
                            dw_dtype_name(ti->dtype));
    int same = ti->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = ti->shape[i] == shape[i];
    if (!same) {
        char got[128], want[128];
        format_shape(got, sizeof got, ti->ndim, ti->shape);
        format_shape(want, sizeof want, ndim, shape);
        return dw_error_set(err, DW_ERR_FORMAT, "%s: tensor '%s' has shape %s, config.json implies %s", path, name, got, want);
    }
    if ((uintptr_t)ti->data % dw_dtype_size(ti->dtype) != 0)
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "%s: tensor '%s' is not aligned to its element size", path, name);
    *out = ti;
    return DW_OK;
}
