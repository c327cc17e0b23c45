/* The CUDA backend's batched-step ops (src/backend/cuda/cuda_batch.cu) against host references
 * written here (double sums on fresh random data, inputs rounded as the kernels round them), and
 * their batch invariance: one row computed in batches of 1, 7, 16, 64 and 100, the other rows
 * random and different each time and the row at different places, must give the same bits.
 * Paged attention reads keys through scrambled block tables and is compared with a reference
 * over contiguous keys. Failures name the op, the case, n, the element, got and want. Without
 * a GPU the tests pass without running; DW_REQUIRE_CUDA=1 makes a missing GPU a failure. */
#include "test.h"
#include "test_cuda.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "driftwood/backend.h"
#include "driftwood/dtype.h"

/* ---- random data and device buffers --------------------------------------------------------- */

static uint64_t brng = 0x9E3779B97F4A7C15ull;

static void brng_seed(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    brng ^= (uint64_t)t.tv_nsec * 0xD1B54A32D192ED03ull ^ (uint64_t)t.tv_sec;
    if (!brng) brng = 1;
    printf("    seed %llu\n", (unsigned long long)brng);
}

static uint32_t bnext(void) {
    brng ^= brng << 13;
    brng ^= brng >> 7;
    brng ^= brng << 17;
    return (uint32_t)(brng >> 32);
}

static float bu(void) { return (float)(bnext() >> 8) * (1.0f / (1 << 23)) - 1.0f; } /* [-1, 1) */

static float *bfill(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = bu() * scale;
    return p;
}

static float *brand(size_t n, float scale) { return bfill(malloc(n * sizeof(float) + 1), n, scale); }

/* x rounded through dtype and back. */
static float round_to(dw_dtype dt, float x) {
    uint32_t raw = 0;
    float y;
    dw_convert_from_f32(dt, &x, &raw, 1);
    dw_convert_to_f32(dt, &raw, &y, 1);
    return y;
}

static void *dev_up(dw_backend *b, const void *host, size_t bytes, dw_error *err) {
    void *p = NULL;
    if (b->ops->alloc(b->ctx, bytes ? bytes : 4, &p, err)) return NULL;
    if (bytes && b->ops->upload(b->ctx, p, host, bytes, err)) {
        b->ops->free(b->ctx, p);
        return NULL;
    }
    return p;
}

/* ---- matmul_rows ------------------------------------------------------------------------------ */

typedef struct mcase {
    const char *name;
    dw_dtype dtype; /* BF16, F16, F32 (ignored when qbits) */
    int qbits, qgroup;
    dw_dtype qsdtype;
    int rows, K;
} mcase;

/* A weight on the device with its host reference values (as the kernels use them, f32 [rows, K]). */
typedef struct tweight {
    dw_cweight w;
    float *ref;
    dw_dtype xround; /* how the kernels round x for it: BF16, F16 or F32 (none) */
} tweight;

static dw_status tweight_make(dw_backend *b, const mcase *mc, tweight *tw, dw_error *err) {
    memset(tw, 0, sizeof *tw);
    const size_t count = (size_t)mc->rows * mc->K;
    tw->ref = malloc(count * sizeof(float));
    dw_status st;
    if (mc->qbits) {
        const int per = 32 / mc->qbits, groups = mc->K / mc->qgroup;
        const size_t words = count / per, ng = (size_t)mc->rows * groups;
        uint32_t *codes = malloc(words * 4);
        for (size_t i = 0; i < words; i++) codes[i] = bnext();
        float *sf = malloc(ng * sizeof(float)), *bf = malloc(ng * sizeof(float));
        const float cmax = (float)((1 << mc->qbits) - 1);
        for (size_t i = 0; i < ng; i++) {
            sf[i] = round_to(mc->qsdtype, (0.5f + 0.5f * fabsf(bu())) / cmax * (bu() < 0 ? -1.0f : 1.0f));
            bf[i] = round_to(mc->qsdtype, 0.5f * bu());
        }
        const size_t ss = dw_dtype_size(mc->qsdtype);
        void *sraw = malloc(ng * ss), *braw = malloc(ng * ss);
        dw_convert_from_f32(mc->qsdtype, sf, sraw, ng);
        dw_convert_from_f32(mc->qsdtype, bf, braw, ng);
        for (int r = 0; r < mc->rows; r++)
            for (int k = 0; k < mc->K; k++) {
                const size_t i = (size_t)r * mc->K + k;
                const uint32_t code = (codes[i / per] >> ((k % per) * mc->qbits)) & ((1u << mc->qbits) - 1);
                const size_t gi = (size_t)r * groups + k / mc->qgroup;
                tw->ref[i] = round_to(DW_DTYPE_BF16, fmaf(sf[gi], (float)code, bf[gi]));
            }
        dw_cweight host;
        memset(&host, 0, sizeof host);
        host.data = codes, host.dtype = DW_DTYPE_U32, host.rows = mc->rows, host.cols = mc->K;
        host.qbits = mc->qbits, host.qgroup = mc->qgroup, host.qscales = sraw, host.qbiases = braw;
        host.qsdtype = mc->qsdtype;
        st = b->ops->weight_load_quant(b->ctx, &host, &tw->w, err);
        free(codes), free(sf), free(bf), free(sraw), free(braw);
        tw->xround = DW_DTYPE_BF16;
    } else {
        float *f = brand(count, 1.0f);
        void *raw = malloc(count * dw_dtype_size(mc->dtype));
        dw_convert_from_f32(mc->dtype, f, raw, count);
        dw_convert_to_f32(mc->dtype, raw, tw->ref, count);
        st = b->ops->weight_load(b->ctx, raw, mc->dtype, mc->rows, mc->K, &tw->w, err);
        free(f), free(raw);
        tw->xround = mc->K % 8 ? DW_DTYPE_F32 : mc->dtype;
    }
    return st;
}

