/* `driftwood bench zerocopy`: the seed's zero-copy table. The same GEMM on the same guest
 * data two ways: in place in the actor's registered memory (zero-copy), and through a
 * separate buffer with copies both ways (CPU: host buffer + memcpy; CUDA: device buffer +
 * cudaMemcpy). Also pointer identity, and the RSS / device-memory cost of making a region
 * device-accessible versus copying it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>

#include "cli/bench_util.h"
#include "cli/command.h"
#include "cli/embedded_guests.h"
#include "driftwood/actor.h"
#include "driftwood/backend.h"

typedef struct {
    int pointer_identity;
    long rss_delta, copy_rss_delta;
    long long device_delta, copy_device_delta; /* -1: not measurable on this backend */
    double gemm_ms, copy_gemm_ms;
    int errors, reps;
} zerocopy_result;

static int count_errors(int n, const float *a, const float *b, const float *c) {
    int errors = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double ref = 0;
            for (int p = 0; p < n; p++) ref += (double)a[i * n + p] * b[p * n + j];
            if (!(fabs(c[i * n + j] - ref) <= 1e-4 * (1 + fabs(ref)))) errors++;
        }
    return errors;
}

static long long device_used(dw_backend *b) {
    size_t used;
    dw_error err;
    if (dw_backend_memory_used(b, &used, &err) != DW_OK) return -1;
    return (long long)used;
}

/* RSS and device memory: register a filled buffer vs copy it into a separate device buffer. */
static int measure_memory(dw_backend *b, size_t size, zerocopy_result *r, dw_error *err) {
    uint8_t *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) {
        dw_error_set(err, DW_ERR_NO_MEMORY, "cannot map %zu bytes", size);
        return -1;
    }
    for (size_t i = 0; i < size; i += 64) buf[i] = (uint8_t)(i * 31 + 7);
    dw_cli_rss_bytes(); /* the first read settles the kernel's accounting; measure from the second */
    long rss0 = dw_cli_rss_bytes();
    long long dev0 = device_used(b);
    if (dw_backend_register_range(b, buf, size, err) != DW_OK) goto fail;
    r->rss_delta = dw_cli_rss_bytes() - rss0;
    r->device_delta = dev0 < 0 ? -1 : device_used(b) - dev0;
    dw_backend_release_range(b, buf, size);

    rss0 = dw_cli_rss_bytes();
    dev0 = device_used(b);
    void *copy;
    if (dw_backend_alloc(b, size, &copy, err) != DW_OK) goto fail;
    if (dw_backend_upload(b, copy, buf, size, err) != DW_OK) goto fail;
    r->copy_rss_delta = dw_cli_rss_bytes() - rss0;
    r->copy_device_delta = dev0 < 0 ? -1 : device_used(b) - dev0;
    dw_backend_free(b, copy);
    munmap(buf, size);
    return 0;
fail:
    munmap(buf, size);
    return -1;
}

static int32_t guest_alloc(dw_actor *a, int32_t bytes, dw_error *err) {
    dw_value arg = {.kind = DW_I32, .of.i32 = bytes}, res;
    size_t nres;
    if (dw_actor_invoke(a, "alloc", &arg, 1, &res, 1, &nres, err) != DW_OK) return 0;
    return res.of.i32;
}

static int run_gemms(dw_actor *a, dw_backend *b, int n, int reps, zerocopy_result *r, dw_error *err) {
    size_t bytes = (size_t)n * n * sizeof(float);
    int32_t pa = guest_alloc(a, (int32_t)bytes, err), pb = guest_alloc(a, (int32_t)bytes, err),
            pc = guest_alloc(a, (int32_t)bytes, err);
    if (!pa || !pb || !pc) return -1;
    dw_value fill_args[3] = {{DW_I32, {.i32 = pa}}, {DW_I32, {.i32 = n * n}}, {DW_I32, {.i32 = 1}}};
    size_t nres;
    dw_value res;
    if (dw_actor_invoke(a, "fill", fill_args, 3, NULL, 0, &nres, err) != DW_OK) return -1;
    fill_args[0].of.i32 = pb, fill_args[2].of.i32 = 2;
    if (dw_actor_invoke(a, "fill", fill_args, 3, NULL, 0, &nres, err) != DW_OK) return -1;
    uint8_t *mem = dw_actor_memory(a, NULL); /* fixed base: valid for the actor's life */
    float *ga = (float *)(mem + pa), *gb = (float *)(mem + pb), *gc = (float *)(mem + pc);

    /* zero-copy: the guest calls dw.gemm on its own pages */
    dw_value gemm_args[4] = {{DW_I32, {.i32 = n}}, {DW_I32, {.i32 = pa}}, {DW_I32, {.i32 = pb}}, {DW_I32, {.i32 = pc}}};
    double *times = calloc((size_t)reps, sizeof *times);
    for (int i = -5; i < reps; i++) {
        double t0 = dw_cli_now_ms();
        if (dw_actor_invoke(a, "gemm", gemm_args, 4, &res, 1, &nres, err) != DW_OK || res.of.i32 != 0) {
            if (res.of.i32) dw_error_set(err, DW_ERR_BACKEND, "dw.gemm returned %d", res.of.i32);
            free(times);
            return -1;
        }
        if (i >= 0) times[i] = dw_cli_now_ms() - t0;
    }
    r->gemm_ms = dw_cli_median(times, (size_t)reps);
    memset(gc, 0xFF, bytes); /* poison (NaN), then check one fresh result */
    dw_actor_invoke(a, "gemm", gemm_args, 4, &res, 1, &nres, err);
    r->errors = count_errors(n, ga, gb, gc);

    /* copy path: the same operands copied out of guest memory, C copied back */
    void *da, *db, *dc;
    if (dw_backend_alloc(b, bytes, &da, err) || dw_backend_alloc(b, bytes, &db, err) ||
        dw_backend_alloc(b, bytes, &dc, err)) {
        free(times);
        return -1;
    }
    for (int i = -5; i <= reps; i++) {
        if (i == reps) memset(gc, 0xFF, bytes);
        double t0 = dw_cli_now_ms();
        if (dw_backend_upload(b, da, ga, bytes, err) || dw_backend_upload(b, db, gb, bytes, err) ||
            dw_backend_gemm_f32(b, n, n, n, da, db, dc, err) || dw_backend_download(b, gc, dc, bytes, err)) {
            free(times);
            return -1;
        }
        if (i >= 0 && i < reps) times[i] = dw_cli_now_ms() - t0;
    }
    r->copy_gemm_ms = dw_cli_median(times, (size_t)reps);
    r->errors += count_errors(n, ga, gb, gc);
    dw_backend_free(b, da), dw_backend_free(b, db), dw_backend_free(b, dc);
    free(times);
    return 0;
}

