/* The CPU backend's batched-step ops (backend.h, "the batched step"; src/backend/cpu/batch_cpu.c)
 * against plain double-loop references on random data, in every kernel set this CPU runs: float
 * (bf16, f16, f32) and quantized (4/8-bit) matmul_rows, rope_rows, kv_write_rows,
 * attention_rows through scrambled block tables (also against the contiguous attention op),
 * gather_rows, argmax_rows and copy; and batch invariance: a row's matmul_rows and
 * attention_rows results are memcmp-identical in batches of 1 to 64, at any index, with
 * any neighbours, on 1 or 2 threads. A set whose bf16 product rounds the activations to bf16
 * (kernels.h, rows_bf16_bx) is held to a reference on the rounded activations. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/kernels_dispatch.h"
#include "driftwood/backend.h"
#include "engine/quant.h"
#include "test.h"

static uint64_t rng_state = 0x6a09e667f3bcc908ull;
static float frand(void) { /* uniform in [-1, 1), never exactly a run of zeros */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xffffff) / (float)(1 << 23) - 1.0f;
}
static void fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = frand() * scale;
}

/* The kernel sets to run: the reference, AVX2 and the widest (a cap above the CPU gives the
 * widest it has, so a set may repeat on a narrower CPU: harmless). */
static const char *const kernel_sets[] = {"ref", "avx2", NULL};
enum { N_SETS = 3 };

static dw_backend *open_cpu(const char *isa, int threads) {
    dw_error err = {0};
    dw_backend_options o = {.n_threads = threads, .cpu_kernels = isa};
    dw_backend *be = NULL;
    if (dw_backend_open_with("cpu", &o, &be, &err)) {
        fprintf(stderr, "    cpu backend (%s, %d threads): %s\n", isa ? isa : "best", threads, err.message);
        return NULL;
    }
    return be;
}

/* ---- weights ------------------------------------------------------------------------------- */

enum { W_BF16, W_F16, W_F32, W_Q4, W_Q8, W_KINDS };
static const char *const kind_names[W_KINDS] = {"bf16", "f16", "f32", "q4", "q8"};

/* A rows × cols weight of one kind from random values, and its exact f32 values (ref). */
typedef struct tweight {
    dw_cweight w;
    float *ref;
    void *data, *scales, *biases;
} tweight;

static void tweight_make(tweight *t, int kind, int rows, int cols) {
    memset(t, 0, sizeof *t);
    size_t count = (size_t)rows * cols;
    t->ref = malloc(count * sizeof(float));
    t->w.rows = rows;
    t->w.cols = cols;
    if (kind == W_Q4 || kind == W_Q8) {
        int bits = kind == W_Q4 ? 4 : 8, gs = kind == W_Q4 ? 64 : 32;
        uint16_t *src = malloc(count * sizeof(uint16_t));
        for (size_t i = 0; i < count; i++) src[i] = dw_f32_to_bf16(frand() * 0.1f);
        t->data = malloc(count * bits / 8);
        t->scales = malloc(count / gs * sizeof(uint16_t));
        t->biases = malloc(count / gs * sizeof(uint16_t));
        dw__quantize(src, DW_DTYPE_BF16, rows, cols, bits, gs, t->data, t->scales, t->biases, DW_DTYPE_BF16);
        free(src);
        t->w.data = t->data;
        t->w.dtype = DW_DTYPE_U32;
        t->w.qbits = bits;
        t->w.qgroup = gs;
        t->w.qscales = t->scales;
        t->w.qbiases = t->biases;
        t->w.qsdtype = DW_DTYPE_BF16;
        dw__qtensor q = {.q = t->data, .scales = t->scales, .biases = t->biases, .sdtype = DW_DTYPE_BF16,
                         .bits = bits, .group_size = gs, .rows = rows, .cols = cols};
        for (int r = 0; r < rows; r++) dw__dequantize_row(&q, r, t->ref + (size_t)r * cols);
        return;
    }
    if (kind == W_F32) {
        float *d = malloc(count * sizeof(float));
        fill(d, count, 0.1f);
        memcpy(t->ref, d, count * sizeof(float));
        t->data = d;
        t->w.dtype = DW_DTYPE_F32;
    } else {
        uint16_t *d = malloc(count * sizeof(uint16_t));
        for (size_t i = 0; i < count; i++) {
            float v = frand() * 0.1f;
            d[i] = kind == W_BF16 ? dw_f32_to_bf16(v) : dw_f32_to_f16(v);
            t->ref[i] = kind == W_BF16 ? dw_bf16_to_f32(d[i]) : dw_f16_to_f32(d[i]);
        }
        t->data = d;
        t->w.dtype = kind == W_BF16 ? DW_DTYPE_BF16 : DW_DTYPE_F16;
    }
    t->w.data = t->data;
}

