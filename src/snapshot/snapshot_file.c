/* The checked snapshot container: writing with a checksum, opening with verification. */
#include "snapshot/snapshot_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driftwood/threadpool.h"

/* xxHash is used header-only (Debian libxxhash-dev): no library to link or carry. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#define MAX_ENTRIES 4096

typedef struct entry {
    char *name;
    dw_dtype dtype;
    int ndim;
    int64_t shape[8];
    const void *data;
    size_t nbytes;
} entry;

typedef struct meta {
    char *key, *value;
} meta;

struct dw__snapfile_writer {
    dw_safetensors_writer *st;
    entry *tensors;
    size_t n_tensors, cap_tensors;
    meta *metas;
    size_t n_metas, cap_metas;
};

dw_status dw__snapfile_writer_new(const char *format, int version, dw__snapfile_writer **out, dw_error *err) {
    dw__snapfile_writer *w = calloc(1, sizeof *w);
    if (!w) return dw_error_set(err, DW_ERR_NO_MEMORY, "snapshot: out of memory");
    dw_status st = dw_safetensors_writer_new(&w->st, err);
    if (st == DW_OK) st = dw__snapfile_meta(w, "format", format, err);
    if (st == DW_OK) st = dw__snapfile_meta_long(w, "format_version", version, err);
    if (st == DW_OK) st = dw__snapfile_meta(w, "creator", DW_SNAPSHOT_CREATOR, err);
    if (st != DW_OK) {
        dw__snapfile_writer_free(w);
        return st;
    }
    *out = w;
    return DW_OK;
}

dw_status dw__snapfile_add(dw__snapfile_writer *w, const char *name, dw_dtype dtype, int ndim, const int64_t *shape,
                           const void *data, size_t nbytes, dw_error *err) {
    dw_status st = dw_safetensors_writer_add(w->st, name, dtype, ndim, shape, data, nbytes, err);
    if (st != DW_OK) return st;
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 32;
        entry *t = realloc(w->tensors, cap * sizeof *t);
        if (!t) return dw_error_set(err, DW_ERR_NO_MEMORY, "snapshot: out of memory");
        w->tensors = t, w->cap_tensors = cap;
    }
    entry *e = &w->tensors[w->n_tensors];
    memset(e, 0, sizeof *e);
    if (!(e->name = strdup(name))) return dw_error_set(err, DW_ERR_NO_MEMORY, "snapshot: out of memory");
    e->dtype = dtype, e->ndim = ndim, e->data = data, e->nbytes = nbytes;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    w->n_tensors++;
    return DW_OK;
}

dw_status dw__snapfile_meta(dw__snapfile_writer *w, const char *key, const char *value, dw_error *err) {
    if (w->n_metas == w->cap_metas) {
        size_t cap = w->cap_metas ? w->cap_metas * 2 : 32;
        meta *m = realloc(w->metas, cap * sizeof *m);
        if (!m) return dw_error_set(err, DW_ERR_NO_MEMORY, "snapshot: out of memory");
        w->metas = m, w->cap_metas = cap;
    }
    w->metas[w->n_metas] = (meta){strdup(key), strdup(value)};
    if (!w->metas[w->n_metas].key || !w->metas[w->n_metas].value)
        return dw_error_set(err, DW_ERR_NO_MEMORY, "snapshot: out of memory");
    w->n_metas++;
    return dw_safetensors_writer_set_metadata(w->st, key, value, err);
}

dw_status dw__snapfile_meta_long(dw__snapfile_writer *w, const char *key, long long value, dw_error *err) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", value);
    return dw__snapfile_meta(w, key, buf, err);
}

/* --- the canonical digest, shared by writer and reader ------------------------------------- */

typedef struct digest_item {
    const char *name;
    dw_dtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data;
    size_t nbytes;
    XXH128_hash_t hash; /* of data, filled by digest() */
} digest_item;

static int by_item_name(const void *a, const void *b) {
    return strcmp(((const digest_item *)a)->name, ((const digest_item *)b)->name);
}
static int by_key(const void *a, const void *b) {
    return strcmp(((const meta *)a)->key, ((const meta *)b)->key);
}

/* Hashes each tensor's data on the thread pool (one task per tensor). */
static void hash_tensor(void *arg, int task, int thread) {
    digest_item *t = (digest_item *)arg + task;
    t->hash = XXH3_128bits(t->data, t->nbytes);
}

