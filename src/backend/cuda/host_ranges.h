/* The set of host ranges one CUDA backend has registered (plain C, shared by cuda_memory.cu and
 * the unit tests): the one record of which host memory the device may touch. It answers
 * device_pointer, decides whether a download may be written into the guest by a kernel, checks
 * GEMM operands, and splits copies. A Wasm memory is registered piece by piece as it grows, so
 * guest buffers straddle registrations. Kernels read across neighbouring registrations (bench
 * zerocopy's in-place GEMM does), but cudaMemcpy from such a buffer fails with
 * cudaErrorInvalidValue: copies are split at registration boundaries, and GEMM operands are
 * checked to lie wholly in registered pieces. */
#ifndef DW_BACKEND_CUDA_HOST_RANGES_H
#define DW_BACKEND_CUDA_HOST_RANGES_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dw__host_range {
    uintptr_t base;
    size_t len;
} dw__host_range;

/* Sorted by base, never overlapping. Zero-initialized is empty. */
typedef struct dw__host_ranges {
    dw__host_range *v;
    size_t count, cap;
} dw__host_ranges;

/* Adds [base, base+len); DW_ERR_INVALID_ARGUMENT if it overlaps a range already there. */
dw_status dw__host_ranges_add(dw__host_ranges *s, uintptr_t base, size_t len, dw_error *err);

/* Removes exactly [base, base+len); DW_ERR_INVALID_ARGUMENT if no such range was added. */
dw_status dw__host_ranges_remove(dw__host_ranges *s, uintptr_t base, size_t len, dw_error *err);

/* Removes every range lying wholly inside [base, base+len), calling each(arg, range) for it
 * first (in address order); returns how many were removed. */
size_t dw__host_ranges_remove_within(dw__host_ranges *s, uintptr_t base, size_t len,
                                     void (*each)(void *arg, dw__host_range r), void *arg);

/* The first piece of [p, p+bytes) (bytes > 0) that lies wholly in one range (*inside = 1)
 * or wholly outside every range (*inside = 0); returns its length (> 0, ≤ bytes). */
size_t dw__host_ranges_segment(const dw__host_ranges *s, uintptr_t p, size_t bytes, int *inside);

/* 1 when every byte of [p, p+bytes) lies in some range. */
int dw__host_ranges_covers(const dw__host_ranges *s, uintptr_t p, size_t bytes);

void dw__host_ranges_free(dw__host_ranges *s);

#ifdef __cplusplus
}
#endif

#endif
