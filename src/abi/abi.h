/* The host ABI: functions that guests import from module "dw" (declared for guests in
 * include/driftwood/guest.h). Each actor has one dw__abi_context, the env of its host
 * functions, so one actor can never reach another's memory or handles. */
#ifndef DW_ABI_ABI_H
#define DW_ABI_ABI_H

#include <wasmtime.h>

#include "core/region.h"
#include "driftwood/backend.h"
#include "driftwood/error.h"

struct dw_model;
struct dw_tokenizer;
struct dw_session;
struct dw_sampler;

#define DW_ABI_MAX_MODELS 8
#define DW_ABI_MAX_SESSIONS 64
#define DW_ABI_MAX_FUNCTIONS 32 /* host functions defined per actor (core + language model) */

/* Opens a model by name for this actor (the actor layer checks what the actor may use). */
typedef dw_status (*dw__model_opener)(void *opener_ctx, const char *name, struct dw_model **model,
                                      struct dw_tokenizer **tokenizer, int *kv_f32, dw_error *err);
/* Receives the actor's output bytes. */
typedef void (*dw__emit_fn)(void *user, const char *bytes, size_t len);

typedef struct dw__abi_model {
    char name[64];
    struct dw_model *model;
    struct dw_tokenizer *tokenizer;
    int kv_f32; /* sessions on this model keep an F32 cache */
} dw__abi_model;

typedef struct dw__abi_session {
    struct dw_session *session; /* NULL: free slot */
    int model;                  /* index in models[] */
    uint16_t generation;        /* bumped on free, so stale handles are refused */
    size_t kv_bytes;            /* its KV cache's capacity, counted against kv_limit */
} dw__abi_session;

/* Time spent in the engine inside host calls (for the per-turn timing lines). */
typedef struct dw__abi_stats {
    uint64_t prefill_calls, prefill_tokens, decode_tokens;
    double prefill_ms, decode_ms;
} dw__abi_stats;

struct dw__abi_context;
typedef struct dw__host_function dw__host_function;

/* The env of one defined host function: the actor's context and the function it runs. */
typedef struct dw__abi_binding {
    struct dw__abi_context *ctx;
    const dw__host_function *function;
} dw__abi_binding;

typedef struct dw__abi_context {
    dw_region *memory;      /* the guest's memory 0; set once instantiated */
    /* The actor's time limit for the call into the guest now running (docs/DESIGN.md, "Limits
     * that hold per actor"): long host work checks it between bounded chunks, and a host call
     * that ends past it traps. */
    double deadline_s;      /* dw__now_s() value past which the call is out of time; 0: no limit */
    double timeout_s;       /* the limit in seconds (for messages) */
    dw_backend *backend;    /* where dw.gemm and inference run */
    char last_error[256];   /* message for the last failing call, fetched by dw.last_error */

    dw__model_opener open_model;
    void *opener_ctx;
    dw__abi_model models[DW_ABI_MAX_MODELS];
    int model_count;
    dw__abi_session sessions[DW_ABI_MAX_SESSIONS];
    size_t kv_limit;        /* bytes of KV cache the open sessions may hold together */
    struct dw_sampler *sampler; /* scratch for dw.sample, made on first use */
    int sampler_vocab;
    uint8_t sampler_fresh[72];  /* the state a zeroed guest state stands for (a seeded generator), */
    uint8_t sampler_fresh_key[40]; /* computed once per (params, vocabulary) */
    int sampler_fresh_valid;

    const uint8_t *message; /* the message being delivered (dw.message_read) */
    size_t message_len;
    dw__emit_fn emit;       /* NULL: stdout */
    void *emit_user;
    dw__abi_stats stats;
    dw__abi_binding bindings[DW_ABI_MAX_FUNCTIONS];
    int binding_count;
} dw__abi_context;

/* Opens model `name` for the actor (as dw.model_open does) and returns its handle (> 0):
 * the same name gives the same handle. */
dw_status dw__abi_open_model(dw__abi_context *ctx, const char *name, int32_t *handle, dw_error *err);

/* Opens a session of models[model] with a context of n_ctx tokens (0: the engine's default) in
 * the free slot, counting its KV cache against kv_limit before it is made (host or device memory
 * made on the guest's behalf): DW_ERR_LIMIT naming both sizes when it would not fit. */
dw_status dw__abi_session_open(dw__abi_context *ctx, int model, int n_ctx, dw__abi_session *slot, dw_error *err);

/* Frees the context's sessions and sampler (models belong to the runtime). */
void dw__abi_context_release(dw__abi_context *ctx);

/* Defines every "dw" function in linker with ctx as env; ctx must outlive the linker's
 * instances. */
dw_status dw__abi_define(wasmtime_linker_t *linker, dw__abi_context *ctx, dw_error *err);

/* A trap that names the host function and the problem ("dw.gemm: pointer out of bounds"). */
wasm_trap_t *dw__abi_trap(const char *function, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The host pointer for `count` elements of elem_size bytes (aligned to align) at guest offset p,
 * or a trap naming the host function and the argument ("dw.emit: output at 5 (-1 elements) is
 * outside guest memory"). count is the guest's signed length: a negative one traps too.
 * Usage: `if ((trap = dw__abi_span(ctx, "dw.emit", "output", p, len, 1, 1, &ptr))) return trap;` */
wasm_trap_t *dw__abi_span(const dw__abi_context *ctx, const char *function, const char *what, uint32_t p,
                          int64_t count, uint32_t elem_size, uint32_t align, void *out /* void ** */);

/* Whether the current call into the guest has run out of time (always 0 without a limit). */
int dw__abi_out_of_time(const dw__abi_context *ctx);

/* The trap a host function returns when the call has run out of time ("dw.gemm: timeout: ..."). */
wasm_trap_t *dw__abi_timeout_trap(const dw__abi_context *ctx, const char *function);

/* Records a message for dw.last_error and returns code (a negative DW_E_* value). */
int32_t dw__abi_fail(dw__abi_context *ctx, int32_t code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

/* One host function: its name in module "dw", signature as letters (i=i32, I=i64, f=f32,
 * F=f64) for parameters and results, and the callback (called with the actor's
 * dw__abi_context as env). */
struct dw__host_function {
    const char *name;
    const char *params;
    const char *results;
    wasmtime_func_unchecked_callback_t callback;
};

/* Defines each function of table in linker for ctx. When ctx has a time limit (set before
 * this), each runs through a check of it before and after (a call that starts or ends out of
 * time traps). */
dw_status dw__abi_define_table(wasmtime_linker_t *linker, dw__abi_context *ctx, const dw__host_function *table,
                               size_t n, dw_error *err);

/* The core functions (gemm, log, now, nop, last_error, message_read, emit), in host_core.c;
 * the language-model functions, in host_llm.c. */
extern const dw__host_function dw__host_core_functions[];
extern const size_t dw__host_core_function_count;
extern const dw__host_function dw__host_llm_functions[];
extern const size_t dw__host_llm_function_count;
