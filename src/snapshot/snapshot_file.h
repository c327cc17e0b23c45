/* The checked container under every Driftwood snapshot: a safetensors file whose metadata
 * carries "format", "format_version", "creator" and a "checksum" — "xxh3-128:" and 32 hex
 * digits of XXH3-128 (xxHash 0.8, seed 0; big-endian high64 then low64) over a manifest:
 *
 *   for each tensor, in name order:  name NUL dtype-name NUL ndim(u32 LE) shape(i64 LE each)
 *                                    XXH3-128(data) (high64 LE, low64 LE)
 *   then for each metadata entry except "checksum", in key order:  key NUL value NUL
 *
 * Layout-independent (the order of tensors in the file does not matter) and complete (a flipped
 * bit anywhere in a tensor or a metadata value changes it). XXH3 rather than SHA-256 because
 * restoring a 4096-token cache must cost milliseconds: tensors are hashed in parallel, far faster
 * than SHA-256. It guards against corruption, not against an attacker (files are the user's own).
 * Written atomically (temporary file, fsync, rename, fsync of the folder), so a crash mid-save
 * leaves the previous file. */
#ifndef DW_SNAPSHOT_SNAPSHOT_FILE_H
#define DW_SNAPSHOT_SNAPSHOT_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/error.h"
#include "driftwood/safetensors.h"

#define DW_SNAPSHOT_CREATOR "driftwood 0.1"

typedef struct dw__snapfile_writer dw__snapfile_writer;

/* A writer for a file of the given format ("driftwood-kv", "driftwood-actor") and version. */
dw_status dw__snapfile_writer_new(const char *format, int version, dw__snapfile_writer **out, dw_error *err);
/* Adds a tensor; data is referenced (not copied) until write. */
dw_status dw__snapfile_add(dw__snapfile_writer *w, const char *name, dw_dtype dtype, int ndim, const int64_t *shape,
                           const void *data, size_t nbytes, dw_error *err);
dw_status dw__snapfile_meta(dw__snapfile_writer *w, const char *key, const char *value, dw_error *err);
dw_status dw__snapfile_meta_long(dw__snapfile_writer *w, const char *key, long long value, dw_error *err);
/* Computes the checksum and writes the file atomically. *bytes_out (may be NULL): file size. */
dw_status dw__snapfile_write(dw__snapfile_writer *w, const char *path, uint64_t *bytes_out, dw_error *err);
void dw__snapfile_writer_free(dw__snapfile_writer *w);

/* Opens path, checks that it is a Driftwood snapshot of `format` with a version this build
 * reads, and verifies the checksum. Every failure is one line naming the file: "not a
 * Driftwood snapshot", "a driftwood-kv file, not driftwood-actor", "checksum mismatch
 * (the file is corrupted)", or the safetensors reader's own message for a damaged container. */
dw_status dw__snapfile_open(const char *path, const char *format, int max_version, dw_safetensors **out,
                            dw_error *err);

/* A required metadata value as a number; a missing or malformed one is a format error. */
dw_status dw__snapfile_meta_get_long(const dw_safetensors *st, const char *key, long long min, long long max,
                                     long long *out, dw_error *err);

/* A required tensor with the given dtype, ndim and (where shape[i] >= 0) dimensions. */
dw_status dw__snapfile_tensor(const dw_safetensors *st, const char *name, dw_dtype dtype, int ndim,
                              const int64_t *shape, const dw_tensor_info **out, dw_error *err);

#endif
