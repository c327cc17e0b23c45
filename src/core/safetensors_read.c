/* Safetensors reader: maps a file (or takes caller bytes), validates the header strictly and
 * exposes each tensor as a pointer into the data. Format and rules: include/driftwood/safetensors.h. */
#include "driftwood/safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

struct dw_safetensors {
    char *label;            /* path or caller's label, for messages */
    dw__mapping map;        /* the file mapping (empty for open_memory) */
    const uint8_t *bytes;   /* the whole file */
    size_t len;
    json_t *header;         /* parsed header: owns the name and metadata strings */
    size_t count;
    dw_tensor_info *tensors; /* sorted by data offset */
    size_t *by_name;        /* indices into tensors, sorted by name */
    size_t meta_count;
    const char **meta_keys; /* header order */
    const char **meta_values;
};

/* Real safetensors dtypes that dw_dtype does not cover: refused as unsupported, not malformed. */
static const char *const unsupported_dtypes[] = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2",
                                                 "F4", "C64", NULL};

/* ------------------------------------------------------------------------------------ */
/* Helpers                                                                               */

/* Returns the offset of the first byte that is not part of valid UTF-8 (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or len when all of it is valid. */
static size_t utf8_invalid_at(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (len - i <= n) return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += n + 1;
    }
    return len;
}

