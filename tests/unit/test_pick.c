/* The device sampler's rule (driftwood/pick.h): hand-worked cases for each step (weights, top-k,
 * top-p, the draw, ties, NaN, infinities, -0 and +0), and dw_pick_top_k against a reference
 * written here another way (every logit sorted with qsort, then the steps spelled out) on fresh
 * random rows of a Llama 3-sized vocabulary with planted ties and non-finite values. */
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "driftwood/pick.h"

static dw_device_sampling settings(float t, float top_p, int top_k) {
    return (dw_device_sampling){.temperature = t, .top_p = top_p, .top_k = top_k};
}

static int32_t pick(const float *x, int n, float t, float top_p, int top_k, double u) {
    dw_device_sampling s = settings(t, top_p, top_k);
    return dw_pick_top_k(x, n, &s, u);
}

TEST(pick_draws_by_the_weights_exp_of_logit_over_temperature) {
    /* x = [0, ln 3]: weights 1 (token 1) and 1/3 (token 0), so token 1 below u = 0.75 */
    const float x[2] = {0.0f, logf(3.0f)};
    CHECK(pick(x, 2, 1.0f, 1.0f, 0, 0.0) == 1);
    CHECK(pick(x, 2, 1.0f, 1.0f, 0, 0.74) == 1);
    CHECK(pick(x, 2, 1.0f, 1.0f, 0, 0.76) == 0);
    CHECK(pick(x, 2, 1.0f, 1.0f, 0, 0.999999) == 0);
    /* temperature 0.5 squares the ratio: 1 against 1/9, token 1 below 0.9 */
    CHECK(pick(x, 2, 0.5f, 1.0f, 0, 0.89) == 1);
    CHECK(pick(x, 2, 0.5f, 1.0f, 0, 0.91) == 0);
}

TEST(pick_top_p_keeps_the_fewest_leading_tokens_that_reach_it) {
    /* shares 0.5, 0.25, 0.25 (ln 2 apart, then equal) */
    const float x[3] = {logf(2.0f), 0.0f, 0.0f};
    CHECK(pick(x, 3, 1.0f, 0.5f, 0, 0.99) == 0);  /* 0.5 reaches 0.5: only token 0 */
    CHECK(pick(x, 3, 1.0f, 0.6f, 0, 0.99) == 1);  /* tokens 0 and 1 kept: 0.99 of 0.75 lands on 1 */
    CHECK(pick(x, 3, 1.0f, 0.6f, 0, 0.6) == 0);   /* 0.6 · 0.75 = 0.45 < 0.5 */
    CHECK(pick(x, 3, 1.0f, 1.0f, 0, 0.99) == 2);  /* all kept: the last quarter is token 2 */
}

TEST(pick_top_k_counts_candidates_lower_index_first_on_ties) {
    const float x[4] = {1.0f, 1.0f, 1.0f, 0.5f};
    CHECK(pick(x, 4, 1.0f, 1.0f, 2, 0.99) == 1); /* candidates 0 and 1 only */
    CHECK(pick(x, 4, 1.0f, 1.0f, 2, 0.0) == 0);
    CHECK(pick(x, 4, 1.0f, 1.0f, 1, 0.99) == 0); /* top-k 1 is the argmax, first on ties */
    CHECK(pick(x, 4, 100.0f, 1.0f, 0, 0.99) == 3);
    /* more than 64: top_k 0 means 64, so the 65th largest is never drawn even with all weight equal */
    float y[80];
    for (int i = 0; i < 80; i++) y[i] = (float)(80 - i);
    for (int i = 0; i < 200; i++) CHECK(pick(y, 80, 1e30f, 1.0f, 0, (double)i / 200.0) < 64);
    CHECK(pick(y, 80, 1e30f, 1.0f, 0, 0.999) == 63);
}

TEST(pick_non_finite_logits_and_signed_zeros) {
    const float nan = NAN, inf = INFINITY;
    const float all_nan[3] = {nan, nan, nan};
    CHECK(pick(all_nan, 3, 1.0f, 1.0f, 0, 0.5) == 0); /* nothing to draw from: token 0, as the argmax */
    const float one_number[3] = {nan, -inf, nan};
    CHECK(pick(one_number, 3, 1.0f, 1.0f, 0, 0.7) == 1);
    const float infs[4] = {1.0f, inf, 3.0f, inf}; /* the +inf tokens share the draw equally */
    CHECK(pick(infs, 4, 1.0f, 1.0f, 0, 0.49) == 1);
    CHECK(pick(infs, 4, 1.0f, 1.0f, 0, 0.51) == 3);
    const float minus_infs[3] = {-inf, -inf, nan}; /* only -inf left: equal shares */
    CHECK(pick(minus_infs, 3, 1.0f, 1.0f, 0, 0.51) == 1);
    const float finite_and_minus_inf[3] = {-inf, 2.0f, -inf};
    CHECK(pick(finite_and_minus_inf, 3, 1.0f, 1.0f, 0, 0.999) == 1);
    const float zeros[2] = {-0.0f, 0.0f}; /* -0 ranks below +0 */
    CHECK(pick(zeros, 2, 1.0f, 1.0f, 1, 0.9) == 1);
}

