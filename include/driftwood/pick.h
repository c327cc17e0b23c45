/* The device sampler's rule: how a token is drawn from one row of logits with temperature,
 * top-k (at most 64) and top-p, given a uniform number u the caller drew. One definition, read by
 * every place that applies it: the host (the CPU backend's batched step, sessions without
 * batching), the CUDA kernel (which selects the candidates its own way and then calls
 * dw_pick_from_sorted) and guests (the chat actor samples a reply's first token from the prefill's
 * logits with it, the rest on the device through dw.decode_sample). Header-only: static inline,
 * C11, C++ and CUDA (__host__ __device__ under nvcc).
 *
 * The rule, for a row x[0, n):
 *   1. Candidates: the K largest logits (K = top_k, 1..64; 0 means 64), larger first and the
 *      lower index first among equal ones, ordered by dw_pick_key (so -0 < +0; NaN is never a
 *      candidate). Fewer than K numbers: all of them. None at all (every logit NaN): token 0, as
 *      the greedy argmax answers.
 *   2. Weights in double: p_i = exp((x_i - x_0) / T) for a finite best logit x_0; when x_0 is
 *      infinite, p_i = 1 for the candidates equal to it and 0 for the rest.
 *   3. Top-p: the fewest leading candidates whose share p_i / Σp reaches top_p (all of them when
 *      rounding never gets there).
 *   4. The draw: r = u · (their Σp); the first candidate with r < p_i after subtracting the ones
 *      before it (the last kept one if rounding leaves r over).
 * The arithmetic is the same on every device but for exp's last bit, so two devices given the
 * same logits pick the same token except when u lands within an ulp of a boundary. */
#ifndef DRIFTWOOD_PICK_H
#define DRIFTWOOD_PICK_H

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define DW_PICK_FN static inline __host__ __device__
#else
#define DW_PICK_FN static inline
#endif

#define DW_PICK_MAX_K 64

/* The settings of dw_session_decode_sample and dw.decode_sample (a layout guests share: 16 bytes). */
typedef struct dw_device_sampling {
    float temperature; /* > 0 (temperature 0 is greedy decoding: dw_session_decode_greedy) */
    float top_p;       /* in (0, 1]; 1 keeps every candidate */
    int32_t top_k;     /* 1..DW_PICK_MAX_K; 0 means DW_PICK_MAX_K */
    int32_t reserved;  /* 0 */
} dw_device_sampling;

/* One row's request in a batched step (backend.h, sample_rows): the settings and the uniform
 * number. temperature <= 0 marks a row that is not sampled (left as it is). */
typedef struct dw_pick_row {
    double u; /* in [0, 1) */
    dw_device_sampling s;
} dw_pick_row;

/* Whether settings and u are acceptable; returns 0 or a short reason. */
static inline const char *dw_pick_check(const dw_device_sampling *s, double u) {
    if (!(s->temperature > 0.0f) || !isfinite(s->temperature)) return "temperature must be a finite number above 0";
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f)) return "top_p must lie in (0, 1]";
    if (s->top_k < 0 || s->top_k > DW_PICK_MAX_K) return "top_k must lie in [0, 64]";
    if (s->reserved != 0) return "the reserved field must be 0";
    if (!(u >= 0.0 && u < 1.0)) return "the uniform number must lie in [0, 1)";
    return 0;
}

/* A total order of floats as unsigned integers (larger float, larger key; -0 below +0); NaN
 * maps to 0, below every number's key, and is never a candidate. */
DW_PICK_FN uint32_t dw_pick_key(float x) {
    union {
        float f;
        uint32_t u;
    } b;
    b.f = x;
    if (x != x) return 0;
    return (b.u & 0x80000000u) ? ~b.u : b.u | 0x80000000u;
}

DW_PICK_FN int dw_pick_k(const dw_device_sampling *s) { return s->top_k > 0 ? s->top_k : DW_PICK_MAX_K; }

/* Steps 2 to 4 over k >= 1 candidates already in the rule's order: their logits v and ids. */
DW_PICK_FN int32_t dw_pick_from_sorted(const float *v, const int32_t *ids, int k, const dw_device_sampling *s,
                                       double u) {
    double p[DW_PICK_MAX_K], total = 0.0;
    const double best = (double)v[0];
    for (int i = 0; i < k; i++) {
        const double d = (double)v[i];
        p[i] = isinf(best) ? (d == best ? 1.0 : 0.0) : exp((d - best) / (double)s->temperature);
        total += p[i];
    }
    int keep = k;
    double cum = 0.0;
    for (int i = 0; i < k; i++) {
        cum += p[i] / total;
        if (cum >= (double)s->top_p) {
            keep = i + 1;
            break;
        }
    }
    double mass = 0.0;
    for (int i = 0; i < keep; i++) mass += p[i];
    double r = u * mass;
    for (int i = 0; i < keep; i++) {
        if (r < p[i]) return ids[i];
        r -= p[i];
    }
    return ids[keep - 1];
}

/* The whole rule on one row (the host's and guests' selection: a sorted array of at most 64,
 * which a new logit enters only when it beats the smallest kept). */
DW_PICK_FN int32_t dw_pick_top_k(const float *x, int n, const dw_device_sampling *s, double u) {
    float v[DW_PICK_MAX_K];
    uint32_t key[DW_PICK_MAX_K];
    int32_t ids[DW_PICK_MAX_K];
    const int cap = dw_pick_k(s);
    int k = 0;
    v[0] = 0.0f, key[0] = 0, ids[0] = 0; /* (read only once k >= 1; this quiets the compiler) */
    for (int i = 0; i < n; i++) {
        const uint32_t ki = dw_pick_key(x[i]);
        if (ki == 0) continue; /* NaN (no number has key 0) */
        if (k == cap && ki <= key[k - 1]) continue;
        int j = k < cap ? k++ : k - 1;
        while (j > 0 && key[j - 1] < ki) key[j] = key[j - 1], v[j] = v[j - 1], ids[j] = ids[j - 1], j--;
        key[j] = ki, v[j] = x[i], ids[j] = i;
    }
    return k ? dw_pick_from_sorted(v, ids, k, s, u) : 0;
}

#endif
