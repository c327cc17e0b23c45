/* Regions (Link 1 of the zero-copy chain, shared/DESIGN.md): page-aligned memory that
 * Driftwood allocates for every Wasm linear memory. The whole reservation (maximum size
 * plus guard) is mapped PROT_NONE up front; pages are committed (made read-write) as the
 * memory grows, so the base address never moves. Committed pages are registered with the
 * region's backend piece by piece, which makes them device-accessible without a copy. */
#ifndef DW_CORE_REGION_H
#define DW_CORE_REGION_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/backend.h"
#include "driftwood/error.h"

typedef struct dw_region_piece {
    size_t offset; /* from base, page-aligned */
    size_t length;
} dw_region_piece;

typedef struct dw_region {
    uint8_t *base;          /* fixed for the region's life */
    size_t size;            /* bytes committed and visible to the guest */
    size_t limit;           /* largest size a grow may reach (≤ reserved) */
    size_t reserved;        /* bytes reserved for growth, excluding the guard */
    size_t guard;           /* unmapped-equivalent (PROT_NONE) bytes after the reservation */
    dw_backend *backend;    /* registered with this backend (NULL: none) */
    dw_region_piece *pieces; /* registered pieces, in order */
    size_t piece_count, piece_cap;
} dw_region;

/* Reserves reserved+guard bytes, commits the first `size` bytes (zero-filled) and registers
 * them with backend (which may be NULL). limit caps later growth. */
dw_status dw__region_create(size_t size, size_t limit, size_t reserved, size_t guard,
                            dw_backend *backend, dw_region **out, dw_error *err);

/* Commits [size, new_size) and registers it; the base does not move. Fails with
 * DW_ERR_LIMIT past the limit; a failure leaves the region unchanged. */
dw_status dw__region_grow(dw_region *region, size_t new_size, dw_error *err);

/* Unregisters every piece, unmaps the reservation and frees the record. */
void dw__region_free(dw_region *region);

/* The host page size (cached). */
size_t dw__page_size(void);

#endif
