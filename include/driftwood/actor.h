/* Actors: one Wasm instance in its own store, with a linear memory that Driftwood allocated
 * and registered with the actor's backend. An actor is used by one thread at a time;
 * different actors run concurrently on different threads. */
#ifndef DRIFTWOOD_ACTOR_H
#define DRIFTWOOD_ACTOR_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/error.h"
#include "driftwood/runtime.h"

typedef struct dw_actor dw_actor;

typedef enum dw_value_kind { DW_I32, DW_I64, DW_F32, DW_F64 } dw_value_kind;
typedef struct dw_value {
    dw_value_kind kind;
    union {
        int32_t i32;
        int64_t i64;
        float f32;
        double f64;
    } of;
} dw_value;

/* An actor's time limit holds across host calls too: long host work (dw.gemm, dw.prefill)
 * checks it between bounded chunks, and a host call that ends past it traps ("timeout"). */
#define DW_ACTOR_TIMEOUT_MIN_SECONDS 0.001
#define DW_ACTOR_TIMEOUT_MAX_SECONDS 1e6
/* What else a guest may make in its store, whatever the options: each table holds at most
 * DW_ACTOR_MAX_TABLE_ELEMENTS elements (with a memory limit, at most memory_limit /
 * DW_ACTOR_TABLE_ELEMENT_BYTES), and the store at most this many instances (the module's and
 * one per imported memory), tables and memories. */
#define DW_ACTOR_MAX_TABLE_ELEMENTS (1 << 20)
#define DW_ACTOR_TABLE_ELEMENT_BYTES 8
#define DW_ACTOR_MAX_INSTANCES 16
#define DW_ACTOR_MAX_TABLES 16
#define DW_ACTOR_MAX_MEMORIES 8
/* The KV cache an actor's sessions may hold together unless kv_memory_limit says otherwise: each
 * session counts its whole capacity (context x layers x K,V x KV heads x head size x element). */
#define DW_ACTOR_DEFAULT_KV_MEMORY_LIMIT ((size_t)4 << 30)

typedef struct dw_actor_options {
    const char *backend;      /* "cpu" (default when NULL) or "cuda" */
    double timeout_seconds;   /* per call into the guest, in [DW_ACTOR_TIMEOUT_MIN_SECONDS,
                               * DW_ACTOR_TIMEOUT_MAX_SECONDS]; 0: none */
    size_t memory_limit;      /* bytes per linear memory (and it bounds tables, above); 0: the
                               * module's own maximum */
    size_t kv_memory_limit;   /* bytes of KV cache the actor's open sessions hold together (host or
                               * device memory the host allocates on the guest's behalf);
                               * 0: DW_ACTOR_DEFAULT_KV_MEMORY_LIMIT */
    int argc;                 /* WASI arguments (argv[0] is the program name) */
    const char *const *argv;
    int inherit_stdio;        /* WASI stdout/stderr go to the host's */
    int n_env;                /* WASI environment: env[i] is "NAME=VALUE"; none by default */
    const char *const *env;
    int n_dirs;               /* folders opened for the guest: dirs[i] is "HOST" or "HOST::GUEST"; */
    const char *const *dirs;  /*   none by default (a guest sees no files unless asked) */
    int dirs_read_only;       /* 1: the guest may not change what it finds in them */
    const char *const *models; /* registered models the actor may open; NULL: all of them */
    int n_models;
    /* Where the actor's dw_emit output goes; NULL: the host's stdout. */
    void (*output)(void *user, const char *bytes, size_t len);
    void *output_user;
} dw_actor_options;

dw_status dw_actor_create(dw_runtime *rt, dw_module *module, const dw_actor_options *options, dw_actor **out,
                          dw_error *err);
void dw_actor_free(dw_actor *actor);

/* Calls an exported function. Parameter kinds must match the export's signature. A trap
 * returns DW_ERR_TRAP with the trap named in err; the actor may be called again. */
dw_status dw_actor_invoke(dw_actor *actor, const char *name, const dw_value *args, size_t nargs,
                          dw_value *results, size_t results_cap, size_t *nresults, dw_error *err);

/* Parses "42", "1.5" etc. into the kind of the export's i-th parameter. */
dw_status dw_actor_parse_args(dw_actor *actor, const char *name, int argc, const char *const *argv,
                              dw_value *out, size_t cap, size_t *nargs, dw_error *err);

/* Runs the WASI command entry point `_start`; *exit_code is the guest's exit status. */
dw_status dw_actor_run_main(dw_actor *actor, int *exit_code, dw_error *err);

/* Delivers one message: calls the actor's export dw_on_message(len), during which the actor
 * reads the bytes with dw_message_read and streams its answer through the output callback.
 * One message at a time per actor. */
dw_status dw_actor_send(dw_actor *actor, const void *message, size_t len, dw_error *err);

/* Engine work done inside the actor's host calls since the last reset. */
typedef struct dw_actor_stats {
    uint64_t prefill_calls, prefill_tokens, decode_tokens;
    double prefill_ms, decode_ms; /* wall time inside the engine */
} dw_actor_stats;
void dw_actor_stats_get(const dw_actor *actor, dw_actor_stats *out);
void dw_actor_stats_reset(dw_actor *actor);

/* The actor's memory 0 (its exported "memory"): base and current size. The base never
 * changes for the actor's life. */
uint8_t *dw_actor_memory(dw_actor *actor, size_t *size);

/* The backend the actor computes on. */
dw_backend *dw_actor_backend(dw_actor *actor);

#endif
