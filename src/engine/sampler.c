/* The token sampler (sampler.h): the Hugging Face logits-processor chain (repetition penalty,
 * temperature, top-k, top-p, min-p) and a seeded xoshiro256** draw. Scratch is allocated at
 * creation; sampling allocates nothing. */
#include "driftwood/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct dw_sampler {
    dw_sampler_params p;
    uint64_t rng[4];
    int n_vocab;
    float *work;      /* [n_vocab] logits after the penalty and temperature */
    int32_t *cand;    /* [n_vocab] candidate ids, sorted by logit descending once filtered */
    float *prob;      /* [n_vocab] probabilities of the candidates */
};

/* ---- xoshiro256** (Blackman & Vigna), seeded through splitmix64 --------------------------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double next_unit(uint64_t s[4]) { return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

static void seed_rng(uint64_t s[4], uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s[i] = splitmix64(&x);
}

/* ---- creation and settings --------------------------------------------------------------- */

dw_sampler_params dw_sampler_default_params(void) {
    return (dw_sampler_params){.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
                               .repetition_penalty = 1.0f, .repetition_last_n = 0, .seed = 0};
}

static dw_status check_params(const dw_sampler_params *p, dw_error *err) {
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "sampler: temperature must be >= 0 (got %g)", p->temperature);
    if (p->top_k < 0) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "sampler: top-k must be >= 0 (got %d)", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "sampler: top-p must be in (0, 1] (got %g)", p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "sampler: min-p must be in [0, 1] (got %g)", p->min_p);
    if (!(p->repetition_penalty > 0.0f) || !isfinite(p->repetition_penalty))
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "sampler: repetition penalty must be > 0 (got %g)",
                            p->repetition_penalty);
    if (p->repetition_last_n < 0)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "sampler: repetition window must be >= 0");
    return DW_OK;
}

dw_status dw_sampler_create(const dw_sampler_params *params, int n_vocab, dw_sampler **out, dw_error *err) {
    *out = NULL;
    dw_sampler_params p = params ? *params : dw_sampler_default_params();
    dw_status st = check_params(&p, err);
    if (st) return st;
    if (n_vocab < 1) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "sampler: empty vocabulary");
    dw_sampler *s = calloc(1, sizeof *s);
    if (s) {
        s->work = malloc(sizeof(float) * (size_t)n_vocab);
        s->cand = malloc(sizeof(int32_t) * (size_t)n_vocab);
        s->prob = malloc(sizeof(float) * (size_t)n_vocab);
    }
    if (!s || !s->work || !s->cand || !s->prob) {
        dw_sampler_free(s);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "sampler: out of memory");
    }
    s->p = p;
    s->n_vocab = n_vocab;
    seed_rng(s->rng, p.seed);
    *out = s;
    return DW_OK;
}

void dw_sampler_free(dw_sampler *s) {
    if (!s) return;
    free(s->work);
    free(s->cand);
    free(s->prob);
    free(s);
}

const dw_sampler_params *dw_sampler_get_params(const dw_sampler *s) { return &s->p; }

/* ---- sampling ------------------------------------------------------------------------------ */

/* Descending by logit, ties by lower id (deterministic). */
static int by_logit_desc(const void *a, const void *b, void *keys) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    float lx = ((const float *)keys)[x], ly = ((const float *)keys)[y];
    if (lx > ly) return -1;
    if (lx < ly) return 1;
    return (x > y) - (x < y);
}

static void sort_candidates(float *keys, int32_t *cand, int n) {
    qsort_r(cand, (size_t)n, sizeof *cand, by_logit_desc, keys);
}

/* Keeps the k largest of cand[0..n) (unsorted), returning k; a binary heap keyed on work. */
static int select_top_k(const float *w, int32_t *cand, int n, int k) {
    /* min-heap of the best k seen so far: root is the smallest kept */
#define WORSE(a, b) (w[a] < w[b] || (w[a] == w[b] && (a) > (b)))
    int size = 0;
    for (int i = 0; i < n; i++) {
        int32_t id = cand[i];
        if (size < k) {
            int j = size++;
            while (j > 0) {
                int parent = (j - 1) / 2;
                if (!WORSE(id, cand[parent])) break;
                cand[j] = cand[parent];
                j = parent;
            }
            cand[j] = id;
        } else if (WORSE(cand[0], id)) {
            int j = 0;
            for (;;) {
                int l = 2 * j + 1, r = l + 1, m = j;
                int32_t mv = id;
                if (l < size && WORSE(cand[l], mv)) m = l, mv = cand[l];
                if (r < size && WORSE(cand[r], mv)) m = r;
                if (m == j) break;
                cand[j] = cand[m];
                j = m;
            }
            cand[j] = id;
        }
    }
#undef WORSE
    return size;
}

