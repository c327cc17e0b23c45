/* The CPU's measured memory read bandwidth (membw.c), for `bench decode`'s bound. */
#ifndef DW_BACKEND_CPU_MEMBW_H
#define DW_BACKEND_CPU_MEMBW_H

#include <stddef.h>

#include "driftwood/threadpool.h"
#include "driftwood/error.h"

/* A read-bandwidth probe: a buffer of its own, much larger than the caches, filled with real
 * (non-zero) pages once, so that it can be measured again and again (e.g. between decoded tokens). */
typedef struct dw__membw dw__membw;

/* Maps and fills a `bytes`-byte buffer (rounded up to the probe's chunk) and reads it once (warm-up). */
dw_status dw__membw_create(dw_threadpool *pool, size_t bytes, dw__membw **out, dw_error *err);
/* Streams the whole buffer once through every thread of pool (the fastest read kernel, chunks
 * handed out like matmul tasks); returns the rate in GB/s (10^9 bytes per second). */
double dw__membw_pass(dw__membw *m, dw_threadpool *pool);
void dw__membw_free(dw__membw *m);

/* Streams a fresh `bytes`-byte buffer through every thread of pool, reps times after a warm-up,
 * with the fastest read kernel; *gbs gets the best rate in GB/s (10^9 bytes per second). */
dw_status dw__cpu_read_bandwidth(dw_threadpool *pool, size_t bytes, int reps, double *gbs, dw_error *err);

#endif
