/* Quantized (MLX affine) weights: the quantizer's edge cases, and every CPU quantized kernel
 * against its scalar reference and against dequantize + f32 matmul, on random data. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/kernels_dispatch.h"
#include "engine/quant.h"
#include "test.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xffffff) / (float)(1 << 23) - 1.0f;
}

/* A quantized rows × cols matrix from random bf16 weights. */
typedef struct qmat {
    uint16_t *src;
    uint32_t *q;
    uint16_t *scales, *biases;
    dw_cweight w;
    dw__qtensor t;
} qmat;

static void qmat_make_sd(qmat *m, int rows, int cols, int bits, int gs, dw_dtype sdtype) {
    m->src = malloc(sizeof(uint16_t) * rows * cols);
    for (int i = 0; i < rows * cols; i++) m->src[i] = dw_f32_to_bf16(frand() * 0.1f);
    m->q = malloc(sizeof(uint32_t) * rows * cols * bits / 32);
    m->scales = malloc(sizeof(float) * rows * cols / gs); /* room for any scale dtype */
    m->biases = malloc(sizeof(float) * rows * cols / gs);
    dw__quantize(m->src, DW_DTYPE_BF16, rows, cols, bits, gs, m->q, m->scales, m->biases, sdtype);
    memset(&m->w, 0, sizeof m->w);
    m->w.data = m->q;
    m->w.dtype = DW_DTYPE_U32;
    m->w.rows = rows;
    m->w.cols = cols;
    m->w.qbits = bits;
    m->w.qgroup = gs;
    m->w.qscales = m->scales;
    m->w.qbiases = m->biases;
    m->w.qsdtype = sdtype;
    m->t = (dw__qtensor){.q = m->q, .scales = m->scales, .biases = m->biases, .sdtype = sdtype,
                         .bits = bits, .group_size = gs, .rows = rows, .cols = cols};
}

static void qmat_make(qmat *m, int rows, int cols, int bits, int gs) {
    qmat_make_sd(m, rows, cols, bits, gs, DW_DTYPE_BF16);
}

static void qmat_free(qmat *m) {
    free(m->src);
    free(m->q);
    free(m->scales);
    free(m->biases);
}

TEST(quant_constant_and_zero_groups_dequantize_exactly) {
    float w[2 * 64];
    for (int i = 0; i < 64; i++) w[i] = 0.375f;      /* constant */
    for (int i = 64; i < 128; i++) w[i] = 0.0f;      /* zero */
    uint32_t q[2 * 8];
    float s[2], b[2], out[128];
    dw__quantize(w, DW_DTYPE_F32, 2, 64, 4, 64, q, s, b, DW_DTYPE_F32);
    dw__qtensor t = {.q = q, .scales = s, .biases = b, .sdtype = DW_DTYPE_F32, .bits = 4, .group_size = 64,
                     .rows = 2, .cols = 64};
    dw__dequantize_row(&t, 0, out);
    dw__dequantize_row(&t, 1, out + 64);
    for (int i = 0; i < 128; i++) CHECK_MSG(out[i] == w[i], "element %d: %g != %g", i, out[i], w[i]);
    CHECK(b[1] == 0.0f); /* q0 == 0: bias 0 */
}

TEST(quant_error_is_at_most_one_step_as_mlx_tests) {
    for (int bits = 4; bits <= 8; bits += 4) {
        qmat m;
        qmat_make(&m, 16, 256, bits, 64);
        float row[256];
        for (int r = 0; r < 16; r++) {
            dw__dequantize_row(&m.t, r, row);
            for (int i = 0; i < 256; i++) {
                /* MLX's own bound (error <= scale) plus the bf16 rounding of the stored bias */
                float s = fabsf(dw_bf16_to_f32(m.scales[r * 4 + i / 64])) +
                          fabsf(dw_bf16_to_f32(m.biases[r * 4 + i / 64])) / 256.0f;
                float e = fabsf(row[i] - dw_bf16_to_f32(m.src[r * 256 + i]));
                CHECK_MSG(e <= s + 1e-6f, "bits %d row %d col %d: error %g, step %g", bits, r, i, e, s);
            }
        }
        qmat_free(&m);
    }
}

