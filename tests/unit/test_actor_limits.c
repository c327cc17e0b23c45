/* Per-actor limits that a guest or a snapshot cannot escape: the time limit's range, tables
 * and memories bounded by the store's limiter, and a restore that costs what the snapshot
 * holds and respects the memory limit. (Host calls under the time limit: tests/cli/
 * test_hostile_limits.sh.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wasmtime.h>

#include "driftwood/actor.h"
#include "driftwood/runtime.h"
#include "driftwood/snapshot.h"
#include "test.h"

static dw_runtime *limits_runtime(dw_error *err) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/modules", dw_test_tmp_dir());
    dw_runtime_options o = {.module_cache_dir = dir};
    dw_runtime *rt = NULL;
    return dw_runtime_create(&o, &rt, err) == DW_OK ? rt : NULL;
}

static dw_status load_wat(dw_runtime *rt, const char *name, const char *wat, dw_module **m, dw_error *err) {
    wasm_byte_vec_t bytes;
    wasmtime_error_t *e = wasmtime_wat2wasm(wat, strlen(wat), &bytes);
    if (e) {
        wasmtime_error_delete(e);
        return dw_error_set(err, DW_ERR_FORMAT, "%s: bad WAT", name);
    }
    dw_status st = dw_module_load_bytes(rt, name, (const uint8_t *)bytes.data, bytes.size, m, err);
    wasm_byte_vec_delete(&bytes);
    return st;
}

static dw_status call1(dw_actor *a, const char *name, int32_t arg, int32_t *result, dw_error *err) {
    dw_value in = {.kind = DW_I32, .of.i32 = arg}, out[2];
    size_t nres = 0;
    dw_status st = dw_actor_invoke(a, name, &in, 1, out, 2, &nres, err);
    if (st == DW_OK) *result = nres ? out[0].of.i32 : 0;
    return st;
}

/* Resident set size of this process in bytes (from /proc/self/statm). */
static size_t resident_bytes(void) {
    unsigned long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%lu %lu", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

TEST(actor_timeout_must_be_finite_positive_and_in_range) {
    dw_error err;
    dw_runtime *rt = limits_runtime(&err);
    CHECK(rt != NULL);
    dw_module *m;
    CHECK_OK(load_wat(rt, "empty.wat", "(module)", &m, &err));
    static const struct {
        double seconds;
        const char *says;
    } cases[] = {{INFINITY, "too large"}, {1e300, "too large"}, {1e-320, "too small"}, {-1, "must be positive"},
                 {NAN, "must be positive"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dw_actor_options o = {.timeout_seconds = cases[i].seconds};
        dw_actor *a = NULL;
        dw_status st = dw_actor_create(rt, m, &o, &a, &err);
        dw_actor_free(a);
        CHECK_MSG(st == DW_ERR_INVALID_ARGUMENT && strstr(err.message, cases[i].says), "timeout %g: %s", cases[i].seconds,
                  st == DW_OK ? "accepted" : err.message);
    }
    dw_actor_options largest = {.timeout_seconds = DW_ACTOR_TIMEOUT_MAX_SECONDS};
    dw_actor *a;
    CHECK_OK(dw_actor_create(rt, m, &largest, &a, &err));
    dw_actor_free(a);
    dw_module_free(m);
    dw_runtime_free(rt);
}

static const char table_wat[] =
    "(module (table $t 1 funcref)"
    " (func (export \"grow\") (param i32) (result i32) ref.null func local.get 0 table.grow $t)"
    /* grows by 4096 elements until refused; returns the table's size then */
    " (func (export \"grow_all\") (param i32) (result i32)"
    "  (loop $again (if (i32.ge_s (table.grow $t (ref.null func) (i32.const 4096)) (i32.const 0)) (then (br $again))))"
    "  table.size $t))";

TEST(actor_table_growth_is_bounded_by_the_memory_limit) {
    dw_error err;
    dw_runtime *rt = limits_runtime(&err);
    CHECK(rt != NULL);
    dw_module *m;
    CHECK_OK(load_wat(rt, "table.wat", table_wat, &m, &err));
    dw_actor_options o = {.memory_limit = 65536};
    dw_actor *a;
    CHECK_OK(dw_actor_create(rt, m, &o, &a, &err));
    int32_t r;
    CHECK_OK(call1(a, "grow", 1000, &r, &err));
    CHECK(r == 1); /* the old size: a small table still grows */
    CHECK_OK(call1(a, "grow", 10 * 1000 * 1000, &r, &err));
    CHECK_MSG(r == -1, "table.grow by 10M elements under a 64 KiB memory limit returned %d", r);
    CHECK_OK(call1(a, "grow_all", 0, &r, &err));
    CHECK_MSG(r > 1000 && r <= 65536 / DW_ACTOR_TABLE_ELEMENT_BYTES, "a growth loop reached %d elements", r);
    dw_actor_free(a);
    dw_module_free(m);
    dw_runtime_free(rt);
}

TEST(actor_table_growth_is_bounded_without_a_memory_limit) {
    dw_error err;
    dw_runtime *rt = limits_runtime(&err);
    CHECK(rt != NULL);
    dw_module *m;
    CHECK_OK(load_wat(rt, "table.wat", table_wat, &m, &err));
    dw_actor *a;
    CHECK_OK(dw_actor_create(rt, m, NULL, &a, &err));
    int32_t r;
    CHECK_OK(call1(a, "grow", DW_ACTOR_MAX_TABLE_ELEMENTS, &r, &err));
    CHECK_MSG(r == -1, "table.grow past DW_ACTOR_MAX_TABLE_ELEMENTS returned %d", r);
    CHECK_OK(call1(a, "grow", DW_ACTOR_MAX_TABLE_ELEMENTS - 1, &r, &err));
    CHECK(r == 1);
    dw_actor_free(a);
    dw_module_free(m);
    dw_runtime_free(rt);
}

TEST(actor_store_refuses_more_memories_than_the_limit) {
    dw_error err;
    dw_runtime *rt = limits_runtime(&err);
    CHECK(rt != NULL);
    char wat[512] = "(module";
    for (int i = 0; i <= DW_ACTOR_MAX_MEMORIES; i++) strcat(wat, " (memory 1)");
    strcat(wat, ")");
    dw_module *m;
    CHECK_OK(load_wat(rt, "memories.wat", wat, &m, &err));
    dw_actor *a = NULL;
    dw_status st = dw_actor_create(rt, m, NULL, &a, &err);
    dw_actor_free(a);
    CHECK_MSG(st != DW_OK && strstr(err.message, "memor"), "%d memories: %s", DW_ACTOR_MAX_MEMORIES + 1,
              st == DW_OK ? "instantiated" : err.message);
    dw_module_free(m);
    dw_runtime_free(rt);
}

/* A snapshot of an actor whose memory was grown to 1 GiB with one byte written at its end. */
static dw_status sparse_snapshot(dw_runtime *rt, dw_module **m, const char *path, dw_error *err) {
    char wasm[600];
    snprintf(wasm, sizeof wasm, "%s/guests/hostile.wasm", dw_test_build_dir());
    dw_status st = dw_module_load_file(rt, wasm, m, err);
    dw_actor *a = NULL;
    int32_t pages;
    if (!st) st = dw_actor_create(rt, *m, NULL, &a, err);
    if (!st) st = call1(a, "grow_sparse_to", 16384, &pages, err);
    if (!st && pages != 16384) st = dw_error_set(err, DW_ERR_STATE, "the guest's memory is %d pages, not 16384", pages);
    if (!st) st = dw_actor_snapshot_save(a, path, NULL, err);
    dw_actor_free(a);
    return st;
}

TEST(actor_restore_of_a_large_sparse_memory_costs_what_the_snapshot_holds) {
    dw_error err;
    dw_runtime *rt = limits_runtime(&err);
    CHECK(rt != NULL);
    char path[700];
    snprintf(path, sizeof path, "%s/sparse.dwsnap", dw_test_tmp_dir());
    dw_module *m = NULL;
    CHECK_OK(sparse_snapshot(rt, &m, path, &err));
    size_t before = resident_bytes();
    dw_actor *a;
    CHECK_OK(dw_actor_snapshot_restore(rt, m, NULL, path, &a, NULL, &err));
    size_t grown = resident_bytes() - before;
    int32_t byte;
    CHECK_OK(call1(a, "byte_at", (int32_t)((1u << 30) - 1), &byte, &err));
    dw_actor_free(a);
    CHECK(byte == 7);
    CHECK_MSG(grown < (size_t)128 << 20, "restoring a 1 GiB memory holding a few chunks took %zu MiB", grown >> 20);
    dw_module_free(m);
    dw_runtime_free(rt);
}

TEST(actor_restore_refuses_a_memory_over_the_memory_limit) {
    dw_error err;
    dw_runtime *rt = limits_runtime(&err);
    CHECK(rt != NULL);
    char path[700];
    snprintf(path, sizeof path, "%s/sparse-limit.dwsnap", dw_test_tmp_dir());
    dw_module *m = NULL;
    CHECK_OK(sparse_snapshot(rt, &m, path, &err));
    dw_actor_options o = {.memory_limit = (size_t)64 << 20};
    dw_actor *a = NULL;
    dw_status st = dw_actor_snapshot_restore(rt, m, &o, path, &a, NULL, &err);
    dw_actor_free(a);
    CHECK_MSG(st == DW_ERR_LIMIT && strstr(err.message, "memory limit"), "%s", st == DW_OK ? "restored" : err.message);
    dw_module_free(m);
    dw_runtime_free(rt);
}
