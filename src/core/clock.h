/* The one monotonic clock every timing in Driftwood reads (benchmarks, load times, timeouts). */
#ifndef DW_CORE_CLOCK_H
#define DW_CORE_CLOCK_H

#include <time.h>

/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC). */
static inline double dw__now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline double dw__now_ms(void) { return dw__now_s() * 1e3; }

#endif
