/* Opening backends by name; the rest of the interface is in backend.h. */
#include "backend/backend.h"

#include <string.h>

dw_status dw_backend_open(const char *name, dw_backend **out, dw_error *err) {
    *out = NULL;
    if (!name || strcmp(name, "cpu") == 0) return dw__cpu_backend_create(out, err);
    if (strcmp(name, "cuda") == 0) {
#ifdef DW_HAVE_CUDA
        return dw__cuda_backend_create(out, err);
#else
        return dw_error_set(err, DW_ERR_UNSUPPORTED,
                            "backend 'cuda': this build has no CUDA support (no CUDA toolkit was found at build time)");
#endif
    }
    return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "unknown backend '%s' (expected cpu or cuda)", name);
}

void dw_backend_close(dw_backend *backend) {
    if (!backend) return;
    if (backend->ops->destroy) backend->ops->destroy(backend->ctx);
}

const char *dw_backend_name(const dw_backend *backend) { return backend->ops->name; }