TEST(quant_shape_checks_name_the_problem) {
    char msg[160];
    CHECK(dw__quant_check_shape(3, 64, 256, msg, sizeof msg) == -1 && strstr(msg, "bits 3"));
    CHECK(dw__quant_check_shape(4, 48, 256, msg, sizeof msg) == -1 && strstr(msg, "group size 48"));
    CHECK(dw__quant_check_shape(4, 64, 96, msg, sizeof msg) == -1 && strstr(msg, "does not divide"));
    CHECK(dw__quant_check_shape(8, 128, 256, msg, sizeof msg) == 0);
}

/* Every kernel set: matvec (and the 4-bit matvec on prep4's layout, where a set has one) against
 * the reference and against dequantize + f32 dot; dequant bit-identical to the reference. 37 rows
 * from row 3: blocks of several rows and a remainder; 1280 columns: 40, 20 or 10 groups (SIMD
 * blocks of 16 groups and a remainder), and 1344 (not a multiple of 128: a half chunk at the end
 * of each row for the VNNI path); scales and biases in each stored dtype. Every set the CPU can
 * run, the plain AVX-512 one included where the VNNI set is the default. */
/* x as the VNNI set's prep4 represents it: per group g, d_g·round(x / d_g), d_g = max|x| / 32767. */
static void round_x_16bit(float *xr, const float *x, int cols, int gs) {
    for (int g = 0; g < cols / gs; g++) {
        float amax = 0.0f;
        for (int i = 0; i < gs; i++) amax = fmaxf(amax, fabsf(x[g * gs + i]));
        float d = amax / 32767.0f, inv = amax > 0.0f ? 32767.0f / amax : 0.0f;
        for (int i = g * gs; i < (g + 1) * gs; i++) xr[i] = rintf(x[i] * inv) * d;
    }
}

