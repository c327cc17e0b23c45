/* Region allocator: reserve with mmap(PROT_NONE), commit with mprotect, register each
 * committed piece with the backend. See region.h for the contract. */
#include "core/region.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/backend.h"
#include "core/assert.h"

size_t dw__page_size(void) {
    static size_t page;
    if (!page) page = (size_t)sysconf(_SC_PAGESIZE);
    return page;
}

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

static dw_status register_piece(dw_region *r, size_t offset, size_t length, dw_error *err) {
    if (length == 0 || !r->backend || !r->backend->ops->region_register) return DW_OK;
    if (r->piece_count == r->piece_cap) {
        size_t cap = r->piece_cap ? r->piece_cap * 2 : 8;
        dw_region_piece *p = realloc(r->pieces, cap * sizeof *p);
        if (!p) return dw_error_set(err, DW_ERR_NO_MEMORY, "region: out of memory for piece list");
        r->pieces = p;
        r->piece_cap = cap;
    }
    dw_status st = r->backend->ops->region_register(r->backend->ctx, r->base + offset, length, err);
    if (st != DW_OK) return st;
    r->pieces[r->piece_count++] = (dw_region_piece){offset, length};
    return DW_OK;
}

dw_status dw__region_create(size_t size, size_t limit, size_t reserved, size_t guard,
                            dw_backend *backend, dw_region **out, dw_error *err) {
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
    r->backend = backend;
    if (size > 0) {
        size_t commit = round_up(size, page);
        if (mprotect(r->base, commit, PROT_READ | PROT_WRITE) != 0) {
            dw_status st = dw_error_set(err, DW_ERR_NO_MEMORY, "region: cannot commit %zu bytes: %s", commit,
                                        strerror(errno));
            dw__region_free(r);
            return st;
        }
        r->size = size;
        dw_status st = register_piece(r, 0, commit, err);
        if (st != DW_OK) {
            dw__region_free(r);
            return st;
        }
    }
    *out = r;
    return DW_OK;
}

dw_status dw__region_grow(dw_region *r, size_t new_size, dw_error *err) {
    if (new_size <= r->size) return DW_OK;
    if (new_size > r->limit)
        return dw_error_set(err, DW_ERR_LIMIT, "memory limit reached: %zu bytes requested, limit %zu", new_size,
                            r->limit);
    size_t page = dw__page_size();
    size_t old_commit = round_up(r->size, page);
    size_t new_commit = round_up(new_size, page);
    if (new_commit > old_commit) {
        if (mprotect(r->base + old_commit, new_commit - old_commit, PROT_READ | PROT_WRITE) != 0)
            return dw_error_set(err, DW_ERR_NO_MEMORY, "region: cannot commit %zu more bytes: %s",
                                new_commit - old_commit, strerror(errno));
        dw_status st = register_piece(r, old_commit, new_commit - old_commit, err);
        if (st != DW_OK) {
            mprotect(r->base + old_commit, new_commit - old_commit, PROT_NONE);
            return st;
        }
    }
    r->size = new_size;
    return DW_OK;
}

void dw__region_free(dw_region *r) {
    if (!r) return;
    for (size_t i = r->piece_count; i-- > 0;) {
        dw_error err;
        if (r->backend->ops->region_unregister(r->backend->ctx, r->base + r->pieces[i].offset,
                                               r->pieces[i].length, &err) != DW_OK)
            fprintf(stderr, "driftwood: warning: %s\n", err.message);
    }
    free(r->pieces);
    if (r->base) munmap(r->base, r->reserved + r->guard);
    free(r);
}
