/* Regions: reservation, commit on growth, fixed base, limits, zero fill. */
#include <string.h>

#include "core/region.h"
#include "driftwood/backend.h"
#include "test.h"

TEST(region_grow_keeps_base_and_zero_fills) {
    dw_error err;
    dw_region *r;
    CHECK_OK(dw__region_create(65536, 1 << 24, 1 << 24, 1 << 16, NULL, &r, &err));
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
    CHECK_OK(dw__region_create(65536, 2 * 65536, 1 << 24, 0, NULL, &r, &err));
    CHECK(dw__region_grow(r, 3 * 65536, &err) == DW_ERR_LIMIT);
    CHECK(strstr(err.message, "limit") != NULL);
    CHECK(r->size == 65536);
    CHECK_OK(dw__region_grow(r, 2 * 65536, &err));
    dw__region_free(r);
}

TEST(region_registers_each_committed_piece_with_backend) {
    dw_error err;
    dw_backend *cpu;
    CHECK_OK(dw_backend_open("cpu", &cpu, &err));
    dw_region *r;
    CHECK_OK(dw__region_create(65536, 1 << 24, 1 << 24, 0, cpu, &r, &err));
    CHECK_OK(dw__region_grow(r, 3 * 65536, &err));
    CHECK_OK(dw__region_grow(r, 3 * 65536, &err)); /* no-op */
    CHECK(r->piece_count == 2);
    CHECK(r->pieces[0].offset == 0 && r->pieces[0].length == 65536);
    CHECK(r->pieces[1].offset == 65536 && r->pieces[1].length == 2 * 65536);
    dw__region_free(r);
    dw_backend_close(cpu);
}
