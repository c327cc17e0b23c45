/* The backend registry: maps a backend's name to its constructor, fills the options' defaults
 * from the environment (the one place they are read), and forwards the public calls of
 * driftwood/backend.h to the ops. The interface itself is backend.h. */
#include "backend/backend.h"

#include <stdlib.h>
#include <string.h>

#include "driftwood/version.h"

typedef struct backend_entry {
    const char *name;
    dw_status (*open)(const dw_backend_options *opts, dw_backend **out, dw_error *err);
} backend_entry;

static const backend_entry registry[] = {
    {"cpu", dw__cpu_backend_open},
#ifdef DW_HAVE_CUDA
    {"cuda", dw__cuda_backend_open},
#else
    {"cuda", NULL},
#endif
};

/* The environment's defaults for what opts leaves unset. */
static dw_backend_options with_defaults(const dw_backend_options *opts) {
    dw_backend_options o = opts ? *opts : (dw_backend_options){0};
    if (!o.cpu_kernels) {
        const char *isa = getenv("DW_CPU_ISA");
        if (isa && *isa) o.cpu_kernels = isa;
    }
    if (!o.no_graphs) {
        const char *g = getenv("DW_CUDA_GRAPH");
        if (g && !strcmp(g, "0")) o.no_graphs = 1;
    }
    if (!o.prefill_bf16) {
        const char *p = getenv("DW_CUDA_PREFILL_BF16");
        if (p && !strcmp(p, "1")) o.prefill_bf16 = 1;
    }
    return o;
}

dw_status dw_backend_open_with(const char *name, const dw_backend_options *opts, dw_backend **out, dw_error *err) {
    *out = NULL;
    if (!name) name = "cpu";
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++) {
        if (strcmp(name, registry[i].name) != 0) continue;
        if (!registry[i].open)
            return dw_error_set(err, DW_ERR_UNSUPPORTED,
                                "backend '%s': this build has no %s support (no toolkit was found at build time)",
                                name, name);
        dw_backend_options o = with_defaults(opts);
        return registry[i].open(&o, out, err);
    }
    return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "unknown backend '%s' (expected cpu or cuda)", name);
}

dw_status dw_backend_open(const char *name, dw_backend **out, dw_error *err) {
    return dw_backend_open_with(name, NULL, out, err);
}

void dw_backend_close(dw_backend *backend) {
    if (backend) backend->ops->destroy(backend->ctx);
}

const char *dw_backend_name(const dw_backend *backend) { return backend->ops->name; }

void dw_backend_describe(const dw_backend *backend, dw_backend_info *out) {
    memset(out, 0, sizeof *out);
    out->name = backend->ops->name;
    backend->ops->describe(backend->ctx, out);
}

void dw_backend_get_stats(const dw_backend *backend, dw_backend_stats *out) {
    memset(out, 0, sizeof *out);
    if (backend->ops->stats) backend->ops->stats(backend->ctx, out);
}

dw_status dw_backend_register_range(dw_backend *backend, void *base, size_t len, dw_error *err) {
    if (!backend->ops->range_register) return DW_OK;
    return backend->ops->range_register(backend->ctx, base, len, err);
}

void dw_backend_release_range(dw_backend *backend, void *base, size_t len) {
    if (backend->ops->range_release) backend->ops->range_release(backend->ctx, base, len);
}

void *dw_backend_device_pointer(dw_backend *backend, const void *host, size_t bytes) {
    return backend->ops->device_pointer(backend->ctx, host, bytes);
}

dw_status dw_backend_alloc(dw_backend *backend, size_t bytes, void **out, dw_error *err) {
    return backend->ops->alloc(backend->ctx, bytes, out, err);
}

void dw_backend_free(dw_backend *backend, void *buf) { backend->ops->free(backend->ctx, buf); }

dw_status dw_backend_upload(dw_backend *backend, void *dst, const void *host_src, size_t bytes, dw_error *err) {
    return backend->ops->upload(backend->ctx, dst, host_src, bytes, err);
}

dw_status dw_backend_download(dw_backend *backend, void *host_dst, const void *src, size_t bytes, dw_error *err) {
    return backend->ops->download(backend->ctx, host_dst, src, bytes, err);
}

dw_status dw_backend_gemm_f32(dw_backend *backend, int m, int n, int k, const float *a, const float *b, float *c,
                              dw_error *err) {
    return backend->ops->gemm_f32(backend->ctx, m, n, k, a, b, c, err);
}

dw_status dw_backend_memory_used(dw_backend *backend, size_t *bytes, dw_error *err) {
    *bytes = 0;
    if (!backend->ops->memory_used)
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "backend '%s' does not report device memory", backend->ops->name);
    return backend->ops->memory_used(backend->ctx, bytes, err);
}

dw_status dw_backend_memory_bandwidth(dw_backend *backend, size_t bytes, int reps, double *gbs, dw_error *err) {
    *gbs = 0;
    if (!backend->ops->memory_bandwidth)
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "backend '%s' cannot measure its memory bandwidth",
                            backend->ops->name);
    return backend->ops->memory_bandwidth(backend->ctx, bytes, reps, gbs, err);
}

const char *dw_cuda_version(void) {
#ifdef DW_HAVE_CUDA
    return dw__cuda_version();
#else
    return "cuda: not built";
#endif
}
