/* Driftwood's Wasmtime memory creator: every linear memory is a dw_region (core/region.h). */
#ifndef DW_WASM_MEMORY_CREATOR_H
#define DW_WASM_MEMORY_CREATOR_H

#include <wasmtime.h>

#include "wasm/engine.h"

/* wasmtime_new_memory_callback_t: reserves reserved+guard, commits minimum, registers the
 * committed pages with the backend of the calling thread's memory context. */
wasmtime_error_t *dw__memory_creator_new(void *env, const wasm_memorytype_t *ty, size_t minimum, size_t maximum,
                                         size_t reserved_size_in_bytes, size_t guard_size_in_bytes,
                                         wasmtime_linear_memory_t *memory_ret);

dw_memory_context *dw__memory_context_get(void);

#endif
