/* The CPU's measured memory read bandwidth (membw.c), for `bench decode`'s bound. */
#ifndef DW_BACKEND_CPU_MEMBW_H
#define DW_BACKEND_CPU_MEMBW_H

#include <stddef.h>

#include "core/threadpool.h"
#include "driftwood/error.h"

/* Streams a fresh `bytes`-byte buffer through every thread of pool, reps times after a warm-up,
 * with the fastest read kernel; *gbs gets the best rate in GB/s (10^9 bytes per second). */
dw_status dw__cpu_read_bandwidth(dw_threadpool *pool, size_t bytes, int reps, double *gbs, dw_error *err);

#endif
