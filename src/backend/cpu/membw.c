/* Measures the memory read bandwidth the CPU kernels can reach: every thread of the pool
 * streams its share of a buffer much larger than the caches (the `bench decode` bound). */
#include "backend/cpu/membw.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "backend/cpu/kernels_dispatch.h"

#define CHUNK (4u << 20)

struct dw__membw {
    char *buf;
    size_t bytes;
    const dw__cpu_kernels *k;
    uint64_t sink[256];
};

static void bw_task(void *arg, int task, int thread) {
    dw__membw *m = arg;
    size_t off = (size_t)task * CHUNK;
    size_t n = m->bytes - off < CHUNK ? m->bytes - off : CHUNK;
    m->sink[thread & 255] ^= m->k->read_bytes(m->buf + off, n);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

dw_status dw__membw_create(dw_threadpool *pool, const dw__cpu_kernels *k, size_t bytes, dw__membw **out,
                           dw_error *err) {
    *out = NULL;
    dw__membw *m = calloc(1, sizeof *m);
    if (!m) return dw_error_set(err, DW_ERR_NO_MEMORY, "bandwidth probe: out of memory");
    m->bytes = (bytes + CHUNK - 1) / CHUNK * CHUNK;
    m->k = k ? k : dw__cpu_kernels_best();
    m->buf = mmap(NULL, m->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m->buf == MAP_FAILED) {
        free(m);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "bandwidth probe: cannot map %zu bytes", bytes);
    }
    /* huge pages where the kernel allows them: the probe should not be slowed by TLB misses
     * that the (page-cache, often large-folio) weight mappings do not have */
    madvise(m->buf, m->bytes, MADV_HUGEPAGE);
    /* real pages with non-zero contents (the zero page would be served from cache) */
    for (size_t i = 0; i < m->bytes; i += 4096) memset(m->buf + i, (int)(i >> 12) | 1, 4096);
    dw__membw_pass(m, pool); /* warm-up */
    *out = m;
    return DW_OK;
}

double dw__membw_pass(dw__membw *m, dw_threadpool *pool) {
    double t0 = now_s();
    dw_threadpool_run(pool, (int)(m->bytes / CHUNK), bw_task, m);
    return m->bytes / (now_s() - t0) / 1e9;
}

void dw__membw_free(dw__membw *m) {
    if (!m) return;
    munmap(m->buf, m->bytes);
    free(m);
}
