/* The process-wide Wasmtime engine (the third link of the zero-copy chain, docs/DESIGN.md): one wasm_engine_t configured
 * with Driftwood's memory creator, epoch interruption and Cranelift; plus the thread-local
 * memory context that tells the memory creator which backend and limit a new memory gets. */
#ifndef DW_WASM_ENGINE_H
#define DW_WASM_ENGINE_H

#include <wasm.h>
#include <wasmtime.h>

#include "core/region.h"
#include "driftwood/backend.h"
#include "driftwood/error.h"

/* Milliseconds between epoch ticks; timeouts are rounded up to whole ticks. */
#define DW_EPOCH_TICK_MS 5

/* What the memory creator needs while a store instantiates a module on this thread. */
typedef struct dw_memory_context {
    dw_backend *backend; /* regions are registered with it */
    size_t limit;        /* cap on each memory's size in bytes (0: no cap beyond the module's) */
    dw_region *created[8]; /* regions created under this context, in creation order */
    int created_count;
    dw_error error;      /* why the last creation failed */
} dw_memory_context;

/* The engine, created on first use; NULL with err set if Wasmtime refused the config. */
wasm_engine_t *dw__wasm_engine(dw_error *err);

/* A short string identifying the engine build and the config that affects compiled code
 * (part of the compiled-module cache key). */
const char *dw__wasm_engine_tag(void);

/* Starts (once) the thread that advances the engine's epoch every DW_EPOCH_TICK_MS. */
void dw__wasm_epoch_ticker_start(void);

/* Sets (or clears, with NULL) the memory context of the calling thread. */
void dw__memory_context_set(dw_memory_context *mc);

/* Turns a Wasmtime error or trap into a dw_error (takes ownership of and deletes both). */
dw_status dw__wasm_error_take(wasmtime_error_t *error, wasm_trap_t *trap, dw_error *err);

#endif
