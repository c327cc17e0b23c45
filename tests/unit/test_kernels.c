/* CPU kernels: every SIMD set this CPU runs agrees with the scalar reference on random
 * data, for sizes with and without vector tails. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend/cpu/kernels_dispatch.h"
#include "driftwood/dtype.h"
#include "test.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

static void fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = frand() * scale;
}

/* max |a-b| / max(1e-6, max|b|) */
static double rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mb = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md || d != d) md = d != d ? INFINITY : d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / mb;
}

static const dw__cpu_kernels *sets[8];
static int n_sets;

static void load_sets(void) {
    if (!n_sets) n_sets = dw__cpu_kernels_available(sets, 8);
}

TEST(kernels_reference_is_always_available) {
    load_sets();
    CHECK(n_sets >= 1);
    CHECK(!strcmp(sets[0]->isa, "ref"));
    CHECK(dw__cpu_kernels_best() != NULL);
    printf("    kernel sets:");
    for (int i = 0; i < n_sets; i++) printf(" %s", sets[i]->isa);
    printf(" (best: %s)\n", dw__cpu_kernels_best()->isa);
}

static void check_matmul(int *dw_test_failed_, int dtype) {
    load_sets();
    static const int ks[] = {1, 7, 16, 33, 64, 200};
    static const int ns[] = {1, 2, 3, 4, 5, 9};
    static const int rows_list[] = {1, 3, 4, 9, 17};
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (size_t ri = 0; ri < sizeof rows_list / sizeof rows_list[0]; ri++) {
                int k = ks[ki], n = ns[ni], rows = rows_list[ri];
                int ldx = k + 3, ldo = rows + 2;
                float *x = malloc(sizeof(float) * n * ldx);
                float *wf = malloc(sizeof(float) * rows * k);
                uint16_t *wh = malloc(sizeof(uint16_t) * rows * k);
                float *ref = calloc((size_t)n * ldo, sizeof(float));
                float *got = calloc((size_t)n * ldo, sizeof(float));
                fill(x, (size_t)n * ldx, 2.0f);
                fill(wf, (size_t)rows * k, 1.0f);
                for (int i = 0; i < rows * k; i++)
                    wh[i] = dtype == DW_DTYPE_BF16 ? dw_f32_to_bf16(wf[i]) : dw_f32_to_f16(wf[i]);
                const void *w = dtype == DW_DTYPE_F32 ? (const void *)wf : (const void *)wh;
                /* a sub-range of rows, as the thread pool hands out */
                int r0 = rows > 2 ? 1 : 0, r1 = rows;
                dw__matmul_fn fref = dtype == DW_DTYPE_BF16  ? sets[0]->matmul_bf16
                                     : dtype == DW_DTYPE_F16 ? sets[0]->matmul_f16
                                                             : sets[0]->matmul_f32;
                fref(ref, ldo, x, ldx, n, w, k, r0, r1);
                for (int s = 1; s < n_sets; s++) {
                    for (int i = 0; i < n * ldo; i++) got[i] = ref[i] + 1000.0f * (i % ldo < r0 || i % ldo >= r1);
                    dw__matmul_fn f = dtype == DW_DTYPE_BF16  ? sets[s]->matmul_bf16
                                      : dtype == DW_DTYPE_F16 ? sets[s]->matmul_f16
                                                              : sets[s]->matmul_f32;
                    for (int i = 0; i < n * ldo; i++)
                        if (i % ldo >= r0 && i % ldo < r1) got[i] = NAN;
                    f(got, ldo, x, ldx, n, w, k, r0, r1);
                    for (int t = 0; t < n; t++)
                        for (int r = 0; r < ldo; r++) {
                            float g = got[t * ldo + r], e = ref[t * ldo + r];
                            if (r < r0 || r >= r1) {
                                CHECK_MSG(g == e + 1000.0f, "%s wrote outside rows [%d,%d)", sets[s]->isa, r0, r1);
                            } else {
                                CHECK_MSG(fabsf(g - e) <= 1e-4f * (1.0f + sqrtf((float)k)) * 2.0f,
                                          "%s matmul k=%d n=%d rows=%d t=%d r=%d: %g vs %g", sets[s]->isa, k,
                                          n, rows, t, r, g, e);
                            }
                        }
                }
                free(x), free(wf), free(wh), free(ref), free(got);
            }
}

