/* Getting fuzzed snapshot containers past the checksum (src/snapshot/snapshot_file.h): without
 * this nearly every mutation would stop at "checksum mismatch". Two ways, the first preferred:
 *   in place   the input's own bytes, with the checksum value (and module_sha256 when asked)
 *              overwritten where they stand in the header: the layout stays exactly as fuzzed
 *              (header length, padding, tensor order), so layout bugs stay reachable;
 *   resealed   the input's tensors and metadata written again through the snapshot writer,
 *              when in place cannot work (a value escaped or of another length, metadata the
 *              writer sets itself that differs from what it would write).
 * The valid checksum is taken from the resealed file: the manifest it covers does not depend on
 * the layout. Bytes that do not parse as safetensors are written as they are. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driftwood/safetensors.h"
#include "driftwood/snapshot.h"
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

/* Overwrites the one occurrence of "old" (quoted, as a JSON string) in the header bytes with
 * "new" of the same length; 0 when it is not there exactly once or the lengths differ. */
static int replace_in_header(uint8_t *header, size_t len, const char *old, const char *new) {
    size_t n = strlen(old);
    if (strlen(new) != n || n == 0) return 0;
    uint8_t *hit = NULL;
    for (uint8_t *p = header; p + n + 2 <= header + len; p++) {
        if (p[0] != '"' || memcmp(p + 1, old, n) != 0 || p[n + 1] != '"') continue;
        if (hit) return 0;
        hit = p;
    }
    if (!hit) return 0;
    memcpy(hit + 1, new, n);
    return 1;
}

static size_t header_length(const uint8_t *data, size_t len) {
    uint64_t n = 0;
    for (int b = 0; b < 8 && (size_t)b < len; b++) n |= (uint64_t)data[b] << (8 * b);
    return len < 8 || n > len - 8 ? 0 : (size_t)n;
}

/* The input with its checksum (and module hash) replaced in place; 1 when the file written to
 * path then opens as a valid snapshot. */
static int patch_in_place(const char *path, const uint8_t *data, size_t len, const dw_safetensors *in,
                          const char *module_sha256, const char *valid_checksum) {
    const char *old_sum = dw_safetensors_metadata(in, "checksum");
    const char *old_module = dw_safetensors_metadata(in, "module_sha256");
    size_t header_len = header_length(data, len);
    if (!old_sum || !header_len) return 0;
    uint8_t *copy = malloc(len);
    if (!copy) return 0;
    memcpy(copy, data, len);
    int ok = 1;
    if (module_sha256 && old_module && strcmp(old_module, module_sha256) != 0)
        ok = replace_in_header(copy + 8, header_len, old_module, module_sha256);
    if (ok && strcmp(old_sum, valid_checksum) != 0) ok = replace_in_header(copy + 8, header_len, old_sum, valid_checksum);
    if (ok) fuzz_write_file(path, copy, len);
    free(copy);
    dw_safetensors *check;
    const char *kind;
    dw_error err;
    if (ok && dw_snapshot_open(path, &check, &kind, &err) == DW_OK) {
        dw_safetensors_close(check);
        return 1;
    }
    return 0;
}

void fuzz_write_snapshot(const char *path, const uint8_t *data, size_t len, const char *module_sha256) {
    dw_safetensors *in, *sealed;
    dw_error err;
    if (dw_safetensors_open_memory(data, len, "<fuzz input>", &in, &err) != DW_OK) {
        fuzz_write_file(path, data, len);
        return;
    }
    const char *resealed_path = fuzz_scratch_path("resealed");
    int done = 0;
    if (reseal(resealed_path, in, module_sha256)) {
        if (dw_safetensors_open(resealed_path, &sealed, &err) == DW_OK) {
            const char *sum = dw_safetensors_metadata(sealed, "checksum");
            done = sum && patch_in_place(path, data, len, in, module_sha256, sum);
            dw_safetensors_close(sealed);
        }
        if (!done) done = rename(resealed_path, path) == 0;
    }
    if (!done) fuzz_write_file(path, data, len);
    dw_safetensors_close(in);
}