static int by_offset(const void *a, const void *b) {
    const dw_tensor_info *x = a, *y = b;
    const uint8_t *xa = x->data, *ya = y->data;
    if (xa != ya) return xa < ya ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* qsort has no context argument: the name sort reads the tensor array through this. */
static _Thread_local const dw_tensor_info *sort_tensors;

static int by_name(const void *a, const void *b) {
    return strcmp(sort_tensors[*(const size_t *)a].name, sort_tensors[*(const size_t *)b].name);
}

/* Reads a non-negative JSON integer; returns 0 when j is anything else. */
static int get_uint(const json_t *j, uint64_t *out) {
    if (!json_is_integer(j) || json_integer_value(j) < 0) return 0;
    *out = (uint64_t)json_integer_value(j);
    return 1;
}

/* ------------------------------------------------------------------------------------ */
/* Header parsing                                                                        */

#define FAIL(status, ...)                                                                      \
    do {                                                                                       \
        char msg_[DW_ERROR_MESSAGE_MAX];                                                       \
        snprintf(msg_, sizeof msg_, __VA_ARGS__);                                              \
        return dw_error_set(err, status, "file %s: %s", st->label, msg_);                      \
    } while (0)

/* Fills tensor *t from the header entry value for name; data offsets are checked against
 * data_len and t->data set to data + begin. */
static dw_status parse_tensor(dw_safetensors *st, const char *name, json_t *value, const uint8_t *data,
                              size_t data_len, dw_tensor_info *t, dw_error *err) {
    if (!json_is_object(value)) FAIL(DW_ERR_FORMAT, "tensor '%s': header entry is not a JSON object", name);
    t->name = name;

    json_t *dtype = json_object_get(value, "dtype");
    if (!json_is_string(dtype)) FAIL(DW_ERR_FORMAT, "tensor '%s': missing or non-string \"dtype\"", name);
    const char *dname = json_string_value(dtype);
    if (dw_dtype_parse(dname, &t->dtype) != DW_OK) {
        for (int i = 0; unsupported_dtypes[i]; i++)
            if (strcmp(dname, unsupported_dtypes[i]) == 0)
                FAIL(DW_ERR_UNSUPPORTED, "tensor '%s': dtype %s is not supported", name, dname);
        FAIL(DW_ERR_FORMAT, "tensor '%s': unknown dtype '%s'", name, dname);
    }

    json_t *shape = json_object_get(value, "shape");
    if (!json_is_array(shape)) FAIL(DW_ERR_FORMAT, "tensor '%s': missing or non-array \"shape\"", name);
    size_t ndim = json_array_size(shape);
    if (ndim > DW_SAFETENSORS_MAX_DIMS)
        FAIL(DW_ERR_FORMAT, "tensor '%s': shape has %zu dimensions (at most %d supported)", name, ndim,
             DW_SAFETENSORS_MAX_DIMS);
    t->ndim = (int)ndim;
    /* Checked like the reference: the running product may not overflow, even if a later 0
     * would bring it back. */
    size_t numel = 1;
    for (size_t d = 0; d < ndim; d++) {
        uint64_t dim;
        if (!get_uint(json_array_get(shape, d), &dim))
            FAIL(DW_ERR_FORMAT, "tensor '%s': shape[%zu] is not a non-negative integer", name, d);
        if (dim != 0 && numel > SIZE_MAX / dim)
            FAIL(DW_ERR_FORMAT, "tensor '%s': shape overflows (element count too large)", name);
        numel *= (size_t)dim;
        t->shape[d] = (int64_t)dim;
    }
    size_t esize = dw_dtype_size(t->dtype);
    if (numel > SIZE_MAX / esize) FAIL(DW_ERR_FORMAT, "tensor '%s': shape overflows (byte size too large)", name);
    t->nbytes = numel * esize;

    json_t *offsets = json_object_get(value, "data_offsets");
    uint64_t begin, end;
    if (!json_is_array(offsets) || json_array_size(offsets) != 2 || !get_uint(json_array_get(offsets, 0), &begin) ||
        !get_uint(json_array_get(offsets, 1), &end))
        FAIL(DW_ERR_FORMAT, "tensor '%s': \"data_offsets\" is not two non-negative integers", name);
    if (begin > end) FAIL(DW_ERR_FORMAT, "tensor '%s': data_offsets [%llu, %llu] end before they begin", name,
                          (unsigned long long)begin, (unsigned long long)end);
    if (end > data_len)
        FAIL(DW_ERR_FORMAT, "tensor '%s': data_offsets [%llu, %llu] out of range (data section is %zu bytes)",
             name, (unsigned long long)begin, (unsigned long long)end, data_len);
    if (end - begin != t->nbytes)
        FAIL(DW_ERR_FORMAT, "tensor '%s': shape x %s size is %zu bytes but data_offsets span %llu", name,
             dw_dtype_name(t->dtype), t->nbytes, (unsigned long long)(end - begin));
    t->data = data + begin;
    return DW_OK;
}

static dw_status parse_metadata(dw_safetensors *st, json_t *meta, dw_error *err) {
    if (!json_is_object(meta)) FAIL(DW_ERR_FORMAT, "\"__metadata__\" is not a JSON object");
    size_t n = json_object_size(meta);
    st->meta_keys = calloc(n ? n : 1, sizeof *st->meta_keys);
    st->meta_values = calloc(n ? n : 1, sizeof *st->meta_values);
    if (!st->meta_keys || !st->meta_values) FAIL(DW_ERR_NO_MEMORY, "out of memory for metadata");
    const char *key;
    json_t *value;
    json_object_foreach(meta, key, value) {
        if (!json_is_string(value)) FAIL(DW_ERR_FORMAT, "metadata value for key '%s' is not a string", key);
        st->meta_keys[st->meta_count] = key;
        st->meta_values[st->meta_count] = json_string_value(value);
        st->meta_count++;
    }
    return DW_OK;
}

static dw_status parse(dw_safetensors *st, dw_error *err) {
    if (st->len < 8)
        FAIL(DW_ERR_FORMAT, "%zu bytes is too short for a safetensors file (the header length alone is 8)",
             st->len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | st->bytes[i];
    if (n > DW_SAFETENSORS_MAX_HEADER)
        FAIL(DW_ERR_FORMAT, "header length %llu is absurd (limit %u bytes)", (unsigned long long)n,
             DW_SAFETENSORS_MAX_HEADER);
    if (n > st->len - 8)
        FAIL(DW_ERR_FORMAT, "header length %llu is larger than the file (%zu bytes follow the length field)",
             (unsigned long long)n, st->len - 8);
    const uint8_t *hdr = st->bytes + 8;
    size_t bad = utf8_invalid_at(hdr, (size_t)n);
    if (bad != n) FAIL(DW_ERR_FORMAT, "header is not valid UTF-8 (byte %zu of the header)", bad);

    json_error_t jerr;
    st->header = json_loadb((const char *)hdr, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!st->header) FAIL(DW_ERR_FORMAT, "header is not valid JSON: %s (header byte %d)", jerr.text, jerr.position);
    if (!json_is_object(st->header)) FAIL(DW_ERR_FORMAT, "header is not a JSON object");

    const uint8_t *data = hdr + n;
    size_t data_len = st->len - 8 - (size_t)n;
    size_t cap = json_object_size(st->header);
    st->tensors = calloc(cap ? cap : 1, sizeof *st->tensors);
    st->by_name = calloc(cap ? cap : 1, sizeof *st->by_name);
    if (!st->tensors || !st->by_name) FAIL(DW_ERR_NO_MEMORY, "out of memory for %zu tensors", cap);

    const char *key;
    json_t *value;
    json_object_foreach(st->header, key, value) {
        dw_status s;
        if (strcmp(key, "__metadata__") == 0) s = parse_metadata(st, value, err);
        else s = parse_tensor(st, key, value, data, data_len, &st->tensors[st->count++], err);
        if (s != DW_OK) return s;
    }

    /* The tensors must tile [0, data_len): sorted by offset, each starts where the last ended. */
    qsort(st->tensors, st->count, sizeof *st->tensors, by_offset);
    const uint8_t *expect = data;
    for (size_t i = 0; i < st->count; i++) {
        const dw_tensor_info *t = &st->tensors[i];
        const uint8_t *p = t->data;
        if (p < expect)
            FAIL(DW_ERR_FORMAT, "tensor '%s' at data offset %zu overlaps the tensor before it (which ends at %zu)",
                 t->name, (size_t)(p - data), (size_t)(expect - data));
        if (p > expect)
            FAIL(DW_ERR_FORMAT, "hole in the data section: bytes %zu..%zu belong to no tensor (next is '%s')",
                 (size_t)(expect - data), (size_t)(p - data), t->name);
        expect = p + t->nbytes;
    }
    if (expect != data + data_len)
        FAIL(DW_ERR_FORMAT, "data section has %zu bytes after the last tensor that belong to no tensor",
             (size_t)(data + data_len - expect));

    for (size_t i = 0; i < st->count; i++) st->by_name[i] = i;
    sort_tensors = st->tensors;
    qsort(st->by_name, st->count, sizeof *st->by_name, by_name);
    return DW_OK;
}

#undef FAIL

/* ------------------------------------------------------------------------------------ */
/* Opening and closing                                                                   */

static dw_status open_common(dw_safetensors *st, dw_safetensors **out, dw_error *err) {
    dw_status s = parse(st, err);
    if (s != DW_OK) {
        dw_safetensors_close(st);
        return s;
    }
    *out = st;
    return DW_OK;
}

dw_status dw_safetensors_open(const char *path, dw_safetensors **out, dw_error *err) {
    *out = NULL;
    dw_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->label = strdup(path))) {
        free(st);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "file %s: out of memory", path);
    }
    dw_status s = dw__file_map(path, &st->map, err);
    if (s != DW_OK) {
        dw_safetensors_close(st);
        return s;
    }
    st->bytes = st->map.data;
    st->len = st->map.len;
    return open_common(st, out, err);
}