DW_COMMAND_NAMED(bench_zerocopy, "bench zerocopy",
                 "bench zerocopy [--backend cpu|cuda] [--size BYTES] [--n N] [--reps N] [--json]",
                 "zero-copy vs copy path: pointer identity, RSS and device memory, GEMM latency") {
    const char *backend_name = "cpu";
    long size = 16 << 20, n = 128, reps = 200;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend_name = argv[++i];
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
            if (dw_cli_parse_long("--size", argv[++i], 4096, 1L << 34, &size)) return 1;
        } else if (!strcmp(argv[i], "--n") && i + 1 < argc) {
            if (dw_cli_parse_long("--n", argv[++i], 1, 2048, &n)) return 1;
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            if (dw_cli_parse_long("--reps", argv[++i], 100, 1000000, &reps)) return 1;
        } else if (!strcmp(argv[i], "--json")) json = 1;
        else return dw_cli_fail("bench zerocopy: unknown or incomplete option '%s'", argv[i]);
    }
    size = (size + 65535) / 65536 * 65536;
    dw_error err = {0};
    dw_runtime *rt = NULL;
    dw_module *m = NULL;
    dw_actor *a = NULL;
    dw_backend *b;
    zerocopy_result r = {0};
    r.reps = (int)reps;
    size_t wasm_len;
    const unsigned char *wasm = dw__embedded_bench_actor(&wasm_len);
    int rc = 1;
    if (dw_runtime_create(NULL, &rt, &err) || dw_runtime_backend(rt, backend_name, &b, &err) ||
        dw_module_load_bytes(rt, "bench_actor.wasm", wasm, wasm_len, &m, &err)) {
        dw_cli_fail("bench zerocopy: %s", err.message);
        goto done;
    }
    dw_actor_options opts = {.backend = backend_name};
    if (dw_actor_create(rt, m, &opts, &a, &err)) {
        dw_cli_fail("bench zerocopy: %s", err.message);
        goto done;
    }
    uint8_t *base = dw_actor_memory(a, NULL);
    r.pointer_identity = base != NULL && dw_backend_device_pointer(b, base, 1) == base;
    if (measure_memory(b, (size_t)size, &r, &err) || run_gemms(a, b, (int)n, (int)reps, &r, &err)) {
        dw_cli_fail("bench zerocopy: %s", err.message);
        goto done;
    }
    if (json) {
        printf("{\"backend\": \"%s\", \"size_bytes\": %ld, \"n\": %ld, \"reps\": %d, \"pointer_identity\": %s, "
               "\"rss_delta_bytes\": %ld, \"copy_rss_delta_bytes\": %ld, \"device_mem_delta_bytes\": %lld, "
               "\"copy_device_mem_delta_bytes\": %lld, \"gemm_ms\": %.4f, \"copy_gemm_ms\": %.4f, \"errors\": %d}\n",
               backend_name, size, n, r.reps, r.pointer_identity ? "true" : "false", r.rss_delta, r.copy_rss_delta,
               r.device_delta, r.copy_device_delta, r.gemm_ms, r.copy_gemm_ms, r.errors);
    } else {
        printf("zero-copy table (backend %s, region %.1f MiB, GEMM %ldx%ld, median of %d)\n", backend_name,
               size / 1048576.0, n, n, r.reps);
        printf("  %-34s %s\n", "pointer identity (base == device)", r.pointer_identity ? "true" : "false");
        printf("  %-34s %14s %14s\n", "", "zero-copy", "copy path");
        printf("  %-34s %14.3f %14.3f\n", "RSS growth (MiB)", r.rss_delta / 1048576.0, r.copy_rss_delta / 1048576.0);
        if (r.device_delta >= 0)
            printf("  %-34s %14.3f %14.3f\n", "device memory growth (MiB)", r.device_delta / 1048576.0,
                   r.copy_device_delta / 1048576.0);
        printf("  %-34s %14.4f %14.4f\n", "GEMM latency (ms)", r.gemm_ms, r.copy_gemm_ms);
        printf("  %-34s %14d\n", "errors", r.errors);
    }
    rc = r.errors || !r.pointer_identity;
done:
    dw_actor_free(a);
    dw_module_free(m);
    dw_runtime_free(rt);
    return rc;
}