TEST(pick_check_names_the_setting_out_of_range) {
    dw_device_sampling s = settings(1.0f, 1.0f, 0);
    CHECK(dw_pick_check(&s, 0.5) == NULL);
    s.temperature = 0.0f;
    CHECK(strstr(dw_pick_check(&s, 0.5), "temperature"));
    s.temperature = NAN;
    CHECK(strstr(dw_pick_check(&s, 0.5), "temperature"));
    s = settings(1.0f, 0.0f, 0);
    CHECK(strstr(dw_pick_check(&s, 0.5), "top_p"));
    s = settings(1.0f, 1.0f, 65);
    CHECK(strstr(dw_pick_check(&s, 0.5), "top_k"));
    s = settings(1.0f, 1.0f, 0);
    s.reserved = 1;
    CHECK(strstr(dw_pick_check(&s, 0.5), "reserved"));
    s.reserved = 0;
    CHECK(strstr(dw_pick_check(&s, 1.0), "uniform"));
    CHECK(strstr(dw_pick_check(&s, -0.1), "uniform"));
}

/* ---- against a reference that sorts every logit -------------------------------------------- */

typedef struct keyed {
    uint32_t key;
    int32_t id;
} keyed;

static int by_key_then_id(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Every number of x sorted, larger key first and lower id first on ties; returns how many. */
static int sort_row(const float *x, int n, keyed *scratch) {
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i])) scratch[m++] = (keyed){dw_pick_key(x[i]), i};
    qsort(scratch, (size_t)m, sizeof *scratch, by_key_then_id);
    return m;
}

/* The rule spelled out over the sorted row (steps as numbered in pick.h). */
static int32_t reference_pick(const float *x, const keyed *scratch, int m, const dw_device_sampling *s, double u) {
    if (m == 0) return 0;
    const int k = m < (s->top_k ? s->top_k : 64) ? m : (s->top_k ? s->top_k : 64);
    double w[64], sum = 0;
    const double top = x[scratch[0].id];
    for (int i = 0; i < k; i++) {
        const double v = x[scratch[i].id];
        w[i] = isinf(top) ? (v == top) : exp((v - top) / s->temperature);
        sum += w[i];
    }
    int kept = k;
    double share = 0;
    for (int i = 0; i < k && kept == k; i++)
        if ((share += w[i] / sum) >= s->top_p) kept = i + 1;
    double mass = 0;
    for (int i = 0; i < kept; i++) mass += w[i];
    double r = u * mass;
    for (int i = 0; i < kept; i++, r -= w[i - 1])
        if (r < w[i]) return scratch[i].id;
    return scratch[kept - 1].id;
}

static uint64_t prng;
static uint32_t next32(void) {
    prng ^= prng << 13, prng ^= prng >> 7, prng ^= prng << 17;
    return (uint32_t)(prng >> 32);
}
static double next_unit(void) { return (double)(((uint64_t)next32() << 21) ^ next32()) * (1.0 / 9007199254740992.0); }

TEST(pick_top_k_matches_a_full_sort_on_random_rows) {
    prng = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull | 1;
    printf("    seed %llu\n", (unsigned long long)prng);
    const int n = 128256;
    float *x = malloc(sizeof(float) * n);
    keyed *scratch = malloc(sizeof(keyed) * n);
    CHECK(x && scratch);
    static const int ks[] = {0, 1, 2, 5, 40, 64};
    static const float ps[] = {1.0f, 0.95f, 0.5f, 0.05f}, ts[] = {0.2f, 0.7f, 1.0f, 1.9f};
    int differ_from_argmax = 0;
    for (int row = 0; row < 48; row++) {
        /* logits ~ 4·(uniform − 0.5) with a few large ones, some rows coarse (many ties) */
        const int coarse = row % 3 == 1;
        for (int i = 0; i < n; i++) {
            float v = ((float)(next32() >> 8) / 16777216.0f - 0.5f) * 4.0f;
            if (coarse) v = roundf(v * 2.0f) / 2.0f;
            x[i] = v;
        }
        for (int j = 0; j < 30; j++) x[next32() % n] = 6.0f + (float)(next32() % 8) * 0.25f;
        if (row % 4 == 2) x[next32() % n] = NAN, x[next32() % n] = -INFINITY, x[next32() % n] = -0.0f;
        if (row == 11) x[next32() % n] = INFINITY, x[next32() % n] = INFINITY;
        dw_device_sampling s = settings(ts[row % 4], ps[(row / 4) % 4], ks[row % 6]);
        const int m = sort_row(x, n, scratch);
        for (int d = 0; d < 8; d++) {
            const double u = next_unit();
            const int32_t got = dw_pick_top_k(x, n, &s, u), want = reference_pick(x, scratch, m, &s, u);
            CHECK_MSG(got == want, "row %d (T %g, top_p %g, top_k %d) u %.17g: got %d want %d", row, s.temperature,
                      s.top_p, s.top_k, u, got, want);
            s.top_k = 1;
            differ_from_argmax += got != dw_pick_top_k(x, n, &s, 0.0);
            s.top_k = ks[row % 6];
        }
    }
    CHECK_MSG(differ_from_argmax > 20, "only %d of 384 draws left the argmax", differ_from_argmax);
    free(x), free(scratch);
}
