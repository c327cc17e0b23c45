/* Actors on Wasmtime: traps named and contained, timeouts, guest-pointer validation,
 * concurrency, memory growth with a fixed base, and the compiled-module cache. */
#include <pthread.h>
#include <sys/stat.h>
#include <wasmtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driftwood/actor.h"
#include "driftwood/runtime.h"
#include "test.h"

static char probe_path[512];

static dw_runtime *new_runtime(dw_error *err) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/modules", dw_test_tmp_dir());
    dw_runtime_options o = {.module_cache_dir = dir};
    dw_runtime *rt = NULL;
    snprintf(probe_path, sizeof probe_path, "%s/guests/probe.wasm", dw_test_build_dir());
    return dw_runtime_create(&o, &rt, err) == DW_OK ? rt : NULL;
}

/* A runtime with its own module cache and the probe module loaded. */
static dw_status open_probe(dw_runtime **rt, dw_module **m, dw_error *err) {
    *m = NULL;
    if (!(*rt = new_runtime(err))) return err->status;
    return dw_module_load_file(*rt, probe_path, m, err);
}

static void close_probe(dw_runtime *rt, dw_module *m) {
    dw_module_free(m);
    dw_runtime_free(rt);
}

static dw_status call_i32(dw_actor *a, const char *name, int nargs, const int32_t *args, int32_t *result,
                          dw_error *err) {
    dw_value in[8], out[2];
    for (int i = 0; i < nargs; i++) in[i] = (dw_value){.kind = DW_I32, .of.i32 = args[i]};
    size_t nres = 0;
    dw_status st = dw_actor_invoke(a, name, in, (size_t)nargs, out, 2, &nres, err);
    if (st == DW_OK && result) *result = nres ? out[0].of.i32 : 0;
    return st;
}

typedef struct {
    dw_runtime *rt;
    dw_module *module;
    int32_t n, rounds, seed;
    int32_t errors;      /* OUT: GEMM errors, or -1 */
    dw_status status;    /* OUT */
    dw_error err;
} gemm_job;

static void *gemm_worker(void *arg) {
    gemm_job *job = arg;
    dw_actor *a = NULL;
    job->status = dw_actor_create(job->rt, job->module, NULL, &a, &job->err);
    if (job->status == DW_OK) {
        int32_t args[3] = {job->n, job->rounds, job->seed};
        job->status = call_i32(a, "gemm_rounds", 3, args, &job->errors, &job->err);
    }
    dw_actor_free(a);
    return NULL;
}

static const struct {
    const char *export;
    const char *expected;
} trap_cases[] = {
    {"trap_out_of_bounds", "out-of-bounds memory access"},
    {"trap_unreachable", "unreachable"},
    {"trap_stack_exhausted", "stack exhausted"},
    {"trap_divide_by_zero", "integer divide by zero"},
    {"trap_integer_overflow", "integer overflow"},
    {"trap_bad_indirect_call", "bad indirect call signature"},
    {"trap_null_indirect_call", "indirect call to null"},
};

TEST(actor_traps_are_named_while_seven_others_compute) {
    dw_error err;
    dw_runtime *rt = new_runtime(&err);
    CHECK(rt);
    dw_module *m;
    CHECK_OK(dw_module_load_file(rt, probe_path, &m, &err));
    gemm_job jobs[7];
    pthread_t threads[7];
    for (int i = 0; i < 7; i++) {
        jobs[i] = (gemm_job){.rt = rt, .module = m, .n = 48, .rounds = 20, .seed = i + 1};
        pthread_create(&threads[i], NULL, gemm_worker, &jobs[i]);
    }
    dw_actor *a;
    CHECK_OK(dw_actor_create(rt, m, NULL, &a, &err));
    for (size_t i = 0; i < sizeof trap_cases / sizeof trap_cases[0]; i++) {
        int32_t arg = 5;
        dw_status st = call_i32(a, trap_cases[i].export, !strcmp(trap_cases[i].export, "trap_divide_by_zero"), &arg,
                                NULL, &err);
        CHECK_MSG(st == DW_ERR_TRAP, "%s returned %s", trap_cases[i].export, dw_status_name(st));
        CHECK_MSG(strstr(err.message, trap_cases[i].expected), "%s: '%s' lacks '%s'", trap_cases[i].export,
                  err.message, trap_cases[i].expected);
        /* the trapped actor is still usable */
        int32_t two[2] = {20, 22}, sum = 0;
        CHECK_OK(call_i32(a, "add", 2, two, &sum, &err));
        CHECK(sum == 42);
    }
    dw_actor_free(a);
    for (int i = 0; i < 7; i++) {
        pthread_join(threads[i], NULL);
        CHECK_MSG(jobs[i].status == DW_OK, "worker %d: %s", i, jobs[i].err.message);
        CHECK_MSG(jobs[i].errors == 0, "worker %d: %d GEMM errors", i, jobs[i].errors);
    }
    close_probe(rt, m);
}

