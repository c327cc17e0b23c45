/* The core host functions of module "dw": gemm, log, now, nop, last_error
 * (include/driftwood/guest.h documents them for guests). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "abi/abi.h"
#include "abi/guest_memory.h"
#include "backend/backend.h"
#include "core/clock.h"
#include "driftwood/guest.h"

/* Largest dimension dw.gemm accepts; larger products must be split by the guest. */
#define DW_GEMM_MAX_DIM 65536
/* Under a time limit, dw.gemm runs as blocks of whole rows of C and checks the limit between
 * them: the first block is about DW_GEMM_FIRST_BLOCK_MACS multiply-adds, each next one sized
 * from the rate measured so far to take about DW_GEMM_BLOCK_SECONDS (whatever the backend's
 * speed, or a sanitizer's), at least one row. */
#define DW_GEMM_FIRST_BLOCK_MACS ((uint64_t)1 << 22)
#define DW_GEMM_BLOCK_SECONDS 0.02

static wasm_trap_t *host_gemm(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    int32_t m = args[0].i32, nn = args[1].i32, k = args[2].i32;
    uint32_t pa = (uint32_t)args[3].i32, pb = (uint32_t)args[4].i32, pc = (uint32_t)args[5].i32;
    if (m <= 0 || nn <= 0 || k <= 0 || m > DW_GEMM_MAX_DIM || nn > DW_GEMM_MAX_DIM || k > DW_GEMM_MAX_DIM) {
        args[0].i32 = dw__abi_fail(ctx, DW_E_INVALID, "dw.gemm: dimensions m=%d n=%d k=%d out of range [1, %d]", m,
                                   nn, k, DW_GEMM_MAX_DIM);
        return NULL;
    }
    const float *a = dw__guest_span(ctx->memory, pa, (uint64_t)m * k, sizeof(float), 4);
    const float *b = dw__guest_span(ctx->memory, pb, (uint64_t)k * nn, sizeof(float), 4);
    float *c = dw__guest_span(ctx->memory, pc, (uint64_t)m * nn, sizeof(float), 4);
    if (!a) return dw__abi_trap("dw.gemm", "matrix A at %u (%d×%d f32) is outside guest memory or misaligned", pa, m, k);
    if (!b) return dw__abi_trap("dw.gemm", "matrix B at %u (%d×%d f32) is outside guest memory or misaligned", pb, k, nn);
    if (!c) return dw__abi_trap("dw.gemm", "matrix C at %u (%d×%d f32) is outside guest memory or misaligned", pc, m, nn);
    dw_error err;
    uint64_t row_macs = (uint64_t)nn * (uint64_t)k;
    double rows = ctx->deadline_s == 0 ? m : DW_GEMM_FIRST_BLOCK_MACS / (double)row_macs, t0 = dw__now_s();
    for (int32_t r = 0; r < m;) {
        if (r > 0) {
            if (dw__abi_out_of_time(ctx)) return dw__abi_timeout_trap(ctx, "dw.gemm");
            double spent = dw__now_s() - t0;
            rows = spent > 0 ? r / spent * DW_GEMM_BLOCK_SECONDS : 2 * rows;
        }
        int32_t block = rows < 1 ? 1 : rows >= m - r ? m - r : (int32_t)rows;
        if (ctx->backend->ops->gemm_f32(ctx->backend->ctx, block, nn, k, a + (size_t)r * k, b, c + (size_t)r * nn, &err) !=
            DW_OK) {
            args[0].i32 = dw__abi_fail(ctx, DW_E_BACKEND, "dw.gemm: %s", err.message);
            return NULL;
        }
        r += block;
    }
    args[0].i32 = DW_E_OK;
    return NULL;
}

static wasm_trap_t *host_log(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    int32_t len = args[1].i32;
    const char *msg;
    wasm_trap_t *trap = dw__abi_span(ctx, "dw.log", "message", (uint32_t)args[0].i32, len, 1, 1, &msg);
    if (trap) return trap;
    fprintf(stderr, "[actor] %.*s\n", len, msg);
    return NULL;
}

static wasm_trap_t *host_now(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    args[0].i64 = (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
    return NULL;
}

static wasm_trap_t *host_nop(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    return NULL;
}

static wasm_trap_t *host_last_error(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    int32_t cap = args[1].i32;
    char *buf;
    wasm_trap_t *trap = dw__abi_span(ctx, "dw.last_error", "buffer", (uint32_t)args[0].i32, cap, 1, 1, &buf);
    if (trap) return trap;
    size_t len = strlen(ctx->last_error);
    if (cap > 0) {
        size_t k = len < (size_t)cap - 1 ? len : (size_t)cap - 1;
        memcpy(buf, ctx->last_error, k);
        buf[k] = 0;
    }
    args[0].i32 = (int32_t)len;
    return NULL;
}

static wasm_trap_t *host_message_read(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    int32_t cap = args[1].i32;
    uint8_t *buf;
    wasm_trap_t *trap = dw__abi_span(ctx, "dw.message_read", "buffer", (uint32_t)args[0].i32, cap, 1, 1, &buf);
    if (trap) return trap;
    size_t k = ctx->message_len < (size_t)cap ? ctx->message_len : (size_t)cap;
    if (k) memcpy(buf, ctx->message, k);
    args[0].i32 = (int32_t)ctx->message_len;
    return NULL;
}

static wasm_trap_t *host_emit(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    int32_t len = args[1].i32;
    const char *bytes;
    wasm_trap_t *trap = dw__abi_span(ctx, "dw.emit", "output", (uint32_t)args[0].i32, len, 1, 1, &bytes);
    if (trap) return trap;
    if (ctx->emit) ctx->emit(ctx->emit_user, bytes, (size_t)len);
    else {
        fwrite(bytes, 1, (size_t)len, stdout);
        fflush(stdout);
    }
    return NULL;
}

const dw__host_function dw__host_core_functions[] = {
    {"message_read", "ii", "i", host_message_read},
    {"emit", "ii", "", host_emit},
    {"gemm", "iiiiii", "i", host_gemm},
    {"log", "ii", "", host_log},
    {"now", "", "I", host_now},
    {"nop", "", "", host_nop},
    {"last_error", "ii", "i", host_last_error},
};
const size_t dw__host_core_function_count = sizeof dw__host_core_functions / sizeof dw__host_core_functions[0];
