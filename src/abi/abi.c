/* Defining the "dw" host functions on a linker, and the helpers they share for traps and
 * error codes. */
#include "abi/abi.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "abi/guest_memory.h"
#include "core/clock.h"
#include "driftwood/engine.h"
#include "wasm/engine.h"

static wasm_valtype_t *valtype_of(char c) {
    switch (c) {
    case 'i': return wasm_valtype_new_i32();
    case 'I': return wasm_valtype_new_i64();
    case 'f': return wasm_valtype_new_f32();
    case 'F': return wasm_valtype_new_f64();
    }
    return NULL;
}

static wasm_functype_t *functype_of(const char *params, const char *results) {
    wasm_valtype_vec_t p, r;
    size_t np = strlen(params), nr = strlen(results);
    wasm_valtype_vec_new_uninitialized(&p, np);
    wasm_valtype_vec_new_uninitialized(&r, nr);
    for (size_t i = 0; i < np; i++) p.data[i] = valtype_of(params[i]);
    for (size_t i = 0; i < nr; i++) r.data[i] = valtype_of(results[i]);
    return wasm_functype_new(&p, &r);
}

int dw__abi_out_of_time(const dw__abi_context *ctx) {
    return ctx->deadline_s > 0 && dw__now_s() > ctx->deadline_s;
}

wasm_trap_t *dw__abi_timeout_trap(const dw__abi_context *ctx, const char *function) {
    return dw__abi_trap(function, "timeout: the call ran past the actor's time limit of %g s", ctx->timeout_s);
}

/* Under a time limit every host function runs through here: a call that starts or ends out of
 * time traps, so that no guest gets past its limit through host work (long host work also
 * checks between its chunks). Without a limit the functions are defined as they are. */
static wasm_trap_t *run_bound(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    const dw__abi_binding *b = env;
    wasm_trap_t *trap = NULL;
    if (!dw__abi_out_of_time(b->ctx)) trap = b->function->callback(b->ctx, caller, args, n);
    if (!trap && dw__abi_out_of_time(b->ctx)) {
        char name[48];
        snprintf(name, sizeof name, "dw.%s", b->function->name);
        trap = dw__abi_timeout_trap(b->ctx, name);
    }
    return trap;
}

dw_status dw__abi_define_table(wasmtime_linker_t *linker, dw__abi_context *ctx, const dw__host_function *table,
                               size_t n, dw_error *err) {
    for (size_t i = 0; i < n; i++) {
        if (ctx->binding_count == DW_ABI_MAX_FUNCTIONS)
            return dw_error_set(err, DW_ERR_LIMIT, "more than %d host functions", DW_ABI_MAX_FUNCTIONS);
        dw__abi_binding *b = &ctx->bindings[ctx->binding_count++];
        *b = (dw__abi_binding){.ctx = ctx, .function = &table[i]};
        wasm_functype_t *ty = functype_of(table[i].params, table[i].results);
        int bound = ctx->timeout_s > 0;
        wasmtime_error_t *e = wasmtime_linker_define_func_unchecked(linker, "dw", 2, table[i].name, strlen(table[i].name),
                                                                    ty, bound ? run_bound : table[i].callback,
                                                                    bound ? (void *)b : (void *)ctx, NULL);
        wasm_functype_delete(ty);
        if (e) {
            dw__wasm_error_take(e, NULL, err);
            return dw_error_prefix(err, "defining dw.%s", table[i].name);
        }
    }
    return DW_OK;
}

dw_status dw__abi_define(wasmtime_linker_t *linker, dw__abi_context *ctx, dw_error *err) {
    dw_status st = dw__abi_define_table(linker, ctx, dw__host_core_functions, dw__host_core_function_count, err);
    if (st == DW_OK) st = dw__abi_define_table(linker, ctx, dw__host_llm_functions, dw__host_llm_function_count, err);
    return st;
}

wasm_trap_t *dw__abi_trap(const char *function, const char *fmt, ...) {
    char msg[300];
    int n = snprintf(msg, sizeof msg, "%s: ", function);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - n, fmt, ap);
    va_end(ap);
    return wasmtime_trap_new(msg, strlen(msg));
}

wasm_trap_t *dw__abi_span(const dw__abi_context *ctx, const char *function, const char *what, uint32_t p,
                          int64_t count, uint32_t elem_size, uint32_t align, void *out) {
    void *ptr = count < 0 || count > UINT32_MAX ? NULL : dw__guest_span(ctx->memory, p, (uint64_t)count, elem_size, align);
    memcpy(out, &ptr, sizeof ptr);
    if (ptr) return NULL;
    return dw__abi_trap(function, "%s at %u (%lld %s) is outside guest memory%s", what, p, (long long)count,
                        elem_size == 1 ? "bytes" : "elements", align > 1 ? " or misaligned" : "");
}

int32_t dw__abi_fail(dw__abi_context *ctx, int32_t code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->last_error, sizeof ctx->last_error, fmt, ap);
    va_end(ap);
    return code;
}

dw_status dw__abi_session_open(dw__abi_context *ctx, int model, int n_ctx, dw__abi_session *slot, dw_error *err) {
    const dw__abi_model *m = &ctx->models[model];
    dw_session_options opts = {.ctx = n_ctx, .kv_f32 = m->kv_f32};
    uint64_t kv = dw_session_kv_bytes(m->model, &opts), held = 0;
    for (int i = 0; i < DW_ABI_MAX_SESSIONS; i++)
        if (ctx->sessions[i].session) held += ctx->sessions[i].kv_bytes;
    if (kv > ctx->kv_limit - held)
        return dw_error_set(err, DW_ERR_LIMIT,
                            "a KV cache of %llu bytes would take the actor's sessions past their KV memory limit "
                            "(%llu of %zu bytes in use)",
                            (unsigned long long)kv, (unsigned long long)held, ctx->kv_limit);
    dw_status st = dw_session_create(m->model, &opts, &slot->session, err);
    if (st != DW_OK) return st;
    slot->model = model;
    slot->kv_bytes = (size_t)kv;
    return DW_OK;
}