TEST(quant_kernels_match_reference_and_dequantized_matmul) {
    const dw__cpu_qkernels *qsets[8];
    int n_q = dw__cpu_qkernels_available(qsets, 8);
    const int rows = 37, max_cols = 1344;
    int bits_list[2] = {4, 8}, gs_list[3] = {32, 64, 128}, cols_list[2] = {1280, 1344};
    dw_dtype sd_list[3] = {DW_DTYPE_BF16, DW_DTYPE_F16, DW_DTYPE_F32};
    float *x = malloc(sizeof(float) * max_cols), *xp = malloc(sizeof(float) * DW_QPREP4_FLOATS(max_cols));
    float *deq = malloc(sizeof(float) * rows * max_cols), *deq2 = malloc(sizeof(float) * rows * max_cols);
    float *xr = malloc(sizeof(float) * max_cols);
    float ref[37], refr[37], got[37], xsum[64];
    for (int i = 0; i < max_cols; i++) x[i] = frand();
    for (int ci = 0; ci < 2; ci++)
    for (int bi = 0; bi < 2; bi++)
        for (int gi = 0; gi < 3; gi++)
            for (int si = 0; si < 3; si++) {
                int bits = bits_list[bi], gs = gs_list[gi], cols = cols_list[ci];
                if (cols % gs) continue;
                qmat m;
                qmat_make_sd(&m, rows, cols, bits, gs, sd_list[si]);
                for (int g = 0; g < cols / gs; g++) {
                    xsum[g] = 0;
                    for (int i = 0; i < gs; i++) xsum[g] += x[g * gs + i];
                }
                dw__cpu_qkernels_ref.dequant(deq, &m.w, 0, rows);
                dw__cpu_qkernels_ref.matvec(ref, x, xsum, &m.w, 0, rows);
                for (int r = 0; r < rows; r++) { /* the reference against dequantize + f32 dot (f64 sum) */
                    double d = 0;
                    for (int i = 0; i < cols; i++) d += (double)deq[r * cols + i] * x[i];
                    CHECK_MSG(fabs(ref[r] - d) <= 1e-4 * (1 + fabs(d)), "ref bits %d gs %d sd %d row %d: %g vs %g", bits,
                              gs, si, r, ref[r], d);
                }
                /* the reference on x rounded to 16 bits per group (exact group sums for the bias term) */
                round_x_16bit(xr, x, cols, gs);
                dw__cpu_qkernels_ref.matvec(refr, xr, xsum, &m.w, 0, rows);
                for (int s = 0; s < n_q; s++) {
                    const dw__cpu_qkernels *qk = qsets[s];
                    int x16 = !strcmp(qk->isa, "avx512vnni"); /* its prep4 rounds x to 16 bits */
                    for (int path = 0; path < 2; path++) {
                        if (path == 1 && !(bits == 4 && qk->prep4)) continue;
                        for (int r = 0; r < rows; r++) got[r] = 12345.0f; /* rows before the slice stay */
                        if (path == 0) {
                            qk->matvec(got, x, xsum, &m.w, 3, rows); /* a slice not starting at 0 */
                        } else {
                            qk->prep4(xp, x, cols, gs);
                            qk->matvec4p(got, xp, xsum, &m.w, 3, rows);
                        }
                        for (int r = 0; r < 3; r++) CHECK(got[r] == 12345.0f);
                        const float *want = path == 1 && x16 ? refr : ref;
                        for (int r = 3; r < rows; r++)
                            CHECK_MSG(fabsf(got[r] - want[r]) <= 1e-5f * (1 + fabsf(want[r])),
                                      "%s%s bits %d gs %d sd %d row %d: %g vs %g", qk->isa, path ? " (prep4)" : "", bits,
                                      gs, si, r, got[r], want[r]);
                        for (int r = 3; r < rows && path == 1 && x16; r++) {
                            /* and the rounding of x moves the result by at most Σ|w_i|·d_g/2 */
                            double bound = 0;
                            for (int i = 0; i < cols; i++) bound += fabs(deq[r * cols + i]) * fabs(x[i] - xr[i]);
                            CHECK_MSG(fabs(got[r] - ref[r]) <= 1.01 * bound + 1e-5 * (1 + fabs(ref[r])),
                                      "%s (prep4) bits %d gs %d sd %d row %d: %g vs exact %g, bound %g", qk->isa, bits, gs,
                                      si, r, got[r], ref[r], bound);
                        }
                    }
                    qk->dequant(deq2, &m.w, 5, rows);
                    CHECK_MSG(!memcmp(deq2, deq + 5 * cols, sizeof(float) * (rows - 5) * cols),
                              "%s dequant bits %d gs %d sd %d", qk->isa, bits, gs, si);
                }
                qmat_free(&m);
            }
    free(x);
    free(xp);
    free(xr);
    free(deq);
    free(deq2);
}

TEST(quant_reference_dequant_matches_the_engines_dequantizer) {
    /* two readings of core/quant_layout.h: the kernels' reference and the engine's loader */
    int bits_list[2] = {4, 8}, gs_list[3] = {32, 64, 128};
    dw_dtype sd_list[3] = {DW_DTYPE_BF16, DW_DTYPE_F16, DW_DTYPE_F32};
    float a[384], b[384];
    for (int bi = 0; bi < 2; bi++)
        for (int gi = 0; gi < 3; gi++)
            for (int si = 0; si < 3; si++) {
                qmat m;
                qmat_make_sd(&m, 5, 384, bits_list[bi], gs_list[gi], sd_list[si]);
                for (int r = 0; r < 5; r++) {
                    dw__cpu_qkernels_ref.dequant(a, &m.w, r, r + 1);
                    dw__dequantize_row(&m.t, r, b);
                    CHECK_MSG(!memcmp(a, b, sizeof a), "bits %d gs %d sd %d row %d", bits_list[bi], gs_list[gi], si, r);
                }
                qmat_free(&m);
            }
}

/* The CPU backend's own ops on a quantized weight (weight_load_quant, then matmul for one token
 * and for a batch, matmul_multi beside a float weight, embed) against the same ops on the
 * dequantized f32 matrix. */