TEST(actor_infinite_loop_is_stopped_by_timeout) {
    dw_error err;
    dw_runtime *rt;
    dw_module *m;
    CHECK_OK(open_probe(&rt, &m, &err));
    dw_actor_options o = {.timeout_seconds = 0.05};
    dw_actor *a;
    CHECK_OK(dw_actor_create(rt, m, &o, &a, &err));
    CHECK(call_i32(a, "loop_forever", 0, NULL, NULL, &err) == DW_ERR_TRAP);
    CHECK_MSG(strstr(err.message, "interrupt"), "%s", err.message);
    int32_t two[2] = {1, 2}, sum = 0; /* the deadline is re-armed for the next call */
    CHECK_OK(call_i32(a, "add", 2, two, &sum, &err));
    CHECK(sum == 3);
    dw_actor_free(a);
    close_probe(rt, m);
}

TEST(actor_bad_guest_pointer_traps_with_host_function_name) {
    dw_error err;
    dw_runtime *rt;
    dw_module *m;
    CHECK_OK(open_probe(&rt, &m, &err));
    dw_actor *a;
    CHECK_OK(dw_actor_create(rt, m, NULL, &a, &err));
    CHECK(call_i32(a, "gemm_bad_pointer", 0, NULL, NULL, &err) == DW_ERR_TRAP);
    CHECK_MSG(strstr(err.message, "dw.gemm") && strstr(err.message, "outside guest memory"), "%s", err.message);
    CHECK(call_i32(a, "log_bad_length", 0, NULL, NULL, &err) == DW_ERR_TRAP);
    CHECK_MSG(strstr(err.message, "dw.log"), "%s", err.message);
    int32_t rc = 0;
    CHECK_OK(call_i32(a, "gemm_bad_dims", 0, NULL, &rc, &err));
    CHECK(rc == -1); /* DW_E_INVALID: a bad dimension is an error code, not a trap */
    dw_actor_free(a);
    close_probe(rt, m);
}

TEST(actor_malformed_modules_are_refused_with_a_reason) {
    dw_error err;
    dw_runtime *rt = new_runtime(&err);
    dw_module *m = NULL;
    static const uint8_t not_wasm[] = "ELF\x7f garbage";
    CHECK(dw_module_load_bytes(rt, "x.wasm", not_wasm, sizeof not_wasm, &m, &err) == DW_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "x.wasm") && strstr(err.message, "not a WebAssembly module"), "%s", err.message);
    static const uint8_t header_only[] = {0, 'a', 's', 'm', 1, 0, 0, 0, 1, 5};
    CHECK(dw_module_load_bytes(rt, "y.wasm", header_only, sizeof header_only, &m, &err) == DW_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "y.wasm") && strstr(err.message, "end"), "%s", err.message);
    static const uint8_t short_file[] = {0, 'a', 's', 'm', 1};
    CHECK(dw_module_load_bytes(rt, "z.wasm", short_file, sizeof short_file, &m, &err) == DW_ERR_FORMAT);
    CHECK(strstr(err.message, "truncated"));
    CHECK(m == NULL);
    dw_runtime_free(rt);
}

TEST(actor_eight_actors_on_four_threads_verify_gemms) {
    dw_error err;
    dw_runtime *rt;
    dw_module *m;
    CHECK_OK(open_probe(&rt, &m, &err));
    gemm_job jobs[8];
    pthread_t threads[4];
    for (int i = 0; i < 8; i++) jobs[i] = (gemm_job){.rt = rt, .module = m, .n = 64, .rounds = 3, .seed = 100 + i};
    for (int wave = 0; wave < 2; wave++) {
        for (int t = 0; t < 4; t++) pthread_create(&threads[t], NULL, gemm_worker, &jobs[wave * 4 + t]);
        for (int t = 0; t < 4; t++) pthread_join(threads[t], NULL);
    }
    for (int i = 0; i < 8; i++) {
        CHECK_MSG(jobs[i].status == DW_OK, "actor %d: %s", i, jobs[i].err.message);
        CHECK_MSG(jobs[i].errors == 0, "actor %d: %d errors", i, jobs[i].errors);
    }
    close_probe(rt, m);
}

