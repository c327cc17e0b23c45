/* Guest pointers: the one place where a guest offset and length become a host pointer
 * (docs/DESIGN.md, data path (a)). Every host function goes through dw__guest_span. */
#ifndef DW_ABI_GUEST_MEMORY_H
#define DW_ABI_GUEST_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "core/region.h"

/* The host pointer for [offset, offset + count·elem_size) in the guest's memory, or NULL when
 * any byte lies outside the memory's current size, the size overflows, or offset is not a
 * multiple of align (a power of two). A zero-length span at offset ≤ size is valid. */
static inline void *dw__guest_span(const dw_region *memory, uint32_t offset, uint64_t count, uint32_t elem_size,
                                   uint32_t align) {
    if (!memory) return NULL;
    if (align > 1 && (offset & (align - 1))) return NULL;
    uint64_t bytes = count * (uint64_t)elem_size;
    if (elem_size && bytes / elem_size != count) return NULL;
    if ((uint64_t)offset > memory->size || bytes > memory->size - (uint64_t)offset) return NULL;
    return memory->base + offset;
}

#endif
