/* Compute backends (CPU always; CUDA when built). A backend is opened by name and
 * shared by every actor and model that uses it. */
#ifndef DRIFTWOOD_BACKEND_H
#define DRIFTWOOD_BACKEND_H

#include "driftwood/error.h"

typedef struct dw_backend dw_backend;

/* Opens the backend "cpu" or "cuda". Fails with DW_ERR_UNSUPPORTED when the CUDA backend
 * was not built or no usable GPU is present (the message says which). */
dw_status dw_backend_open(const char *name, dw_backend **out, dw_error *err);
void dw_backend_close(dw_backend *backend);
const char *dw_backend_name(const dw_backend *backend);

#endif
