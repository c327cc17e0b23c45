/* Internal layout of an actor (include/driftwood/actor.h is the interface). */
#ifndef DW_ACTOR_ACTOR_IMPL_H
#define DW_ACTOR_ACTOR_IMPL_H

#include <wasmtime.h>

#include "abi/abi.h"
#include "driftwood/actor.h"
#include "wasm/engine.h"
#include "actor/runtime_impl.h"
#include "wasm/module.h"

struct dw_actor {
    dw_runtime *runtime;
    dw_module *module;
    wasmtime_store_t *store;
    wasmtime_context_t *context;
    wasmtime_linker_t *linker;
    wasmtime_instance_t instance;
    dw_backend *backend;
    dw__abi_context abi;     /* env of the actor's host functions */
    dw_memory_context memory_context;
    uint64_t timeout_ticks;  /* epoch ticks per call; 0: no timeout */
    char backend_name[16];
    char **allowed_models;   /* NULL: every registered model */
    int n_allowed_models;
    int busy;                /* > 0 while a call into the guest is running */
    wasmtime_memory_t memory; /* memory 0 (exported, or imported and made by Driftwood) */
    int has_memory;
};

/* dw_actor_create, with or without calling the module's _initialize (a restore sets the
 * memory and globals itself instead). */
dw_status dw__actor_create(dw_runtime *rt, dw_module *module, const dw_actor_options *options, int initialize,
                           dw_actor **out, dw_error *err);

/* Sets the epoch deadline for one call into the guest. */
void dw__actor_arm_deadline(dw_actor *actor);

#endif
