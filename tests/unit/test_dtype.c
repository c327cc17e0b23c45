/* dtype: names and sizes, f16/bf16 conversions against known bit patterns, exhaustive round
 * trips, and rounding checked against an independent nearest-value search. */
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "driftwood/dtype.h"

static float f32_of(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

TEST(dtype_names_sizes_and_parse_round_trip) {
    static const char *names[] = {"F32", "F16", "BF16", "F64", "I8", "U8", "I16",
                                  "U16", "I32", "U32",  "I64", "U64", "BOOL"};
    static const size_t sizes[] = {4, 2, 2, 8, 1, 1, 2, 2, 4, 4, 8, 8, 1};
    for (int i = 0; i < DW_DTYPE_COUNT; i++) {
        dw_dtype d = (dw_dtype)-1;
        CHECK(strcmp(dw_dtype_name((dw_dtype)i), names[i]) == 0);
        CHECK(dw_dtype_size((dw_dtype)i) == sizes[i]);
        CHECK(dw_dtype_parse(names[i], &d) == DW_OK && d == (dw_dtype)i);
    }
    dw_dtype d = DW_DTYPE_U8;
    CHECK(dw_dtype_parse("bf16", &d) == DW_ERR_FORMAT && d == DW_DTYPE_U8);
    CHECK(dw_dtype_parse("F8_E4M3", &d) == DW_ERR_FORMAT);
    CHECK(dw_dtype_size((dw_dtype)99) == 0 && strcmp(dw_dtype_name((dw_dtype)99), "?") == 0);
}

TEST(dtype_bf16_known_bit_patterns) {
    CHECK(dw_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(dw_f32_to_bf16(-2.0f) == 0xc000);
    CHECK(dw_f32_to_bf16(0.0f) == 0x0000 && dw_f32_to_bf16(-0.0f) == 0x8000);
    CHECK(dw_f32_to_bf16(f32_of(0x3f808000)) == 0x3f80); /* tie, even below: down */
    CHECK(dw_f32_to_bf16(f32_of(0x3f818000)) == 0x3f82); /* tie, odd below: up */
    CHECK(dw_f32_to_bf16(f32_of(0x3f808001)) == 0x3f81); /* above the tie: up */
    CHECK(dw_f32_to_bf16(f32_of(0x3f807fff)) == 0x3f80); /* below the tie: down */
    CHECK(dw_f32_to_bf16(INFINITY) == 0x7f80 && dw_f32_to_bf16(-INFINITY) == 0xff80);
    CHECK(dw_f32_to_bf16(f32_of(0x7f7fffff)) == 0x7f80); /* FLT_MAX rounds to infinity */
    CHECK(dw_f32_to_bf16(f32_of(0x00000001)) == 0x0000); /* tiny subnormal rounds to zero */
    CHECK(dw_f32_to_bf16(f32_of(0x00018000)) == 0x0002); /* subnormal tie to even */
    /* NaN: a payload only in the low 16 bits must not truncate to infinity */
    uint16_t n1 = dw_f32_to_bf16(f32_of(0x7f800001)), n2 = dw_f32_to_bf16(f32_of(0xffc12345));
    CHECK((n1 & 0x7f80) == 0x7f80 && (n1 & 0x7f) != 0 && !(n1 & 0x8000));
    CHECK(n2 == 0xffc1);
    CHECK(dw_bf16_to_f32(0x3f80) == 1.0f && dw_bf16_to_f32(0x4049) == f32_of(0x40490000));
    CHECK(isnan(dw_bf16_to_f32(0x7fc0)) && isinf(dw_bf16_to_f32(0xff80)));
}

TEST(dtype_f16_known_bit_patterns) {
    CHECK(dw_f32_to_f16(1.0f) == 0x3c00 && dw_f32_to_f16(-2.0f) == 0xc000);
    CHECK(dw_f32_to_f16(0.0f) == 0x0000 && dw_f32_to_f16(-0.0f) == 0x8000);
    CHECK(dw_f32_to_f16(65504.0f) == 0x7bff);     /* largest finite */
    CHECK(dw_f32_to_f16(65519.996f) == 0x7bff);   /* just below the tie */
    CHECK(dw_f32_to_f16(65520.0f) == 0x7c00);     /* tie between 65504 and 2^16: to even = inf */
    CHECK(dw_f32_to_f16(1e10f) == 0x7c00 && dw_f32_to_f16(-1e10f) == 0xfc00);
    CHECK(dw_f32_to_f16(0x1p-24f) == 0x0001);     /* smallest subnormal */
    CHECK(dw_f32_to_f16(0x1p-25f) == 0x0000);     /* half of it: tie to even (0) */
    CHECK(dw_f32_to_f16(0x1.8p-25f) == 0x0001);   /* above the tie */
    CHECK(dw_f32_to_f16(0x3p-25f) == 0x0002);     /* 1.5 ulp: tie to even (2) */
    CHECK(dw_f32_to_f16(0x1p-14f) == 0x0400);     /* smallest normal */
    CHECK(dw_f32_to_f16(0x1.ff8p-15f) == 0x03ff); /* largest subnormal */
    CHECK(dw_f32_to_f16(0x1.ffcp-15f) == 0x0400); /* tie between it and 2^-14: to even */
    CHECK(dw_f32_to_f16(1.0f / 3.0f) == 0x3555);
    CHECK(dw_f32_to_f16(f32_of(0x3f801000)) == 0x3c00); /* 1 + 2^-11: tie, even below */
    CHECK(dw_f32_to_f16(f32_of(0x3f803000)) == 0x3c02); /* 1 + 3*2^-11: tie, odd below */
    CHECK(dw_f32_to_f16(INFINITY) == 0x7c00);
    uint16_t n = dw_f32_to_f16(f32_of(0xffc12345));
    CHECK((n & 0x7c00) == 0x7c00 && (n & 0x3ff) != 0 && (n & 0x8000));
    CHECK(dw_f16_to_f32(0x3c00) == 1.0f && dw_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(dw_f16_to_f32(0x0001) == 0x1p-24f && dw_f16_to_f32(0x8001) == -0x1p-24f);
    CHECK(dw_f16_to_f32(0x03ff) == 0x1.ff8p-15f && dw_f16_to_f32(0x0400) == 0x1p-14f);
    CHECK(bits_of(dw_f16_to_f32(0x8000)) == 0x80000000u);
    CHECK(isinf(dw_f16_to_f32(0x7c00)) && dw_f16_to_f32(0xfc00) < 0);
    CHECK(isnan(dw_f16_to_f32(0x7e00)) && isnan(dw_f16_to_f32(0x7c01)));
}

TEST(dtype_every_f16_and_bf16_survives_a_round_trip_through_f32) {
    for (uint32_t h = 0; h < 65536; h++) {
        int nan16 = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        float f = dw_f16_to_f32((uint16_t)h);
        uint16_t back = dw_f32_to_f16(f);
        if (nan16) CHECK_MSG(isnan(f) && (back & 0x7c00) == 0x7c00 && (back & 0x3ff) && (back & 0x8000) == (h & 0x8000),
                             "f16 NaN %04x", h);
        else CHECK_MSG(back == h, "f16 %04x -> %a -> %04x", h, (double)f, back);

        int nanb = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        float g = dw_bf16_to_f32((uint16_t)h);
        uint16_t bback = dw_f32_to_bf16(g);
        if (nanb) CHECK_MSG(isnan(g) && (bback & 0x7f80) == 0x7f80 && (bback & 0x7f), "bf16 NaN %04x", h);
        else CHECK_MSG(bback == h && bits_of(g) == h << 16, "bf16 %04x -> %04x", h, bback);
    }
}

/* Reference rounding: among the two neighbouring representable values (found by search over
 * all finite codes, sorted), take the nearer in exact double arithmetic; on a tie, the even
 * code; beyond the largest finite value's rounding boundary, infinity. */
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint16_t ref_round(double x, const double *vals, const uint16_t *codes, int n, double max_finite,
                          double half_ulp_max, uint16_t inf_code) {
    double ax = fabs(x);
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    if (ax >= max_finite + half_ulp_max) {
        if (ax == max_finite + half_ulp_max && (codes[n - 1] & 1) == 0) return (uint16_t)(sign | codes[n - 1]);
        return (uint16_t)(sign | inf_code);
    }
    int lo = 0, hi = n - 1; /* vals[lo] <= ax < vals[hi] */
    if (ax >= vals[n - 1]) return (uint16_t)(sign | codes[n - 1]);
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (vals[mid] <= ax) lo = mid;
        else hi = mid;
    }
    double dl = ax - vals[lo], dh = vals[hi] - ax;
    uint16_t c = dl < dh ? codes[lo] : dh < dl ? codes[hi] : (codes[lo] & 1) ? codes[hi] : codes[lo];
    return (uint16_t)(sign | c);
}

typedef struct {
    double v;
    uint16_t c;
} pair;

static int cmp_pair(const void *a, const void *b) { return cmp_double(&((const pair *)a)->v, &((const pair *)b)->v); }

/* Positive finite values of a 16-bit format, sorted, with their codes. */
static int finite_table(int bf16, double *vals, uint16_t *codes) {
    static pair p[32768];
    int n = 0;
    for (uint32_t h = 0; h < 0x8000; h++) {
        float f = bf16 ? dw_bf16_to_f32((uint16_t)h) : dw_f16_to_f32((uint16_t)h);
        if (isfinite(f)) p[n++] = (pair){f, (uint16_t)h};
    }
    qsort(p, (size_t)n, sizeof p[0], cmp_pair);
    for (int i = 0; i < n; i++) vals[i] = p[i].v, codes[i] = p[i].c;
    return n;
}

TEST(dtype_f32_to_f16_and_bf16_round_to_nearest_even_on_random_values) {
    static double vals[32768];
    static uint16_t codes[32768];
    for (int bf16 = 0; bf16 < 2; bf16++) {
        int n = finite_table(bf16, vals, codes);
        double maxf = vals[n - 1], half_ulp = (vals[n - 1] - vals[n - 2]) / 2;
        uint16_t inf = bf16 ? 0x7f80 : 0x7c00;
        for (int i = 0; i < 2000000; i++) {
            uint32_t u = (uint32_t)rng();
            if (!bf16 && (i & 1)) u = (u & 0x80ffffffu) | ((uint32_t)(100 + rng() % 50) << 23); /* f16's range */
            if (i % 7 == 0) u = (u & ~0x1fffu) | (bf16 ? 0 : 0x1000u); /* exact f16 ties */
            if (i % 11 == 0) u = (u & ~0xffffu) | 0x8000u;             /* exact bf16 ties */
            float f = f32_of(u);
            if (isnan(f)) continue;
            uint16_t want = isinf(f) ? (uint16_t)((u >> 16 & 0x8000) | inf)
                                     : ref_round(f, vals, codes, n, maxf, half_ulp, inf);
            uint16_t got = bf16 ? dw_f32_to_bf16(f) : dw_f32_to_f16(f);
            CHECK_MSG(got == want, "%s(%a = 0x%08x): got %04x want %04x", bf16 ? "bf16" : "f16", (double)f, u, got,
                      want);
        }
    }
}

TEST(dtype_bulk_convert_to_f32_matches_scalar_for_every_dtype_unaligned) {
    enum { N = 257 };
    static uint8_t raw[N * 8 + 1];
    static float out[N];
    for (size_t i = 0; i < sizeof raw; i++) raw[i] = (uint8_t)rng();
    const uint8_t *in = raw + 1; /* deliberately misaligned for every multi-byte type */
    for (int d = 0; d < DW_DTYPE_COUNT; d++) {
        dw_convert_to_f32((dw_dtype)d, in, out, N);
        for (int i = 0; i < N; i++) {
            const uint8_t *p = in + (size_t)i * dw_dtype_size((dw_dtype)d);
            float want;
            union { uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; uint64_t u64; int64_t i64; float f; double g; } v;
            memcpy(&v, p, dw_dtype_size((dw_dtype)d));
            switch ((dw_dtype)d) {
            case DW_DTYPE_F32: want = v.f; break;
            case DW_DTYPE_F16: want = dw_f16_to_f32(v.u16); break;
            case DW_DTYPE_BF16: want = dw_bf16_to_f32(v.u16); break;
            case DW_DTYPE_F64: want = (float)v.g; break;
            case DW_DTYPE_I8: want = (float)(int8_t)p[0]; break;
            case DW_DTYPE_U8: want = (float)p[0]; break;
            case DW_DTYPE_I16: want = (float)v.i16; break;
            case DW_DTYPE_U16: want = (float)v.u16; break;
            case DW_DTYPE_I32: want = (float)v.i32; break;
            case DW_DTYPE_U32: want = (float)v.u32; break;
            case DW_DTYPE_I64: want = (float)v.i64; break;
            case DW_DTYPE_U64: want = (float)v.u64; break;
            case DW_DTYPE_BOOL: want = p[0] ? 1.0f : 0.0f; break;
            default: want = 0;
            }
            CHECK_MSG(memcmp(&out[i], &want, 4) == 0 || (isnan(out[i]) && isnan(want)), "%s element %d: %g vs %g",
                      dw_dtype_name((dw_dtype)d), i, (double)out[i], (double)want);
        }
    }
}

TEST(dtype_bulk_convert_from_f32_matches_scalar) {
    enum { N = 1000 };
    static float in[N], back[N];
    static uint8_t out[N * 8 + 1];
    for (int i = 0; i < N; i++) in[i] = (float)((double)(int64_t)rng() / 9.2e18 * 1000.0);
    uint8_t *o = out + 1;
    CHECK(dw_convert_from_f32(DW_DTYPE_F16, in, o, N) == DW_OK);
    for (int i = 0; i < N; i++) {
        uint16_t h;
        memcpy(&h, o + 2 * i, 2);
        CHECK(h == dw_f32_to_f16(in[i]));
    }
    CHECK(dw_convert_from_f32(DW_DTYPE_BF16, in, o, N) == DW_OK);
    for (int i = 0; i < N; i++) {
        uint16_t h;
        memcpy(&h, o + 2 * i, 2);
        CHECK(h == dw_f32_to_bf16(in[i]));
    }
    CHECK(dw_convert_from_f32(DW_DTYPE_F64, in, o, N) == DW_OK);
    dw_convert_to_f32(DW_DTYPE_F64, o, back, N);
    CHECK(memcmp(back, in, sizeof in) == 0);
    CHECK(dw_convert_from_f32(DW_DTYPE_I32, in, o, N) == DW_ERR_UNSUPPORTED);
}
