/* The sampler: greedy, each filter's effect on which tokens can come out, frequencies that
 * follow the softmax, determinism per seed, a saved state that continues exactly, and the
 * same rule for non-finite logits on every path (NaN never wins, +inf beats finite, nothing
 * to choose is an error). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "driftwood/sampler.h"
#include "test.h"

/* logits whose softmax is p (up to a constant) */
static void logits_from_probs(float *l, const double *p, int n) {
    for (int i = 0; i < n; i++) l[i] = p[i] > 0 ? (float)log(p[i]) : -1e30f;
}

static dw_sampler *make(dw_sampler_params p, int n) {
    dw_sampler *s = NULL;
    dw_error err;
    if (dw_sampler_create(&p, n, &s, &err) != DW_OK) fprintf(stderr, "    %s\n", err.message);
    return s;
}

/* One draw; -100 when the sampler refused (the tests below that expect a token then fail). */
static int32_t draw(dw_sampler *s, const float *l, const int32_t *history, int n_history) {
    int32_t t;
    dw_error err;
    if (dw_sampler_sample(s, l, history, n_history, &t, &err) != DW_OK) {
        fprintf(stderr, "    %s\n", err.message);
        return -100;
    }
    return t;
}

TEST(sampler_greedy_takes_the_first_maximum) {
    float l[6] = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f, 0.0f};
    dw_sampler *s = make(dw_sampler_default_params(), 6);
    CHECK(s);
    for (int i = 0; i < 5; i++) CHECK(draw(s, l, NULL, 0) == 1);
    dw_sampler_free(s);
}

TEST(sampler_repetition_penalty_demotes_seen_tokens) {
    float l[4] = {2.0f, 1.9f, -0.5f, -0.6f};
    dw_sampler_params p = dw_sampler_default_params();
    p.repetition_penalty = 1.2f;
    dw_sampler *s = make(p, 4);
    int32_t hist[3] = {0, 0, 0}; /* repeated ids count once: 2.0 / 1.2 = 1.667 < 1.9 */
    CHECK(draw(s, l, hist, 3) == 1);
    CHECK(draw(s, l, NULL, 0) == 0);
    /* negative logits are multiplied: -0.5 * 1.2 = -0.6, ties go to the lower id */
    float l2[2] = {-0.5f, -0.6f};
    dw_sampler_free(s);
    s = make(p, 2);
    int32_t h2[1] = {0};
    CHECK(draw(s, l2, h2, 1) == 0);
    int32_t h3[1] = {1};
    CHECK(draw(s, l2, h3, 1) == 0);
    /* the window: only the last repetition_last_n tokens count */
    dw_sampler_free(s);
    p.repetition_last_n = 1;
    s = make(p, 4);
    int32_t h4[2] = {0, 2};
    CHECK(draw(s, l, h4, 2) == 0);
    dw_sampler_free(s);
}

/* Draws n samples and returns counts per token. */
static void histogram(dw_sampler *s, const float *l, int vocab, int n, int *counts) {
    memset(counts, 0, sizeof(int) * vocab);
    for (int i = 0; i < n; i++) counts[draw(s, l, NULL, 0)]++;
}

TEST(sampler_frequencies_follow_the_softmax) {
    double p[5] = {0.4, 0.3, 0.15, 0.1, 0.05};
    float l[5];
    logits_from_probs(l, p, 5);
    dw_sampler_params sp = dw_sampler_default_params();
    sp.temperature = 1.0f;
    sp.seed = 42;
    dw_sampler *s = make(sp, 5);
    int counts[5], n = 40000;
    histogram(s, l, 5, n, counts);
    for (int i = 0; i < 5; i++) {
        double f = (double)counts[i] / n, sd = sqrt(p[i] * (1 - p[i]) / n);
        CHECK_MSG(fabs(f - p[i]) < 5 * sd, "token %d: frequency %.4f, expected %.4f", i, f, p[i]);
    }
    dw_sampler_free(s);
    /* temperature 0.5 squares the odds: p ~ [16, 9, 2.25, 1, 0.25] */
    sp.temperature = 0.5f;
    s = make(sp, 5);
    histogram(s, l, 5, n, counts);
    double z = 16 + 9 + 2.25 + 1 + 0.25, q0 = 16 / z;
    CHECK_MSG(fabs((double)counts[0] / n - q0) < 5 * sqrt(q0 * (1 - q0) / n), "temperature 0.5: %d", counts[0]);
    dw_sampler_free(s);
}

