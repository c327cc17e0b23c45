/* Regions: reservation, commit on growth, fixed base, limits, zero fill. */
#include <string.h>

#include "core/region.h"
#include "test.h"

TEST(region_grow_keeps_base_and_zero_fills) {
    dw_error err;
    dw_region *r;
    CHECK_OK(dw__region_create(65536, 1 << 24, 1 << 24, 1 << 16, &r, &err));
    uint8_t *base = r->base;
    memset(base, 0xAB, 65536);
    CHECK_OK(dw__region_grow(r, 10 * 65536, &err));
    CHECK(r->base == base);
    CHECK(r->size == 10 * 65536);
    CHECK(base[65535] == 0xAB);
    for (size_t i = 65536; i < 10 * 65536; i += 4093) CHECK(base[i] == 0);
    base[10 * 65536 - 1] = 7; /* the last committed byte is writable */
    dw__region_free(r);
}

TEST(region_refuses_growth_past_limit) {
    dw_error err;
    dw_region *r;
    CHECK_OK(dw__region_create(65536, 2 * 65536, 1 << 24, 0, &r, &err));
    CHECK(dw__region_grow(r, 3 * 65536, &err) == DW_ERR_LIMIT);
    CHECK(strstr(err.message, "limit") != NULL);
    CHECK(r->size == 65536);
    CHECK_OK(dw__region_grow(r, 2 * 65536, &err));
    dw__region_free(r);
}

TEST(region_shrink_undoes_a_grow_with_fresh_pages) {
    dw_error err;
    dw_region *r;
    CHECK_OK(dw__region_create(65536, 1 << 24, 1 << 24, 0, &r, &err));
    CHECK_OK(dw__region_grow(r, 3 * 65536, &err));
    CHECK(r->committed == 3 * 65536);
    memset(r->base + 65536, 0xCD, 2 * 65536);
    dw__region_shrink(r, 65536);
    CHECK(r->size == 65536 && r->committed == 65536);
    CHECK_OK(dw__region_grow(r, 2 * 65536, &err)); /* the same pages again, zero-filled */
    for (size_t i = 65536; i < 2 * 65536; i += 4093) CHECK(r->base[i] == 0);
    dw__region_free(r);
}