/* The first index of the largest of x[0..n), with 8 independent comparison chains so that the
 * loop is not one long dependency chain (greedy decoding over 128k logits). Only a value above
 * -inf can win, so NaN never does; -1 when none is above -inf (all NaN or -inf). */
static int32_t argmax_f32(const float *x, int n) {
    enum { CHAINS = 8 };
    int32_t best[CHAINS];
    float val[CHAINS];
    for (int c = 0; c < CHAINS; c++) best[c] = -1, val[c] = -INFINITY;
    int i = 0;
    for (; i + CHAINS <= n; i += CHAINS)
        for (int c = 0; c < CHAINS; c++)
            if (x[i + c] > val[c]) val[c] = x[i + c], best[c] = i + c;
    int32_t b = -1;
    float bv = -INFINITY;
    for (int c = 0; c < CHAINS; c++)
        if (val[c] > bv || (best[c] >= 0 && val[c] == bv && best[c] < b)) b = best[c], bv = val[c];
    for (; i < n; i++)
        if (x[i] > bv) b = i, bv = x[i];
    return b;
}

/* The error when no logit is above -inf: nothing has any probability. */
static dw_status nothing_to_choose(const float *logits, int n, dw_error *err) {
    int n_nan = 0;
    for (int i = 0; i < n; i++) n_nan += isnan(logits[i]) != 0;
    return dw_error_set(err, DW_ERR_INVALID_ARGUMENT,
                        "sampler: no token can be chosen: all %d logits are NaN or -inf (%d NaN)", n, n_nan);
}

dw_status dw_sampler_sample(dw_sampler *s, const float *logits, const int32_t *history, int n_history,
                            int32_t *out, dw_error *err) {
    const dw_sampler_params *p = &s->p;
    int n = s->n_vocab;
    float *w = s->work;
    if (p->temperature == 0.0f && (p->repetition_penalty == 1.0f || !history || n_history == 0)) {
        *out = argmax_f32(logits, n); /* plain greedy: nothing to change in the logits */
        return *out < 0 ? nothing_to_choose(logits, n, err) : DW_OK;
    }
    memcpy(w, logits, sizeof(float) * (size_t)n);

    if (p->repetition_penalty != 1.0f && history) {
        int from = p->repetition_last_n > 0 && n_history > p->repetition_last_n ? n_history - p->repetition_last_n : 0;
        for (int i = from; i < n_history; i++) {
            int32_t id = history[i];
            if (id < 0 || id >= n) continue;
            float l = logits[id]; /* from the original: repeated ids are penalized once */
            w[id] = l < 0 ? l * p->repetition_penalty : l / p->repetition_penalty;
        }
    }

    if (p->temperature == 0.0f) {
        *out = argmax_f32(w, n);
        return *out < 0 ? nothing_to_choose(logits, n, err) : DW_OK;
    }

    /* NaN has no probability (it becomes -inf); when some logits are +inf, they share all of it */
    float inv_t = 1.0f / p->temperature, mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        w[i] *= inv_t;
        if (isnan(w[i])) w[i] = -INFINITY;
        else if (w[i] > mx) mx = w[i];
    }
    if (mx == -INFINITY) return nothing_to_choose(logits, n, err);
    if (mx == INFINITY) {
        for (int i = 0; i < n; i++) w[i] = w[i] == INFINITY ? 0.0f : -INFINITY;
        mx = 0.0f;
    }

    /* candidates: all, or the top k; min-p and top-p then cut the sorted list */
    int nc = 0;
    double z_total = -1; /* mass of the whole vocabulary when candidates were pre-filtered */
    int need_sort = p->top_k > 0 || p->top_p < 1.0f || p->min_p > 0.0f;
    if (p->top_k > 0 && p->top_k < n) {
        for (int i = 0; i < n; i++) s->cand[i] = i;
        nc = select_top_k(w, s->cand, n, p->top_k);
        /* HF keeps every token tied with the k-th value (prob[] marks the kept ids here) */
        float kth = w[s->cand[0]];
        memset(s->prob, 0, sizeof(float) * (size_t)n);
        for (int j = 0; j < nc; j++) s->prob[s->cand[j]] = 1.0f;
        for (int i = 0; i < n; i++)
            if (w[i] == kth && s->prob[i] == 0.0f) s->cand[nc++] = i;
    } else if (need_sort && p->top_p < 1.0f) {
        /* Only tokens above the nucleus boundary need sorting. Bucket the logits within 20 of
         * the max by distance from it; walk buckets from the top until they hold top_p of the
         * mass: every token of those buckets is a candidate (the exact cut is made below on
         * the sorted candidates). If the far tail holds too much mass, sort everything. */
        enum { NB = 1024 };
        const float span = 20.0f, inv_width = NB / span;
        double mass[NB] = {0}, z_all = 0;
        for (int i = 0; i < n; i++) {
            double e = exp((double)w[i] - mx);
            z_all += e;
            float d = mx - w[i];
            if (d < span) mass[(int)(d * inv_width)] += e;
        }
        int last = -1;
        double cum = 0;
        for (int b = 0; b < NB; b++) {
            cum += mass[b];
            if (cum >= p->top_p * z_all) {
                last = b;
                break;
            }
        }
        for (int i = 0; i < n; i++) {
            float d = mx - w[i];
            if (last < 0 || (d < span && (int)(d * inv_width) <= last)) s->cand[nc++] = i;
        }
        z_total = z_all;
    } else {
        for (int i = 0; i < n; i++) s->cand[nc++] = i;
    }
    if (need_sort) sort_candidates(w, s->cand, nc);

    /* probabilities over the candidates (sorted descending when filters apply) */
    double z = 0;
    for (int i = 0; i < nc; i++) {
        double e = exp((double)w[s->cand[i]] - mx);
        s->prob[i] = (float)e;
        z += e;
    }
    if (p->top_p < 1.0f) { /* smallest prefix with mass >= top_p (HF removes cumsum <= 1 - top_p) */
        double cum = 0, zt = z_total > 0 ? z_total : z;
        int keep = nc;
        for (int i = 0; i < nc; i++) {
            cum += s->prob[i] / zt;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        nc = keep;
        z = 0;
        for (int i = 0; i < nc; i++) z += s->prob[i];
    }
    if (p->min_p > 0.0f) { /* drop p < min_p · p_max; the first candidate is the max */
        double pmax = s->prob[0], zk = 0;
        int keep = 0;
        for (int i = 0; i < nc; i++)
            if (s->prob[i] >= p->min_p * pmax) keep = i + 1;
        nc = keep ? keep : 1;
        for (int i = 0; i < nc; i++) zk += s->prob[i];
        z = zk;
    }

    /* the max logit is finite here and among the candidates, so some candidate has mass */
    double u = next_unit(s->rng) * z, cum = 0;
    for (int i = 0; i < nc; i++) {
        if (s->prob[i] == 0.0f) continue; /* -inf logits are never drawn, not even by rounding */
        cum += s->prob[i];
        *out = s->cand[i];
        if (u < cum) break;
    }
    return DW_OK;
}