#define CHECKSUM_PREFIX "xxh3-128:"
#define CHECKSUM_SIZE (sizeof CHECKSUM_PREFIX - 1 + 32 + 1)

static void digest(digest_item *items, size_t n_items, meta *metas, size_t n_metas, char out[CHECKSUM_SIZE]) {
    qsort(items, n_items, sizeof *items, by_item_name);
    qsort(metas, n_metas, sizeof *metas, by_key);
    if (n_items) dw_threadpool_run(dw_threadpool_global(), (int)n_items, hash_tensor, items);
    XXH3_state_t *h = XXH3_createState();
    XXH3_128bits_reset(h);
    for (size_t i = 0; i < n_items; i++) {
        const digest_item *t = &items[i];
        const char *dname = dw_dtype_name(t->dtype);
        uint8_t le[16];
        XXH3_128bits_update(h, t->name, strlen(t->name) + 1);
        XXH3_128bits_update(h, dname, strlen(dname) + 1);
        uint32_t nd = (uint32_t)t->ndim;
        for (int b = 0; b < 4; b++) le[b] = (uint8_t)(nd >> (8 * b));
        XXH3_128bits_update(h, le, 4);
        for (int d = 0; d < t->ndim; d++) {
            uint64_t v = (uint64_t)t->shape[d];
            for (int b = 0; b < 8; b++) le[b] = (uint8_t)(v >> (8 * b));
            XXH3_128bits_update(h, le, 8);
        }
        for (int b = 0; b < 8; b++) le[b] = (uint8_t)(t->hash.high64 >> (8 * b)), le[8 + b] = (uint8_t)(t->hash.low64 >> (8 * b));
        XXH3_128bits_update(h, le, 16);
    }
    for (size_t i = 0; i < n_metas; i++) {
        if (!strcmp(metas[i].key, "checksum")) continue;
        XXH3_128bits_update(h, metas[i].key, strlen(metas[i].key) + 1);
        XXH3_128bits_update(h, metas[i].value, strlen(metas[i].value) + 1);
    }
    XXH128_hash_t d = XXH3_128bits_digest(h);
    XXH3_freeState(h);
    snprintf(out, CHECKSUM_SIZE, CHECKSUM_PREFIX "%016llx%016llx", (unsigned long long)d.high64,
             (unsigned long long)d.low64);
}

dw_status dw__snapfile_write(dw__snapfile_writer *w, const char *path, uint64_t *bytes_out, dw_error *err) {
    digest_item *items = calloc(w->n_tensors + 1, sizeof *items);
    meta *metas = calloc(w->n_metas + 1, sizeof *metas);
    if (!items || !metas) {
        free(items), free(metas);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "snapshot: out of memory");
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        entry *e = &w->tensors[i];
        items[i] = (digest_item){e->name, e->dtype, e->ndim, e->shape, e->data, e->nbytes, {0, 0}};
    }
    memcpy(metas, w->metas, w->n_metas * sizeof *metas);
    char hex[CHECKSUM_SIZE];
    digest(items, w->n_tensors, metas, w->n_metas, hex);
    free(items), free(metas);
    dw_status st = dw_safetensors_writer_set_metadata(w->st, "checksum", hex, err);
    if (st == DW_OK) st = dw_safetensors_writer_write(w->st, path, err);
    if (st == DW_OK && bytes_out) {
        FILE *f = fopen(path, "rb");
        *bytes_out = 0;
        if (f && fseek(f, 0, SEEK_END) == 0) *bytes_out = (uint64_t)ftell(f);
        if (f) fclose(f);
    }
    return st;
}

void dw__snapfile_writer_free(dw__snapfile_writer *w) {
    if (!w) return;
    dw_safetensors_writer_free(w->st);
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    for (size_t i = 0; i < w->n_metas; i++) free(w->metas[i].key), free(w->metas[i].value);
    free(w->tensors);
    free(w->metas);
    free(w);
}

/* Prefixes "snapshot PATH" to a message from the file and safetensors layers, dropping their own
 * leading "file PATH: " so that the path is named once. */