TEST(kernels_matmul_bf16_matches_reference) { check_matmul(dw_test_failed_, DW_DTYPE_BF16); }
TEST(kernels_matmul_f16_matches_reference) { check_matmul(dw_test_failed_, DW_DTYPE_F16); }
TEST(kernels_matmul_f32_matches_reference) { check_matmul(dw_test_failed_, DW_DTYPE_F32); }

/* The prefill GEMM (transposed activations) of every set, the reference included, against the
 * reference matmul on the untransposed activations. */
static void check_gemm(int *dw_test_failed_, int dtype) {
    load_sets();
    static const int ks[] = {1, 17, 128, 130, 300};
    static const int ns[] = {2, 15, 16, 17, 48, 50, 130};
    static const int rows_list[] = {1, 9, 32, 33, 70};
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (size_t ri = 0; ri < sizeof rows_list / sizeof rows_list[0]; ri++) {
                int k = ks[ki], n = ns[ni], rows = rows_list[ri];
                int ldo = rows + 3, ldt = ((n + 15) & ~15) + 16;
                float *x = malloc(sizeof(float) * n * k), *xt = malloc(sizeof(float) * (size_t)k * ldt);
                float *wf = malloc(sizeof(float) * rows * k);
                uint16_t *wh = malloc(sizeof(uint16_t) * rows * k);
                float *ref = malloc(sizeof(float) * n * ldo), *got = malloc(sizeof(float) * n * ldo);
                fill(x, (size_t)n * k, 2.0f);
                fill(wf, (size_t)rows * k, 1.0f);
                for (int i = 0; i < rows * k; i++)
                    wh[i] = dtype == DW_DTYPE_BF16 ? dw_f32_to_bf16(wf[i]) : dw_f32_to_f16(wf[i]);
                for (int i = 0; i < k; i++)
                    for (int t = 0; t < ldt; t++) xt[(size_t)i * ldt + t] = t < n ? x[(size_t)t * k + i] : NAN;
                const void *w = dtype == DW_DTYPE_F32 ? (const void *)wf : (const void *)wh;
                int r0 = rows > 2 ? 1 : 0, r1 = rows;
                for (int i = 0; i < n * ldo; i++) ref[i] = 7.0f;
                dw__matmul_fn fref = dtype == DW_DTYPE_BF16  ? sets[0]->matmul_bf16
                                     : dtype == DW_DTYPE_F16 ? sets[0]->matmul_f16
                                                             : sets[0]->matmul_f32;
                fref(ref, ldo, x, k, n, w, k, r0, r1);
                for (int s = 0; s < n_sets; s++) {
                    dw__gemm_fn g = dtype == DW_DTYPE_BF16  ? sets[s]->gemm_bf16
                                    : dtype == DW_DTYPE_F16 ? sets[s]->gemm_f16
                                                            : sets[s]->gemm_f32;
                    for (int i = 0; i < n * ldo; i++) got[i] = 7.0f;
                    g(got, ldo, xt, ldt, n, w, k, r0, r1);
                    for (int t = 0; t < n; t++)
                        for (int r = 0; r < ldo; r++) {
                            float gv = got[t * ldo + r], e = ref[t * ldo + r];
                            CHECK_MSG(fabsf(gv - e) <= 1e-4f * (1.0f + sqrtf((float)k)) * 2.0f,
                                      "%s gemm k=%d n=%d rows=%d t=%d r=%d: %g vs %g", sets[s]->isa, k, n, rows, t, r, gv,
                                      e);
                        }
                }
                free(x), free(xt), free(wf), free(wh), free(ref), free(got);
            }
}

TEST(kernels_gemm_bf16_matches_reference) { check_gemm(dw_test_failed_, DW_DTYPE_BF16); }
TEST(kernels_gemm_f16_matches_reference) { check_gemm(dw_test_failed_, DW_DTYPE_F16); }
TEST(kernels_gemm_f32_matches_reference) { check_gemm(dw_test_failed_, DW_DTYPE_F32); }

