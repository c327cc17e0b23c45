/* Regions (the first link of the zero-copy chain, docs/DESIGN.md): page-aligned memory that
 * Driftwood allocates for every Wasm linear memory. The whole reservation (maximum size plus
 * guard) is mapped PROT_NONE up front; pages are committed (made read-write) as the memory
 * grows, so the base address never moves. A region knows nothing of devices: whoever owns
 * both a region and a backend (the Wasm memory creator) registers committed pages with it. */
#ifndef DW_CORE_REGION_H
#define DW_CORE_REGION_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/error.h"

typedef struct dw_region {
    uint8_t *base;          /* fixed for the region's life */
    size_t size;            /* bytes visible to the guest */
    size_t committed;       /* bytes made read-write: size rounded up to pages */
    size_t limit;           /* largest size a grow may reach (≤ reserved) */
    size_t reserved;        /* bytes reserved for growth, excluding the guard */
    size_t guard;           /* unmapped-equivalent (PROT_NONE) bytes after the reservation */
} dw_region;

/* Reserves reserved+guard bytes and commits the first `size` bytes (zero-filled). limit caps
 * later growth. */
dw_status dw__region_create(size_t size, size_t limit, size_t reserved, size_t guard, dw_region **out,
                            dw_error *err);

/* Commits [size, new_size); the base does not move. Fails with DW_ERR_LIMIT past the limit;
 * a failure leaves the region unchanged. */
dw_status dw__region_grow(dw_region *region, size_t new_size, dw_error *err);

/* Undoes a grow: back to `size` (not below what was created), the pages past it uncommitted. */
void dw__region_shrink(dw_region *region, size_t size);

/* Unmaps the reservation and frees the record. */
void dw__region_free(dw_region *region);

/* The host page size (cached). */
size_t dw__page_size(void);

#endif