static void tweight_free(dw_backend *b, tweight *tw) {
    if (tw->w.data) b->ops->weight_release(b->ctx, &tw->w);
    free(tw->ref);
}

/* Runs matmul_rows of `count` weights on host x [n, K] (bias: host vectors or NULL); outs[j]
 * receives [n, rows_j]. */
static dw_status run_matmul_rows(dw_backend *b, int count, tweight *tw, const float *const *bias_host, const float *x,
                                 int n, float **outs, dw_error *err) {
    const int K = (int)tw[0].w.cols;
    dw_status st = DW_OK;
    float *dx = dev_up(b, x, (size_t)n * K * sizeof(float), err);
    float *dout[4] = {0};
    dw_cweight bw[4];
    const dw_cweight *wp[4], *bp[4];
    memset(bw, 0, sizeof bw);
    if (!dx) return err->status;
    for (int j = 0; j < count && !st; j++) {
        wp[j] = &tw[j].w;
        bp[j] = NULL;
        if (!b->ops->alloc(b->ctx, (size_t)n * tw[j].w.rows * sizeof(float), (void **)&dout[j], err)) {
            if (bias_host && bias_host[j]) {
                st = b->ops->weight_load(b->ctx, bias_host[j], DW_DTYPE_F32, 1, tw[j].w.rows, &bw[j], err);
                bp[j] = &bw[j];
            }
        } else st = err->status;
    }
    if (!st) {
        b->ops->matmul_rows(b->ctx, count, dout, dx, n, wp, bp);
        st = b->ops->synchronize(b->ctx, err);
    }
    for (int j = 0; j < count && !st; j++)
        st = b->ops->download(b->ctx, outs[j], dout[j], (size_t)n * tw[j].w.rows * sizeof(float), err);
    for (int j = 0; j < count; j++) {
        if (dout[j]) b->ops->free(b->ctx, dout[j]);
        if (bw[j].data) b->ops->weight_release(b->ctx, &bw[j]);
    }
    b->ops->free(b->ctx, dx);
    return st;
}

/* Compares out [n, rows] with the reference on the rows every `stride` (and the last); prints the
 * first mismatch. Returns 0 when all agree. */
static int check_matmul(const char *what, const tweight *tw, const float *bias, const float *x, int n,
                        const float *out, int stride) {
    const int rows = (int)tw->w.rows, K = (int)tw->w.cols;
    float *xr = malloc((size_t)K * sizeof(float));
    int bad = 0;
    double worst = 0;
    for (int t = 0; t < n && !bad; t++) {
        for (int k = 0; k < K; k++) xr[k] = round_to(tw->xround, x[(size_t)t * K + k]);
        for (int r = 0; r < rows && !bad; r = (r + stride < rows || r == rows - 1) ? r + stride : rows - 1) {
            const float *w = tw->ref + (size_t)r * K;
            double s = 0, mag = 0;
            for (int k = 0; k < K; k++) s += (double)w[k] * xr[k], mag += fabs((double)w[k] * xr[k]);
            if (bias) s += bias[r], mag += fabs(bias[r]);
            const double got = out[(size_t)t * rows + r], tol = 1e-4 * mag + 1e-30;
            const double e = fabs(got - s);
            if (e / (mag + 1e-30) > worst) worst = e / (mag + 1e-30);
            if (!(e <= tol)) {
                fprintf(stderr,
                        "    matmul_rows %s: n=%d token %d row %d: got %.9g want %.9g (|diff| %.3g > tol %.3g, "
                        "Σ|w·x| %.4g)\n",
                        what, n, t, r, got, s, e, tol, mag);
                bad = 1;
            }
            if (r == rows - 1) break;
        }
    }
    free(xr);
    return bad;
}

static const mcase MCASES[] = {
    {"bf16 2048x2048 (1B q/o)", DW_DTYPE_BF16, 0, 0, 0, 2048, 2048},
    {"bf16 8192x2048 (1B gate)", DW_DTYPE_BF16, 0, 0, 0, 8192, 2048},
    {"bf16 2048x8192 (1B down)", DW_DTYPE_BF16, 0, 0, 0, 2048, 8192},
    {"bf16 128256x2048 (1B lm_head)", DW_DTYPE_BF16, 0, 0, 0, 128256, 2048},
    {"f16 1024x2048", DW_DTYPE_F16, 0, 0, 0, 1024, 2048},
    {"bf16 37x136 (k % 32 != 0)", DW_DTYPE_BF16, 0, 0, 0, 37, 136},
    {"f16 50x72", DW_DTYPE_F16, 0, 0, 0, 50, 72},
    {"bf16 33x100 (k % 8 != 0: plain)", DW_DTYPE_BF16, 0, 0, 0, 33, 100},
    {"f32 70x64 (plain)", DW_DTYPE_F32, 0, 0, 0, 70, 64},
    {"q4 g64 bf16 2048x2048", DW_DTYPE_U32, 4, 64, DW_DTYPE_BF16, 2048, 2048},
    {"q4 g64 bf16 2048x8192", DW_DTYPE_U32, 4, 64, DW_DTYPE_BF16, 2048, 8192},
    {"q4 g32 f16 45x96 (k % 128 != 0)", DW_DTYPE_U32, 4, 32, DW_DTYPE_F16, 45, 96},
    {"q4 g128 f32 64x384", DW_DTYPE_U32, 4, 128, DW_DTYPE_F32, 64, 384},
    {"q8 g64 bf16 8192x2048", DW_DTYPE_U32, 8, 64, DW_DTYPE_BF16, 8192, 2048},
    {"q8 g32 f32 29x160", DW_DTYPE_U32, 8, 32, DW_DTYPE_F32, 29, 160},
    {"q4 g64 bf16 128256x2048 (lm_head)", DW_DTYPE_U32, 4, 64, DW_DTYPE_BF16, 128256, 2048},
};

