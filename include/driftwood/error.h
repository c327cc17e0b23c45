/* Driftwood status codes and the error record that carries a one-line message.
 * Recoverable failures return a dw_status and fill a caller-owned dw_error;
 * broken invariants use DW_ASSERT (abort). See docs/DESIGN.md ("Decisions": errors). */
#ifndef DRIFTWOOD_ERROR_H
#define DRIFTWOOD_ERROR_H

#include <stddef.h>

typedef enum dw_status {
    DW_OK = 0,
    DW_ERR_INVALID_ARGUMENT, /* a caller passed something unusable */
    DW_ERR_IO,               /* the operating system refused (open, read, mmap...) */
    DW_ERR_FORMAT,           /* a file or module is malformed */
    DW_ERR_UNSUPPORTED,      /* well-formed but not something we run */
    DW_ERR_NO_MEMORY,        /* allocation or reservation failed */
    DW_ERR_BACKEND,          /* the compute device reported a failure */
    DW_ERR_TRAP,             /* a guest trapped; the message names the trap */
    DW_ERR_LIMIT,            /* a size or count limit was exceeded */
    DW_ERR_NOT_FOUND,        /* a named thing (model, export, tensor) is missing */
    DW_ERR_STATE,            /* the object is not in a state that allows this */
} dw_status;

#define DW_ERROR_MESSAGE_MAX 512

/* Caller-allocated; functions that fail write one line (no newline) into message. */
typedef struct dw_error {
    dw_status status;
    char message[DW_ERROR_MESSAGE_MAX];
} dw_error;

/* Records status and a printf-style message in err (which may be NULL); returns status. */
dw_status dw_error_set(dw_error *err, dw_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message with "prefix: " (for adding context such as a file name). */
dw_status dw_error_prefix(dw_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A short stable name for a status ("format", "io", ...). */
const char *dw_status_name(dw_status status);

#endif
