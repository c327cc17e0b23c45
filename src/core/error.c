/* Error records: formatting the one-line messages that every layer returns. */
#include "driftwood/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

dw_status dw_error_set(dw_error *err, dw_status status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->status = status;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return status;
}

dw_status dw_error_prefix(dw_error *err, const char *fmt, ...) {
    if (!err) return DW_ERR_INVALID_ARGUMENT;
    char prefix[DW_ERROR_MESSAGE_MAX];
    char old[DW_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    size_t n = strlen(prefix);
    if (n + 2 < sizeof err->message) {
        memcpy(err->message, prefix, n);
        memcpy(err->message + n, ": ", 2);
        size_t rest = sizeof err->message - n - 3;
        size_t k = strlen(old) < rest ? strlen(old) : rest;
        memcpy(err->message + n + 2, old, k);
        err->message[n + 2 + k] = 0;
    }
    return err->status;
}

const char *dw_status_name(dw_status status) {
    switch (status) {
    case DW_OK: return "ok";
    case DW_ERR_INVALID_ARGUMENT: return "invalid-argument";
    case DW_ERR_IO: return "io";
    case DW_ERR_FORMAT: return "format";
    case DW_ERR_UNSUPPORTED: return "unsupported";
    case DW_ERR_NO_MEMORY: return "no-memory";
    case DW_ERR_BACKEND: return "backend";
    case DW_ERR_TRAP: return "trap";
    case DW_ERR_LIMIT: return "limit";
    case DW_ERR_NOT_FOUND: return "not-found";
    case DW_ERR_STATE: return "state";
    }
    return "unknown";
}