TEST(sampler_top_k_top_p_and_min_p_keep_the_right_tokens) {
    double p[6] = {0.35, 0.25, 0.2, 0.1, 0.06, 0.04};
    float l[6];
    logits_from_probs(l, p, 6);
    int counts[6], n = 20000;
    dw_sampler_params sp = dw_sampler_default_params();
    sp.temperature = 1.0f;
    sp.seed = 7;

    sp.top_k = 2; /* {0, 1} in the ratio 35:25 */
    dw_sampler *s = make(sp, 6);
    histogram(s, l, 6, n, counts);
    CHECK(counts[0] + counts[1] == n);
    double q = 0.35 / 0.6;
    CHECK_MSG(fabs((double)counts[0] / n - q) < 5 * sqrt(q * (1 - q) / n), "top-k ratio %d:%d", counts[0], counts[1]);
    dw_sampler_free(s);

    sp.top_k = 0;
    sp.top_p = 0.7f; /* 0.35 + 0.25 = 0.6 < 0.7, + 0.2 = 0.8 >= 0.7: {0, 1, 2} */
    s = make(sp, 6);
    histogram(s, l, 6, n, counts);
    CHECK(counts[0] + counts[1] + counts[2] == n && counts[2] > 0);
    dw_sampler_free(s);

    sp.top_p = 1.0f;
    sp.min_p = 0.5f; /* p >= 0.175: {0, 1, 2} */
    s = make(sp, 6);
    histogram(s, l, 6, n, counts);
    CHECK(counts[0] + counts[1] + counts[2] == n && counts[2] > 0);
    dw_sampler_free(s);

    sp.min_p = 0.0f;
    sp.top_k = 1; /* deterministic even with temperature */
    s = make(sp, 6);
    histogram(s, l, 6, 100, counts);
    CHECK(counts[0] == 100);
    dw_sampler_free(s);
}

TEST(sampler_top_p_on_a_large_vocabulary_matches_a_full_sort) {
    /* the pre-filter path (logits within 20 of the max) against the definition */
    enum { V = 50000 };
    float *l = malloc(sizeof(float) * V);
    uint64_t x = 99;
    for (int i = 0; i < V; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        l[i] = (float)((x >> 40) % 10000) / 500.0f; /* [0, 20) */
    }
    dw_sampler_params sp = dw_sampler_default_params();
    sp.temperature = 1.0f;
    sp.top_p = 0.5f;
    sp.seed = 3;
    dw_sampler *s = make(sp, V);
    /* the nucleus by definition is the smallest prefix of the sorted logits with mass >= 0.5:
     * every token at or above a threshold logit, found by bisection */
    double z = 0, mx = 20;
    for (int i = 0; i < V; i++) z += exp(l[i] - mx);
    /* threshold logit t: tokens with logit >= t hold >= half the mass */
    float lo = 0, hi = 20;
    for (int it = 0; it < 60; it++) {
        float mid = (lo + hi) / 2;
        double m = 0;
        for (int i = 0; i < V; i++)
            if (l[i] >= mid) m += exp(l[i] - mx);
        if (m / z >= 0.5) lo = mid;
        else hi = mid;
    }
    for (int i = 0; i < 500; i++) {
        int32_t t = draw(s, l, NULL, 0);
        CHECK_MSG(l[t] >= lo - 1e-3f, "token %d (logit %g) is outside the nucleus (threshold %g)", t, l[t], lo);
    }
    free(l);
    dw_sampler_free(s);
}

