/* The memory-creator callbacks that make every Wasm linear memory a Driftwood region and make
 * its committed pages device-accessible: this is the one place that owns both a region
 * (core/region.h) and the backend it is registered with.
 * Contract (Wasmtime's config.h): thread-safe; with a reservation, reserve it plus the
 * guard and never move the base; zero-filled; grow in place. */
#include "wasm/memory_creator.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"

/* Without a reservation from Wasmtime (memories allowed to move), a 32-bit memory still
 * gets its full 4 GiB reserved so that the base never moves. */
#define DW_DEFAULT_RESERVATION ((size_t)4 << 30)

/* A linear memory: its region and the backend its pages are registered with (NULL: none). */
typedef struct guest_memory {
    dw_region *region;
    dw_backend *backend;
} guest_memory;

/* Registers the pages committed past `from` bytes. */
static dw_status register_new_pages(guest_memory *g, size_t from, dw_error *err) {
    dw_region *r = g->region;
    if (!g->backend || r->committed <= from) return DW_OK;
    return dw_backend_register_range(g->backend, r->base + from, r->committed - from, err);
}

static uint8_t *memory_get(void *env, size_t *byte_size, size_t *byte_capacity) {
    dw_region *r = ((guest_memory *)env)->region;
    *byte_size = r->size;
    *byte_capacity = r->limit;
    return r->base;
}

static wasmtime_error_t *memory_grow(void *env, size_t new_size) {
    guest_memory *g = env;
    size_t old_size = g->region->size, old_committed = g->region->committed;
    dw_error err;
    if (dw__region_grow(g->region, new_size, &err) != DW_OK) return wasmtime_error_new(err.message);
    if (register_new_pages(g, old_committed, &err) != DW_OK) {
        dw__region_shrink(g->region, old_size);
        return wasmtime_error_new(err.message);
    }
    return NULL;
}

static void memory_free(void *env) {
    guest_memory *g = env;
    if (g->backend) dw_backend_release_range(g->backend, g->region->base, g->region->reserved + g->region->guard);
    dw__region_free(g->region);
    free(g);
}

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
    dw_error err;
    guest_memory *g = calloc(1, sizeof *g);
    if (!g) {
        dw_error_set(&err, DW_ERR_NO_MEMORY, "out of memory for a linear memory's record");
        if (mc) mc->error = err;
        return wasmtime_error_new(err.message);
    }
    g->backend = mc ? mc->backend : NULL;
    dw_status st = dw__region_create(minimum, limit, reserved, guard_size_in_bytes, &g->region, &err);
    if (st == DW_OK && (st = register_new_pages(g, 0, &err)) != DW_OK) {
        dw__region_free(g->region);
        g->region = NULL;
    }
    if (st != DW_OK) {
        free(g);
        if (mc) mc->error = err;
        return wasmtime_error_new(err.message);
    }
    if (mc && mc->created_count < (int)(sizeof mc->created / sizeof mc->created[0]))
        mc->created[mc->created_count++] = g->region;
    memory_ret->env = g;
    memory_ret->get_memory = memory_get;
    memory_ret->grow_memory = memory_grow;
    memory_ret->finalizer = memory_free;
    return NULL;
}
