/* The CUDA backend's forward ops (src/backend/cuda/cuda_ops.cu) against the CPU backend's on
 * fresh random data: every op alone, the fused decode pairs, attention over varied shapes, whole
 * random models (prefill logits, 64 greedy tokens, graph and direct decode, two threads), and
 * logits written by the copy engine into a registered region. Without a GPU the tests pass
 * without running; DW_REQUIRE_CUDA=1 (tools/gpu-check.sh) makes a missing GPU a failure. */
#include "test.h"
#include "test_cuda.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "backend/backend.h"
#include "driftwood/backend.h"
#include "driftwood/engine.h"
#include "driftwood/model.h"
#include "test_engine_util.h"
#ifdef DW_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

/* ---- random data ----------------------------------------------------------------------- */

static uint64_t rng = 0x243F6A8885A308D3ull;

__attribute__((unused)) static void rng_seed_time(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    rng ^= (uint64_t)t.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)t.tv_sec;
    if (!rng) rng = 1;
}

static float urand(void) { /* [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1 << 23)) - 1.0);
}

static float *rand_f32(size_t n, float scale) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = urand() * scale;
    return p;
}

/* n values of dtype (bf16/f16/f32), random, as raw bytes. */
static void *rand_dtype(dw_dtype dt, size_t n, float scale) {
    float *f = rand_f32(n, scale);
    void *out = malloc(n * dw_dtype_size(dt));
    dw_convert_from_f32(dt, f, out, n);
    free(f);
    return out;
}

static int has_nan(const float *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (isnan(p[i])) return 1;
    return 0;
}

/* ---- the two backends ------------------------------------------------------------------ */

/* The CUDA and the CPU backend; cu and cpu are copies of their records (ops, ctx). */
typedef struct duo {
    dw_backend *be, *cpu_be;
    dw_backend cu, cpu;
} duo;

static void duo_close(duo *d) {
    if (d->cpu_be) dw_backend_close(d->cpu_be);
    dw_backend_close(d->be);
}

#define OPEN_DUO_OR_SKIP(d)                                                                                    \
    do {                                                                                                       \
        memset(&(d), 0, sizeof(d));                                                                            \
        OPEN_CUDA_OR_SKIP((d).be);                                                                             \
        (d).cu = *(d).be;                                                                                      \
        CHECK_OK(dw_backend_open("cpu", &(d).cpu_be, &err));                                                   \
        (d).cpu = *(d).cpu_be;                                                                                 \
        rng_seed_time();                                                                                       \
    } while (0)

/* A device buffer holding `bytes` of host (NaN-poisoned when host is NULL). */
static void *dbuf(dw_backend *c, const void *host, size_t bytes, dw_error *err) {
    void *p = NULL;
    if (c->ops->alloc(c->ctx, bytes, &p, err)) return NULL;
    void *tmp = NULL;
    if (!host) {
        tmp = malloc(bytes);
        for (size_t i = 0; i < bytes / 4; i++) ((float *)tmp)[i] = NAN;
        host = tmp;
    }
    dw_status st = c->ops->upload(c->ctx, p, host, bytes, err);
    free(tmp);
    if (st) {
        c->ops->free(c->ctx, p);
        return NULL;
    }
    return p;
}

/* ‖cuda − cpu‖/‖cpu‖ of a device buffer of n floats on each side; INFINITY on NaN or error. */
static double compare(duo *d, const float *dcu, const float *dcpu, size_t n, dw_error *err) {
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    double e = INFINITY;
    if (!d->cu.ops->download(d->cu.ctx, a, dcu, n * sizeof(float), err) &&
        !d->cpu.ops->download(d->cpu.ctx, b, dcpu, n * sizeof(float), err) && !has_nan(a, n))
        e = rel_l2(a, b, n);
    free(a), free(b);
    return e;
}

/* The same weight on both contexts (host data kept alive: the CPU points into it). */
typedef struct wpair {
    void *host;
    dw_cweight cu, cpu;
} wpair;

static dw_status wpair_make(duo *d, wpair *w, dw_dtype dt, int rows, int cols, float scale, dw_error *err) {
    w->host = rand_dtype(dt, (size_t)rows * cols, scale);
    dw_status st = d->cu.ops->weight_load(d->cu.ctx, w->host, dt, rows, cols, &w->cu, err);
    if (!st) st = d->cpu.ops->weight_load(d->cpu.ctx, w->host, dt, rows, cols, &w->cpu, err);
    return st;
}

static void wpair_free(duo *d, wpair *w) {
    if (w->cu.data) d->cu.ops->weight_release(d->cu.ctx, &w->cu);
    if (w->cpu.data) d->cpu.ops->weight_release(d->cpu.ctx, &w->cpu);
    free(w->host);
}

/* A buffer pair: the same random floats on both (or NaN on both when random == 0). */
typedef struct bpair {
    float *cu, *cpu;
    size_t n;
} bpair;

static dw_status bpair_make(duo *d, bpair *b, size_t n, int random, dw_error *err) {
    float *h = random ? rand_f32(n, 1.0f) : NULL;
    b->n = n;
    b->cu = dbuf(&d->cu, h, n * sizeof(float), err);
    b->cpu = b->cu ? dbuf(&d->cpu, h, n * sizeof(float), err) : NULL;
    free(h);
    return b->cpu ? DW_OK : err->status ? err->status : DW_ERR_BACKEND;
}

static void bpair_free(duo *d, bpair *b) {
    if (b->cu) d->cu.ops->free(d->cu.ctx, b->cu);
    if (b->cpu) d->cpu.ops->free(d->cpu.ctx, b->cpu);
}

#define CMP(bp, tol)                                                                                           \
    do {                                                                                                       \
        double e_ = compare(&d, (bp).cu, (bp).cpu, (bp).n, &err);                                              \
        CHECK_MSG(e_ <= (tol), "%s: relative error %.3g (limit %.1g) %s", #bp, e_, (double)(tol), err.message); \
    } while (0)

/* ---- single ops ------------------------------------------------------------------------------ */

TEST(cuda_ops_embed_rmsnorm_add_swiglu_match_cpu) {
    dw_error err = {0};
    duo d;
    OPEN_DUO_OR_SKIP(d);
    wpair table = {0}, nw = {0};
    bpair x = {0}, out = {0}, y = {0}, g = {0}, u = {0};
    enum { V = 1000, H = 2052, n = 5 };
    CHECK_OK(wpair_make(&d, &table, DW_DTYPE_BF16, V, H, 1.0f, &err));
    CHECK_OK(wpair_make(&d, &nw, DW_DTYPE_BF16, 1, H, 1.0f, &err));
    int32_t ids[n] = {3, 999, 0, 3, 517};
    CHECK_OK(bpair_make(&d, &out, (size_t)n * H, 0, &err));
    d.cu.ops->embed(d.cu.ctx, out.cu, &table.cu, ids, n);
    d.cpu.ops->embed(d.cpu.ctx, out.cpu, &table.cpu, ids, n);
    CMP(out, 0.0);
    /* rmsnorm: n rows, one row (held for fusion, flushed by the download), in place */
    CHECK_OK(bpair_make(&d, &x, (size_t)n * H, 1, &err));
    for (int rows = n; rows >= 1; rows -= n - 1) {
        d.cu.ops->rmsnorm(d.cu.ctx, out.cu, x.cu, &nw.cu, rows, H, 1e-5f);
        d.cpu.ops->rmsnorm(d.cpu.ctx, out.cpu, x.cpu, &nw.cpu, rows, H, 1e-5f);
        CMP(out, 1e-6);
    }
    d.cu.ops->rmsnorm(d.cu.ctx, x.cu, x.cu, &nw.cu, n, H, 1e-6f);
    d.cpu.ops->rmsnorm(d.cpu.ctx, x.cpu, x.cpu, &nw.cpu, n, H, 1e-6f);
    CMP(x, 1e-6);
    CHECK_OK(bpair_make(&d, &y, (size_t)n * H, 1, &err));
    d.cu.ops->add(d.cu.ctx, x.cu, y.cu, (size_t)n * H);
    d.cpu.ops->add(d.cpu.ctx, x.cpu, y.cpu, (size_t)n * H);
    CMP(x, 1e-6); /* x differs by the norm's rounding already */
    CHECK_OK(bpair_make(&d, &g, 70001, 1, &err));
    CHECK_OK(bpair_make(&d, &u, 70001, 1, &err));
    d.cu.ops->swiglu(d.cu.ctx, g.cu, g.cu, u.cu, g.n);
    d.cpu.ops->swiglu(d.cpu.ctx, g.cpu, g.cpu, u.cpu, g.n);
    CMP(g, 1e-6);
    CHECK_OK(d.cu.ops->synchronize(d.cu.ctx, &err));
    bpair_free(&d, &x), bpair_free(&d, &out), bpair_free(&d, &y), bpair_free(&d, &g), bpair_free(&d, &u);
    wpair_free(&d, &table), wpair_free(&d, &nw);
    duo_close(&d);
}

/* matmul (n == 1: the matvec kernel; n > 1: cuBLAS) for every weight dtype, vector and scalar
 * paths (K % 8), with and without bias. */
TEST(cuda_ops_matmul_matches_cpu) {
    dw_error err = {0};
    duo d;
    OPEN_DUO_OR_SKIP(d);
    const dw_dtype dts[3] = {DW_DTYPE_BF16, DW_DTYPE_F16, DW_DTYPE_F32};
    const int shapes[][2] = {{300, 2048}, {1031, 520}, {77, 36}, {64, 14336}};
    const int ns[] = {1, 2, 7, 130};
    for (int di = 0; di < 3; di++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                int rows = shapes[si][0], K = shapes[si][1], n = ns[ni];
                wpair w = {0}, b = {0};
                bpair x = {0}, out = {0};
                CHECK_OK(wpair_make(&d, &w, dts[di], rows, K, 1.0f, &err));
                CHECK_OK(wpair_make(&d, &b, DW_DTYPE_F32, 1, rows, 1.0f, &err));
                CHECK_OK(bpair_make(&d, &x, (size_t)n * K, 1, &err));
                CHECK_OK(bpair_make(&d, &out, (size_t)n * rows, 0, &err));
                const dw_cweight *bias_cu = (si & 1) ? &b.cu : NULL, *bias_cpu = (si & 1) ? &b.cpu : NULL;
                d.cu.ops->matmul(d.cu.ctx, out.cu, x.cu, n, &w.cu, bias_cu);
                d.cpu.ops->matmul(d.cpu.ctx, out.cpu, x.cpu, n, &w.cpu, bias_cpu);
                double e = compare(&d, out.cu, out.cpu, out.n, &err);
                CHECK_MSG(e <= (n == 1 ? 2e-5 : 5e-5), "matmul %s %dx%d n=%d%s: relative error %.3g %s", dw_dtype_name(dts[di]), rows, K,
                          n, bias_cu ? " +bias" : "", e, err.message);
                bpair_free(&d, &x), bpair_free(&d, &out);
                wpair_free(&d, &w), wpair_free(&d, &b);
            }
    duo_close(&d);
}

/* The decode fusions: rmsnorm → matmul_multi(q,k,v); matmul → add; matmul_multi(gate, up) →
 * swiglu; rope → kv_write. Each result buffer (including the intermediate ones) must match. */
TEST(cuda_fused_decode_pairs_match_cpu) {
    dw_error err = {0};
    duo d;
    OPEN_DUO_OR_SKIP(d);
    const int H = 2048, Q = 2048, KV = 512, I = 1536, nh = 32, nkv = 8, hd = 64, cap = 64, pos = 37;
    wpair nw = {0}, wq = {0}, wk = {0}, wv = {0}, wo = {0}, wg = {0}, wu = {0};
    CHECK_OK(wpair_make(&d, &nw, DW_DTYPE_F32, 1, H, 1.0f, &err));
    CHECK_OK(wpair_make(&d, &wq, DW_DTYPE_BF16, Q, H, 0.05f, &err));
    CHECK_OK(wpair_make(&d, &wk, DW_DTYPE_BF16, KV, H, 0.05f, &err));
    CHECK_OK(wpair_make(&d, &wv, DW_DTYPE_BF16, KV, H, 0.05f, &err));
    CHECK_OK(wpair_make(&d, &wo, DW_DTYPE_BF16, H, Q, 0.05f, &err));
    CHECK_OK(wpair_make(&d, &wg, DW_DTYPE_BF16, I, H, 0.05f, &err));
    CHECK_OK(wpair_make(&d, &wu, DW_DTYPE_BF16, I, H, 0.05f, &err));
    bpair x = {0}, xn = {0}, q = {0}, k = {0}, v = {0}, o = {0}, g = {0}, u = {0}, inv = {0};
    CHECK_OK(bpair_make(&d, &x, H, 1, &err));
    CHECK_OK(bpair_make(&d, &xn, H, 0, &err));
    CHECK_OK(bpair_make(&d, &q, Q, 0, &err));
    CHECK_OK(bpair_make(&d, &k, KV, 0, &err));
    CHECK_OK(bpair_make(&d, &v, KV, 0, &err));
    CHECK_OK(bpair_make(&d, &o, H, 0, &err));
    CHECK_OK(bpair_make(&d, &g, I, 0, &err));
    CHECK_OK(bpair_make(&d, &u, I, 0, &err));
    float invf[32];
    for (int i = 0; i < 32; i++) invf[i] = powf(10000.0f, -(float)i / 32.0f);
    inv.n = 32;
    inv.cu = dbuf(&d.cu, invf, sizeof invf, &err);
    inv.cpu = dbuf(&d.cpu, invf, sizeof invf, &err);
    CHECK(inv.cu && inv.cpu);
    for (int f32 = 0; f32 < 2; f32++) {
        size_t es = f32 ? 4 : 2, per = (size_t)nkv * cap * hd * es;
        dw_kv_view kcu = {dbuf(&d.cu, NULL, per, &err), dbuf(&d.cu, NULL, per, &err), f32 ? DW_DTYPE_F32 : DW_DTYPE_BF16,
                          nkv, cap, hd};
        dw_kv_view kcpu = kcu;
        kcpu.k = dbuf(&d.cpu, NULL, per, &err), kcpu.v = dbuf(&d.cpu, NULL, per, &err);
        CHECK(kcu.k && kcu.v && kcpu.k && kcpu.v);
        dw_backend *cs[2] = {&d.cu, &d.cpu};
        for (int side = 0; side < 2; side++) {
            const dw_backend_ops *ops = cs[side]->ops;
            void *c = cs[side]->ctx;
            int S = side; /* 0: cuda, 1: cpu */
#define B(bp) (S ? (bp).cpu : (bp).cu)
#define W(wp) (S ? &(wp).cpu : &(wp).cu)
            const dw_kv_view *kv = S ? &kcpu : &kcu;
            ops->rmsnorm(c, B(xn), B(x), W(nw), 1, H, 1e-5f);
            float *outs[3] = {B(q), B(k), B(v)};
            const dw_cweight *ws[3] = {W(wq), W(wk), W(wv)};
            ops->matmul_multi(c, 3, outs, B(xn), 1, ws, NULL);
            ops->rope(c, B(q), B(k), 1, nh, nkv, hd, pos, B(inv));
            ops->kv_write(c, kv, B(k), B(v), pos, 1);
            ops->matmul(c, B(o), B(q), 1, W(wo), NULL);
            ops->add(c, B(x), B(o), H);
            ops->rmsnorm(c, B(xn), B(x), W(nw), 1, H, 1e-5f);
            float *gu[2] = {B(g), B(u)};
            const dw_cweight *wgu[2] = {W(wg), W(wu)};
            ops->matmul_multi(c, 2, gu, B(xn), 1, wgu, NULL);
            ops->swiglu(c, B(g), B(g), B(u), I);
#undef B
#undef W
        }
        /* xn is the second norm's output: it inherits x's error (o through the CPU's bf16 matvec) */
        CMP(xn, 1e-5);
        CMP(q, 1e-5);
        CMP(k, 1e-5);
        CMP(v, 1e-5);
        CMP(o, 1e-5);
        CMP(x, 1e-5);
        CMP(g, 1e-5);
        CMP(u, 1e-5);
        /* the cache rows written at pos (as f32) */
        for (int which = 0; which < 2; which++) {
            float *a = malloc(per), *b = malloc(per), *fa = malloc(sizeof(float) * hd), *fb = malloc(sizeof(float) * hd);
            CHECK_OK(d.cu.ops->download(d.cu.ctx, a, which ? kcu.v : kcu.k, per, &err));
            CHECK_OK(d.cpu.ops->download(d.cpu.ctx, b, which ? kcpu.v : kcpu.k, per, &err));
            double num = 0, den = 0;
            for (int h = 0; h < nkv; h++) {
                size_t off = ((size_t)h * cap + pos) * hd * es;
                dw_convert_to_f32(kcu.dtype, (char *)a + off, fa, hd);
                dw_convert_to_f32(kcu.dtype, (char *)b + off, fb, hd);
                for (int i = 0; i < hd; i++) num += (fa[i] - fb[i]) * (double)(fa[i] - fb[i]), den += fb[i] * (double)fb[i];
            }
            double e = sqrt(num / den);
            CHECK_MSG(e <= (f32 ? 1e-5 : 4e-3), "kv cache %s (%s): relative error %.3g", which ? "v" : "k",
                      f32 ? "f32" : "bf16", e);
            free(a), free(b), free(fa), free(fb);
        }
        d.cu.ops->free(d.cu.ctx, kcu.k), d.cu.ops->free(d.cu.ctx, kcu.v);
        d.cpu.ops->free(d.cpu.ctx, kcpu.k), d.cpu.ops->free(d.cpu.ctx, kcpu.v);
        /* reset x for the second round */
        float *h = rand_f32(H, 1.0f);
        CHECK_OK(d.cu.ops->upload(d.cu.ctx, x.cu, h, H * sizeof(float), &err));
        CHECK_OK(d.cpu.ops->upload(d.cpu.ctx, x.cpu, h, H * sizeof(float), &err));
        free(h);
    }
    CHECK_OK(d.cu.ops->synchronize(d.cu.ctx, &err));
    bpair *bs[] = {&x, &xn, &q, &k, &v, &o, &g, &u, &inv};
    for (size_t i = 0; i < sizeof bs / sizeof bs[0]; i++) bpair_free(&d, bs[i]);
    wpair *ws[] = {&nw, &wq, &wk, &wv, &wo, &wg, &wu};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) wpair_free(&d, ws[i]);
    duo_close(&d);
}

/* Attention over a random cache (the same bytes on both sides), decode and prefill, for head
 * sizes on the vector and the narrow paths, GQA groups that fill one head tile or need two, a
 * sliding window, bf16 and f32 caches, short and long (4095) contexts for both decode key paths
 * (hd 64: 2 keys per lane group and round, hd 128: 4). */
TEST(cuda_attention_matches_cpu) {
    dw_error err = {0};
    duo d;
    OPEN_DUO_OR_SKIP(d);
    struct {
        int nh, nkv, hd, pos0, n, window;
    } cases[] = {
        {32, 8, 64, 271, 1, 0},  {32, 8, 64, 4095, 1, 0}, {4, 2, 10, 40, 1, 0},  {12, 2, 128, 700, 1, 0},
        {9, 1, 16, 3, 1, 0},     {32, 8, 64, 0, 37, 0},   {32, 8, 64, 100, 128, 0}, {8, 8, 96, 20, 9, 0},
        {4, 2, 10, 5, 30, 0},    {16, 4, 64, 300, 1, 50}, {16, 4, 64, 10, 70, 16}, {32, 8, 128, 4095, 1, 0},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int f32 = 0; f32 < 2; f32++) {
            int nh = cases[ci].nh, nkv = cases[ci].nkv, hd = cases[ci].hd, n = cases[ci].n;
            int cap = cases[ci].pos0 + n + 3;
            dw_dtype dt = f32 ? DW_DTYPE_F32 : DW_DTYPE_BF16;
            size_t per = (size_t)nkv * cap * hd * dw_dtype_size(dt);
            void *hk = rand_dtype(dt, per / dw_dtype_size(dt), 1.0f), *hv = rand_dtype(dt, per / dw_dtype_size(dt), 1.0f);
            dw_kv_view kcu = {dbuf(&d.cu, hk, per, &err), dbuf(&d.cu, hv, per, &err), dt, nkv, cap, hd};
            dw_kv_view kcpu = {dbuf(&d.cpu, hk, per, &err), dbuf(&d.cpu, hv, per, &err), dt, nkv, cap, hd};
            CHECK(kcu.k && kcu.v && kcpu.k && kcpu.v);
            bpair q = {0}, out = {0};
            CHECK_OK(bpair_make(&d, &q, (size_t)n * nh * hd, 1, &err));
            CHECK_OK(bpair_make(&d, &out, (size_t)n * nh * hd, 0, &err));
            dw_attn_params p = {nh, nkv, hd, cases[ci].pos0, n, cases[ci].window, 1.0f / sqrtf((float)hd) * 3.0f};
            d.cu.ops->attention(d.cu.ctx, out.cu, q.cu, &kcu, &p);
            d.cpu.ops->attention(d.cpu.ctx, out.cpu, q.cpu, &kcpu, &p);
            double e = compare(&d, out.cu, out.cpu, out.n, &err);
            CHECK_MSG(e <= 1e-5, "attention heads %d/%d hd %d pos0 %d n %d window %d %s: relative error %.3g %s", nh,
                      nkv, hd, p.pos0, n, p.window, f32 ? "f32" : "bf16", e, err.message);
            /* twice more: the split counters must have been reset */
            d.cu.ops->attention(d.cu.ctx, out.cu, q.cu, &kcu, &p);
            d.cu.ops->attention(d.cu.ctx, out.cu, q.cu, &kcu, &p);
            e = compare(&d, out.cu, out.cpu, out.n, &err);
            CHECK_MSG(e <= 1e-5, "attention repeated: relative error %.3g", e);
            bpair_free(&d, &q), bpair_free(&d, &out);
            d.cu.ops->free(d.cu.ctx, kcu.k), d.cu.ops->free(d.cu.ctx, kcu.v);
            d.cpu.ops->free(d.cpu.ctx, kcpu.k), d.cpu.ops->free(d.cpu.ctx, kcpu.v);
            free(hk), free(hv);
        }
    duo_close(&d);
}

/* RoPE, the KV store and attention of one decode token, which CUDA runs as one kernel (q rotated
 * as read, the new row stored by the block whose keys hold it): the same output and cache row as
 * the CPU's three ops, over a random cache whose rows before the token are the same bytes on both
 * sides. At 4095 the token's key falls in the second round of its split's block (33 splits of
 * 125 keys, 64 a round), at 271 and 37 in the first. */
TEST(cuda_fused_rope_kv_attention_matches_cpu) {
    dw_error err = {0};
    duo d;
    OPEN_DUO_OR_SKIP(d);
    const int nh = 32, nkv = 8, hd = 64, positions[] = {37, 271, 4095};
    float invf[32];
    for (int i = 0; i < 32; i++) invf[i] = powf(10000.0f, -(float)i / 32.0f);
    bpair inv = {0};
    inv.n = 32;
    inv.cu = dbuf(&d.cu, invf, sizeof invf, &err);
    inv.cpu = dbuf(&d.cpu, invf, sizeof invf, &err);
    CHECK(inv.cu && inv.cpu);
    for (size_t pi = 0; pi < sizeof positions / sizeof positions[0]; pi++)
        for (int f32 = 0; f32 < 2; f32++) {
            const int pos = positions[pi], cap = pos + 4;
            dw_dtype dt = f32 ? DW_DTYPE_F32 : DW_DTYPE_BF16;
            const size_t es = dw_dtype_size(dt), per = (size_t)nkv * cap * hd * es;
            void *hk = rand_dtype(dt, per / es, 1.0f), *hv = rand_dtype(dt, per / es, 1.0f);
            dw_kv_view kcu = {dbuf(&d.cu, hk, per, &err), dbuf(&d.cu, hv, per, &err), dt, nkv, cap, hd};
            dw_kv_view kcpu = {dbuf(&d.cpu, hk, per, &err), dbuf(&d.cpu, hv, per, &err), dt, nkv, cap, hd};
            CHECK(kcu.k && kcu.v && kcpu.k && kcpu.v);
            bpair q = {0}, k = {0}, v = {0}, out = {0};
            CHECK_OK(bpair_make(&d, &q, (size_t)nh * hd, 1, &err));
            CHECK_OK(bpair_make(&d, &k, (size_t)nkv * hd, 1, &err));
            CHECK_OK(bpair_make(&d, &v, (size_t)nkv * hd, 1, &err));
            CHECK_OK(bpair_make(&d, &out, (size_t)nh * hd, 0, &err));
            dw_attn_params p = {nh, nkv, hd, pos, 1, 0, 1.0f / sqrtf((float)hd) * 3.0f};
            dw_backend *cs[2] = {&d.cu, &d.cpu};
            for (int side = 0; side < 2; side++) {
                const dw_backend_ops *ops = cs[side]->ops;
                void *c = cs[side]->ctx;
                const dw_kv_view *kv = side ? &kcpu : &kcu;
                ops->rope(c, side ? q.cpu : q.cu, side ? k.cpu : k.cu, 1, nh, nkv, hd, pos, side ? inv.cpu : inv.cu);
                ops->kv_write(c, kv, side ? k.cpu : k.cu, side ? v.cpu : v.cu, pos, 1);
                ops->attention(c, side ? out.cpu : out.cu, side ? q.cpu : q.cu, kv, &p);
            }
            CHECK_OK(d.cu.ops->synchronize(d.cu.ctx, &err));
            double e = compare(&d, out.cu, out.cpu, out.n, &err);
            CHECK_MSG(e <= 1e-5, "fused attention at %d, %s cache: relative error %.3g %s", pos, f32 ? "f32" : "bf16", e,
                      err.message);
            /* the stored rows (every KV head's), as floats: the rotation's sin/cos may differ in
             * the last bit between the two sides, so within the cache's own rounding */
            unsigned char *a = malloc(per), *b = malloc(per);
            float *ra = malloc(sizeof(float) * nkv * hd), *rb = malloc(sizeof(float) * nkv * hd);
            for (int kvi = 0; kvi < 2; kvi++) {
                CHECK_OK(d.cu.ops->download(d.cu.ctx, a, kvi ? kcu.v : kcu.k, per, &err));
                CHECK_OK(d.cpu.ops->download(d.cpu.ctx, b, kvi ? kcpu.v : kcpu.k, per, &err));
                for (int h = 0; h < nkv; h++) {
                    const size_t off = ((size_t)h * cap + pos) * hd * es;
                    dw_convert_to_f32(dt, a + off, ra + (size_t)h * hd, hd);
                    dw_convert_to_f32(dt, b + off, rb + (size_t)h * hd, hd);
                }
                const double re = rel_l2(ra, rb, (size_t)nkv * hd);
                CHECK_MSG(re <= (f32 ? 1e-6 : 4e-3), "%s rows at %d, %s cache: relative error %.3g", kvi ? "value" : "key",
                          pos, f32 ? "f32" : "bf16", re);
            }
            free(a), free(b), free(ra), free(rb);
            bpair *bs[] = {&q, &k, &v, &out};
            for (size_t i = 0; i < sizeof bs / sizeof bs[0]; i++) bpair_free(&d, bs[i]);
            d.cu.ops->free(d.cu.ctx, kcu.k), d.cu.ops->free(d.cu.ctx, kcu.v);
            d.cpu.ops->free(d.cpu.ctx, kcpu.k), d.cpu.ops->free(d.cpu.ctx, kcpu.v);
            free(hk), free(hv);
        }
    bpair_free(&d, &inv);
    duo_close(&d);
}

/* ---- whole models ------------------------------------------------------------------------------- */

static int model_counter;

typedef struct side {
    dw_backend *be;
    dw_model *m;
    dw_session *s;
} side;

/* The CPU's kernel set for the comparisons: NULL (the best it has), or a cap (cpu_exact_4bit). */
static const char *cpu_kernel_cap;

static dw_status side_open(side *x, const char *backend, const char *dir, int ctx, int kv_f32, dw_error *err) {
    memset(x, 0, sizeof *x);
    dw_session_options so = {.ctx = ctx, .kv_f32 = kv_f32, .max_batch = 64};
    dw_backend_options bo = {.cpu_kernels = strcmp(backend, "cpu") ? NULL : cpu_kernel_cap};
    dw_status st = dw_backend_open_with(backend, &bo, &x->be, err);
    if (!st) st = dw_model_load(dir, x->be, NULL, &x->m, err);
    if (!st) st = dw_session_create(x->m, &so, &x->s, err);
    return st;
}

static void side_close(side *x) {
    dw_session_free(x->s);
    dw_model_free(x->m);
    dw_backend_close(x->be);
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* Writes a random model of spec into a new directory under the test folder (its path: dir). */
static dw_status model_write(const tmodel_spec *spec, char *dir, size_t size, dw_error *err) {
    snprintf(dir, size, "%s/cuda-model-%d", dw_test_tmp_dir(), model_counter++);
    tmodel tm;
    dw_status st = tmodel_write(spec, dir, 1, &tm, err);
    if (!st) tmodel_free(&tm);
    return st;
}

/* Opens the model in dir on CUDA into cu (*st: how it went). 1 when the test should end here
 * quietly: no GPU, and none required (noted as a skip). */
static int cuda_missing(side *cu, const char *dir, int ctx, int kv_f32, dw_status *st, dw_error *err) {
    *st = side_open(cu, "cuda", dir, ctx, kv_f32, err);
    if (*st != DW_ERR_UNSUPPORTED || dw_test_cuda_required()) return 0;
    dw_test_cuda_note_skip(err->message);
    side_close(cu);
    return 1;
}

/* Prefill of 40 tokens (all logits) then 64 greedy tokens on CPU and CUDA of the model in dir:
 * the same tokens, logits within the limits at every step. prefill_limit < 0: the prompt goes
 * through decode one token at a time instead, its logits held to `limit` as well. */
static void parity_run(const char *dir, const char *what, int V, int kv_f32, double prefill_limit, double limit,
                       int *dw_test_failed_) {
    dw_error err = {0};
    side cu, cpu;
    dw_status st;
    if (cuda_missing(&cu, dir, 160, kv_f32, &st, &err)) return;
    CHECK_OK(st);
    CHECK_OK(side_open(&cpu, "cpu", dir, 160, kv_f32, &err));
    const int P = 40, G = 64;
    int32_t ids[P];
    for (int i = 0; i < P; i++) ids[i] = (int32_t)((i * 7919 + 13) % V);
    float *a = malloc(sizeof(float) * P * V), *b = malloc(sizeof(float) * P * V);
    for (int i = 0; i < P * V; i++) a[i] = NAN;
    if (prefill_limit >= 0) {
        CHECK_OK(dw_session_prefill_all(cu.s, ids, P, a, &err));
        CHECK_OK(dw_session_prefill_all(cpu.s, ids, P, b, &err));
    } else {
        for (int i = 0; i < P; i++) {
            CHECK_OK(dw_session_decode(cu.s, ids[i], a + (size_t)i * V, &err));
            CHECK_OK(dw_session_decode(cpu.s, ids[i], b + (size_t)i * V, &err));
        }
    }
    double e = has_nan(a, (size_t)P * V) ? INFINITY : rel_l2(a, b, (size_t)P * V);
    const double prefill_error = e;
    const double plimit = prefill_limit >= 0 ? prefill_limit : limit;
    CHECK_MSG(e <= plimit, "%s: prompt logits relative error %.3g (limit %.0e)", what, e, plimit);
    int32_t tok = argmax(b + (size_t)(P - 1) * V, V);
    double worst = 0;
    for (int g = 0; g < G; g++) {
        for (int i = 0; i < V; i++) a[i] = NAN;
        CHECK_OK(dw_session_decode(cu.s, tok, a, &err));
        CHECK_OK(dw_session_decode(cpu.s, tok, b, &err));
        e = has_nan(a, V) ? INFINITY : rel_l2(a, b, V);
        if (e > worst) worst = e;
        CHECK_MSG(e <= limit, "%s: decode step %d logits relative error %.3g", what, g, e);
        int ta = argmax(a, V), tb = argmax(b, V);
        CHECK_MSG(ta == tb, "%s: greedy token %d differs: cuda %d, cpu %d", what, g, ta, tb);
        tok = tb;
    }
    printf("    cuda vs cpu %s (%s KV): prompt by %s (logits error %.2g) and %d greedy tokens agree, worst decode "
           "logits error %.2g\n",
           what, kv_f32 ? "f32" : "bf16", prefill_limit >= 0 ? "prefill" : "decode", prefill_error, G, worst);
    free(a), free(b);
    side_close(&cu);
    side_close(&cpu);
}

/* The CPU's exact quantized kernels for the comparison (its kernel set capped at "avx512", not
 * the VNNI 4-bit path, which rounds x to int16), and back to the best it has. */
typedef const char *cpu_qisa;

static void cpu_exact_4bit(cpu_qisa *saved) {
    *saved = cpu_kernel_cap;
    cpu_kernel_cap = "avx512";
}

static void cpu_qisa_restore(const cpu_qisa *saved) { cpu_kernel_cap = *saved; }

/* parity_run on a random model of spec: logits within 1e-4 (f32 cache) or 1e-3 (bf16 cache; it
 * rounds keys/values that differ in the last f32 bits, and a flipped rounding moves later
 * tokens' logits by ~1e-4). */
static void model_parity(const tmodel_spec *spec, int kv_f32, int *dw_test_failed_) {
    dw_error err = {0};
    char dir[512];
    CHECK_OK(model_write(spec, dir, sizeof dir, &err));
    double limit = kv_f32 ? 1e-4 : 1e-3;
    parity_run(dir, spec->arch, spec->vocab, kv_f32, limit, limit, dw_test_failed_);
}

TEST(cuda_model_llama_awkward_sizes_matches_cpu) {
    tmodel_spec spec = tmodel_default();
    model_parity(&spec, 0, dw_test_failed_);
}

TEST(cuda_model_llama_gqa_hd64_matches_cpu_bf16_and_f32_kv) {
    tmodel_spec spec = tmodel_default();
    spec.vocab = 3001, spec.hidden = 256, spec.inter = 688, spec.heads = 8, spec.kv_heads = 2, spec.head_dim = 64;
    spec.layers = 3, spec.seed = 7, spec.scale = 0.08f, spec.explicit_head_dim = 1;
    model_parity(&spec, 0, dw_test_failed_);
    model_parity(&spec, 1, dw_test_failed_);
}

/* Long rows on few of them (down: 256 rows of 6144 inputs, three rounds of 8 loads per lane, so
 * read with 16 loads in flight: kernels_matvec.cu deep_rows) match the CPU. */
TEST(cuda_model_long_rows_match_cpu) {
    tmodel_spec spec = tmodel_default();
    spec.vocab = 3001, spec.hidden = 256, spec.inter = 6144, spec.heads = 8, spec.kv_heads = 2, spec.head_dim = 32;
    spec.layers = 2, spec.seed = 29, spec.scale = 0.05f;
    model_parity(&spec, 1, dw_test_failed_);
}

/* A 4096-wide model: its gate/up pairs are read by 4 warps per row, each summing a quarter of the
 * inputs (kernels_matvec.cu, warps_per_row), the q/k/v rows (two rounds of loads) by one. */
TEST(cuda_model_gate_up_rows_over_four_warps_match_cpu) {
    tmodel_spec spec = tmodel_default();
    spec.vocab = 3001, spec.hidden = 4096, spec.inter = 512, spec.heads = 8, spec.kv_heads = 2, spec.head_dim = 64;
    spec.layers = 2, spec.seed = 31, spec.scale = 0.02f, spec.explicit_head_dim = 1;
    model_parity(&spec, 1, dw_test_failed_);
}

TEST(cuda_model_qwen2_biases_and_mistral_window_match_cpu) {
    tmodel_spec spec = tmodel_default();
    spec.arch = "Qwen2ForCausalLM", spec.hidden = 64, spec.heads = 4, spec.kv_heads = 2, spec.head_dim = 16, spec.seed = 3;
    model_parity(&spec, 0, dw_test_failed_);
    spec = tmodel_default();
    spec.arch = "MistralForCausalLM", spec.sliding_window = 24, spec.seed = 4;
    model_parity(&spec, 0, dw_test_failed_);
}

/* A quantized test model: 2 layers, 256 wide, 3001-token vocabulary, its matrices in `dtype`
 * before quantizing, the MLP `inter` wide. */
typedef struct qmodel_case {
    int bits, group, tie, inter;
    dw_dtype dtype;
    int vocab; /* 0: QMODEL_VOCAB */
} qmodel_case;
#define QMODEL_VOCAB 3001

/* Writes c's model (seed) and its quantized copy, whose directory goes to qdir; what names it. */
static dw_status qmodel_write(const qmodel_case *c, uint64_t seed, char *qdir, size_t qdir_size, char *what,
                              size_t what_size, dw_error *err) {
    tmodel_spec spec = tmodel_default();
    spec.vocab = c->vocab ? c->vocab : QMODEL_VOCAB, spec.hidden = 256, spec.inter = c->inter, spec.heads = 8;
    spec.kv_heads = 2;
    spec.head_dim = 32;
    spec.layers = 2, spec.seed = seed, spec.scale = 0.08f, spec.tie = c->tie, spec.dtype = c->dtype;
    char dir[512];
    dw_status st = model_write(&spec, dir, sizeof dir, err);
    if (st) return st;
    snprintf(qdir, qdir_size, "%s-q", dir);
    snprintf(what, what_size, "%d-bit g%d %s scales%s, K up to %d, vocab %d", c->bits, c->group,
             dw_dtype_name(c->dtype), c->tie ? " tied" : "", c->inter, spec.vocab);
    return dw_model_quantize(dir, qdir, c->bits, c->group, err);
}

/* Quantized models (MLX affine: 4 and 8 bits, groups 32/64/128, bf16, f16 and f32 scales, tied
 * and untied heads): CUDA runs its own kernels on them and matches the CPU's exact kernels (not
 * the VNNI 4-bit path, which rounds x to int16: the CPU kernels capped at avx512). Decode is f32 arithmetic on
 * both sides: with the prompt decoded token by token and an f32 cache, 1e-4 at every step. The
 * CUDA prefill rounds the dequantized weights to bf16 for the tensor cores (relative 2^-9 per
 * weight): its logits get 1e-2, and the decode steps after it, whose cache it wrote, 3e-3; the
 * greedy tokens must agree either way. The last case has more gate/up and LM head rows than the
 * GPU's resident warps take at once (as the 1B's have): each warp works through several. */
TEST(cuda_model_quantized_matches_cpu) {
    dw_error err = {0};
    cpu_qisa saved;
    cpu_exact_4bit(&saved);
    /* inter 11264: the down projection's x' needs over 48 KB of shared memory (opt-in) */
    const qmodel_case cases[] = {{4, 64, 1, 640, DW_DTYPE_BF16, 0},
                                 {8, 32, 0, 11264, DW_DTYPE_BF16, 0},
                                 {4, 128, 0, 11264, DW_DTYPE_F32, 0},
                                 {8, 64, 1, 640, DW_DTYPE_F16, 0},
                                 {4, 64, 0, 8192, DW_DTYPE_BF16, 16411}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char qdir[520], what[96];
        const int V = cases[i].vocab ? cases[i].vocab : QMODEL_VOCAB;
        CHECK_OK(qmodel_write(&cases[i], 21 + i, qdir, sizeof qdir, what, sizeof what, &err));
        parity_run(qdir, what, V, 1, -1, 1e-4, dw_test_failed_);
        parity_run(qdir, what, V, i == 0 ? 0 : 1, 1e-2, 3e-3, dw_test_failed_);
    }
    cpu_qisa_restore(&saved);
}

/* n greedy tokens after `first` chosen on the host: decode, then the first largest logit. */
static dw_status host_greedy(dw_session *s, int32_t first, int n, int V, float *lg, int32_t *out, dw_error *err) {
    for (int i = 0; i < n; i++) {
        dw_status st = dw_session_decode(s, i ? out[i - 1] : first, lg, err);
        if (st) return st;
        out[i] = argmax(lg, V);
    }
    return DW_OK;
}

/* Greedy decoding with the tokens chosen on the GPU (each step replayed from the previous one's
 * argmax there, the host reading back once per 64 tokens) picks the tokens that decoding and
 * the host's argmax pick on backend `ref` (the CPU, or where near ties may round differently
 * there, CUDA itself) for the model in dir; so it does again after a sampled step in between (a
 * recording of its own) and after going back to an earlier position (the steps the last
 * replays prepared are stale there). */
static void greedy_parity(const char *dir, const char *what, const char *ref, int V, int *dw_test_failed_) {
    dw_error err = {0};
    side cu, rf;
    dw_status st;
    if (cuda_missing(&cu, dir, 160, 1, &st, &err)) return;
    CHECK_OK(st);
    CHECK_OK(side_open(&rf, ref, dir, 160, 1, &err));
    enum { P = 12, N = 100 };
    int32_t ids[P], a[N], b[N];
    for (int i = 0; i < P; i++) ids[i] = (int32_t)((i * 7919 + 5) % V);
    float *lg = malloc(sizeof(float) * V);
    CHECK_OK(dw_session_prefill(cu.s, ids, P - 1, lg, &err));
    CHECK_OK(dw_session_prefill(rf.s, ids, P - 1, lg, &err));
#ifdef DW_HAVE_CUDA
    dw_backend_stats s0, s1;
    dw_backend_get_stats(cu.be, &s0);
#endif
    CHECK_OK(dw_session_decode_greedy(cu.s, ids[P - 1], N, a, &err));
    CHECK_OK(host_greedy(rf.s, ids[P - 1], N, V, lg, b, &err));
    int first_diff = -1;
    for (int i = 0; i < N && first_diff < 0; i++)
        if (a[i] != b[i]) first_diff = i;
    CHECK_MSG(first_diff < 0, "%s: greedy token %d differs: on the device %d, %s %d", what, first_diff, a[first_diff],
              ref, b[first_diff]);
    CHECK(!memcmp(dw_session_tokens(cu.s), dw_session_tokens(rf.s), sizeof(int32_t) * (P + N - 1)));
    int changes = 0;
    for (int i = 1; i < N; i++) changes += a[i] != a[i - 1];
    CHECK_MSG(changes > 10, "%s: only %d changes of token in %d: not a useful comparison", what, changes, N);
#ifdef DW_HAVE_CUDA
    dw_backend_get_stats(cu.be, &s1);
    CHECK_MSG(s1.graph_replays - s0.graph_replays >= N - 4, "%s: %ld of %d steps were graph replays", what,
              s1.graph_replays - s0.graph_replays, N);
    /* most replays found their step already in the slot, written by the argmax before them */
    CHECK_MSG(s1.primed_replays - s0.primed_replays >= N - 8, "%s: %ld of %d steps replayed without set_step", what,
              s1.primed_replays - s0.primed_replays, N);
#endif
    int32_t t;
    CHECK_OK(host_greedy(cu.s, a[N - 1], 1, V, lg, &t, &err)); /* a sampled step (the host's choice) */
    CHECK_OK(host_greedy(rf.s, b[N - 1], 1, V, lg, b, &err));
    CHECK_MSG(t == b[0], "%s: sampled step after greedy: cuda %d, %s %d", what, t, ref, b[0]);
    for (int round = 0; round < 2; round++) {
        if (round) { /* back to an earlier position, then on from the token there */
            CHECK_OK(dw_session_truncate(cu.s, P + 40, &err));
            CHECK_OK(dw_session_truncate(rf.s, P + 40, &err));
        }
        const int32_t from = round ? dw_session_tokens(rf.s)[P + 39] : t;
        CHECK_OK(dw_session_decode_greedy(cu.s, from, 30, a, &err));
        CHECK_OK(host_greedy(rf.s, from, 30, V, lg, b, &err));
        CHECK_MSG(!memcmp(a, b, sizeof(int32_t) * 30), "%s, round %d: greedy tokens differ after %s", what, round,
                  round ? "going back" : "a sampled step");
    }
    free(lg);
    side_close(&cu);
    side_close(&rf);
}

/* greedy_parity on bf16 weights against the CPU, and on 4-bit and 8-bit weights against CUDA's
 * own logits (one near tie in 100 tokens can round either way between the backends there). */
TEST(cuda_greedy_decoding_on_the_device_matches_cpu) {
    dw_error err = {0};
    tmodel_spec spec = tmodel_default();
    spec.vocab = 3001, spec.hidden = 256, spec.inter = 688, spec.heads = 8, spec.kv_heads = 2, spec.head_dim = 64;
    spec.layers = 3, spec.seed = 9, spec.scale = 0.08f, spec.explicit_head_dim = 1;
    char dir[512], qdir[2][520];
    CHECK_OK(model_write(&spec, dir, sizeof dir, &err));
    greedy_parity(dir, "bf16", "cpu", spec.vocab, dw_test_failed_);
    spec.inter = 640; /* whole groups of 64 */
    CHECK_OK(model_write(&spec, dir, sizeof dir, &err));
    for (int q = 0; q < 2; q++) {
        snprintf(qdir[q], sizeof qdir[q], "%s-q%d", dir, q ? 8 : 4);
        CHECK_OK(dw_model_quantize(dir, qdir[q], q ? 8 : 4, 64, &err));
        greedy_parity(qdir[q], q ? "8-bit g64" : "4-bit g64", "cuda", spec.vocab, dw_test_failed_);
    }
}

/* Graph replays and direct decode give the same tokens; the graph path really replays. Two
 * sessions decoding on two threads get what they get alone. */
typedef struct job {
    dw_model *m;
    int32_t first;
    int n;
    int32_t toks[48];
    dw_status st;
    dw_error err;
} job;

__attribute__((unused)) static void *job_main(void *arg) {
    job *j = arg;
    dw_session *s = NULL;
    dw_session_options so = {.ctx = 128};
    int V = dw_model_get_config(j->m)->vocab_size;
    float *lg = malloc(sizeof(float) * V);
    j->st = dw_session_create(j->m, &so, &s, &j->err);
    int32_t t = j->first;
    for (int i = 0; i < j->n && !j->st; i++) {
        j->st = dw_session_decode(s, t, lg, &j->err);
        t = j->toks[i] = argmax(lg, V);
    }
    dw_session_free(s);
    free(lg);
    return NULL;
}

/* The decode-graph tests' model (2000 tokens, 128 wide, 4 heads of 32 on one KV head, seed,
 * max_pos positions) written and opened on CUDA with a ctx-token bf16 cache into cu; as
 * cuda_missing (1: no GPU, skip). */
static int graph_model_open(side *cu, uint64_t seed, int max_pos, int ctx, dw_status *st, dw_error *err) {
    tmodel_spec spec = tmodel_default();
    spec.vocab = 2000, spec.hidden = 128, spec.inter = 256, spec.heads = 4, spec.kv_heads = 1, spec.head_dim = 32;
    spec.seed = seed, spec.scale = 0.1f;
    if (max_pos) spec.max_pos = max_pos;
    char dir[512];
    if ((*st = model_write(&spec, dir, sizeof dir, err))) return 0;
    return cuda_missing(cu, dir, ctx, 0, st, err);
}

TEST(cuda_decode_graphs_direct_and_two_threads_agree) {
    dw_error err = {0};
    side cu;
    dw_status st;
    if (graph_model_open(&cu, 11, 0, 128, &st, &err)) return;
    CHECK_OK(st);
#ifdef DW_HAVE_CUDA
    job graph = {.m = cu.m, .first = 5, .n = 48}, direct = graph;
    job_main(&graph);
    CHECK_MSG(!graph.st, "%s", graph.err.message);
    dw_backend_stats stats;
    dw_backend_get_stats(cu.be, &stats);
    CHECK_MSG(stats.graph_replays >= 40, "only %ld graph replays (%ld recorded, %ld direct)", stats.graph_replays,
              stats.graph_records, stats.eager_steps);
    dw__cuda_set_graphs(cu.be, 0);
    job_main(&direct);
    dw__cuda_set_graphs(cu.be, 1);
    CHECK_MSG(!direct.st, "%s", direct.err.message);
    CHECK(!memcmp(graph.toks, direct.toks, sizeof graph.toks));
    job th[2] = {graph, graph};
    th[1].first = 77;
    job alone1 = th[1];
    job_main(&alone1);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, job_main, &th[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) CHECK_MSG(!th[i].st, "%s", th[i].err.message);
    CHECK(!memcmp(th[0].toks, graph.toks, sizeof graph.toks));
    CHECK(!memcmp(th[1].toks, alone1.toks, sizeof alone1.toks));
#endif
    side_close(&cu);
}

/* Decode steps up to attention_short_keys (320) keys run attention with other shapes (one split,
 * one query head per block) than longer ones, so a session's decode graph is recorded again when
 * its length crosses 320: greedy tokens from 300 to 348 with graphs are those without. */
TEST(cuda_decode_graphs_rerecorded_past_the_short_lengths) {
    dw_error err = {0};
    side cu;
    dw_status st;
    if (graph_model_open(&cu, 12, 512, 400, &st, &err)) return;
    CHECK_OK(st);
#ifdef DW_HAVE_CUDA
    int32_t prompt[300], toks[2][48];
    for (int i = 0; i < 300; i++) prompt[i] = (int32_t)((i * 7919 + 13) % 2000);
    dw_backend_stats before, after;
    for (int graphs = 1; graphs >= 0; graphs--) {
        dw__cuda_set_graphs(cu.be, graphs);
        dw_backend_get_stats(cu.be, &before);
        dw_session *s = NULL;
        dw_session_options so = {.ctx = 400};
        CHECK_OK(dw_session_create(cu.m, &so, &s, &err));
        CHECK_OK(dw_session_prefill(s, prompt, 300, NULL, &err));
        CHECK_OK(dw_session_decode_greedy(s, prompt[299], 48, toks[graphs], &err));
        dw_session_free(s);
        dw_backend_get_stats(cu.be, &after);
        if (graphs)
            CHECK_MSG(after.graph_records - before.graph_records >= 2 && after.graph_replays - before.graph_replays >= 40,
                      "%ld recordings, %ld replays", after.graph_records - before.graph_records,
                      after.graph_replays - before.graph_replays);
    }
    dw__cuda_set_graphs(cu.be, 1);
    CHECK(!memcmp(toks[0], toks[1], sizeof toks[0]));
#endif
    side_close(&cu);
}

/* Logits land in a registered region (a guest memory stand-in): the copy engine writes the
 * pages, every value arrives, and RSS does not grow per token. */
static size_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return (size_t)resident * 4096;
}

TEST(cuda_logits_land_in_a_registered_region_without_growth) {
    dw_error err = {0};
    tmodel_spec spec = tmodel_default();
    spec.vocab = 50000, spec.seed = 21;
    char dir[512];
    CHECK_OK(model_write(&spec, dir, sizeof dir, &err));
    side cu;
    dw_status st;
    if (cuda_missing(&cu, dir, 200, 0, &st, &err)) return;
    CHECK_OK(st);
    /* 64 KiB pieces, as a growing Wasm memory registers them: the logits straddle pieces */
    size_t piece = 64 << 10, len = 4 * piece;
    char *region = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(region != MAP_FAILED);
    memset(region, 0, len);
    for (size_t off = 0; off < len; off += piece) CHECK_OK(dw_backend_register_range(cu.be, region + off, piece, &err));
    float *logits = (float *)(region + 1000 * sizeof(float));
    int V = spec.vocab;
    int32_t tok = 1;
    size_t rss0 = 0;
    for (int g = 0; g < 120; g++) {
        for (int i = 0; i < V; i++) logits[i] = NAN;
        CHECK_OK(dw_session_decode(cu.s, tok, logits, &err));
        CHECK(!has_nan(logits, V));
        tok = argmax(logits, V);
        if (g == 19) rss0 = rss_bytes();
    }
    long grown = (long)rss_bytes() - (long)rss0;
    printf("    cuda: 100 decode steps into a registered region: rss %+ld B\n", grown);
    CHECK_MSG(grown < 256 * 1024, "RSS grew by %ld bytes over 100 tokens", grown);
    dw_backend_release_range(cu.be, region, len);
    munmap(region, len);
    side_close(&cu);
}