TEST(sampler_is_deterministic_per_seed_and_state_round_trips) {
    enum { V = 300 };
    float l[V];
    for (int i = 0; i < V; i++) l[i] = sinf((float)i) * 3.0f;
    dw_sampler_params sp = dw_sampler_default_params();
    sp.temperature = 0.9f, sp.top_k = 50, sp.top_p = 0.95f, sp.min_p = 0.01f, sp.seed = 1234;
    dw_sampler *a = make(sp, V), *b = make(sp, V);
    int32_t seq_a[64], seq_b[64];
    for (int i = 0; i < 64; i++) seq_a[i] = draw(a, l, NULL, 0), seq_b[i] = draw(b, l, NULL, 0);
    CHECK(!memcmp(seq_a, seq_b, sizeof seq_a));
    int changes = 0;
    for (int i = 1; i < 64; i++) changes += seq_a[i] != seq_a[i - 1];
    CHECK(changes > 10);

    /* a different seed gives a different sequence */
    sp.seed = 1235;
    dw_sampler *c = make(sp, V);
    int same = 1;
    dw_sampler_free(b);
    sp.seed = 1234;
    b = make(sp, V);
    for (int i = 0; i < 64; i++) same &= draw(c, l, NULL, 0) == draw(b, l, NULL, 0);
    CHECK(!same);

    /* save mid-way, continue in a fresh sampler with other settings: identical continuation */
    uint8_t state[DW_SAMPLER_STATE_SIZE];
    dw_sampler_save(a, state);
    int32_t cont_a[32];
    for (int i = 0; i < 32; i++) cont_a[i] = draw(a, l, NULL, 0);
    dw_sampler *d = make(dw_sampler_default_params(), V);
    dw_error err = {0};
    CHECK_OK(dw_sampler_load(d, state, &err));
    CHECK(dw_sampler_get_params(d)->top_k == 50 && dw_sampler_get_params(d)->seed == 1234);
    for (int i = 0; i < 32; i++) CHECK(draw(d, l, NULL, 0) == cont_a[i]);
    state[0] = 'X';
    CHECK(dw_sampler_load(d, state, &err) == DW_ERR_FORMAT);
    dw_sampler_free(a), dw_sampler_free(b), dw_sampler_free(c), dw_sampler_free(d);
}

TEST(sampler_refuses_bad_settings_by_name) {
    dw_sampler *s;
    dw_error err = {0};
    dw_sampler_params p = dw_sampler_default_params();
    p.temperature = -1.0f;
    CHECK(dw_sampler_create(&p, 10, &s, &err) == DW_ERR_INVALID_ARGUMENT && strstr(err.message, "temperature"));
    p = dw_sampler_default_params();
    p.top_p = 0.0f;
    CHECK(dw_sampler_create(&p, 10, &s, &err) == DW_ERR_INVALID_ARGUMENT && strstr(err.message, "top-p"));
    p = dw_sampler_default_params();
    p.min_p = 2.0f;
    CHECK(dw_sampler_create(&p, 10, &s, &err) == DW_ERR_INVALID_ARGUMENT && strstr(err.message, "min-p"));
    p = dw_sampler_default_params();
    p.repetition_penalty = 0.0f;
    CHECK(dw_sampler_create(&p, 10, &s, &err) == DW_ERR_INVALID_ARGUMENT && strstr(err.message, "repetition"));
}

/* Greedy on the plain path and after a repetition penalty (on a copy of the logits). */
static void greedy_both_ways(const float *l, int n, int32_t *out) {
    dw_sampler_params p = dw_sampler_default_params();
    dw_sampler *plain = make(p, n);
    p.repetition_penalty = 1.3f;
    dw_sampler *penalized = make(p, n);
    int32_t unrelated[1] = {n - 1};
    out[0] = draw(plain, l, NULL, 0);
    out[1] = draw(penalized, l, unrelated, 1);
    dw_sampler_free(plain), dw_sampler_free(penalized);
}

