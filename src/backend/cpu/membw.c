/* Measures the memory read bandwidth the CPU kernels can reach: every thread of the pool
 * streams its share of a buffer much larger than the caches (the `bench decode` bound). */
#include "backend/cpu/membw.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "backend/cpu/kernels.h"

#define CHUNK (4u << 20)

typedef struct {
    const char *buf;
    size_t bytes;
    const dw__cpu_kernels *k;
    uint64_t sink[256];
} bw_job;

static void bw_task(void *arg, int task, int thread) {
    bw_job *j = arg;
    size_t off = (size_t)task * CHUNK;
    size_t n = j->bytes - off < CHUNK ? j->bytes - off : CHUNK;
    j->sink[thread & 255] ^= j->k->read_bytes(j->buf + off, n);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

dw_status dw__cpu_read_bandwidth(dw_threadpool *pool, size_t bytes, int reps, double *gbs, dw_error *err) {
    *gbs = 0;
    bytes = (bytes + CHUNK - 1) / CHUNK * CHUNK;
    char *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) return dw_error_set(err, DW_ERR_NO_MEMORY, "bandwidth probe: cannot map %zu bytes", bytes);
    /* huge pages where the kernel allows them: the probe should not be slowed by TLB misses
     * that the (page-cache, often large-folio) weight mappings do not have */
    madvise(buf, bytes, MADV_HUGEPAGE);
    /* real pages with non-zero contents (the zero page would be served from cache) */
    for (size_t i = 0; i < bytes; i += 4096) memset(buf + i, (int)(i >> 12) | 1, 4096);
    bw_job j = {.buf = buf, .bytes = bytes, .k = dw__cpu_kernels_best()};
    int n_tasks = (int)(bytes / CHUNK);
    dw_threadpool_run(pool, n_tasks, bw_task, &j); /* warm-up */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        dw_threadpool_run(pool, n_tasks, bw_task, &j);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    munmap(buf, bytes);
    *gbs = bytes / best / 1e9;
    return DW_OK;
}