TEST(kernels_matmul_reference_computes_a_dot_product) {
    /* the reference itself against a hand-computed value */
    float x[3] = {1.0f, 2.0f, -3.0f};
    uint16_t w[6];
    float wf[6] = {0.5f, 0.25f, 1.0f, -1.0f, 2.0f, 0.0f};
    for (int i = 0; i < 6; i++) w[i] = dw_f32_to_bf16(wf[i]);
    float out[2] = {0, 0};
    dw__cpu_kernels_ref.matmul_bf16(out, 2, x, 3, 1, w, 3, 0, 2);
    CHECK(out[0] == 0.5f + 0.5f - 3.0f);
    CHECK(out[1] == -1.0f + 4.0f);
}

TEST(kernels_vector_ops_match_reference) {
    load_sets();
    static const int sizes[] = {1, 5, 8, 15, 16, 17, 31, 64, 100, 1000};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int n = sizes[si];
        float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
        float *y0 = malloc(sizeof(float) * n), *y1 = malloc(sizeof(float) * n);
        uint16_t *h = malloc(2 * n), *h0 = malloc(2 * n), *h1 = malloc(2 * n);
        fill(a, n, 3.0f);
        fill(b, n, 3.0f);
        for (int i = 0; i < n; i++) h[i] = dw_f32_to_bf16(b[i]);
        const dw__cpu_kernels *R = sets[0];
        for (int s = 1; s < n_sets; s++) {
            const dw__cpu_kernels *S = sets[s];
            float tol = 1e-5f * (float)n;
            CHECK_MSG(fabsf(S->dot_f32(a, b, n) - R->dot_f32(a, b, n)) <= tol, "%s dot_f32 n=%d", S->isa, n);
            CHECK_MSG(fabsf(S->dot_bf16(a, h, n) - R->dot_bf16(a, h, n)) <= tol, "%s dot_bf16 n=%d", S->isa, n);
            CHECK_MSG(fabsf(S->sum_squares(a, n) - R->sum_squares(a, n)) <= tol, "%s sum_squares n=%d", S->isa, n);

            memcpy(y0, b, sizeof(float) * n), memcpy(y1, b, sizeof(float) * n);
            R->axpy_f32(y0, 0.75f, a, n), S->axpy_f32(y1, 0.75f, a, n);
            CHECK_MSG(rel_err(y1, y0, n) < 1e-6, "%s axpy_f32 n=%d", S->isa, n);
            memcpy(y0, a, sizeof(float) * n), memcpy(y1, a, sizeof(float) * n);
            R->axpy_bf16(y0, -1.5f, h, n), S->axpy_bf16(y1, -1.5f, h, n);
            CHECK_MSG(rel_err(y1, y0, n) < 1e-6, "%s axpy_bf16 n=%d", S->isa, n);

            R->bf16_to_f32(y0, h, n), S->bf16_to_f32(y1, h, n);
            CHECK_MSG(!memcmp(y0, y1, sizeof(float) * n), "%s bf16_to_f32 n=%d", S->isa, n);
            for (int i = 0; i < n; i++) h0[i] = dw_f32_to_f16(a[i]);
            R->f16_to_f32(y0, h0, n), S->f16_to_f32(y1, h0, n);
            CHECK_MSG(!memcmp(y0, y1, sizeof(float) * n), "%s f16_to_f32 n=%d", S->isa, n);
            /* include ties and a NaN when there is room */
            memcpy(y0, a, sizeof(float) * n);
            if (n > 2) y0[1] = dw__f32_from_bits(0x3f808000u), y0[2] = NAN;
            R->f32_to_bf16(h0, y0, n), S->f32_to_bf16(h1, y0, n);
            CHECK_MSG(!memcmp(h0, h1, 2 * n), "%s f32_to_bf16 n=%d", S->isa, n);

            R->scale_mul(y0, a, 0.3f, b, n), S->scale_mul(y1, a, 0.3f, b, n);
            CHECK_MSG(!memcmp(y0, y1, sizeof(float) * n), "%s scale_mul n=%d", S->isa, n);
            R->swiglu(y0, a, b, n), S->swiglu(y1, a, b, n);
            CHECK_MSG(rel_err(y1, y0, n) < 1e-5, "%s swiglu n=%d: %g", S->isa, n, rel_err(y1, y0, n));
            memcpy(y0, a, sizeof(float) * n), memcpy(y1, a, sizeof(float) * n);
            R->add(y0, b, n), S->add(y1, b, n);
            CHECK_MSG(!memcmp(y0, y1, sizeof(float) * n), "%s add n=%d", S->isa, n);
            CHECK_MSG(S->max_f32(a, n) == R->max_f32(a, n), "%s max_f32 n=%d", S->isa, n);

            memcpy(y0, a, sizeof(float) * n), memcpy(y1, a, sizeof(float) * n);
            float s0 = R->exp_sum(y0, 2.5f, n), s1 = S->exp_sum(y1, 2.5f, n);
            CHECK_MSG(fabsf(s0 - s1) <= 1e-5f * s0, "%s exp_sum n=%d: %g vs %g", S->isa, n, s1, s0);
            CHECK_MSG(rel_err(y1, y0, n) < 1e-6, "%s exp values n=%d", S->isa, n);
        }
        free(a), free(b), free(y0), free(y1), free(h), free(h0), free(h1);
    }
}

