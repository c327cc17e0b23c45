/* The CUDA backend's range and GEMM contract (src/backend/cuda/): registration keeps the host
 * address and copies nothing, cuBLAS GEMM on the guest's own pages matches a double-precision
 * reference, grown regions register piece by piece. Without a GPU the tests pass without running;
 * DW_REQUIRE_CUDA=1 (tools/gpu-check.sh) turns a missing GPU into a failure. */
#include "test.h"
#include "test_cuda.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/cuda/host_ranges.h"
#include "driftwood/backend.h"
#include "driftwood/error.h"

#define MIB ((size_t)1 << 20)

/* ---- helpers ---------------------------------------------------------------------------- */

static uint64_t rng_state;

static void rng_seed(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    rng_state = (uint64_t)t.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)t.tv_sec;
    if (!rng_state) rng_state = 1;
}

/* Uniform in [-1, 1). */
static float rng_float(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / (1 << 23)) - 1.0);
}

static void fill_random(float *p, size_t count) {
    for (size_t i = 0; i < count; i++) p[i] = rng_float();
}

static void fill_nan(float *p, size_t count) {
    for (size_t i = 0; i < count; i++) p[i] = NAN;
}

/* ‖C − A×B‖ / ‖A×B‖ (Frobenius) with the reference in double; INFINITY if C has a NaN. */
static double gemm_rel_error(int m, int n, int k, const float *a, const float *b, const float *c) {
    double num = 0, den = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double ref = 0;
            for (int p = 0; p < k; p++) ref += (double)a[(size_t)i * k + p] * b[(size_t)p * n + j];
            double got = c[(size_t)i * n + j];
            if (isnan(got)) return INFINITY;
            num += (got - ref) * (got - ref);
            den += ref * ref;
        }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static size_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long total = 0, resident = 0;
    int got = fscanf(f, "%lu %lu", &total, &resident);
    fclose(f);
    return got == 2 ? resident * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void *map_rw(size_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* ---- tests ------------------------------------------------------------------------------ */

TEST(cuda_open_either_works_or_names_the_missing_gpu) {
    dw_error err = {0};
    dw_backend *b = NULL;
    dw_status st = dw_backend_open("cuda", &b, &err);
    if (st == DW_ERR_UNSUPPORTED && !dw_test_cuda_required()) {
        CHECK(b == NULL);
        CHECK_MSG(strstr(err.message, "cuda") != NULL, "message does not name the backend: %s", err.message);
        dw_test_cuda_note_skip(err.message);
        return;
    }
    CHECK_OK(st);
    CHECK(b != NULL);
    CHECK(strcmp(dw_backend_name(b), "cuda") == 0);
    dw_backend_close(b);
}

TEST(cuda_register_keeps_host_address_and_copies_nothing) {
    dw_error err = {0};
    dw_backend *b = NULL;
    OPEN_CUDA_OR_SKIP(b);
    const size_t len = 16 * MIB;
    float *touched = map_rw(len), *fresh = map_rw(len);
    CHECK(touched && fresh);
    fill_random(touched, len / sizeof(float)); /* a guest that already wrote its memory */
    size_t dev0 = 0, dev1 = 0;
    CHECK_OK(b->ops->memory_used(b->ctx, &dev0, &err));
    size_t rss0 = rss_bytes();
    double t0 = now_ms();
    CHECK_OK(b->ops->range_register(b->ctx, touched, len, &err));
    double reg_ms = now_ms() - t0;
    size_t rss1 = rss_bytes();
    CHECK_OK(b->ops->memory_used(b->ctx, &dev1, &err));
    CHECK(b->ops->device_pointer(b->ctx, touched, 4) == (void *)touched);
    CHECK(b->ops->device_pointer(b->ctx, (char *)touched + len - 4, 4) == (char *)touched + len - 4);
    /* Never-touched pages: pinning may have to fault them in; reported, not asserted. */
    size_t rss2 = rss_bytes();
    CHECK_OK(b->ops->range_register(b->ctx, fresh, len, &err));
    size_t rss3 = rss_bytes();
    CHECK(b->ops->device_pointer(b->ctx, fresh, 4) == (void *)fresh);
    printf("    cuda: register 16 MiB (written) %.2f ms, rss %+ld B, device memory %+ld B; "
           "register 16 MiB (never touched) rss %+ld B\n",
           reg_ms, (long)(rss1 - rss0), (long)(dev1 - dev0), (long)(rss3 - rss2));
    CHECK_MSG(rss1 - rss0 < MIB / 10, "registering 16 MiB grew RSS by %zu bytes", rss1 - rss0);
    CHECK_MSG(dev1 == dev0, "registering grew device memory by %ld bytes", (long)(dev1 - dev0));
    b->ops->range_release(b->ctx, fresh, len);
    b->ops->range_release(b->ctx, touched, len);
    CHECK_MSG(b->ops->device_pointer(b->ctx, touched, 4) == NULL, "unregistered memory still has a device pointer");
    munmap(touched, len);
    munmap(fresh, len);
    dw_backend_close(b);
}

TEST(cuda_register_rejects_unaligned_range) {
    dw_error err = {0};
    dw_backend *b = NULL;
    OPEN_CUDA_OR_SKIP(b);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *p = map_rw(4 * page);
    CHECK(p);
    CHECK(b->ops->range_register(b->ctx, p + 8, 2 * page, &err) == DW_ERR_INVALID_ARGUMENT);
    CHECK(b->ops->range_register(b->ctx, p, page + 100, &err) == DW_ERR_INVALID_ARGUMENT);
    munmap(p, 4 * page);
    dw_backend_close(b);
}

TEST(cuda_gemm_in_registered_region_matches_reference) {
    dw_error err = {0};
    dw_backend *b = NULL;
    OPEN_CUDA_OR_SKIP(b);
    rng_seed();
    const size_t len = 16 * MIB;
    float *region = map_rw(len);
    CHECK(region);
    CHECK_OK(b->ops->range_register(b->ctx, region, len, &err));
    static const int shapes[][3] = {{128, 128, 128}, {37, 53, 71}, {1, 300, 513}, {256, 1, 64}, {500, 400, 300}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        /* Odd offsets inside the region, as a guest's allocator would hand out. */
        float *a = region + 3 + s, *bm = a + (size_t)m * k + 5, *c = bm + (size_t)k * n + 7;
        CHECK((char *)(c + (size_t)m * n) <= (char *)region + len);
        fill_random(a, (size_t)m * k);
        fill_random(bm, (size_t)k * n);
        fill_nan(c, (size_t)m * n);
        CHECK_OK(b->ops->gemm_f32(b->ctx, m, n, k, a, bm, c, &err));
        double e = gemm_rel_error(m, n, k, a, bm, c);
        CHECK_MSG(e < 1e-5, "%d×%d×%d: relative error %.3g (seed-dependent data; NaN means unwritten)", m, n, k,
                  e);
    }
    b->ops->range_release(b->ctx, region, len);
    munmap(region, len);
    dw_backend_close(b);
}

TEST(cuda_gemm_rejects_memory_the_device_cannot_reach) {
    dw_error err = {0};
    dw_backend *b = NULL;
    OPEN_CUDA_OR_SKIP(b);
    rng_seed();
    const int n = 64;
    const size_t bytes = (size_t)n * n * sizeof(float);
    float *pageable = malloc(bytes);
    float *region = map_rw(4 * MIB);
    CHECK(pageable && region);
    CHECK_OK(b->ops->range_register(b->ctx, region, 4 * MIB, &err));
    float *a = region, *bm = region + n * n, *c = region + 2 * n * n;
    fill_random(a, (size_t)n * n);
    fill_random(bm, (size_t)n * n);
    fill_random(pageable, (size_t)n * n);
    /* A kernel touching pageable memory would fault and poison the context: refused up front. */
    CHECK(b->ops->gemm_f32(b->ctx, n, n, n, pageable, bm, c, &err) == DW_ERR_INVALID_ARGUMENT);
    CHECK_MSG(strstr(err.message, "operand A") != NULL, "message: %s", err.message);
    /* An operand running past the registered range is refused too. */
    CHECK(b->ops->gemm_f32(b->ctx, n, n, n, a, bm, region + 4 * MIB / sizeof(float) - 10, &err) ==
          DW_ERR_INVALID_ARGUMENT);
    /* ...and the backend still works. */
    fill_nan(c, (size_t)n * n);
    CHECK_OK(b->ops->gemm_f32(b->ctx, n, n, n, a, bm, c, &err));
    CHECK(gemm_rel_error(n, n, n, a, bm, c) < 1e-5);
    b->ops->range_release(b->ctx, region, 4 * MIB);
    munmap(region, 4 * MIB);
    free(pageable);
    dw_backend_close(b);
}

TEST(cuda_grown_region_registers_second_piece_usable_by_gemm) {
    dw_error err = {0};
    dw_backend *b = NULL;
    OPEN_CUDA_OR_SKIP(b);
    rng_seed();
    /* As a Wasm memory: reserved PROT_NONE, committed in steps, base fixed. */
    const size_t reserved = 64 * MIB, piece = 4 * MIB;
    char *base = mmap(NULL, reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(base != MAP_FAILED);
    CHECK(mprotect(base, piece, PROT_READ | PROT_WRITE) == 0);
    CHECK_OK(b->ops->range_register(b->ctx, base, piece, &err));
    /* memory.grow: the next 4 MiB become usable and are registered as a second piece. */
    CHECK(mprotect(base + piece, piece, PROT_READ | PROT_WRITE) == 0);
    CHECK_OK(b->ops->range_register(b->ctx, base + piece, piece, &err));
    CHECK(b->ops->device_pointer(b->ctx, base + piece + 12, 4) == base + piece + 12);
    const int m = 96, n = 160, k = 128;
    const size_t sb = (size_t)k * n * sizeof(float);
    float *a = (float *)(base + 4096);                 /* piece 1 */
    float *bm = (float *)(base + piece - sb / 2);      /* straddles both pieces */
    float *c = (float *)(base + piece + sb);           /* piece 2, clear of B */
    fill_random(a, (size_t)m * k);
    fill_random(bm, (size_t)k * n);
    fill_nan(c, (size_t)m * n);
    CHECK_OK(b->ops->gemm_f32(b->ctx, m, n, k, a, bm, c, &err));
    double e = gemm_rel_error(m, n, k, a, bm, c);
    CHECK_MSG(e < 1e-5, "relative error %.3g across two registered pieces", e);
    /* Copies whose host side straddles the two pieces (cudaMemcpy alone refuses that). */
    void *dev = NULL;
    float *back = (float *)(base + piece + 2 * sb);
    CHECK_OK(b->ops->alloc(b->ctx, sb, &dev, &err));
    CHECK_OK(b->ops->upload(b->ctx, dev, bm, sb, &err));
    CHECK_OK(b->ops->download(b->ctx, back, dev, sb, &err));
    CHECK(memcmp(back, bm, sb) == 0);
    fill_nan(bm, (size_t)k * n);
    CHECK_OK(b->ops->download(b->ctx, bm, dev, sb, &err));
    CHECK(memcmp(back, bm, sb) == 0);
    b->ops->free(b->ctx, dev);
    /* Overlapping registrations are refused; releasing the reservation drops both pieces. */
    CHECK(b->ops->range_register(b->ctx, base, 2 * piece, &err) == DW_ERR_INVALID_ARGUMENT);
    b->ops->range_release(b->ctx, base, reserved);
    CHECK(b->ops->device_pointer(b->ctx, base, 4) == NULL);
    CHECK(b->ops->device_pointer(b->ctx, base + piece + 12, 4) == NULL);
    munmap(base, reserved);
    dw_backend_close(b);
}

TEST(cuda_copy_path_buffers_round_trip_through_gemm) {
    dw_error err = {0};
    dw_backend *b = NULL;
    OPEN_CUDA_OR_SKIP(b);
    rng_seed();
    const int m = 128, n = 96, k = 200;
    size_t sa = (size_t)m * k * 4, sb = (size_t)k * n * 4, sc = (size_t)m * n * 4;
    float *a = malloc(sa), *bm = malloc(sb), *c = malloc(sc);
    CHECK(a && bm && c);
    fill_random(a, sa / 4);
    fill_random(bm, sb / 4);
    fill_nan(c, sc / 4);
    size_t dev0 = 0, dev1 = 0;
    CHECK_OK(b->ops->memory_used(b->ctx, &dev0, &err));
    void *da = NULL, *db = NULL, *dc = NULL;
    CHECK_OK(b->ops->alloc(b->ctx, 64 * MIB, &da, &err)); /* large enough to show in cudaMemGetInfo */
    CHECK_OK(b->ops->alloc(b->ctx, sb, &db, &err));
    CHECK_OK(b->ops->alloc(b->ctx, sc, &dc, &err));
    CHECK_OK(b->ops->memory_used(b->ctx, &dev1, &err));
    CHECK_MSG(dev1 >= dev0 + 64 * MIB, "device memory grew by %ld bytes after a 64 MiB cudaMalloc",
              (long)(dev1 - dev0));
    CHECK_OK(b->ops->upload(b->ctx, da, a, sa, &err));
    CHECK_OK(b->ops->upload(b->ctx, db, bm, sb, &err));
    CHECK_OK(b->ops->upload(b->ctx, dc, c, sc, &err)); /* NaN poison, overwritten by the GEMM */
    CHECK_OK(b->ops->gemm_f32(b->ctx, m, n, k, da, db, dc, &err));
    CHECK_OK(b->ops->download(b->ctx, c, dc, sc, &err));
    double e = gemm_rel_error(m, n, k, a, bm, c);
    CHECK_MSG(e < 1e-5, "relative error %.3g on the copy path", e);
    b->ops->free(b->ctx, da);
    b->ops->free(b->ctx, db);
    b->ops->free(b->ctx, dc);
    free(a), free(bm), free(c);
    dw_backend_close(b);
}

TEST(cuda_gemm_128_latency_zero_copy_and_copy_path) {
    dw_error err = {0};
    dw_backend *b = NULL;
    OPEN_CUDA_OR_SKIP(b);
    rng_seed();
    enum { N = 128, RUNS = 200 };
    const size_t mat = (size_t)N * N * sizeof(float);
    float *region = map_rw(4 * MIB);
    CHECK(region);
    CHECK_OK(b->ops->range_register(b->ctx, region, 4 * MIB, &err));
    float *a = region, *bm = region + N * N, *c = region + 2 * N * N;
    fill_random(a, N * N);
    fill_random(bm, N * N);
    void *da = NULL, *db = NULL, *dc = NULL;
    CHECK_OK(b->ops->alloc(b->ctx, mat, &da, &err));
    CHECK_OK(b->ops->alloc(b->ctx, mat, &db, &err));
    CHECK_OK(b->ops->alloc(b->ctx, mat, &dc, &err));
    static double zc[RUNS], cp[RUNS];
    for (int i = 0; i < RUNS + 10; i++) { /* the first 10 warm up */
        double t0 = now_ms();
        CHECK_OK(b->ops->gemm_f32(b->ctx, N, N, N, a, bm, c, &err));
        double t1 = now_ms();
        CHECK_OK(b->ops->upload(b->ctx, da, a, mat, &err));
        CHECK_OK(b->ops->upload(b->ctx, db, bm, mat, &err));
        CHECK_OK(b->ops->gemm_f32(b->ctx, N, N, N, da, db, dc, &err));
        CHECK_OK(b->ops->download(b->ctx, c + N * N, dc, mat, &err));
        double t2 = now_ms();
        if (i >= 10) zc[i - 10] = t1 - t0, cp[i - 10] = t2 - t1;
    }
    qsort(zc, RUNS, sizeof zc[0], cmp_double);
    qsort(cp, RUNS, sizeof cp[0], cmp_double);
    printf("    cuda: gemm 128×128×128 median of %d: zero-copy %.4f ms, copy path %.4f ms (transfers included)\n",
           RUNS, zc[RUNS / 2], cp[RUNS / 2]);
    CHECK(gemm_rel_error(N, N, N, a, bm, c) < 1e-5);         /* zero-copy result */
    CHECK(gemm_rel_error(N, N, N, a, bm, c + N * N) < 1e-5); /* copy-path result */
    b->ops->free(b->ctx, da);
    b->ops->free(b->ctx, db);
    b->ops->free(b->ctx, dc);
    b->ops->range_release(b->ctx, region, 4 * MIB);
    munmap(region, 4 * MIB);
    dw_backend_close(b);
}

/* ---- many threads, one backend ---------------------------------------------------------- */

typedef struct {
    dw_backend *b;
    float *a, *bm, *c; /* inside one shared registered region, disjoint per thread */
    int n, rounds;
    double worst;
    dw_status st;
    char msg[DW_ERROR_MESSAGE_MAX];
} gemm_job;

static void *gemm_worker(void *arg) {
    gemm_job *j = arg;
    dw_error err = {0};
    for (int r = 0; r < j->rounds; r++) {
        fill_nan(j->c, (size_t)j->n * j->n);
        j->st = j->b->ops->gemm_f32(j->b->ctx, j->n, j->n, j->n, j->a, j->bm, j->c, &err);
        if (j->st) {
            snprintf(j->msg, sizeof j->msg, "%s", err.message);
            return NULL;
        }
        double e = gemm_rel_error(j->n, j->n, j->n, j->a, j->bm, j->c);
        if (!(e <= j->worst)) j->worst = e;
    }
    return NULL;
}

TEST(cuda_concurrent_gemms_from_threads_all_verify) {
    dw_error err = {0};
    dw_backend *b = NULL;
    OPEN_CUDA_OR_SKIP(b);
    rng_seed();
    enum { THREADS = 4, N = 96 };
    const size_t len = 8 * MIB;
    float *region = map_rw(len);
    CHECK(region);
    CHECK_OK(b->ops->range_register(b->ctx, region, len, &err));
    gemm_job jobs[THREADS];
    pthread_t tid[THREADS];
    for (int t = 0; t < THREADS; t++) {
        float *base = region + (size_t)t * 3 * N * N;
        jobs[t] = (gemm_job){.b = b, .a = base, .bm = base + N * N, .c = base + 2 * N * N, .n = N, .rounds = 20};
        fill_random(jobs[t].a, N * N);
        fill_random(jobs[t].bm, N * N);
    }
    for (int t = 0; t < THREADS; t++) CHECK(pthread_create(&tid[t], NULL, gemm_worker, &jobs[t]) == 0);
    for (int t = 0; t < THREADS; t++) pthread_join(tid[t], NULL);
    for (int t = 0; t < THREADS; t++) {
        CHECK_MSG(jobs[t].st == DW_OK, "thread %d: %s", t, jobs[t].msg);
        CHECK_MSG(jobs[t].worst < 1e-5, "thread %d: relative error %.3g", t, jobs[t].worst);
    }
    b->ops->range_release(b->ctx, region, len);
    munmap(region, len);
    dw_backend_close(b);
}

/* ---- the registered-range set (no GPU needed) --------------------------------------------- */

#ifdef DW_HAVE_CUDA
TEST(cuda_host_ranges_split_at_registration_boundaries) {
    dw_error err = {0};
    dw__host_ranges s = {0};
    /* [1000,2000) [2000,3000) [5000,6000), added out of order */
    CHECK_OK(dw__host_ranges_add(&s, 5000, 1000, &err));
    CHECK_OK(dw__host_ranges_add(&s, 1000, 1000, &err));
    CHECK_OK(dw__host_ranges_add(&s, 2000, 1000, &err));
    CHECK(dw__host_ranges_add(&s, 2500, 10, &err) == DW_ERR_INVALID_ARGUMENT);
    CHECK(dw__host_ranges_add(&s, 4000, 1001, &err) == DW_ERR_INVALID_ARGUMENT);
    CHECK(dw__host_ranges_add(&s, 900, 101, &err) == DW_ERR_INVALID_ARGUMENT);
    int inside = -1;
    CHECK(dw__host_ranges_segment(&s, 1500, 1000, &inside) == 500 && inside == 1);
    CHECK(dw__host_ranges_segment(&s, 2000, 700, &inside) == 700 && inside == 1);
    CHECK(dw__host_ranges_segment(&s, 3000, 5000, &inside) == 2000 && inside == 0);
    CHECK(dw__host_ranges_segment(&s, 500, 100, &inside) == 100 && inside == 0);
    CHECK(dw__host_ranges_segment(&s, 7000, 100, &inside) == 100 && inside == 0);
    CHECK(dw__host_ranges_covers(&s, 1200, 1700));  /* across the 2000 boundary */
    CHECK(!dw__host_ranges_covers(&s, 2500, 600));  /* runs past 3000 */
    CHECK(!dw__host_ranges_covers(&s, 900, 200));   /* starts before 1000 */
    CHECK(dw__host_ranges_remove(&s, 2000, 999, &err) == DW_ERR_INVALID_ARGUMENT);
    CHECK_OK(dw__host_ranges_remove(&s, 2000, 1000, &err));
    CHECK(!dw__host_ranges_covers(&s, 1200, 1700));
    CHECK(dw__host_ranges_segment(&s, 1500, 4000, &inside) == 500 && inside == 1);
    CHECK(dw__host_ranges_segment(&s, 2000, 4000, &inside) == 3000 && inside == 0);
    /* Many pieces, as a memory grown 64 KiB at a time. */
    dw__host_ranges_free(&s);
    for (uintptr_t i = 0; i < 1000; i++) CHECK_OK(dw__host_ranges_add(&s, 0x100000 + i * 0x10000, 0x10000, &err));
    CHECK(dw__host_ranges_covers(&s, 0x100000, 1000 * 0x10000));
    CHECK(dw__host_ranges_segment(&s, 0x100000 + 0x18000, 0x20000, &inside) == 0x8000 && inside == 1);
    dw__host_ranges_free(&s);
}

static void count_removed(void *arg, dw__host_range r) {
    size_t *bytes = arg;
    *bytes += r.len;
}

TEST(cuda_host_ranges_release_drops_every_range_inside_a_reservation) {
    dw_error err = {0};
    dw__host_ranges s = {0};
    /* two memories: pieces [1000,2000) [2000,3000) [3000,4000) and [9000,9500) */
    CHECK_OK(dw__host_ranges_add(&s, 2000, 1000, &err));
    CHECK_OK(dw__host_ranges_add(&s, 9000, 500, &err));
    CHECK_OK(dw__host_ranges_add(&s, 1000, 1000, &err));
    CHECK_OK(dw__host_ranges_add(&s, 3000, 1000, &err));
    size_t bytes = 0;
    CHECK(dw__host_ranges_remove_within(&s, 1000, 8000, count_removed, &bytes) == 3);
    CHECK(bytes == 3000);
    CHECK(s.count == 1 && s.v[0].base == 9000);
    int inside = -1;
    CHECK(dw__host_ranges_segment(&s, 1000, 3000, &inside) == 3000 && inside == 0);
    /* a range that only overlaps the span stays */
    CHECK(dw__host_ranges_remove_within(&s, 9100, 1000, NULL, NULL) == 0);
    CHECK(dw__host_ranges_covers(&s, 9000, 500));
    dw__host_ranges_free(&s);
}
#endif
