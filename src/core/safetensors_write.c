/* Safetensors writer: builds the JSON header, then streams header and tensor data into an
 * atomically replaced file. Layout rules are in include/driftwood/safetensors.h. */
#include "driftwood/safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

typedef struct wtensor {
    char *name;
    dw_dtype dtype;
    int ndim;
    int64_t shape[DW_SAFETENSORS_MAX_DIMS];
    const void *data; /* the caller's, not copied */
    size_t nbytes;
    size_t order;     /* insertion index, for a stable layout sort */
} wtensor;

struct dw_safetensors_writer {
    wtensor *tensors;
    size_t count, cap;
    char **meta_keys, **meta_values; /* insertion order */
    size_t meta_count, meta_cap;
};

/* Grows *items (of elem bytes each) so that it holds at least need; returns 0 on failure. */
static int grow(void **items, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need) ncap *= 2;
    void *p = realloc(*items, ncap * elem);
    if (!p) return 0;
    *items = p;
    *cap = ncap;
    return 1;
}

/* Whether s is valid UTF-8 (jansson validates when it makes a string). */
static int utf8_ok(const char *s) {
    json_t *j = json_string(s);
    if (!j) return 0;
    json_decref(j);
    return 1;
}

dw_status dw_safetensors_writer_new(dw_safetensors_writer **out, dw_error *err) {
    *out = calloc(1, sizeof **out);
    if (!*out) return dw_error_set(err, DW_ERR_NO_MEMORY, "safetensors writer: out of memory");
    return DW_OK;
}

void dw_safetensors_writer_free(dw_safetensors_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->count; i++) free(w->tensors[i].name);
    for (size_t i = 0; i < w->meta_count; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->tensors);
    free(w->meta_keys);
    free(w->meta_values);
    free(w);
}

dw_status dw_safetensors_writer_add(dw_safetensors_writer *w, const char *name, dw_dtype dtype, int ndim,
                                    const int64_t *shape, const void *data, size_t nbytes, dw_error *err) {
    if (!name || !*name) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "safetensors writer: empty tensor name");
    if (strcmp(name, "__metadata__") == 0)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "safetensors writer: '__metadata__' is reserved");
    if (!utf8_ok(name))
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "safetensors writer: tensor name is not valid UTF-8");
    if (dw_dtype_size(dtype) == 0)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '%s': invalid dtype %d", name,
                            (int)dtype);
    if (ndim < 0 || ndim > DW_SAFETENSORS_MAX_DIMS || (ndim > 0 && !shape))
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '%s': ndim %d not in 0..%d",
                            name, ndim, DW_SAFETENSORS_MAX_DIMS);
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '%s': shape[%d] = %lld",
                                name, d, (long long)shape[d]);
        if (shape[d] != 0 && numel > SIZE_MAX / (uint64_t)shape[d])
            return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '%s': shape overflows", name);
        numel *= (size_t)shape[d];
    }
    size_t esize = dw_dtype_size(dtype);
    if (numel > SIZE_MAX / esize || numel * esize != nbytes)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT,
                            "safetensors writer: tensor '%s': shape x %s is %zu elements but %zu bytes were given",
                            name, dw_dtype_name(dtype), numel, nbytes);
    if (!data && nbytes > 0)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "safetensors writer: tensor '%s': NULL data", name);
    for (size_t i = 0; i < w->count; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "safetensors writer: duplicate tensor '%s'", name);

    if (!grow((void **)&w->tensors, &w->cap, w->count + 1, sizeof *w->tensors))
        return dw_error_set(err, DW_ERR_NO_MEMORY, "safetensors writer: out of memory");
    wtensor *t = &w->tensors[w->count];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return dw_error_set(err, DW_ERR_NO_MEMORY, "safetensors writer: out of memory");
    t->dtype = dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->data = data;
    t->nbytes = nbytes;
    t->order = w->count++;
    return DW_OK;
}

dw_status dw_safetensors_writer_set_metadata(dw_safetensors_writer *w, const char *key, const char *value,
                                             dw_error *err) {
    if (!key || !value) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "safetensors writer: NULL metadata");
    if (!utf8_ok(key) || !utf8_ok(value))
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "safetensors writer: metadata '%s' is not valid UTF-8",
                            key);
    char *v = strdup(value);
    if (!v) return dw_error_set(err, DW_ERR_NO_MEMORY, "safetensors writer: out of memory");
    for (size_t i = 0; i < w->meta_count; i++) {
        if (strcmp(w->meta_keys[i], key) == 0) {
            free(w->meta_values[i]);
            w->meta_values[i] = v;
            return DW_OK;
        }
    }
    size_t cap = w->meta_cap;
    char *k = strdup(key);
    if (!k || !grow((void **)&w->meta_keys, &cap, w->meta_count + 1, sizeof(char *)) ||
        !grow((void **)&w->meta_values, &w->meta_cap, w->meta_count + 1, sizeof(char *))) {
        free(k);
        free(v);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "safetensors writer: out of memory");
    }
    w->meta_keys[w->meta_count] = k;
    w->meta_values[w->meta_count] = v;
    w->meta_count++;
    return DW_OK;
}

