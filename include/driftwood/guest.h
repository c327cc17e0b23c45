/* Driftwood guest SDK: the host functions an actor imports from module "dw".
 * Compile actors with sdk/guest.mk (clang --target=wasm32-wasi). Pointers are offsets in
 * the actor's own memory; a pointer or length outside it traps (the actor is not trusted
 * with the host's memory). Functions returning int32_t return 0 or more on success and a
 * negative DW_E_* code on failure; dw_last_error() then gives the message. */
#ifndef DRIFTWOOD_GUEST_H
#define DRIFTWOOD_GUEST_H

#include <stdint.h>

#if defined(__wasm__)
#define DW_IMPORT(name) __attribute__((import_module("dw"), import_name(#name)))
#else /* the host includes this header for the DW_E_* codes only */
#define DW_IMPORT(name)
#endif

enum {
    DW_E_OK = 0,
    DW_E_INVALID = -1,   /* an argument is out of range */
    DW_E_BACKEND = -2,   /* the compute device failed */
    DW_E_NOT_FOUND = -3, /* no such model, session or name */
    DW_E_LIMIT = -4,     /* a capacity (context, buffer, handle table) is exceeded */
    DW_E_STATE = -5,     /* not allowed now */
};

/* C[m×n] = A[m×k] × B[k×n]: f32, row-major, computed on the actor's backend in place in
 * the actor's memory (on CUDA the GPU reads A and B and writes C through these very pages).
 * Finished when it returns. */
DW_IMPORT(gemm) int32_t dw_gemm(int32_t m, int32_t n, int32_t k, const float *a, const float *b, float *c);

/* Writes len bytes of msg to the host's log (stderr), one line. */
DW_IMPORT(log) void dw_log(const char *msg, int32_t len);

/* Monotonic clock, nanoseconds. */
DW_IMPORT(now) int64_t dw_now(void);

/* Does nothing: measures the cost of a host call. */
DW_IMPORT(nop) void dw_nop(void);

/* Copies the message of the last failed call (NUL-terminated, truncated to cap) and
 * returns its length. */
DW_IMPORT(last_error) int32_t dw_last_error(char *buf, int32_t cap);

#endif