static void tweight_free(tweight *t) {
    free(t->ref);
    free(t->data);
    free(t->scales);
    free(t->biases);
}

/* ---- matmul_rows ------------------------------------------------------------------------------ */

/* matmul_rows with three weights (one with a bias) against double sums, for batches that cover
 * the register tiles' leftovers and the token chunks. */
static void check_matmul_rows(int *dw_test_failed_, int kind) {
    const int k = kind >= W_Q4 ? 1088 : 1100; /* > one k chunk; not a multiple of a vector for floats */
    const int rows[3] = {37, 16, 9};
    for (int s = 0; s < N_SETS; s++) {
        dw_backend *be = open_cpu(kernel_sets[s], 2);
        CHECK(be);
        dw__cpu_kernel_choice choice;
        CHECK(dw__cpu_kernels_choose(kernel_sets[s], &choice, NULL) == DW_OK);
        int round_x = kind == W_BF16 && choice.k->rows_bf16_bx != NULL; /* activations to bf16 first */
        tweight tw[3];
        for (int m = 0; m < 3; m++) tweight_make(&tw[m], kind, rows[m], k);
        float bias[16];
        fill(bias, 16, 1.0f);
        dw_cweight bw = {.data = bias, .dtype = DW_DTYPE_F32, .rows = 1, .cols = 16};
        const int ns[5] = {1, 2, 3, 8, 37};
        for (int ni = 0; ni < 5; ni++) {
            int n = ns[ni];
            float *x = malloc(sizeof(float) * n * k), *out[3];
            fill(x, (size_t)n * k, 1.0f);
            for (int m = 0; m < 3; m++) out[m] = malloc(sizeof(float) * n * rows[m]);
            const dw_cweight *w[3] = {&tw[0].w, &tw[1].w, &tw[2].w}, *b[3] = {NULL, &bw, NULL};
            be->ops->matmul_rows(be->ctx, 3, out, x, n, w, b);
            for (int m = 0; m < 3; m++)
                for (int t = 0; t < n; t++)
                    for (int r = 0; r < rows[m]; r++) {
                        double acc = 0, mag = 0;
                        for (int i = 0; i < k; i++) {
                            float xi = x[(size_t)t * k + i];
                            if (round_x) xi = dw_bf16_to_f32(dw_f32_to_bf16(xi));
                            double p = (double)xi * tw[m].ref[(size_t)r * k + i];
                            acc += p;
                            mag += fabs(p);
                        }
                        if (b[m]) acc += bias[r], mag += fabs(bias[r]);
                        double got = out[m][(size_t)t * rows[m] + r];
                        CHECK_MSG(fabs(got - acc) <= 1e-5 * mag + 1e-6,
                                  "%s, %s set, n %d, matrix %d, token %d, row %d: %.8g vs %.8g", kind_names[kind],
                                  kernel_sets[s] ? kernel_sets[s] : "best", n, m, t, r, got, acc);
                    }
            free(x);
            for (int m = 0; m < 3; m++) free(out[m]);
        }
        for (int m = 0; m < 3; m++) tweight_free(&tw[m]);
        dw_backend_close(be);
    }
}

TEST(batch_matmul_rows_bf16_matches_reference) { check_matmul_rows(dw_test_failed_, W_BF16); }
TEST(batch_matmul_rows_f16_matches_reference) { check_matmul_rows(dw_test_failed_, W_F16); }
TEST(batch_matmul_rows_f32_matches_reference) { check_matmul_rows(dw_test_failed_, W_F32); }
TEST(batch_matmul_rows_q4_matches_reference) { check_matmul_rows(dw_test_failed_, W_Q4); }
TEST(batch_matmul_rows_q8_matches_reference) { check_matmul_rows(dw_test_failed_, W_Q8); }