TEST(cuda_matmul_rows_matches_host_reference) {
    dw_error err = {0};
    dw_backend *b = NULL;
    OPEN_CUDA_OR_SKIP(b);
    CHECK(b->ops->matmul_rows);
    brng_seed();
    static const int NS[] = {1, 5, 16, 64, 100};
    for (size_t ci = 0; ci < sizeof MCASES / sizeof MCASES[0]; ci++) {
        const mcase *mc = &MCASES[ci];
        tweight tw;
        CHECK_OK(tweight_make(b, mc, &tw, &err));
        const int big = (size_t)mc->rows * mc->K > ((size_t)1 << 22);
        float *bias = brand(mc->rows, 1.0f);
        for (size_t ni = 0; ni < sizeof NS / sizeof NS[0]; ni++) {
            const int n = NS[ni];
            float *x = brand((size_t)n * mc->K, 1.0f);
            float *out = malloc((size_t)n * mc->rows * sizeof(float));
            const float *bh[1] = {ni % 2 ? bias : NULL};
            dw_status st = run_matmul_rows(b, 1, &tw, bh, x, n, &out, &err);
            int bad = st ? 1 : check_matmul(mc->name, &tw, bh[0], x, n, out, big ? 97 : 1);
            free(x), free(out);
            CHECK_MSG(!st, "matmul_rows %s n=%d: %s", mc->name, n, err.message);
            CHECK_MSG(!bad, "matmul_rows %s n=%d: see above", mc->name, n);
        }
        free(bias);
        tweight_free(b, &tw);
    }
    dw_backend_close(b);
}

TEST(cuda_matmul_rows_several_matrices_one_call) {
    dw_error err = {0};
    dw_backend *b = NULL;
    OPEN_CUDA_OR_SKIP(b);
    brng_seed();
    /* q/k/v-like, gate/up-like, and a mixed call (bf16, 4-bit, f16, f32) that needs several launches */
    const mcase sets[3][4] = {
        {{"q", DW_DTYPE_BF16, 0, 0, 0, 512, 256}, {"k", DW_DTYPE_BF16, 0, 0, 0, 128, 256},
         {"v", DW_DTYPE_BF16, 0, 0, 0, 128, 256}},
        {{"gate q4", DW_DTYPE_U32, 4, 64, DW_DTYPE_BF16, 700, 512}, {"up q4", DW_DTYPE_U32, 4, 64, DW_DTYPE_BF16, 700, 512}},
        {{"bf16", DW_DTYPE_BF16, 0, 0, 0, 40, 128}, {"q4", DW_DTYPE_U32, 4, 32, DW_DTYPE_BF16, 72, 128},
         {"f16", DW_DTYPE_F16, 0, 0, 0, 24, 128}, {"f32", DW_DTYPE_F32, 0, 0, 0, 17, 128}},
    };
    const int counts[3] = {3, 2, 4};
    for (int si = 0; si < 3; si++) {
        tweight tw[4];
        float *bias[4], *outs[4];
        const int n = 37, K = sets[si][0].K;
        for (int j = 0; j < counts[si]; j++) {
            CHECK_OK(tweight_make(b, &sets[si][j], &tw[j], &err));
            bias[j] = j == 1 ? NULL : brand(sets[si][j].rows, 1.0f);
            outs[j] = malloc((size_t)n * sets[si][j].rows * sizeof(float));
        }
        float *x = brand((size_t)n * K, 2.0f);
        CHECK_OK(run_matmul_rows(b, counts[si], tw, (const float *const *)bias, x, n, outs, &err));
        for (int j = 0; j < counts[si]; j++) {
            char what[96];
            snprintf(what, sizeof what, "set %d matrix %d (%s)", si, j, sets[si][j].name);
            CHECK(!check_matmul(what, &tw[j], bias[j], x, n, outs[j], 1));
            tweight_free(b, &tw[j]);
            free(bias[j]), free(outs[j]);
        }
        free(x);
    }
    dw_backend_close(b);
}