TEST(actor_memory_grow_keeps_base_and_backend_uses_new_pages) {
    dw_error err;
    dw_runtime *rt;
    dw_module *m;
    CHECK_OK(open_probe(&rt, &m, &err));
    dw_actor *a;
    CHECK_OK(dw_actor_create(rt, m, NULL, &a, &err));
    size_t size0, size1;
    uint8_t *base0 = dw_actor_memory(a, &size0);
    int32_t pages = 32, old_pages = 0;
    CHECK_OK(call_i32(a, "grow", 1, &pages, &old_pages, &err));
    CHECK((size_t)old_pages * 65536 == size0);
    uint8_t *base1 = dw_actor_memory(a, &size1);
    CHECK(base1 == base0);
    CHECK(size1 == size0 + 32 * 65536);
    /* GEMM whose three matrices lie entirely in the grown pages */
    int32_t args[3] = {(int32_t)size0, 128, 7}, errors = -1;
    CHECK_OK(call_i32(a, "gemm_at", 3, args, &errors, &err));
    CHECK(errors == 0);
    dw_actor_free(a);
    close_probe(rt, m);
}

TEST(actor_memory_limit_makes_grow_fail) {
    dw_error err;
    dw_runtime *rt;
    dw_module *m;
    CHECK_OK(open_probe(&rt, &m, &err));
    dw_actor *a;
    dw_actor_options o = {.memory_limit = 4 << 20};
    CHECK_OK(dw_actor_create(rt, m, &o, &a, &err));
    int32_t pages = 128, r = 0; /* 8 MiB more */
    CHECK_OK(call_i32(a, "grow", 1, &pages, &r, &err));
    CHECK(r == -1);
    pages = 1;
    CHECK_OK(call_i32(a, "grow", 1, &pages, &r, &err));
    CHECK(r > 0);
    dw_actor_free(a);
    close_probe(rt, m);
}

TEST(module_cache_is_reused_and_invalidated_by_a_change) {
    dw_error err;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/cache-test", dw_test_tmp_dir());
    dw_runtime_options o = {.module_cache_dir = dir};
    dw_runtime *rt;
    CHECK_OK(dw_runtime_create(&o, &rt, &err));
    snprintf(probe_path, sizeof probe_path, "%s/guests/probe.wasm", dw_test_build_dir());
    FILE *f = fopen(probe_path, "rb");
    CHECK(f);
    static uint8_t bytes[1 << 20];
    size_t len = fread(bytes, 1, sizeof bytes, f);
    fclose(f);
    dw_module *m1, *m2, *m3;
    CHECK_OK(dw_module_load_bytes(rt, "probe", bytes, len, &m1, &err));
    CHECK(!dw_module_stats_get(m1)->from_cache);
    CHECK_OK(dw_module_load_bytes(rt, "probe", bytes, len, &m2, &err));
    CHECK(dw_module_stats_get(m2)->from_cache);
    /* a changed module (an extra custom section appended) must not reuse the old code */
    static const uint8_t custom[] = {0, 4, 3, 'd', 'w', 'x'};
    memcpy(bytes + len, custom, sizeof custom);
    CHECK_OK(dw_module_load_bytes(rt, "probe2", bytes, len + sizeof custom, &m3, &err));
    CHECK(!dw_module_stats_get(m3)->from_cache);
    CHECK(memcmp(dw_module_stats_get(m1)->sha256, dw_module_stats_get(m3)->sha256, 32) != 0);
    dw_actor *a; /* and the cached module runs */
    CHECK_OK(dw_actor_create(rt, m2, NULL, &a, &err));
    int32_t two[2] = {40, 2}, sum = 0;
    CHECK_OK(call_i32(a, "add", 2, two, &sum, &err));
    CHECK(sum == 42);
    dw_actor_free(a);
    dw_module_free(m1), dw_module_free(m2), dw_module_free(m3);
    dw_runtime_free(rt);
}

/* The same growth on the CUDA backend: the new pages are registered and the GPU computes in
 * them (cuBLAS reads A, B and writes C in the grown part of the guest's memory). Passes
 * without running when there is no GPU, unless DW_REQUIRE_CUDA=1 (tools/gpu-check.sh). */