/* ---- serialization --------------------------------------------------------------------------- */

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static const char MAGIC[8] = {'D', 'W', 'S', 'A', 'M', 'P', 'L', '1'};

void dw_sampler_save(const dw_sampler *s, uint8_t out[DW_SAMPLER_STATE_SIZE]) {
    memcpy(out, MAGIC, 8);
    put_u32(out + 8, f32_bits(s->p.temperature));
    put_u32(out + 12, (uint32_t)s->p.top_k);
    put_u32(out + 16, f32_bits(s->p.top_p));
    put_u32(out + 20, f32_bits(s->p.min_p));
    put_u32(out + 24, f32_bits(s->p.repetition_penalty));
    put_u32(out + 28, (uint32_t)s->p.repetition_last_n);
    put_u64(out + 32, s->p.seed);
    for (int i = 0; i < 4; i++) put_u64(out + 40 + 8 * i, s->rng[i]);
}

/* The record's settings and generator, checked. */
static dw_status parse_state(const uint8_t in[DW_SAMPLER_STATE_SIZE], dw_sampler_params *params, uint64_t rng[4],
                             dw_error *err) {
    if (memcmp(in, MAGIC, 8) != 0) return dw_error_set(err, DW_ERR_FORMAT, "sampler state: bad magic");
    dw_sampler_params p = {
        .temperature = bits_f32(get_u32(in + 8)),
        .top_k = (int)get_u32(in + 12),
        .top_p = bits_f32(get_u32(in + 16)),
        .min_p = bits_f32(get_u32(in + 20)),
        .repetition_penalty = bits_f32(get_u32(in + 24)),
        .repetition_last_n = (int)get_u32(in + 28),
        .seed = get_u64(in + 32),
    };
    dw_status st = check_params(&p, err);
    if (st) return dw_error_prefix(err, "sampler state");
    for (int i = 0; i < 4; i++) rng[i] = get_u64(in + 40 + 8 * i);
    if (!(rng[0] | rng[1] | rng[2] | rng[3])) return dw_error_set(err, DW_ERR_FORMAT, "sampler state: all-zero generator");
    *params = p;
    return DW_OK;
}

dw_status dw_sampler_state_check(const uint8_t in[DW_SAMPLER_STATE_SIZE], dw_error *err) {
    dw_sampler_params p;
    uint64_t rng[4];
    return parse_state(in, &p, rng, err);
}

dw_status dw_sampler_load(dw_sampler *s, const uint8_t in[DW_SAMPLER_STATE_SIZE], dw_error *err) {
    dw_sampler_params p;
    uint64_t rng[4];
    dw_status st = parse_state(in, &p, rng, err);
    if (st) return st;
    s->p = p;
    memcpy(s->rng, rng, sizeof rng);
    return DW_OK;
}
