/* Picks the compute-op implementation (src/backend/compute.h) for a backend by its name. */
#include <string.h>

#include "backend/compute.h"
#ifdef DW_HAVE_CUDA
#include "backend/cuda/compute_cuda.h"
#endif

dw_status dw__compute_open(dw_backend *backend, int n_threads, dw_compute *out, dw_error *err) {
    const char *name = backend ? dw_backend_name(backend) : "cpu";
    if (!strcmp(name, "cpu")) return dw__cpu_compute_create(n_threads, out, err);
#ifdef DW_HAVE_CUDA
    if (!strcmp(name, "cuda")) return dw__cuda_compute_create(backend, out, err);
#endif
    out->ops = NULL;
    out->ctx = NULL;
    return dw_error_set(err, DW_ERR_UNSUPPORTED, "backend '%s' has no inference kernels yet (use --backend cpu)", name);
}

void dw__compute_close(dw_compute *c) {
    if (c->ops && c->ops->destroy) c->ops->destroy(c->ctx);
    c->ops = NULL;
    c->ctx = NULL;
}