/* The row at `at` of a batch of n (the others fresh random) must give the bits it gives alone. */
TEST(cuda_matmul_rows_is_batch_invariant) {
    dw_error err = {0};
    dw_backend *b = NULL;
    OPEN_CUDA_OR_SKIP(b);
    brng_seed();
    const mcase cases[] = {
        {"bf16 2048x2048", DW_DTYPE_BF16, 0, 0, 0, 2048, 2048},
        {"bf16 512x8192", DW_DTYPE_BF16, 0, 0, 0, 512, 8192},
        {"f16 100x136", DW_DTYPE_F16, 0, 0, 0, 100, 136},
        {"q4 g64 1000x2048", DW_DTYPE_U32, 4, 64, DW_DTYPE_BF16, 1000, 2048},
        {"q8 g64 300x1024", DW_DTYPE_U32, 8, 64, DW_DTYPE_F32, 300, 1024},
        {"q4 g32 45x96", DW_DTYPE_U32, 4, 32, DW_DTYPE_F16, 45, 96},
        {"f32 70x64", DW_DTYPE_F32, 0, 0, 0, 70, 64},
        {"bf16 33x100", DW_DTYPE_BF16, 0, 0, 0, 33, 100},
    };
    static const int NS[] = {1, 7, 16, 64, 100};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const mcase *mc = &cases[ci];
        tweight tw[2];
        CHECK_OK(tweight_make(b, mc, &tw[0], &err));
        mcase mc2 = *mc;
        mc2.rows = mc->rows / 2 + 3;
        CHECK_OK(tweight_make(b, &mc2, &tw[1], &err));
        float *bias = brand(mc->rows, 1.0f);
        const float *bh[2] = {bias, NULL};
        float *row = brand(mc->K, 1.0f);
        float *alone[2] = {malloc(mc->rows * sizeof(float)), malloc(mc2.rows * sizeof(float))};
        CHECK_OK(run_matmul_rows(b, 2, tw, bh, row, 1, alone, &err));
        for (size_t ni = 0; ni < sizeof NS / sizeof NS[0]; ni++) {
            const int n = NS[ni];
            for (int trial = 0; trial < 2; trial++) {
                const int at = trial == 0 ? n - 1 : (int)(bnext() % (unsigned)n);
                float *x = brand((size_t)n * mc->K, trial ? 4.0f : 1.0f);
                memcpy(x + (size_t)at * mc->K, row, mc->K * sizeof(float));
                float *outs[2] = {malloc((size_t)n * mc->rows * sizeof(float)), malloc((size_t)n * mc2.rows * sizeof(float))};
                dw_status st = run_matmul_rows(b, 2, tw, bh, x, n, outs, &err);
                int bad_j = -1, bad_r = -1;
                for (int j = 0; j < 2 && !st && bad_j < 0; j++) {
                    const int rows = j ? mc2.rows : mc->rows;
                    if (memcmp(outs[j] + (size_t)at * rows, alone[j], rows * sizeof(float)))
                        for (int r = 0; r < rows; r++)
                            if (memcmp(&outs[j][(size_t)at * rows + r], &alone[j][r], sizeof(float))) {
                                bad_j = j, bad_r = r;
                                break;
                            }
                }
                float got = bad_j >= 0 ? outs[bad_j][(size_t)at * (bad_j ? mc2.rows : mc->rows) + bad_r] : 0;
                float want = bad_j >= 0 ? alone[bad_j][bad_r] : 0;
                free(x), free(outs[0]), free(outs[1]);
                CHECK_MSG(!st, "%s", err.message);
                CHECK_MSG(bad_j < 0, "matmul_rows %s: row at %d of n=%d, matrix %d row %d: %.9g (batch) vs %.9g (alone)",
                          mc->name, at, n, bad_j, bad_r, got, want);
            }
        }
        free(bias), free(row), free(alone[0]), free(alone[1]);
        tweight_free(b, &tw[0]);
        tweight_free(b, &tw[1]);
    }
    dw_backend_close(b);
}

/* ---- paged KV: kv_write_rows, attention_rows -------------------------------------------------- */

/* A pool and some sequences: each sequence's keys/values contiguous on the host ([pos][kvh][d],
 * rounded to the pool's dtype) and scattered into pool blocks in a scrambled order. */
typedef struct tpool {
    int n_kv, hd, bt, n_blocks;
    dw_dtype dt;
    int n_seq;
    int len[80];      /* keys of each sequence */
    int table_at[80]; /* where its table starts in tables */
    int32_t *tables;
    int tables_n;
    float *kh[80], *vh[80];
    void *dk, *dv;     /* device pool */
    int32_t *dtables;  /* device */
} tpool;

static void tpool_free(dw_backend *b, tpool *p) {
    for (int s = 0; s < p->n_seq; s++) free(p->kh[s]), free(p->vh[s]);
    free(p->tables);
    if (p->dk) b->ops->free(b->ctx, p->dk);
    if (p->dv) b->ops->free(b->ctx, p->dv);
    if (p->dtables) b->ops->free(b->ctx, p->dtables);
}