static dw_status name_the_snapshot(dw_error *err, const char *path) {
    char file_prefix[DW_ERROR_MESSAGE_MAX];
    int n = snprintf(file_prefix, sizeof file_prefix, "file %s: ", path);
    if (n > 0 && (size_t)n < sizeof file_prefix && !strncmp(err->message, file_prefix, (size_t)n))
        memmove(err->message, err->message + n, strlen(err->message + n) + 1);
    return dw_error_prefix(err, "snapshot %s", path);
}

dw_status dw__snapfile_open(const char *path, const char *format, int max_version, dw_safetensors **out,
                            dw_error *err) {
    *out = NULL;
    dw_safetensors *st;
    dw_status s = dw_safetensors_open(path, &st, err);
    if (s != DW_OK) return err ? name_the_snapshot(err, path) : s;
    const char *fmt = dw_safetensors_metadata(st, "format");
    const char *ver = dw_safetensors_metadata(st, "format_version");
    const char *sum = dw_safetensors_metadata(st, "checksum");
    if (!fmt || strncmp(fmt, "driftwood-", 10) != 0 || !ver || !sum) {
        s = dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: not a Driftwood snapshot (no format/checksum metadata)", path);
        goto fail;
    }
    if (strcmp(fmt, format) != 0) {
        s = dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: a %s file, not %s", path, fmt, format);
        goto fail;
    }
    char *end;
    long v = strtol(ver, &end, 10);
    if (*end || v < 1 || v > max_version) {
        s = dw_error_set(err, DW_ERR_UNSUPPORTED, "snapshot %s: format version %s is not supported (this build reads 1..%d)",
                         path, ver, max_version);
        goto fail;
    }
    size_t n = dw_safetensors_count(st), nm = dw_safetensors_metadata_count(st);
    digest_item *items = calloc(n + 1, sizeof *items);
    meta *metas = calloc(nm + 1, sizeof *metas);
    if (!items || !metas) {
        free(items), free(metas);
        s = dw_error_set(err, DW_ERR_NO_MEMORY, "snapshot: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const dw_tensor_info *t = dw_safetensors_tensor(st, i);
        items[i] = (digest_item){t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, {0, 0}};
    }
    for (size_t i = 0; i < nm; i++) {
        const char *k, *val;
        dw_safetensors_metadata_entry(st, i, &k, &val);
        metas[i] = (meta){(char *)k, (char *)val};
    }
    char hex[CHECKSUM_SIZE];
    digest(items, n, metas, nm, hex);
    free(items), free(metas);
    if (strcmp(hex, sum) != 0) {
        s = dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: checksum mismatch (the file is corrupted)", path);
        goto fail;
    }
    *out = st;
    return DW_OK;
fail:
    dw_safetensors_close(st);
    return s;
}

dw_status dw__snapfile_meta_get_long(const dw_safetensors *st, const char *key, long long min, long long max,
                                     long long *out, dw_error *err) {
    const char *v = dw_safetensors_metadata(st, key);
    char *end;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < min || x > max)
        return dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: metadata '%s' is missing or out of range",
                            dw_safetensors_path(st), key);
    *out = x;
    return DW_OK;
}

dw_status dw__snapfile_tensor(const dw_safetensors *st, const char *name, dw_dtype dtype, int ndim,
                              const int64_t *shape, const dw_tensor_info **out, dw_error *err) {
    const dw_tensor_info *t = dw_safetensors_find(st, name);
    if (!t) return dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: tensor '%s' is missing", dw_safetensors_path(st), name);
    int ok = t->dtype == dtype && t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = shape[i] < 0 || t->shape[i] == shape[i];
    if (!ok)
        return dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: tensor '%s' has the wrong dtype or shape",
                            dw_safetensors_path(st), name);
    *out = t;
    return DW_OK;
}

dw_status dw_snapshot_open(const char *path, dw_safetensors **out, const char **kind, dw_error *err) {
    static const char *kinds[] = {"driftwood-kv", "driftwood-actor"};
    dw_status st = dw__snapfile_open(path, kinds[0], 1, out, err);
    *kind = kinds[0];
    if (st == DW_ERR_FORMAT && strstr(err->message, "a driftwood-actor file")) {
        st = dw__snapfile_open(path, kinds[1], 1, out, err);
        *kind = kinds[1];
    }
    if (st) *kind = NULL;
    return st;
}
