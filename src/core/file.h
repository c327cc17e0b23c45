/* Internal file helpers: read-only mappings and atomic replacement of a file (temp file + fsync
 * + rename + fsync of the folder); the whole-file read and write are public (driftwood/file.h). */
#ifndef DW_CORE_FILE_H
#define DW_CORE_FILE_H

#include <stddef.h>

#include "driftwood/error.h"
#include "driftwood/file.h"


/* A read-only, private mapping of a whole file. An empty file maps to data == NULL, len == 0. */
typedef struct dw__mapping {
    const void *data;
    size_t len;
} dw__mapping;

/* Maps the file at path read-only. The descriptor is closed before returning; the mapping
 * stays valid until dw__file_unmap. Pages are loaded lazily by the kernel. */
dw_status dw__file_map(const char *path, dw__mapping *map /* OUT */, dw_error *err);

/* Unmaps (no-op for an empty mapping) and clears *map. */
void dw__file_unmap(dw__mapping *map);

/* An atomic replacement of `path`: writes go to a temporary file in the same folder
 * (named "<path>.tmp-<pid>-<n>") which only takes the place of `path` on commit. Until then,
 * and after any crash, `path` keeps its previous contents (or stays absent). */
typedef struct dw__atomic_file dw__atomic_file;

/* Creates the temporary file (mode 0666 less the umask). *out is NULL on failure. */
dw_status dw__atomic_file_open(const char *path, dw__atomic_file **out /* OUT */, dw_error *err);

/* Appends len bytes (any size: partial writes and EINTR are retried). On failure the caller
 * should abort. */
dw_status dw__atomic_file_write(dw__atomic_file *af, const void *buf, size_t len, dw_error *err);

/* fsyncs the temporary file, renames it over path and fsyncs the folder. Always consumes af:
 * on failure the temporary file is removed and path is untouched. */
dw_status dw__atomic_file_commit(dw__atomic_file *af, dw_error *err);

/* Closes and removes the temporary file, leaving path as it was; consumes af (NULL is a no-op). */
void dw__atomic_file_abort(dw__atomic_file *af);


/* Driftwood's per-user cache folder for `leaf` ("modules", "fingerprints"): $DW_CACHE/leaf, else
 * $XDG_CACHE_HOME/driftwood/leaf, else $HOME/.cache/driftwood/leaf. Returns 0 (out empty) when none
 * of them is set or the path does not fit. Creates nothing. */
int dw__cache_dir(const char *leaf, char *out, size_t size);

#endif