static dw_status tpool_make(dw_backend *b, tpool *p, int n_seq, const int *len, int n_kv, int hd, int bt, dw_dtype dt,
                            dw_error *err) {
    memset(p, 0, sizeof *p);
    p->n_kv = n_kv, p->hd = hd, p->bt = bt, p->dt = dt, p->n_seq = n_seq;
    int blocks = 0;
    for (int s = 0; s < n_seq; s++) p->len[s] = len[s], blocks += (len[s] + bt - 1) / bt;
    p->n_blocks = blocks + 3; /* a few never used */
    int *perm = malloc(p->n_blocks * sizeof(int));
    for (int i = 0; i < p->n_blocks; i++) perm[i] = i;
    for (int i = p->n_blocks - 1; i > 0; i--) {
        int j = (int)(bnext() % (unsigned)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    p->tables = malloc((blocks + 1) * sizeof(int32_t));
    const size_t es = dw_dtype_size(dt), block_elems = (size_t)n_kv * bt * hd;
    float *kf = malloc(p->n_blocks * block_elems * sizeof(float)), *vf = malloc(p->n_blocks * block_elems * sizeof(float));
    bfill(kf, p->n_blocks * block_elems, 1.0f); /* unused entries: random too */
    bfill(vf, p->n_blocks * block_elems, 1.0f);
    int at = 0;
    for (int s = 0; s < n_seq; s++) {
        p->table_at[s] = at;
        const int nb = (len[s] + bt - 1) / bt;
        for (int i = 0; i < nb; i++) p->tables[at + i] = perm[at + i];
        const size_t n = (size_t)len[s] * n_kv * hd;
        p->kh[s] = malloc(n * sizeof(float) + 4), p->vh[s] = malloc(n * sizeof(float) + 4);
        for (int q = 0; q < len[s]; q++)
            for (int h = 0; h < n_kv; h++)
                for (int d = 0; d < hd; d++) {
                    const size_t hi = ((size_t)q * n_kv + h) * hd + d;
                    const size_t pi = (((size_t)p->tables[at + q / bt] * n_kv + h) * bt + q % bt) * hd + d;
                    p->kh[s][hi] = kf[pi] = round_to(dt, bu());
                    p->vh[s][hi] = vf[pi] = round_to(dt, bu());
                }
        at += nb;
    }
    p->tables_n = at;
    void *kraw = malloc(p->n_blocks * block_elems * es), *vraw = malloc(p->n_blocks * block_elems * es);
    dw_convert_from_f32(dt, kf, kraw, p->n_blocks * block_elems);
    dw_convert_from_f32(dt, vf, vraw, p->n_blocks * block_elems);
    p->dk = dev_up(b, kraw, p->n_blocks * block_elems * es, err);
    p->dv = p->dk ? dev_up(b, vraw, p->n_blocks * block_elems * es, err) : NULL;
    p->dtables = p->dv ? dev_up(b, p->tables, (at ? at : 1) * sizeof(int32_t), err) : NULL;
    free(perm), free(kf), free(vf), free(kraw), free(vraw);
    return p->dtables ? DW_OK : err->status ? err->status : DW_ERR_BACKEND;
}

static dw_kv_pages tpool_pages(const tpool *p) {
    dw_kv_pages kv = {p->dk, p->dv, p->dt, p->n_kv, p->hd, p->bt, p->n_blocks};
    return kv;
}

/* Reference attention of one query row (seq s at pos) for every head, into out [n_heads·hd]. */
static void ref_attention(const tpool *p, int s, int pos, const float *q, int n_heads, int window, float scale,
                          double *out) {
    const int hd = p->hd, G = n_heads / p->n_kv;
    int lo = window > 0 ? pos - window + 1 : 0;
    if (lo < 0) lo = 0;
    double *w = malloc((pos + 1) * sizeof(double));
    for (int h = 0; h < n_heads; h++) {
        const int kvh = h / G;
        double m = -INFINITY, l = 0;
        for (int k = lo; k <= pos; k++) {
            double d = 0;
            for (int e = 0; e < hd; e++) d += (double)q[h * hd + e] * p->kh[s][((size_t)k * p->n_kv + kvh) * hd + e];
            w[k] = d * scale;
            if (w[k] > m) m = w[k];
        }
        for (int k = lo; k <= pos; k++) w[k] = exp(w[k] - m), l += w[k];
        for (int e = 0; e < hd; e++) {
            double a = 0;
            for (int k = lo; k <= pos; k++) a += w[k] * p->vh[s][((size_t)k * p->n_kv + kvh) * hd + e];
            out[h * hd + e] = a / l;
        }
    }
    free(w);
}

/* attention_rows on host q [n, n_heads·hd] for rows (seq[i], pos[i]); out [n, n_heads·hd]. */
static dw_status run_attention_rows(dw_backend *b, const tpool *p, int n, const int *seq, const int *pos,
                                    const float *q, int n_heads, int window, float scale, float *out, dw_error *err) {
    const size_t width = (size_t)n_heads * p->hd;
    int32_t *hpos = malloc(n * sizeof(int32_t)), *hat = malloc(n * sizeof(int32_t)), *hslot = malloc(n * sizeof(int32_t));
    int max_pos = 0;
    for (int i = 0; i < n; i++) {
        hpos[i] = pos[i], hat[i] = p->table_at[seq[i]];
        hslot[i] = p->tables[hat[i] + pos[i] / p->bt] * p->bt + pos[i] % p->bt;
        if (pos[i] > max_pos) max_pos = pos[i];
    }
    float *dq = dev_up(b, q, n * width * sizeof(float), err), *dout = NULL;
    int32_t *dpos = dq ? dev_up(b, hpos, n * 4, err) : NULL, *dat = dpos ? dev_up(b, hat, n * 4, err) : NULL;
    int32_t *dslot = dat ? dev_up(b, hslot, n * 4, err) : NULL;
    dw_status st = dslot ? b->ops->alloc(b->ctx, n * width * sizeof(float), (void **)&dout, err) : err->status;
    if (!st) {
        dw_rows r = {n, dpos, dslot, dat, p->dtables, max_pos};
        dw_kv_pages kv = tpool_pages(p);
        dw_attn_params ap;
        memset(&ap, 0, sizeof ap);
        ap.n_heads = n_heads, ap.n_kv_heads = p->n_kv, ap.head_dim = p->hd, ap.window = window, ap.scale = scale;
        b->ops->attention_rows(b->ctx, dout, dq, &kv, &r, &ap);
        st = b->ops->synchronize(b->ctx, err);
        if (!st) st = b->ops->download(b->ctx, out, dout, n * width * sizeof(float), err);
    }
    void *bufs[] = {dq, dout, dpos, dat, dslot};
    for (int i = 0; i < 5; i++)
        if (bufs[i]) b->ops->free(b->ctx, bufs[i]);
    free(hpos), free(hat), free(hslot);
    return st;
}

typedef struct acase {
    const char *name;
    int n_heads, n_kv, hd, bt, window;
    dw_dtype dt;
} acase;

static const acase ACASES[] = {
    {"1B shape hd64 bf16", 32, 8, 64, 16, 0, DW_DTYPE_BF16},
    {"8B shape hd128 bf16", 32, 8, 128, 16, 0, DW_DTYPE_BF16},
    {"hd128 window 300 f32", 8, 2, 128, 32, 300, DW_DTYPE_F32},
    {"hd40 gqa 6:3 bt 8", 6, 3, 40, 8, 0, DW_DTYPE_BF16},
    {"hd34 (odd/8) mha 3 heads bt 5 window 70", 3, 3, 34, 5, 70, DW_DTYPE_BF16},
    {"hd256 gqa 7:1", 7, 1, 256, 16, 0, DW_DTYPE_BF16},
};

TEST(cuda_attention_rows_paged_matches_contiguous_reference) {
    dw_error err = {0};
    dw_backend *b = NULL;
    OPEN_CUDA_OR_SKIP(b);
    brng_seed();
    for (size_t ci = 0; ci < sizeof ACASES / sizeof ACASES[0]; ci++) {
        const acase *ac = &ACASES[ci];
        /* sequences of lengths around the 256-key chunks, and one long one */
        const int lens[] = {1, 17, 255, 256, 257, 600, 1100, 40};
        const int ns = 8;
        tpool p;
        CHECK_OK(tpool_make(b, &p, ns, lens, ac->n_kv, ac->hd, ac->bt, ac->dt, &err));
        /* rows: the last 1-3 positions of each sequence (a prompt chunk's tail), plus a middle one */
        int seq[40], pos[40], n = 0;
        for (int s = 0; s < ns; s++) {
            const int k = 1 + s % 3;
            for (int i = 0; i < k && i < lens[s]; i++) seq[n] = s, pos[n] = lens[s] - k + i, n++;
            if (lens[s] > 10) seq[n] = s, pos[n] = (int)(bnext() % (unsigned)lens[s]), n++;
        }
        const size_t width = (size_t)ac->n_heads * ac->hd;
        float *q = brand(n * width, 1.0f), *out = malloc(n * width * sizeof(float));
        double *want = malloc(width * sizeof(double));
        const float scale = 1.0f / sqrtf((float)ac->hd) * 2.0f; /* sharper than usual */
        dw_status st = run_attention_rows(b, &p, n, seq, pos, q, ac->n_heads, ac->window, scale, out, &err);
        int bad = 0;
        for (int i = 0; i < n && !st && !bad; i++) {
            ref_attention(&p, seq[i], pos[i], q + i * width, ac->n_heads, ac->window, scale, want);
            for (size_t e = 0; e < width; e++) {
                const double got = out[i * width + e], tol = 2e-5 + 2e-5 * fabs(want[e]);
                if (!(fabs(got - want[e]) <= tol)) {
                    fprintf(stderr, "    attention_rows %s: row %d (seq %d, pos %d) head %d d %d: got %.9g want %.9g\n",
                            ac->name, i, seq[i], pos[i], (int)(e / ac->hd), (int)(e % ac->hd), got, want[e]);
                    bad = 1;
                    break;
                }
            }
        }
        free(q), free(out), free(want);
        tpool_free(b, &p);
        CHECK_MSG(!st, "attention_rows %s: %s", ac->name, err.message);
        CHECK_MSG(!bad, "attention_rows %s: see above", ac->name);
    }
    dw_backend_close(b);
}

TEST(cuda_attention_rows_is_batch_invariant) {
    dw_error err = {0};
    dw_backend *b = NULL;
    OPEN_CUDA_OR_SKIP(b);
    brng_seed();
    const acase cases[] = {ACASES[0], ACASES[1], ACASES[2], ACASES[4]};
    static const int NS[] = {1, 7, 16, 64};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const acase *ac = &cases[ci];
        int lens[70];
        lens[0] = 700; /* the row under test: seq 0 at pos 650 */
        for (int s = 1; s < 70; s++) lens[s] = 1 + (int)(bnext() % 1500u);
        tpool p;
        CHECK_OK(tpool_make(b, &p, 70, lens, ac->n_kv, ac->hd, ac->bt, ac->dt, &err));
        const size_t width = (size_t)ac->n_heads * ac->hd;
        const float scale = 1.0f / sqrtf((float)ac->hd);
        float *row = brand(width, 1.0f), *alone = malloc(width * sizeof(float));
        int s0 = 0, p0 = 650;
        dw_status st = run_attention_rows(b, &p, 1, &s0, &p0, row, ac->n_heads, ac->window, scale, alone, &err);
        CHECK_MSG(!st, "%s", err.message);
        for (size_t ni = 0; ni < sizeof NS / sizeof NS[0]; ni++) {
            const int n = NS[ni];
            for (int trial = 0; trial < 2; trial++) {
                const int at = trial == 0 ? n - 1 : (int)(bnext() % (unsigned)n);
                int seq[64], pos[64];
                for (int i = 0; i < n; i++) {
                    seq[i] = 1 + (int)(bnext() % 69u);
                    pos[i] = (int)(bnext() % (unsigned)p.len[seq[i]]);
                }
                seq[at] = 0, pos[at] = 650;
                float *q = brand(n * width, 1.0f), *out = malloc(n * width * sizeof(float));
                memcpy(q + at * width, row, width * sizeof(float));
                st = run_attention_rows(b, &p, n, seq, pos, q, ac->n_heads, ac->window, scale, out, &err);
                int bad = -1;
                for (size_t e = 0; e < width && !st; e++)
                    if (memcmp(&out[at * width + e], &alone[e], sizeof(float))) {
                        bad = (int)e;
                        break;
                    }
                const float got = bad >= 0 ? out[at * width + bad] : 0, want = bad >= 0 ? alone[bad] : 0;
                free(q), free(out);
                CHECK_MSG(!st, "%s", err.message);
                CHECK_MSG(bad < 0, "attention_rows %s: row at %d of n=%d, head %d d %d: %.9g (batch) vs %.9g (alone)",
                          ac->name, at, n, bad / ac->hd, bad % ac->hd, got, want);
            }
        }
        free(row), free(alone);
        tpool_free(b, &p);
    }
    dw_backend_close(b);
}

TEST(cuda_kv_write_rows_stores_at_slots) {
    dw_error err = {0};
    dw_backend *b = NULL;
    OPEN_CUDA_OR_SKIP(b);
    brng_seed();
    for (int f32 = 0; f32 < 2; f32++) {
        const dw_dtype dt = f32 ? DW_DTYPE_F32 : DW_DTYPE_BF16;
        const int n_kv = 3, hd = 24, bt = 4, n_blocks = 10, n = 9;
        const size_t pool = (size_t)n_blocks * n_kv * bt * hd, es = dw_dtype_size(dt);
        unsigned char *before = malloc(pool * es);
        for (size_t i = 0; i < pool * es; i++) before[i] = (unsigned char)bnext();
        void *dk = dev_up(b, before, pool * es, &err), *dv = dev_up(b, before, pool * es, &err);
        CHECK(dk && dv);
        int32_t slot[9], posv[9];
        int used[40] = {0};
        for (int i = 0; i < n; i++) {
            int s;
            do s = (int)(bnext() % (unsigned)(n_blocks * bt)); while (used[s]);
            used[s] = 1, slot[i] = s, posv[i] = i;
        }
        float *k = brand((size_t)n * n_kv * hd, 3.0f), *v = brand((size_t)n * n_kv * hd, 3.0f);
        float *dkr = dev_up(b, k, (size_t)n * n_kv * hd * 4, &err), *dvr = dev_up(b, v, (size_t)n * n_kv * hd * 4, &err);
        int32_t *dslot = dev_up(b, slot, sizeof slot, &err), *dpos = dev_up(b, posv, sizeof posv, &err);
        CHECK(dkr && dvr && dslot && dpos);
        dw_kv_pages kv = {dk, dv, dt, n_kv, hd, bt, n_blocks};
        dw_rows r = {n, dpos, dslot, dpos, dpos, n - 1};
        b->ops->kv_write_rows(b->ctx, &kv, dkr, dvr, &r);
        CHECK_OK(b->ops->synchronize(b->ctx, &err));
        unsigned char *gk = malloc(pool * es), *gv = malloc(pool * es);
        CHECK_OK(b->ops->download(b->ctx, gk, dk, pool * es, &err));
        CHECK_OK(b->ops->download(b->ctx, gv, dv, pool * es, &err));
        unsigned char *wk = malloc(pool * es), *wv = malloc(pool * es);
        memcpy(wk, before, pool * es), memcpy(wv, before, pool * es);
        for (int i = 0; i < n; i++)
            for (int h = 0; h < n_kv; h++) {
                const size_t at = (((size_t)(slot[i] / bt) * n_kv + h) * bt + slot[i] % bt) * hd;
                dw_convert_from_f32(dt, k + ((size_t)i * n_kv + h) * hd, wk + at * es, hd);
                dw_convert_from_f32(dt, v + ((size_t)i * n_kv + h) * hd, wv + at * es, hd);
            }
        size_t bad = pool * es;
        for (size_t i = 0; i < pool * es; i++)
            if (gk[i] != wk[i] || gv[i] != wv[i]) {
                bad = i;
                break;
            }
        CHECK_MSG(bad == pool * es, "kv_write_rows (%s pool): byte %zu (element %zu): k %02x want %02x, v %02x want %02x",
                  f32 ? "f32" : "bf16", bad, bad / es, gk[bad], wk[bad], gv[bad], wv[bad]);
        free(before), free(k), free(v), free(gk), free(gv), free(wk), free(wv);
        void *bufs[] = {dk, dv, dkr, dvr, dslot, dpos};
        for (int i = 0; i < 6; i++) b->ops->free(b->ctx, bufs[i]);
    }
    dw_backend_close(b);
}

/* ---- rope_rows, gather_rows, argmax_rows, copy ------------------------------------------------ */

TEST(cuda_rope_rows_gather_argmax_copy_match_host) {
    dw_error err = {0};
    dw_backend *b = NULL;
    OPEN_CUDA_OR_SKIP(b);
    brng_seed();
    /* rope_rows: each row at its own position */
    {
        const int n = 11, nh = 4, nkv = 2, hd = 64;
        const size_t qw = (size_t)nh * hd, kw = (size_t)nkv * hd;
        float *q = brand(n * qw, 1.0f), *k = brand(n * kw, 1.0f), *inv = malloc(hd / 2 * sizeof(float));
        for (int i = 0; i < hd / 2; i++) inv[i] = powf(500000.0f, -2.0f * i / hd);
        int32_t pos[11];
        for (int i = 0; i < n; i++) pos[i] = (int)(bnext() % 5000u);
        float *dq = dev_up(b, q, n * qw * 4, &err), *dk = dev_up(b, k, n * kw * 4, &err);
        float *dinv = dev_up(b, inv, hd / 2 * 4, &err);
        int32_t *dpos = dev_up(b, pos, sizeof pos, &err);
        CHECK(dq && dk && dinv && dpos);
        dw_rows r = {n, dpos, dpos, dpos, dpos, 4999};
        b->ops->rope_rows(b->ctx, dq, dk, &r, nh, nkv, hd, dinv);
        CHECK_OK(b->ops->synchronize(b->ctx, &err));
        float *gq = malloc(n * qw * 4), *gk = malloc(n * kw * 4);
        CHECK_OK(b->ops->download(b->ctx, gq, dq, n * qw * 4, &err));
        CHECK_OK(b->ops->download(b->ctx, gk, dk, n * kw * 4, &err));
        for (int i = 0; i < n; i++)
            for (int h = 0; h < nh + nkv; h++)
                for (int d = 0; d < hd / 2; d++) {
                    const float *src = h < nh ? q + i * qw + h * hd : k + i * kw + (h - nh) * hd;
                    const float *got = h < nh ? gq + i * qw + h * hd : gk + i * kw + (h - nh) * hd;
                    const double ang = (double)((float)pos[i] * inv[d]);
                    const double lo = src[d] * cos(ang) - src[d + hd / 2] * sin(ang);
                    const double hi = src[d + hd / 2] * cos(ang) + src[d] * sin(ang);
                    CHECK_MSG(fabs(got[d] - lo) <= 2e-5 && fabs(got[d + hd / 2] - hi) <= 2e-5,
                              "rope_rows: row %d (pos %d) head %d d %d: got (%.7g, %.7g) want (%.7g, %.7g)", i, pos[i],
                              h, d, got[d], got[d + hd / 2], lo, hi);
                }
        free(q), free(k), free(inv), free(gq), free(gk);
        void *bufs[] = {dq, dk, dinv, dpos};
        for (int i = 0; i < 4; i++) b->ops->free(b->ctx, bufs[i]);
    }
    /* gather_rows, argmax_rows (ties, NaN, all NaN, -inf), copy */
    {
        const int rows = 9, width = 1000, n = 6;
        float *x = brand((size_t)rows * width, 10.0f);
        x[0 * width + 500] = 50.0f, x[0 * width + 700] = 50.0f;          /* tie: 500 */
        x[1 * width + 3] = NAN, x[1 * width + 999] = 60.0f;              /* NaN loses: 999 */
        for (int i = 0; i < width; i++) x[2 * width + i] = NAN;           /* all NaN: 0 */
        for (int i = 0; i < width; i++) x[3 * width + i] = -INFINITY;     /* all -inf: 0 */
        x[3 * width + 0] = NAN, x[3 * width + 1] = NAN;                   /* then 2 */
        x[4 * width + 0] = 90.0f;
        x[5 * width + 999] = 90.0f;
        x[6 * width + 123] = INFINITY, x[6 * width + 124] = INFINITY;
        int32_t idx[6] = {8, 0, 3, 3, 6, 1};
        float *dx = dev_up(b, x, (size_t)rows * width * 4, &err), *dg = NULL, *dc = NULL;
        int32_t *didx = dev_up(b, idx, sizeof idx, &err), *dam = NULL;
        CHECK(dx && didx);
        CHECK_OK(b->ops->alloc(b->ctx, (size_t)n * width * 4, (void **)&dg, &err));
        CHECK_OK(b->ops->alloc(b->ctx, (size_t)rows * width * 4, (void **)&dc, &err));
        CHECK_OK(b->ops->alloc(b->ctx, rows * 4, (void **)&dam, &err));
        b->ops->gather_rows(b->ctx, dg, dx, didx, n, width);
        b->ops->argmax_rows(b->ctx, dx, rows, width, dam);
        b->ops->copy(b->ctx, dc, dx, (size_t)rows * width * 4);
        CHECK_OK(b->ops->synchronize(b->ctx, &err));
        float *g = malloc((size_t)n * width * 4), *cp = malloc((size_t)rows * width * 4);
        int32_t am[9];
        CHECK_OK(b->ops->download(b->ctx, g, dg, (size_t)n * width * 4, &err));
        CHECK_OK(b->ops->download(b->ctx, cp, dc, (size_t)rows * width * 4, &err));
        CHECK_OK(b->ops->download(b->ctx, am, dam, sizeof am, &err));
        for (int i = 0; i < n; i++)
            CHECK_MSG(!memcmp(g + (size_t)i * width, x + (size_t)idx[i] * width, width * 4),
                      "gather_rows: row %d (from %d) differs", i, idx[i]);
        CHECK_MSG(!memcmp(cp, x, (size_t)rows * width * 4), "copy: bytes differ");
        for (int r = 0; r < rows; r++) {
            int want = 0, have = 0;
            for (int i = 0; i < width; i++) {
                const float v = x[(size_t)r * width + i];
                if (isnan(v)) continue;
                if (!have || v > x[(size_t)r * width + want]) want = i, have = 1;
            }
            CHECK_MSG(am[r] == want, "argmax_rows: row %d: got %d (%g) want %d (%g)", r, am[r],
                      x[(size_t)r * width + am[r]], want, x[(size_t)r * width + want]);
        }
        free(x), free(g), free(cp);
        void *bufs[] = {dx, dg, dc, didx, dam};
        for (int i = 0; i < 5; i++) b->ops->free(b->ctx, bufs[i]);
    }
    dw_backend_close(b);
}
