/* Whole-file helpers that Driftwood uses for every file it reads or writes, public for tools and
 * embedders: a bounded read and an atomic replacement (a crash leaves the old file or the new,
 * never a mix). */
#ifndef DRIFTWOOD_FILE_H
#define DRIFTWOOD_FILE_H

#include <stddef.h>

#include "driftwood/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads the whole file at path into a fresh malloc'd buffer, NUL-terminated (so text can be
 * used as a C string; the NUL is not counted in *len). A file larger than max bytes fails with
 * DW_ERR_LIMIT. On success the caller frees *buf; on failure *buf is NULL. Messages name the file. */
dw_status dw_file_read_all(const char *path, size_t max, char **buf /* OUT */, size_t *len /* OUT */,
                            dw_error *err);

/* Atomically replaces path with len bytes from buf (open + write + commit). */
dw_status dw_file_write_atomic(const char *path, const void *buf, size_t len, dw_error *err);

#ifdef __cplusplus
}
#endif

#endif
