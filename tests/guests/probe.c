/* Test actor (a WASI reactor: no main) with one export per behaviour the runtime tests
 * need: each kind of trap, a runaway loop, memory growth, GEMM work, bad host-call
 * pointers, and a host-call loop for the call-cost benchmark. */
#include <driftwood/guest.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT(name) __attribute__((export_name(#name)))

static volatile int32_t sink;

EXPORT(trap_out_of_bounds) int32_t trap_out_of_bounds(void) {
    volatile int32_t *p = (volatile int32_t *)(uintptr_t)0xFFFFFFF0u;
    return *p;
}
EXPORT(trap_unreachable) void trap_unreachable(void) { __builtin_trap(); }

/* Recursion through a volatile function pointer keeps every frame on the Wasm stack (no
 * shadow-stack use, no tail-call or loop rewriting), so Wasmtime's stack limit trips. */
static int32_t recurse(int32_t depth);
static int32_t (*volatile recurse_ptr)(int32_t) = recurse;
static int32_t recurse(int32_t depth) { return recurse_ptr(depth + 1) + 1; }
EXPORT(trap_stack_exhausted) int32_t trap_stack_exhausted(void) { return recurse(0); }

EXPORT(trap_divide_by_zero) int32_t trap_divide_by_zero(int32_t x) {
    volatile int32_t zero = 0;
    return x / zero;
}
EXPORT(trap_integer_overflow) int32_t trap_integer_overflow(void) {
    volatile int32_t a = INT_MIN, b = -1;
    return a / b;
}
typedef int32_t (*binary_fn)(int32_t, int32_t);
typedef int32_t (*unary_fn)(int32_t);
EXPORT(add) int32_t add(int32_t a, int32_t b) { return a + b; }
EXPORT(trap_bad_indirect_call) int32_t trap_bad_indirect_call(void) {
    volatile uintptr_t f = (uintptr_t)&add;
    return ((unary_fn)f)(1); /* wrong signature: call_indirect type mismatch */
}
EXPORT(trap_null_indirect_call) int32_t trap_null_indirect_call(void) {
    volatile uintptr_t f = 0;
    return ((unary_fn)f)(1);
}
EXPORT(loop_forever) void loop_forever(void) {
    for (;;) sink++;
}

/* Grows memory by `pages` and returns the previous size in pages (-1 on failure). */
EXPORT(grow) int32_t grow(int32_t pages) { return (int32_t)__builtin_wasm_memory_grow(0, pages); }
EXPORT(memory_pages) int32_t memory_pages(void) { return (int32_t)__builtin_wasm_memory_size(0); }
/* Writes value to every 4 KiB page of [offset, offset+len) and returns the sum read back. */
EXPORT(touch) int64_t touch(int32_t offset, int32_t len, int32_t value) {
    int64_t sum = 0;
    for (int32_t i = 0; i < len; i += 4096) ((volatile int32_t *)(uintptr_t)(offset + i))[0] = value;
    for (int32_t i = 0; i < len; i += 4096) sum += ((volatile int32_t *)(uintptr_t)(offset + i))[0];
    return sum;
}
/* dw.gemm on matrices placed at an explicit offset (e.g. in freshly grown pages). */
EXPORT(gemm_at) int32_t gemm_at(int32_t offset, int32_t n, int32_t seed) {
    float *a = (float *)(uintptr_t)offset, *b = a + n * n, *c = b + n * n;
    uint32_t s = (uint32_t)seed * 2654435761u + 1;
    for (int i = 0; i < n * n; i++) {
        s = s * 1664525u + 1013904223u;
        a[i] = (float)(s >> 8) / (float)(1 << 24) - 0.5f;
        s = s * 1664525u + 1013904223u;
        b[i] = (float)(s >> 8) / (float)(1 << 24) - 0.5f;
        c[i] = NAN;
    }
    if (dw_gemm(n, n, n, a, b, c) != DW_E_OK) return -1;
    int32_t errors = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double ref = 0;
            for (int p = 0; p < n; p++) ref += (double)a[i * n + p] * b[p * n + j];
            if (!(fabs(c[i * n + j] - ref) <= 1e-4 * (1 + fabs(ref)))) errors++;
        }
    return errors;
}
/* Allocates three n×n matrices and verifies rounds GEMMs on fresh data; returns errors. */
EXPORT(gemm_rounds) int32_t gemm_rounds(int32_t n, int32_t rounds, int32_t seed) {
    float *m = malloc(sizeof(float) * 3 * n * n + 16);
    if (!m) return -1;
    int32_t errors = 0;
    for (int r = 0; r < rounds; r++) {
        int32_t e = gemm_at((int32_t)(uintptr_t)m, n, seed * 1000 + r);
        if (e < 0) return -1;
        errors += e;
    }
    free(m);
    return errors;
}
EXPORT(gemm_bad_pointer) int32_t gemm_bad_pointer(void) {
    float *far = (float *)(uintptr_t)(__builtin_wasm_memory_size(0) * 65536u - 16);
    return dw_gemm(4, 4, 4, far, far, far); /* 64 bytes each, only 16 inside memory */
}
EXPORT(log_bad_length) void log_bad_length(void) { dw_log("x", 0x7FFFFFFF); }
EXPORT(gemm_bad_dims) int32_t gemm_bad_dims(void) {
    static float x[4];
    return dw_gemm(0, 1, 1, x, x, x);
}
/* Calls the no-op host function n times (host-call cost benchmark). */
EXPORT(call_nop) void call_nop(int32_t n) {
    for (int32_t i = 0; i < n; i++) dw_nop();
}

/* WASI: the environment and the folders the host opened for the guest. */
EXPORT(env_length) int32_t env_length(void) {
    const char *v = getenv("DW_TEST_VAR");
    return v ? (int32_t)strlen(v) : -1;
}
EXPORT(file_size) int32_t file_size(void) {
    FILE *f = fopen("/data/hello.txt", "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    int32_t n = (int32_t)ftell(f);
    fclose(f);
    return n;
}