/* Layout order: larger elements first (keeps every tensor aligned to its element size),
 * insertion order among equals. */
static int by_layout(const void *a, const void *b) {
    const wtensor *x = *(wtensor *const *)a, *y = *(wtensor *const *)b;
    size_t sx = dw_dtype_size(x->dtype), sy = dw_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Builds the padded header text for tensors in `order`; *out is malloc'd, *len a multiple of 8. */
static dw_status build_header(const dw_safetensors_writer *w, wtensor **order, char **out, size_t *len,
                              const char *path, dw_error *err) {
    json_t *root = json_object();
    int bad = !root;
    if (!bad && w->meta_count > 0) {
        json_t *meta = json_object();
        bad = !meta || json_object_set_new(root, "__metadata__", meta) != 0;
        for (size_t i = 0; !bad && i < w->meta_count; i++)
            bad = json_object_set_new(meta, w->meta_keys[i], json_string(w->meta_values[i])) != 0;
    }
    size_t offset = 0;
    for (size_t i = 0; !bad && i < w->count; i++) {
        const wtensor *t = order[i];
        json_t *shape = json_array();
        for (int d = 0; shape && d < t->ndim; d++)
            if (json_array_append_new(shape, json_integer(t->shape[d])) != 0) bad = 1;
        json_t *offs = json_pack("[II]", (json_int_t)offset, (json_int_t)(offset + t->nbytes));
        json_t *entry = json_pack("{s:s, s:o, s:o}", "dtype", dw_dtype_name(t->dtype), "shape", shape,
                                  "data_offsets", offs);
        if (bad || !entry || json_object_set_new(root, t->name, entry) != 0) bad = 1;
        offset += t->nbytes;
    }
    char *text = bad ? NULL : json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text) return dw_error_set(err, DW_ERR_NO_MEMORY, "file %s: cannot build the safetensors header", path);

    size_t n = strlen(text);
    size_t padded = (n + 7) & ~(size_t)7;
    char *buf = malloc(padded);
    if (!buf) {
        free(text);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "file %s: out of memory", path);
    }
    memcpy(buf, text, n);
    memset(buf + n, ' ', padded - n);
    free(text);
    if (padded > DW_SAFETENSORS_MAX_HEADER) {
        free(buf);
        return dw_error_set(err, DW_ERR_LIMIT, "file %s: safetensors header of %zu bytes exceeds the %u-byte limit",
                            path, padded, DW_SAFETENSORS_MAX_HEADER);
    }
    *out = buf;
    *len = padded;
    return DW_OK;
}

dw_status dw_safetensors_writer_write(dw_safetensors_writer *w, const char *path, dw_error *err) {
    wtensor **order = malloc((w->count ? w->count : 1) * sizeof *order);
    if (!order) return dw_error_set(err, DW_ERR_NO_MEMORY, "file %s: out of memory", path);
    for (size_t i = 0; i < w->count; i++) order[i] = &w->tensors[i];
    qsort(order, w->count, sizeof *order, by_layout);

    char *header = NULL;
    size_t header_len = 0;
    dw_status st = build_header(w, order, &header, &header_len, path, err);
    if (st != DW_OK) {
        free(order);
        return st;
    }

    dw__atomic_file *af = NULL;
    st = dw__atomic_file_open(path, &af, err);
    if (st == DW_OK) {
        uint8_t len_bytes[8];
        for (int i = 0; i < 8; i++) len_bytes[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
        st = dw__atomic_file_write(af, len_bytes, 8, err);
        if (st == DW_OK) st = dw__atomic_file_write(af, header, header_len, err);
        /* Tensor data goes straight from the caller's memory to the file: no staging copy. */
        for (size_t i = 0; st == DW_OK && i < w->count; i++)
            if (order[i]->nbytes > 0) st = dw__atomic_file_write(af, order[i]->data, order[i]->nbytes, err);
        if (st == DW_OK) st = dw__atomic_file_commit(af, err);
        else dw__atomic_file_abort(af);
    }
    free(header);
    free(order);
    return st;
}