/* max |a - b| over n, for dot products of hd terms each at most 1 in size: the scale of the
 * rounding is the terms', not the (possibly cancelled) result's */
static double max_abs_diff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
    }
    return m;
}

TEST(kernels_attention_blocks_match_reference) {
    load_sets();
    static const int hds[] = {8, 16, 24, 64, 80, 128, 256};
    static const int ns[] = {1, 3, 128};
    for (size_t hi = 0; hi < sizeof hds / sizeof hds[0]; hi++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            int hd = hds[hi], n = ns[ni];
            float *q = malloc(sizeof(float) * hd), *rows = malloc(sizeof(float) * n * hd), *p = malloc(sizeof(float) * n);
            uint16_t *rb = malloc(2 * (size_t)n * hd);
            float s0[128], s1[128], *a0 = malloc(sizeof(float) * hd), *a1 = malloc(sizeof(float) * hd);
            fill(q, hd, 1.0f), fill(rows, (size_t)n * hd, 1.0f), fill(p, n, 1.0f);
            for (int i = 0; i < n * hd; i++) rb[i] = dw_f32_to_bf16(rows[i]);
            /* the transposed form, against the row form of the reference */
            int ldk = (n + 15) & ~15;
            float *kt = malloc(sizeof(float) * (size_t)hd * ldk);
            for (int d = 0; d < hd; d++)
                for (int jj = 0; jj < ldk; jj++) kt[(size_t)d * ldk + jj] = jj < n ? rows[(size_t)jj * hd + d] : NAN;
            sets[0]->attn_dot_f32(s0, q, rows, n, hd, 0.125f);
            for (int s = 0; s < n_sets; s++) {
                for (int jj = 0; jj < 128; jj++) s1[jj] = 99.0f;
                sets[s]->attn_dot_t(s1, q, kt, ldk, n, hd, 0.125f);
                CHECK_MSG(max_abs_diff(s1, s0, n) < 2e-7 * hd, "%s attn_dot_t hd=%d n=%d", sets[s]->isa, hd, n);
                CHECK_MSG(n == 128 || s1[n] == 99.0f, "%s attn_dot_t wrote past n", sets[s]->isa);
            }
            free(kt);
            /* several queries at once against one query at a time in the reference */
            for (int nq = 1; nq <= 4; nq++) {
                float *pm = malloc(sizeof(float) * 4 * (n + 3)), *m0 = malloc(sizeof(float) * 4 * (hd + 5)),
                      *m1 = malloc(sizeof(float) * 4 * (hd + 5));
                fill(pm, (size_t)4 * (n + 3), 1.0f), fill(m0, (size_t)4 * (hd + 5), 1.0f);
                for (int s = 0; s < n_sets; s++) {
                    memcpy(m1, m0, sizeof(float) * 4 * (hd + 5));
                    float *ref = malloc(sizeof(float) * 4 * (hd + 5));
                    memcpy(ref, m0, sizeof(float) * 4 * (hd + 5));
                    for (int qq = 0; qq < nq; qq++)
                        sets[0]->attn_acc_f32(ref + (size_t)qq * (hd + 5), pm + (size_t)qq * (n + 3), rows, n, hd);
                    sets[s]->attn_acc_multi(m1, hd + 5, pm, n + 3, nq, rows, n, hd);
                    CHECK_MSG(max_abs_diff(m1, ref, 4 * (hd + 5)) < 2e-7 * n + 1e-6, "%s attn_acc_multi hd=%d n=%d nq=%d",
                              sets[s]->isa, hd, n, nq);
                    free(ref);
                }
                free(pm), free(m0), free(m1);
            }
            for (int s = 1; s < n_sets; s++) {
                const dw__cpu_kernels *R = sets[0], *S = sets[s];
                R->attn_dot_f32(s0, q, rows, n, hd, 0.125f), S->attn_dot_f32(s1, q, rows, n, hd, 0.125f);
                CHECK_MSG(max_abs_diff(s1, s0, n) < 2e-7 * hd, "%s attn_dot_f32 hd=%d n=%d", S->isa, hd, n);
                R->attn_dot_bf16(s0, q, rb, n, hd, 0.125f), S->attn_dot_bf16(s1, q, rb, n, hd, 0.125f);
                CHECK_MSG(max_abs_diff(s1, s0, n) < 2e-7 * hd, "%s attn_dot_bf16 hd=%d n=%d", S->isa, hd, n);
                fill(a0, hd, 1.0f), memcpy(a1, a0, sizeof(float) * hd);
                R->attn_acc_f32(a0, p, rows, n, hd), S->attn_acc_f32(a1, p, rows, n, hd);
                CHECK_MSG(rel_err(a1, a0, hd) < 1e-5, "%s attn_acc_f32 hd=%d n=%d", S->isa, hd, n);
                fill(a0, hd, 1.0f), memcpy(a1, a0, sizeof(float) * hd);
                R->attn_acc_bf16(a0, p, rb, n, hd), S->attn_acc_bf16(a1, p, rb, n, hd);
                CHECK_MSG(rel_err(a1, a0, hd) < 1e-5, "%s attn_acc_bf16 hd=%d n=%d", S->isa, hd, n);
            }
            free(q), free(rows), free(p), free(rb), free(a0), free(a1);
        }
}