TEST(sampler_greedy_skips_nan_and_takes_the_first_plus_inf) {
    enum { V = 37 }; /* longer than the argmax's 8 chains, with a tail */
    float l[V];
    int32_t got[2];
    for (int i = 0; i < V; i++) l[i] = (float)(i % 5);
    l[0] = NAN, l[9] = NAN, l[30] = NAN;
    l[17] = 9.0f;
    greedy_both_ways(l, V, got);
    CHECK_MSG(got[0] == 17 && got[1] == 17, "NaN among finite logits: %d, %d (want 17)", got[0], got[1]);
    l[21] = INFINITY, l[33] = INFINITY, l[2] = -INFINITY;
    greedy_both_ways(l, V, got);
    CHECK_MSG(got[0] == 21 && got[1] == 21, "+inf: %d, %d (want the first +inf, 21)", got[0], got[1]);
    float short_l[4] = {NAN, -INFINITY, 0.5f, NAN}; /* fewer logits than chains */
    greedy_both_ways(short_l, 4, got);
    CHECK_MSG(got[0] == 2 && got[1] == 2, "short: %d, %d (want 2)", got[0], got[1]);
}

TEST(sampler_draws_only_among_plus_inf_logits_and_never_nan) {
    float l[6] = {INFINITY, -INFINITY, INFINITY, 0.0f, 5.0f, NAN};
    int counts[6], n = 4000;
    dw_sampler_params sp = dw_sampler_default_params();
    sp.temperature = 0.8f, sp.seed = 11;
    const char *filters[] = {"none", "top-k 3", "top-p 0.9", "min-p 0.1"};
    for (int f = 0; f < 4; f++) {
        sp.top_k = f == 1 ? 3 : 0, sp.top_p = f == 2 ? 0.9f : 1.0f, sp.min_p = f == 3 ? 0.1f : 0.0f;
        dw_sampler *s = make(sp, 6);
        histogram(s, l, 6, n, counts);
        dw_sampler_free(s);
        CHECK_MSG(counts[0] + counts[2] == n, "%s: %d draws outside the +inf tokens", filters[f], n - counts[0] - counts[2]);
        CHECK_MSG(abs(counts[0] - counts[2]) < 5 * (int)sqrt(n), "%s: +inf tokens drawn %d and %d times (want equal odds)",
                  filters[f], counts[0], counts[2]);
    }
    float some_nan[4] = {NAN, 0.0f, NAN, 0.0f};
    dw_sampler *s = make(sp, 4);
    histogram(s, some_nan, 4, n, counts);
    dw_sampler_free(s);
    CHECK_MSG(counts[1] + counts[3] == n && counts[1] > 0 && counts[3] > 0, "NaN drawn: %d %d %d %d", counts[0], counts[1],
              counts[2], counts[3]);
}

TEST(sampler_refuses_logits_with_nothing_to_choose_on_every_path) {
    float all_nan[10], nan_or_minus_inf[10];
    for (int i = 0; i < 10; i++) all_nan[i] = NAN, nan_or_minus_inf[i] = i % 2 ? NAN : -INFINITY;
    dw_sampler_params greedy = dw_sampler_default_params(), sampled = greedy, penalized = greedy;
    sampled.temperature = 0.7f, sampled.top_p = 0.9f;
    penalized.repetition_penalty = 1.2f;
    const dw_sampler_params *paths[3] = {&greedy, &sampled, &penalized};
    int32_t history[1] = {3};
    for (int p = 0; p < 3; p++) {
        for (int which = 0; which < 2; which++) {
            dw_sampler *s = make(*paths[p], 10);
            dw_error err = {0};
            int32_t t = 0;
            dw_status st = dw_sampler_sample(s, which ? nan_or_minus_inf : all_nan, history, 1, &t, &err);
            dw_sampler_free(s);
            CHECK_MSG(st == DW_ERR_INVALID_ARGUMENT && strstr(err.message, "no token can be chosen") &&
                          strstr(err.message, which ? "5 NaN" : "10 NaN"),
                      "path %d, logits %d: status %d token %d: %s", p, which, st, t, err.message);
        }
    }
}
