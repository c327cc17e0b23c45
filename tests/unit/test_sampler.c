/* The sampler: greedy, each filter's effect on which tokens can come out, frequencies that
 * follow the softmax, determinism per seed, and a saved state that continues exactly. */
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

TEST(sampler_greedy_takes_the_first_maximum) {
    float l[6] = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f, 0.0f};
    dw_sampler *s = make(dw_sampler_default_params(), 6);
    CHECK(s);
    for (int i = 0; i < 5; i++) CHECK(dw_sampler_sample(s, l, NULL, 0) == 1);
    dw_sampler_free(s);
}

TEST(sampler_repetition_penalty_demotes_seen_tokens) {
    float l[4] = {2.0f, 1.9f, -0.5f, -0.6f};
    dw_sampler_params p = dw_sampler_default_params();
    p.repetition_penalty = 1.2f;
    dw_sampler *s = make(p, 4);
    int32_t hist[3] = {0, 0, 0}; /* repeated ids count once: 2.0 / 1.2 = 1.667 < 1.9 */
    CHECK(dw_sampler_sample(s, l, hist, 3) == 1);
    CHECK(dw_sampler_sample(s, l, NULL, 0) == 0);
    /* negative logits are multiplied: -0.5 * 1.2 = -0.6, ties go to the lower id */
    float l2[2] = {-0.5f, -0.6f};
    dw_sampler_free(s);
    s = make(p, 2);
    int32_t h2[1] = {0};
    CHECK(dw_sampler_sample(s, l2, h2, 1) == 0);
    int32_t h3[1] = {1};
    CHECK(dw_sampler_sample(s, l2, h3, 1) == 0);
    /* the window: only the last repetition_last_n tokens count */
    dw_sampler_free(s);
    p.repetition_last_n = 1;
    s = make(p, 4);
    int32_t h4[2] = {0, 2};
    CHECK(dw_sampler_sample(s, l, h4, 2) == 0);
    dw_sampler_free(s);
}

/* Draws n samples and returns counts per token. */
static void histogram(dw_sampler *s, const float *l, int vocab, int n, int *counts) {
    memset(counts, 0, sizeof(int) * vocab);
    for (int i = 0; i < n; i++) counts[dw_sampler_sample(s, l, NULL, 0)]++;
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
        int32_t t = dw_sampler_sample(s, l, NULL, 0);
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
    for (int i = 0; i < 64; i++) seq_a[i] = dw_sampler_sample(a, l, NULL, 0), seq_b[i] = dw_sampler_sample(b, l, NULL, 0);
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
    for (int i = 0; i < 64; i++) same &= dw_sampler_sample(c, l, NULL, 0) == dw_sampler_sample(b, l, NULL, 0);
    CHECK(!same);

    /* save mid-way, continue in a fresh sampler with other settings: identical continuation */
    uint8_t state[DW_SAMPLER_STATE_SIZE];
    dw_sampler_save(a, state);
    int32_t cont_a[32];
    for (int i = 0; i < 32; i++) cont_a[i] = dw_sampler_sample(a, l, NULL, 0);
    dw_sampler *d = make(dw_sampler_default_params(), V);
    dw_error err = {0};
    CHECK_OK(dw_sampler_load(d, state, &err));
    CHECK(dw_sampler_get_params(d)->top_k == 50 && dw_sampler_get_params(d)->seed == 1234);
    for (int i = 0; i < 32; i++) CHECK(dw_sampler_sample(d, l, NULL, 0) == cont_a[i]);
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