TEST(kernels_exp_and_silu_are_accurate_over_the_range) {
    load_sets();
    float x[64], y[64], up[64];
    for (int i = 0; i < 64; i++) x[i] = -80.0f + 160.0f * i / 63.0f, up[i] = 1.0f;
    for (int s = 0; s < n_sets; s++) {
        memcpy(y, x, sizeof x);
        sets[s]->exp_sum(y, 0.0f, 64);
        for (int i = 0; i < 64; i++) {
            double e = exp((double)x[i]);
            CHECK_MSG(fabs(y[i] - e) <= 4e-7 * e, "%s exp(%g) = %g, expected %g", sets[s]->isa, x[i], y[i], e);
        }
        sets[s]->swiglu(y, x, up, 64);
        for (int i = 0; i < 64; i++) {
            double e = x[i] / (1.0 + exp(-(double)x[i]));
            CHECK_MSG(fabs(y[i] - e) <= 1e-6 * (fabs(e) + 1e-30) + 1e-37, "%s silu(%g) = %g, expected %g",
                      sets[s]->isa, x[i], y[i], e);
        }
    }
}

TEST(kernels_read_bytes_sees_every_byte) {
    load_sets();
    size_t n = 4096 + 64 * 5;
    uint8_t *buf = calloc(1, n);
    for (int s = 0; s < n_sets; s++) {
        uint64_t base = sets[s]->read_bytes(buf, n);
        for (size_t pos = 0; pos < n; pos += 997) {
            buf[pos] = 0x5a;
            CHECK_MSG(sets[s]->read_bytes(buf, n) != base, "%s ignored byte %zu", sets[s]->isa, pos);
            buf[pos] = 0;
        }
    }
    free(buf);
}
