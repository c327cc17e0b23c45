/* The memory-creator callbacks that make every Wasm linear memory a Driftwood region.
 * Contract (Wasmtime's config.h): thread-safe; with a reservation, reserve it plus the
 * guard and never move the base; zero-filled; grow in place. */
#include "wasm/memory_creator.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Without a reservation from Wasmtime (memories allowed to move), a 32-bit memory still
 * gets its full 4 GiB reserved so that the base never moves. */
#define DW_DEFAULT_RESERVATION ((size_t)4 << 30)

static uint8_t *region_get(void *env, size_t *byte_size, size_t *byte_capacity) {
    dw_region *r = env;
    *byte_size = r->size;
    *byte_capacity = r->limit;
    return r->base;
}

static wasmtime_error_t *region_grow(void *env, size_t new_size) {
    dw_region *r = env;
    dw_error err;
    if (dw__region_grow(r, new_size, &err) != DW_OK) return wasmtime_error_new(err.message);
    return NULL;
}

static void region_finalize(void *env) { dw__region_free(env); }

wasmtime_error_t *dw__memory_creator_new(void *env, const wasm_memorytype_t *ty, size_t minimum, size_t maximum,
                                         size_t reserved_size_in_bytes, size_t guard_size_in_bytes,
                                         wasmtime_linear_memory_t *memory_ret) {
    dw_memory_context *mc = dw__memory_context_get();
    size_t reserved = reserved_size_in_bytes;
    if (reserved == 0) reserved = maximum < DW_DEFAULT_RESERVATION ? maximum : DW_DEFAULT_RESERVATION;
    if (reserved < minimum) reserved = minimum;
    size_t limit = maximum < reserved ? maximum : reserved;
    if (mc && mc->limit && mc->limit < limit) limit = mc->limit < minimum ? minimum : mc->limit;
    if (mc && mc->limit && minimum > mc->limit) {
        dw_error_set(&mc->error, DW_ERR_LIMIT, "memory of %zu bytes exceeds the actor's memory limit of %zu bytes",
                     minimum, mc->limit);
        return wasmtime_error_new(mc->error.message);
    }
    dw_region *r;
    dw_error err;
    if (dw__region_create(minimum, limit, reserved, guard_size_in_bytes, mc ? mc->backend : NULL, &r, &err) != DW_OK) {
        if (mc) mc->error = err;
        return wasmtime_error_new(err.message);
    }
    if (mc && mc->created_count < (int)(sizeof mc->created / sizeof mc->created[0]))
        mc->created[mc->created_count++] = r;
    memory_ret->env = r;
    memory_ret->get_memory = region_get;
    memory_ret->grow_memory = region_grow;
    memory_ret->finalizer = region_finalize;
    return NULL;
}
