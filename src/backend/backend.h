/* The backend interface (Link 2 of the zero-copy chain, shared/DESIGN.md): a struct of
 * function pointers plus a context, one implementation per folder (cpu/, cuda/).
 * Members marked (optional) may be NULL. Pointers passed to compute functions are host
 * pointers inside memory the backend has made accessible (a registered region, or the
 * backend's own allocations); on CUDA the device pointer equals the host pointer. */
#ifndef DW_BACKEND_BACKEND_H
#define DW_BACKEND_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/backend.h"
#include "driftwood/error.h"

typedef struct dw_backend_ops {
    const char *name; /* "cpu", "cuda" */

    /* Makes [base, base+len) usable by the device without copying. base and len are
     * page-aligned. CUDA: cudaHostRegister(mapped) and a check that the device pointer
     * equals base. CPU: nothing. */
    dw_status (*region_register)(void *ctx, void *base, size_t len, dw_error *err);
    /* Undoes region_register for exactly the same range. */
    dw_status (*region_unregister)(void *ctx, void *base, size_t len, dw_error *err);
    /* The pointer the device computes on for a host pointer inside a registered range
     * (the zero-copy identity check compares the two). */
    void *(*device_pointer)(void *ctx, void *host);

    /* C[m×n] = A[m×k] × B[k×n], f32, row-major, all three in device-accessible memory.
     * Finished (synchronized) when it returns. */
    dw_status (*gemm_f32)(void *ctx, int m, int n, int k, const float *a, const float *b,
                          float *c, dw_error *err);
    /* Waits for all work queued on the backend. */
    dw_status (*synchronize)(void *ctx, dw_error *err);

    /* (optional) Device memory currently in use, bytes (CUDA: total − free). */
    dw_status (*device_memory_used)(void *ctx, size_t *bytes_out, dw_error *err);
    /* (optional) Device buffers for the copy-path baseline of `bench zerocopy`. */
    dw_status (*buffer_alloc)(void *ctx, size_t bytes, void **out, dw_error *err);
    void (*buffer_free)(void *ctx, void *buf);
    dw_status (*copy_to_device)(void *ctx, void *dst, const void *src, size_t bytes, dw_error *err);
    dw_status (*copy_to_host)(void *ctx, void *dst, const void *src, size_t bytes, dw_error *err);

    /* Releases the context and the dw_backend record that holds it (dw_backend_close). */
    void (*destroy)(void *ctx);
} dw_backend_ops;

struct dw_backend {
    const dw_backend_ops *ops;
    void *ctx;
};

/* Constructors, one per backend folder. dw__cuda_backend_create exists only when
 * DW_HAVE_CUDA is defined; otherwise dw_backend_open("cuda") reports it was not built. */
dw_status dw__cpu_backend_create(dw_backend **out, dw_error *err);
#ifdef DW_HAVE_CUDA
dw_status dw__cuda_backend_create(dw_backend **out, dw_error *err);
#endif

#endif