dw_status dw_safetensors_open_memory(const void *bytes, size_t len, const char *label, dw_safetensors **out,
                                     dw_error *err) {
    *out = NULL;
    if (!label) label = "<memory>";
    if (!bytes && len > 0) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "file %s: NULL bytes", label);
    dw_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->label = strdup(label))) {
        free(st);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "file %s: out of memory", label);
    }
    st->bytes = bytes;
    st->len = len;
    return open_common(st, out, err);
}

void dw_safetensors_close(dw_safetensors *st) {
    if (!st) return;
    dw__file_unmap(&st->map);
    if (st->header) json_decref(st->header);
    free(st->tensors);
    free(st->by_name);
    free(st->meta_keys);
    free(st->meta_values);
    free(st->label);
    free(st);
}

/* ------------------------------------------------------------------------------------ */
/* Queries                                                                               */

const char *dw_safetensors_path(const dw_safetensors *st) { return st->label; }

size_t dw_safetensors_count(const dw_safetensors *st) { return st->count; }

const dw_tensor_info *dw_safetensors_tensor(const dw_safetensors *st, size_t i) {
    return i < st->count ? &st->tensors[i] : NULL;
}

const dw_tensor_info *dw_safetensors_find(const dw_safetensors *st, const char *name) {
    size_t lo = 0, hi = st->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const dw_tensor_info *t = &st->tensors[st->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

const char *dw_safetensors_metadata(const dw_safetensors *st, const char *key) {
    for (size_t i = 0; i < st->meta_count; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

size_t dw_safetensors_metadata_count(const dw_safetensors *st) { return st->meta_count; }

dw_status dw_safetensors_metadata_entry(const dw_safetensors *st, size_t i, const char **key, const char **value) {
    if (i >= st->meta_count) return DW_ERR_NOT_FOUND;
    *key = st->meta_keys[i];
    *value = st->meta_values[i];
    return DW_OK;
}
