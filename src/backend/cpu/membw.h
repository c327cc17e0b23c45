/* The CPU's measured memory read bandwidth (membw.c): the CPU backend's memory_bandwidth and
 * `bench decode`'s bound. */
#ifndef DW_BACKEND_CPU_MEMBW_H
#define DW_BACKEND_CPU_MEMBW_H

#include <stddef.h>

#include "backend/cpu/kernels.h"
#include "driftwood/threadpool.h"
#include "driftwood/error.h"

/* A read-bandwidth probe: a buffer of its own, much larger than the caches, filled with real
 * (non-zero) pages once, so that it can be measured again and again (e.g. between decoded tokens). */
typedef struct dw__membw dw__membw;

/* Maps and fills a `bytes`-byte buffer (rounded up to the probe's chunk) and reads it once (warm-up);
 * passes read with k's read_bytes (NULL: the best set this CPU runs). */
dw_status dw__membw_create(dw_threadpool *pool, const dw__cpu_kernels *k, size_t bytes, dw__membw **out,
                           dw_error *err);
/* Streams the whole buffer once through every thread of pool (the fastest read kernel, chunks
 * handed out like matmul tasks); returns the rate in GB/s (10^9 bytes per second). */
double dw__membw_pass(dw__membw *m, dw_threadpool *pool);
void dw__membw_free(dw__membw *m);

#endif
