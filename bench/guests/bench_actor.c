/* The benchmark actor (a WASI reactor), embedded in the driftwood program: exports what
 * `bench zerocopy` and `bench hostcall` drive — buffers in its own memory, GEMM through
 * dw.gemm on them, and a loop of no-op host calls. */
#include <driftwood/guest.h>
#include <stdint.h>
#include <stdlib.h>

#define EXPORT(name) __attribute__((export_name(#name)))

/* A 64-byte-aligned buffer of bytes in the actor's memory; 0 if out of memory. */
EXPORT(alloc) int32_t alloc(int32_t bytes) { return (int32_t)(uintptr_t)aligned_alloc(64, ((size_t)bytes + 63) & ~63u); }

/* Fills count floats at p with values in [-1, 1) from seed (fresh data, never zeros). */
EXPORT(fill) void fill(float *p, int32_t count, int32_t seed) {
    uint32_t s = (uint32_t)seed * 2654435761u + 12345u;
    for (int32_t i = 0; i < count; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)(s >> 8) / (float)(1 << 23) - 1.0f;
    }
}

/* C = A×B (n×n) on the actor's backend, in place; returns the dw_gemm code. */
EXPORT(gemm) int32_t gemm(int32_t n, const float *a, const float *b, float *c) { return dw_gemm(n, n, n, a, b, c); }

/* Calls the no-op host function n times. */
EXPORT(call_nop) void call_nop(int32_t n) {
    for (int32_t i = 0; i < n; i++) dw_nop();
}
