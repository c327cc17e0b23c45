/* The registered-range set of the CUDA backend; see host_ranges.h. */
#ifdef DW_HAVE_CUDA
#include "backend/cuda/host_ranges.h"

#include <stdlib.h>
#include <string.h>

/* Index of the first range whose end is above p (count if none). */
static size_t first_ending_after(const dw__host_ranges *s, uintptr_t p) {
    size_t lo = 0, hi = s->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v[mid].base + s->v[mid].len <= p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

dw_status dw__host_ranges_add(dw__host_ranges *s, uintptr_t base, size_t len, dw_error *err) {
    if (len == 0 || base + len < base)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "backend 'cuda': empty or wrapping range %#lx+%zu",
                            (unsigned long)base, len);
    size_t i = first_ending_after(s, base);
    if (i < s->count && s->v[i].base < base + len)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT,
                            "backend 'cuda': range %#lx+%zu overlaps the registered range %#lx+%zu",
                            (unsigned long)base, len, (unsigned long)s->v[i].base, s->v[i].len);
    if (s->count == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        dw__host_range *v = realloc(s->v, cap * sizeof *v);
        if (!v) return dw_error_set(err, DW_ERR_NO_MEMORY, "backend 'cuda': out of memory for registered ranges");
        s->v = v;
        s->cap = cap;
    }
    memmove(&s->v[i + 1], &s->v[i], (s->count - i) * sizeof *s->v);
    s->v[i] = (dw__host_range){base, len};
    s->count++;
    return DW_OK;
}

dw_status dw__host_ranges_remove(dw__host_ranges *s, uintptr_t base, size_t len, dw_error *err) {
    size_t i = first_ending_after(s, base);
    if (i == s->count || s->v[i].base != base || s->v[i].len != len)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "backend 'cuda': range %#lx+%zu was not registered",
                            (unsigned long)base, len);
    memmove(&s->v[i], &s->v[i + 1], (s->count - i - 1) * sizeof *s->v);
    s->count--;
    return DW_OK;
}

size_t dw__host_ranges_remove_within(dw__host_ranges *s, uintptr_t base, size_t len,
                                     void (*each)(void *arg, dw__host_range r), void *arg) {
    const uintptr_t end = base + len;
    size_t kept = 0, removed = 0;
    for (size_t i = 0; i < s->count; i++) {
        const dw__host_range r = s->v[i];
        if (r.base >= base && r.base + r.len <= end) {
            if (each) each(arg, r);
            removed++;
        } else {
            s->v[kept++] = r;
        }
    }
    s->count = kept;
    return removed;
}

size_t dw__host_ranges_segment(const dw__host_ranges *s, uintptr_t p, size_t bytes, int *inside) {
    size_t i = first_ending_after(s, p);
    size_t room;
    if (i < s->count && s->v[i].base <= p) {
        *inside = 1;
        room = s->v[i].base + s->v[i].len - p;
    } else {
        *inside = 0;
        room = i < s->count ? s->v[i].base - p : bytes;
    }
    return room < bytes ? room : bytes;
}

int dw__host_ranges_covers(const dw__host_ranges *s, uintptr_t p, size_t bytes) {
    while (bytes > 0) {
        int inside;
        size_t n = dw__host_ranges_segment(s, p, bytes, &inside);
        if (!inside) return 0;
        p += n;
        bytes -= n;
    }
    return 1;
}

void dw__host_ranges_free(dw__host_ranges *s) {
    free(s->v);
    *s = (dw__host_ranges){0};
}
#endif
