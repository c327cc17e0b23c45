/* Region allocator: reserve with mmap(PROT_NONE), commit with mprotect. See region.h for the
 * contract. */
#include "core/region.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

size_t dw__page_size(void) {
    static size_t page;
    if (!page) page = (size_t)sysconf(_SC_PAGESIZE);
    return page;
}

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

dw_status dw__region_create(size_t size, size_t limit, size_t reserved, size_t guard, dw_region **out,
                            dw_error *err) {
    *out = NULL;
    size_t page = dw__page_size();
    reserved = round_up(reserved, page);
    guard = round_up(guard, page);
    if (size > reserved || limit < size)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT,
                            "region: size %zu exceeds reservation %zu or limit %zu", size, reserved, limit);
    if (limit > reserved) limit = reserved;
    if (reserved + guard < reserved || reserved + guard == 0)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "region: reservation overflows");

    dw_region *r = calloc(1, sizeof *r);
    if (!r) return dw_error_set(err, DW_ERR_NO_MEMORY, "region: out of memory");
    void *base = mmap(NULL, reserved + guard, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        free(r);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "region: cannot reserve %zu bytes: %s", reserved + guard,
                            strerror(errno));
    }
    r->base = base;
    r->reserved = reserved;
    r->guard = guard;
    r->limit = limit;
    dw_status st = dw__region_grow(r, size, err);
    if (st != DW_OK) {
        dw__region_free(r);
        return st;
    }
    *out = r;
    return DW_OK;
}

dw_status dw__region_grow(dw_region *r, size_t new_size, dw_error *err) {
    if (new_size <= r->size) return DW_OK;
    if (new_size > r->limit)
        return dw_error_set(err, DW_ERR_LIMIT, "memory limit reached: %zu bytes requested, limit %zu", new_size,
                            r->limit);
    size_t new_commit = round_up(new_size, dw__page_size());
    if (new_commit > r->committed) {
        if (mprotect(r->base + r->committed, new_commit - r->committed, PROT_READ | PROT_WRITE) != 0)
            return dw_error_set(err, DW_ERR_NO_MEMORY, "region: cannot commit %zu more bytes: %s",
                                new_commit - r->committed, strerror(errno));
        r->committed = new_commit;
    }
    r->size = new_size;
    return DW_OK;
}

void dw__region_shrink(dw_region *r, size_t size) {
    if (size >= r->size) return;
    size_t commit = round_up(size, dw__page_size());
    if (commit < r->committed) {
        /* Fresh pages on the next commit: drop the contents, then make them inaccessible. */
        madvise(r->base + commit, r->committed - commit, MADV_DONTNEED);
        mprotect(r->base + commit, r->committed - commit, PROT_NONE);
        r->committed = commit;
    }
    r->size = size;
}

void dw__region_free(dw_region *r) {
    if (!r) return;
    if (r->base) munmap(r->base, r->reserved + r->guard);
    free(r);
}