/* One row's product alone on one thread, then in batches of 1, 2, 3, 8 and 64 at the first, middle
 * and last index among fresh random neighbours, on 1 and 2 threads: memcmp-identical. */
static void check_matmul_rows_invariant(int *dw_test_failed_, int kind) {
    const int k = kind >= W_Q4 ? 1088 : 1100, rows = 67;
    for (int s = 0; s < N_SETS; s++) {
        dw_backend *be[2] = {open_cpu(kernel_sets[s], 1), open_cpu(kernel_sets[s], 2)};
        CHECK(be[0] && be[1]);
        tweight tw;
        tweight_make(&tw, kind, rows, k);
        const dw_cweight *w[1] = {&tw.w};
        float *mine = malloc(sizeof(float) * k), alone[67];
        fill(mine, k, 1.0f);
        float *o = alone;
        be[0]->ops->matmul_rows(be[0]->ctx, 1, &o, mine, 1, w, NULL);
        const int ns[5] = {1, 2, 3, 8, 64};
        for (int ni = 0; ni < 5; ni++)
            for (int at = 0; at < 3; at++)
                for (int th = 0; th < 2; th++) {
                    int n = ns[ni], idx = at == 0 ? 0 : at == 1 ? n / 2 : n - 1;
                    float *x = malloc(sizeof(float) * n * k), *out = malloc(sizeof(float) * n * rows);
                    fill(x, (size_t)n * k, 1.0f);
                    memcpy(x + (size_t)idx * k, mine, sizeof(float) * k);
                    be[th]->ops->matmul_rows(be[th]->ctx, 1, &out, x, n, w, NULL);
                    int same = !memcmp(out + (size_t)idx * rows, alone, sizeof alone);
                    free(x);
                    free(out);
                    CHECK_MSG(same, "%s, %s set: the row differs in a batch of %d at %d on %d threads",
                              kind_names[kind], kernel_sets[s] ? kernel_sets[s] : "best", n, idx, th + 1);
                }
        free(mine);
        tweight_free(&tw);
        dw_backend_close(be[0]);
        dw_backend_close(be[1]);
    }
}

TEST(batch_matmul_rows_bf16_is_batch_invariant) { check_matmul_rows_invariant(dw_test_failed_, W_BF16); }
TEST(batch_matmul_rows_f16_is_batch_invariant) { check_matmul_rows_invariant(dw_test_failed_, W_F16); }
TEST(batch_matmul_rows_f32_is_batch_invariant) { check_matmul_rows_invariant(dw_test_failed_, W_F32); }
TEST(batch_matmul_rows_q4_is_batch_invariant) { check_matmul_rows_invariant(dw_test_failed_, W_Q4); }
TEST(batch_matmul_rows_q8_is_batch_invariant) { check_matmul_rows_invariant(dw_test_failed_, W_Q8); }

/* ---- the paged KV pool ------------------------------------------------------------------------- */

enum { HEADS = 8, KV_HEADS = 2, HD = 64, BT = 16, N_BLOCKS = 48, N_SEQ = 3, MAX_LEN = 150 };
static const int seq_len[N_SEQ] = {150, 37, 16}; /* positions written per sequence */

/* A pool layer whose sequences' blocks are scattered (a shuffled permutation of the block ids),
 * filled by kv_write_rows with random keys and values that are also kept in f32 (rounded to the
 * pool dtype) for the references. */
typedef struct pool {
    dw_kv_pages kv;
    int32_t tables[N_SEQ * 16];
    float *k[N_SEQ], *v[N_SEQ]; /* [MAX_LEN, KV_HEADS·HD] as stored */
} pool;

static float stored(dw_dtype dt, float v) { return dt == DW_DTYPE_BF16 ? dw_bf16_to_f32(dw_f32_to_bf16(v)) : v; }

