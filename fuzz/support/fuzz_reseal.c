/* Resealing fuzzed snapshot containers: the tensors and metadata of the input written again
 * through the snapshot writer, which computes a valid checksum (src/snapshot/snapshot_file.h).
 * Without it nearly every mutation would stop at "checksum mismatch". */
#include <stdlib.h>
#include <string.h>

#include "driftwood/safetensors.h"
#include "fuzz_support.h"
#include "snapshot/snapshot_file.h"

/* The metadata the snapshot writer sets itself. */
static int written_by_writer(const char *key) {
    return !strcmp(key, "format") || !strcmp(key, "format_version") || !strcmp(key, "creator") ||
           !strcmp(key, "checksum");
}

static int reseal(const char *path, const dw_safetensors *in, const char *module_sha256) {
    const char *format = dw_safetensors_metadata(in, "format");
    const char *version = dw_safetensors_metadata(in, "format_version");
    char *end;
    long v = version ? strtol(version, &end, 10) : 0;
    if (!format || !version || !*version || *end) return 0;
    dw_error err;
    dw__snapfile_writer *w;
    if (dw__snapfile_writer_new(format, (int)v, &w, &err) != DW_OK) return 0;
    int ok = 1;
    for (size_t i = 0; ok && i < dw_safetensors_metadata_count(in); i++) {
        const char *k, *val;
        dw_safetensors_metadata_entry(in, i, &k, &val);
        if (written_by_writer(k) || (module_sha256 && !strcmp(k, "module_sha256"))) continue;
        ok = dw__snapfile_meta(w, k, val, &err) == DW_OK;
    }
    if (ok && module_sha256) ok = dw__snapfile_meta(w, "module_sha256", module_sha256, &err) == DW_OK;
    for (size_t i = 0; ok && i < dw_safetensors_count(in); i++) {
        const dw_tensor_info *t = dw_safetensors_tensor(in, i);
        ok = dw__snapfile_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, &err) == DW_OK;
    }
    if (ok) ok = dw__snapfile_write(w, path, NULL, &err) == DW_OK;
    dw__snapfile_writer_free(w);
    return ok;
}

void fuzz_write_snapshot(const char *path, const uint8_t *data, size_t len, const char *module_sha256) {
    dw_safetensors *in;
    dw_error err;
    int done = 0;
    if (dw_safetensors_open_memory(data, len, "<fuzz input>", &in, &err) == DW_OK) {
        done = reseal(path, in, module_sha256);
        dw_safetensors_close(in);
    }
    if (!done) fuzz_write_file(path, data, len);
}