TEST(quant_cpu_backend_runs_quantized_weights_natively) {
    dw_error err = {0};
    dw_backend *be;
    CHECK_OK(dw_backend_open("cpu", &be, &err));
    const dw_backend_ops *ops = be->ops;
    const int rows = 70, cols = 256, n = 5;
    for (int bits = 4; bits <= 8; bits += 4) {
        qmat m;
        qmat_make(&m, rows, cols, bits, 64);
        dw_cweight qw, fw;
        CHECK_OK(ops->weight_load_quant(be->ctx, &m.w, &qw, &err));
        CHECK(qw.qbits == bits && qw.data == m.q); /* the mapping itself, no copy */
        float *deq = malloc(sizeof(float) * rows * cols);
        dw__cpu_qkernels_ref.dequant(deq, &m.w, 0, rows);
        CHECK_OK(ops->weight_load(be->ctx, deq, DW_DTYPE_F32, rows, cols, &fw, &err));
        float x[5 * 256], want[5 * 70], got[5 * 70], got2[5 * 70];
        for (int i = 0; i < n * cols; i++) x[i] = frand();
        for (int tokens = 1; tokens <= n; tokens += n - 1) {
            ops->matmul(be->ctx, want, x, tokens, &fw, NULL);
            ops->matmul(be->ctx, got, x, tokens, &qw, NULL);
            float *outs[2] = {got2, got};
            const dw_cweight *ws[2] = {&fw, &qw};
            ops->matmul_multi(be->ctx, 2, outs, x, tokens, ws, NULL);
            for (int i = 0; i < tokens * rows; i++) {
                /* the VNNI decode rounds x to 16 bits per group: a relative error near 2^-15 */
                CHECK_MSG(fabsf(got[i] - want[i]) <= 1e-3f * (1 + fabsf(want[i])), "bits %d, %d tokens, %d: %g vs %g",
                          bits, tokens, i, got[i], want[i]);
                CHECK(got2[i] == want[i]);
            }
        }
        int32_t ids[3] = {69, 0, 17};
        float emb[3 * 256];
        ops->embed(be->ctx, emb, &qw, ids, 3);
        for (int i = 0; i < 3; i++) CHECK(!memcmp(emb + i * cols, deq + ids[i] * cols, sizeof(float) * cols));
        ops->weight_release(be->ctx, &qw);
        ops->weight_release(be->ctx, &fw);
        free(deq);
        qmat_free(&m);
    }
    dw_backend_close(be);
}

TEST(quant_cpu_kernel_choice_caps_and_rejects_unknown_names) {
    dw_error err = {0};
    dw__cpu_kernel_choice c;
    CHECK_OK(dw__cpu_kernels_choose("ref", &c, &err));
    CHECK(!strcmp(c.name, "ref") && c.k == &dw__cpu_kernels_ref && c.qk == &dw__cpu_qkernels_ref);
    CHECK(dw__cpu_kernels_choose("sse9", &c, &err) == DW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "sse9") != NULL);
    /* no cap: the widest float and quantized sets this CPU runs */
    const dw__cpu_kernels *sets[8];
    const dw__cpu_qkernels *qsets[8];
    int n = dw__cpu_kernels_available(sets, 8), nq = dw__cpu_qkernels_available(qsets, 8);
    CHECK_OK(dw__cpu_kernels_choose(NULL, &c, &err));
    CHECK(c.k == sets[n - 1] && c.qk == qsets[nq - 1]);
    CHECK_OK(dw__cpu_kernels_choose("avx512vnni", &c, &err)); /* a cap at or above the CPU: the same */
    CHECK(c.k == sets[n - 1] && c.qk == qsets[nq - 1]);
#if defined(__x86_64__)
    if (nq >= 3) { /* AVX-512: "avx512" keeps the plain AVX-512 quantized set */
        CHECK_OK(dw__cpu_kernels_choose("avx512", &c, &err));
        CHECK(c.qk == &dw__cpu_qkernels_avx512 && c.k == &dw__cpu_kernels_avx512);
    }
#endif
}