TEST(cuda_actor_memory_grow_new_pages_are_usable_by_gpu) {
    dw_error err;
    dw_runtime *rt = new_runtime(&err);
    dw_backend *cuda;
    dw_status st = dw_runtime_backend(rt, "cuda", &cuda, &err);
    const char *req = getenv("DW_REQUIRE_CUDA");
    if (st == DW_ERR_UNSUPPORTED && !(req && *req == '1')) {
        printf("    skipped: no CUDA device (%s)\n", err.message);
        dw_runtime_free(rt);
        return;
    }
    CHECK_OK(st);
    dw_module *m;
    CHECK_OK(dw_module_load_file(rt, probe_path, &m, &err));
    dw_actor_options o = {.backend = "cuda"};
    dw_actor *a;
    CHECK_OK(dw_actor_create(rt, m, &o, &a, &err));
    size_t size0;
    uint8_t *base0 = dw_actor_memory(a, &size0);
    int32_t pages = 16, old_pages;
    CHECK_OK(call_i32(a, "grow", 1, &pages, &old_pages, &err));
    CHECK(dw_actor_memory(a, NULL) == base0);
    int32_t args[3] = {(int32_t)size0, 96, 3}, errors = -1;
    CHECK_OK(call_i32(a, "gemm_at", 3, args, &errors, &err));
    CHECK(errors == 0);
    /* and in malloc'd buffers that straddle the original and the grown pages */
    CHECK_OK(call_i32(a, "gemm_rounds", 3, (int32_t[]){64, 2, 5}, &errors, &err));
    CHECK(errors == 0);
    dw_actor_free(a);
    close_probe(rt, m);
}

TEST(actor_wasi_sees_only_the_environment_and_folders_it_is_given) {
    dw_error err;
    dw_runtime *rt;
    dw_module *m;
    CHECK_OK(open_probe(&rt, &m, &err));
    char dir[600], file[700], spec[1400];
    snprintf(dir, sizeof dir, "%s/wasi-dir", dw_test_tmp_dir());
    snprintf(file, sizeof file, "%s/hello.txt", dir);
    snprintf(spec, sizeof spec, "%s::/data", dir);
    CHECK(mkdir(dir, 0700) == 0);
    FILE *f = fopen(file, "w");
    CHECK(f && fputs("hello world", f) >= 0 && fclose(f) == 0);
    dw_actor *bare, *given;
    CHECK_OK(dw_actor_create(rt, m, NULL, &bare, &err));
    const char *env[] = {"DW_TEST_VAR=hello"}, *dirs[] = {spec};
    dw_actor_options o = {.n_env = 1, .env = env, .n_dirs = 1, .dirs = dirs, .dirs_read_only = 1};
    CHECK_OK(dw_actor_create(rt, m, &o, &given, &err));
    int32_t r;
    CHECK_OK(call_i32(bare, "env_length", 0, NULL, &r, &err));
    CHECK(r == -1);
    CHECK_OK(call_i32(bare, "file_size", 0, NULL, &r, &err));
    CHECK(r == -1);
    CHECK_OK(call_i32(given, "env_length", 0, NULL, &r, &err));
    CHECK(r == 5);
    CHECK_OK(call_i32(given, "file_size", 0, NULL, &r, &err));
    CHECK(r == 11);
    dw_actor_free(bare);
    dw_actor_free(given);
    close_probe(rt, m);
}

TEST(actor_imported_memory_is_created_by_driftwood) {
    dw_error err;
    dw_runtime *rt = new_runtime(&err);
    static const char wat[] =
        "(module (import \"env\" \"memory\" (memory 2 16))"
        " (func (export \"store\") (param i32 i32) local.get 0 local.get 1 i32.store)"
        " (func (export \"grow\") (param i32) (result i32) local.get 0 memory.grow))";
    wasm_byte_vec_t bytes;
    wasmtime_error_t *e = wasmtime_wat2wasm(wat, sizeof wat - 1, &bytes);
    CHECK(e == NULL);
    dw_module *m;
    CHECK_OK(dw_module_load_bytes(rt, "imports-memory.wat", (const uint8_t *)bytes.data, bytes.size, &m, &err));
    wasm_byte_vec_delete(&bytes);
    dw_actor *a;
    CHECK_OK(dw_actor_create(rt, m, NULL, &a, &err));
    size_t size;
    uint8_t *base = dw_actor_memory(a, &size); /* the imported memory is the actor's memory 0 */
    CHECK(base != NULL && size == 2 * 65536);
    int32_t args[2] = {1000, 0x12345678}, old;
    CHECK_OK(call_i32(a, "store", 2, args, NULL, &err));
    uint32_t seen;
    memcpy(&seen, base + 1000, 4); /* the guest's store is visible through the host's pointer */
    CHECK(seen == 0x12345678);
    int32_t pages = 3;
    CHECK_OK(call_i32(a, "grow", 1, &pages, &old, &err));
    CHECK(old == 2 && dw_actor_memory(a, &size) == base && size == 5 * 65536);
    dw_actor_free(a);
    close_probe(rt, m);
}