static int pool_make(pool *pl, dw_backend *be, dw_dtype dt) {
    memset(pl, 0, sizeof *pl);
    size_t esize = dt == DW_DTYPE_BF16 ? 2 : 4, bytes = (size_t)N_BLOCKS * KV_HEADS * BT * HD * esize;
    pl->kv = (dw_kv_pages){malloc(bytes), malloc(bytes), dt, KV_HEADS, HD, BT, N_BLOCKS};
    for (size_t i = 0; i < bytes / 2; i++) { /* garbage elsewhere: unused blocks must not matter */
        ((uint16_t *)pl->kv.k)[i] = (uint16_t)(int)(frand() * 30000); /* frand() is in [-1, 1) */
        ((uint16_t *)pl->kv.v)[i] = (uint16_t)(int)(frand() * 30000);
    }
    int perm[N_BLOCKS];
    for (int i = 0; i < N_BLOCKS; i++) perm[i] = i;
    for (int i = N_BLOCKS - 1; i > 0; i--) {
        int j = (int)((frand() + 1.0f) * 0.5f * (float)(i + 1)) % (i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int used = 0;
    for (int s = 0; s < N_SEQ; s++)
        for (int b = 0; b < 16; b++) pl->tables[s * 16 + b] = b * BT < seq_len[s] ? perm[used++] : -1;
    for (int s = 0; s < N_SEQ; s++) {
        int n = seq_len[s], w = KV_HEADS * HD;
        pl->k[s] = malloc(sizeof(float) * n * w);
        pl->v[s] = malloc(sizeof(float) * n * w);
        fill(pl->k[s], (size_t)n * w, 1.0f);
        fill(pl->v[s], (size_t)n * w, 1.0f);
        int32_t *pos = malloc(sizeof(int32_t) * n), *slot = malloc(sizeof(int32_t) * n);
        for (int p = 0; p < n; p++) pos[p] = p, slot[p] = pl->tables[s * 16 + p / BT] * BT + p % BT;
        dw_rows r = {.n = n, .pos = pos, .slot = slot, .max_pos = n - 1};
        be->ops->kv_write_rows(be->ctx, &pl->kv, pl->k[s], pl->v[s], &r);
        for (int i = 0; i < n * w; i++) pl->k[s][i] = stored(dt, pl->k[s][i]), pl->v[s][i] = stored(dt, pl->v[s][i]);
        free(pos);
        free(slot);
    }
    return 1;
}

static void pool_free(pool *pl) {
    free(pl->kv.k);
    free(pl->kv.v);
    for (int s = 0; s < N_SEQ; s++) free(pl->k[s]), free(pl->v[s]);
}

/* What the pool holds for (sequence s, position p, KV head h, dimension d), read through the table. */
static float pool_at(const pool *pl, int which, int s, int p, int h, int d) {
    int b = pl->tables[s * 16 + p / BT];
    size_t i = (((size_t)b * KV_HEADS + h) * BT + p % BT) * HD + d;
    const void *base = which ? pl->kv.v : pl->kv.k;
    return pl->kv.dtype == DW_DTYPE_BF16 ? dw_bf16_to_f32(((const uint16_t *)base)[i]) : ((const float *)base)[i];
}

TEST(batch_kv_write_rows_stores_each_row_at_its_slot) {
    for (int dt = 0; dt < 2; dt++) {
        dw_backend *be = open_cpu(NULL, 2);
        CHECK(be);
        pool pl;
        pool_make(&pl, be, dt ? DW_DTYPE_BF16 : DW_DTYPE_F32);
        for (int s = 0; s < N_SEQ; s++)
            for (int p = 0; p < seq_len[s]; p++)
                for (int h = 0; h < KV_HEADS; h++)
                    for (int d = 0; d < HD; d++) {
                        size_t i = (size_t)p * KV_HEADS * HD + h * HD + d;
                        CHECK(pool_at(&pl, 0, s, p, h, d) == pl.k[s][i]);
                        CHECK(pool_at(&pl, 1, s, p, h, d) == pl.v[s][i]);
                    }
        pool_free(&pl);
        dw_backend_close(be);
    }
}

/* The rows of a step: row i is sequence seq[i] at position pos[i]. */
typedef struct step_rows {
    int n;
    int32_t pos[80], slot[80], table_at[80], seq[80];
} step_rows;

static dw_rows rows_of(const step_rows *sr, const pool *pl) {
    return (dw_rows){.n = sr->n, .pos = sr->pos, .slot = sr->slot, .table_at = sr->table_at, .tables = pl->tables,
                     .max_pos = MAX_LEN - 1};
}

static void add_row(step_rows *sr, const pool *pl, int s, int p) {
    int i = sr->n++;
    sr->seq[i] = s;
    sr->pos[i] = p;
    sr->table_at[i] = s * 16;
    sr->slot[i] = pl->tables[s * 16 + p / BT] * BT + p % BT;
}

/* Double-precision attention of query q (one row, every head) of sequence s at position p. */
static void attention_ref(double *out, const pool *pl, const float *q, int s, int p, int window, float scale) {
    int lo = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0, group = HEADS / KV_HEADS;
    for (int h = 0; h < HEADS; h++) {
        int kvh = h / group;
        double sc[MAX_LEN], mx = -INFINITY, sum = 0;
        for (int j = lo; j <= p; j++) {
            double d = 0;
            for (int e = 0; e < HD; e++) d += (double)q[h * HD + e] * pl->k[s][(size_t)j * KV_HEADS * HD + kvh * HD + e];
            sc[j] = d * scale;
            if (sc[j] > mx) mx = sc[j];
        }
        for (int j = lo; j <= p; j++) sum += sc[j] = exp(sc[j] - mx);
        for (int e = 0; e < HD; e++) {
            double a = 0;
            for (int j = lo; j <= p; j++) a += sc[j] * pl->v[s][(size_t)j * KV_HEADS * HD + kvh * HD + e];
            out[h * HD + e] = a / sum;
        }
    }
}

/* attention_rows on rows of every sequence (first, block edges, last positions), scattered
 * blocks, f32 and bf16 pools, with and without a window: against the reference, and against the
 * contiguous attention op on a cache holding the same keys. */
TEST(batch_attention_rows_matches_reference_and_contiguous_attention) {
    const float scale = 0.125f;
    for (int set = 0; set < N_SETS; set++)
        for (int dt = 0; dt < 2; dt++)
            for (int window = 0; window <= 20; window += 20) {
                dw_backend *be = open_cpu(kernel_sets[set], 2);
                CHECK(be);
                pool pl;
                pool_make(&pl, be, dt ? DW_DTYPE_BF16 : DW_DTYPE_F32);
                step_rows sr = {0};
                const int probe[6] = {0, 1, 15, 16, 100, 149};
                for (int s = 0; s < N_SEQ; s++)
                    for (int i = 0; i < 6; i++)
                        if (probe[i] < seq_len[s]) add_row(&sr, &pl, s, probe[i]);
                add_row(&sr, &pl, 1, 36);
                float *q = malloc(sizeof(float) * sr.n * HEADS * HD), *out = malloc(sizeof(float) * sr.n * HEADS * HD);
                fill(q, (size_t)sr.n * HEADS * HD, 1.0f);
                dw_rows r = rows_of(&sr, &pl);
                dw_attn_params p = {.n_heads = HEADS, .n_kv_heads = KV_HEADS, .head_dim = HD, .window = window,
                                    .scale = scale};
                be->ops->attention_rows(be->ctx, out, q, &pl.kv, &r, &p);
                /* the contiguous cache of each sequence, written by kv_write */
                size_t esize = dt ? 2 : 4;
                for (int i = 0; i < sr.n; i++) {
                    int s = sr.seq[i], ps = sr.pos[i];
                    double ref[HEADS * HD];
                    attention_ref(ref, &pl, q + (size_t)i * HEADS * HD, s, ps, window, scale);
                    dw_kv_view view = {malloc((size_t)KV_HEADS * MAX_LEN * HD * esize),
                                       malloc((size_t)KV_HEADS * MAX_LEN * HD * esize), pl.kv.dtype, KV_HEADS, MAX_LEN, HD};
                    be->ops->kv_write(be->ctx, &view, pl.k[s], pl.v[s], 0, seq_len[s]);
                    dw_attn_params cp = p;
                    cp.pos0 = ps;
                    cp.n_tokens = 1;
                    float contiguous[HEADS * HD];
                    be->ops->attention(be->ctx, contiguous, q + (size_t)i * HEADS * HD, &view, &cp);
                    free(view.k);
                    free(view.v);
                    for (int e = 0; e < HEADS * HD; e++) {
                        float got = out[(size_t)i * HEADS * HD + e];
                        CHECK_MSG(fabs(got - ref[e]) <= 1e-5 + 1e-5 * fabs(ref[e]),
                                  "set %s, %s, window %d, row %d (seq %d pos %d), element %d: %.8g vs %.8g",
                                  kernel_sets[set] ? kernel_sets[set] : "best", dt ? "bf16" : "f32", window, i, s, ps, e,
                                  got, ref[e]);
                        CHECK_MSG(fabs(got - contiguous[e]) <= 1e-5 + 1e-5 * fabs(contiguous[e]),
                                  "row %d element %d: paged %.8g vs contiguous %.8g", i, e, got, contiguous[e]);
                    }
                }
                free(q);
                free(out);
                pool_free(&pl);
                dw_backend_close(be);
            }
}

/* One row (sequence 0 at position 149, and sequence 1 at 36) alone on one thread, then in batches
 * of 1, 3, 8 and 64 rows of random sequences and positions at several indices, 1 and 2 threads. */
TEST(batch_attention_rows_is_batch_invariant) {
    const float scale = 0.125f;
    for (int set = 0; set < N_SETS; set++)
        for (int dt = 0; dt < 2; dt++) {
            dw_backend *be[2] = {open_cpu(kernel_sets[set], 1), open_cpu(kernel_sets[set], 2)};
            CHECK(be[0] && be[1]);
            pool pl;
            pool_make(&pl, be[0], dt ? DW_DTYPE_BF16 : DW_DTYPE_F32);
            dw_attn_params p = {.n_heads = HEADS, .n_kv_heads = KV_HEADS, .head_dim = HD, .window = 0, .scale = scale};
            for (int target = 0; target < 2; target++) {
                int ts = target ? 1 : 0, tp = target ? 36 : 149;
                float mine[HEADS * HD], alone[HEADS * HD];
                fill(mine, HEADS * HD, 1.0f);
                step_rows one = {0};
                add_row(&one, &pl, ts, tp);
                dw_rows r1 = rows_of(&one, &pl);
                be[0]->ops->attention_rows(be[0]->ctx, alone, mine, &pl.kv, &r1, &p);
                const int ns[4] = {1, 3, 8, 64};
                for (int ni = 0; ni < 4; ni++)
                    for (int at = 0; at < 3; at++)
                        for (int th = 0; th < 2; th++) {
                            int n = ns[ni], idx = at == 0 ? 0 : at == 1 ? n / 2 : n - 1;
                            step_rows sr = {0};
                            for (int i = 0; i < n; i++) {
                                if (i == idx) {
                                    add_row(&sr, &pl, ts, tp);
                                    continue;
                                }
                                int s = (int)((frand() + 1.0f) * 1.5f) % N_SEQ;
                                add_row(&sr, &pl, s, (int)((frand() + 1.0f) * 0.5f * (float)seq_len[s]) % seq_len[s]);
                            }
                            float *q = malloc(sizeof(float) * n * HEADS * HD), *out = malloc(sizeof(float) * n * HEADS * HD);
                            fill(q, (size_t)n * HEADS * HD, 1.0f);
                            memcpy(q + (size_t)idx * HEADS * HD, mine, sizeof mine);
                            dw_rows r = rows_of(&sr, &pl);
                            be[th]->ops->attention_rows(be[th]->ctx, out, q, &pl.kv, &r, &p);
                            int same = !memcmp(out + (size_t)idx * HEADS * HD, alone, sizeof alone);
                            free(q);
                            free(out);
                            CHECK_MSG(same, "set %s, %s: row (seq %d, pos %d) differs in a batch of %d at %d, %d threads",
                                      kernel_sets[set] ? kernel_sets[set] : "best", dt ? "bf16" : "f32", ts, tp, n, idx,
                                      th + 1);
                        }
            }
            pool_free(&pl);
            dw_backend_close(be[0]);
            dw_backend_close(be[1]);
        }
}

/* ---- rope_rows, gather_rows, argmax_rows, copy ------------------------------------------------------ */

TEST(batch_rope_rows_rotates_each_row_at_its_position) {
    dw_backend *be = open_cpu(NULL, 2);
    CHECK(be);
    enum { N = 6, H = 4, KH = 2, D = 32 };
    float inv_freq[D / 2];
    for (int i = 0; i < D / 2; i++) inv_freq[i] = powf(10000.0f, -2.0f * i / D);
    float q[N * H * D], k[N * KH * D], q0[N * H * D], k0[N * KH * D];
    fill(q, N * H * D, 1.0f);
    fill(k, N * KH * D, 1.0f);
    memcpy(q0, q, sizeof q);
    memcpy(k0, k, sizeof k);
    int32_t pos[N] = {7, 0, 300, 7, 4095, 31};
    dw_rows r = {.n = N, .pos = pos, .max_pos = 4095};
    be->ops->rope_rows(be->ctx, q, k, &r, H, KH, D, inv_freq);
    for (int t = 0; t < N; t++) {
        /* the same as rope() of that one row at its position, bit for bit */
        float qa[H * D], ka[KH * D];
        memcpy(qa, q0 + t * H * D, sizeof qa);
        memcpy(ka, k0 + t * KH * D, sizeof ka);
        be->ops->rope(be->ctx, qa, ka, 1, H, KH, D, pos[t], inv_freq);
        CHECK_MSG(!memcmp(qa, q + t * H * D, sizeof qa) && !memcmp(ka, k + t * KH * D, sizeof ka), "row %d", t);
        /* and the rotation itself, in double */
        for (int h = 0; h < H + KH; h++) {
            const float *src = h < H ? q0 + (t * H + h) * D : k0 + (t * KH + h - H) * D;
            const float *got = h < H ? q + (t * H + h) * D : k + (t * KH + h - H) * D;
            for (int i = 0; i < D / 2; i++) {
                double a = (double)pos[t] * inv_freq[i], c = cos(a), s = sin(a);
                double lo = src[i] * c - src[i + D / 2] * s, hi = src[i + D / 2] * c + src[i] * s;
                CHECK_MSG(fabs(got[i] - lo) < 2e-3 && fabs(got[i + D / 2] - hi) < 2e-3, "row %d head %d dim %d", t, h, i);
            }
        }
    }
    dw_backend_close(be);
}

TEST(batch_gather_argmax_and_copy) {
    dw_backend *be = open_cpu(NULL, 2);
    CHECK(be);
    enum { W = 37, N = 5 };
    float src[8 * W], dst[N * W];
    fill(src, 8 * W, 1.0f);
    int32_t idx[N] = {3, 0, 7, 3, 5};
    be->ops->gather_rows(be->ctx, dst, src, idx, N, W);
    for (int i = 0; i < N; i++) CHECK(!memcmp(dst + i * W, src + idx[i] * W, sizeof(float) * W));

    float x[4 * W];
    fill(x, 4 * W, 1.0f);
    x[0 * W + 10] = 5.0f, x[0 * W + 20] = 5.0f;    /* tie: the first */
    x[1 * W + 0] = NAN, x[1 * W + 30] = 4.0f;      /* NaN never wins */
    for (int e = 0; e < W; e++) x[2 * W + e] = NAN; /* all NaN: index 0 */
    x[3 * W + W - 1] = 9.0f;                        /* the last */
    int32_t am[4] = {-1, -1, -1, -1};
    be->ops->argmax_rows(be->ctx, x, 4, W, am);
    CHECK_MSG(am[0] == 10 && am[1] == 30 && am[2] == 0 && am[3] == W - 1, "%d %d %d %d", am[0], am[1], am[2], am[3]);

    char a[1000], b[1000];
    for (int i = 0; i < 1000; i++) a[i] = (char)(frand() * 127), b[i] = 0;
    be->ops->copy(be->ctx, b, a, sizeof a);
    CHECK(!memcmp(a, b, sizeof a));
    dw_backend_close(be);
}
