/* Decode and prefill speed of a model on the CUDA compute ops, against the bound set by the
 * GPU's copy bandwidth measured in the same run (bench/cuda/README.md). Built and run by
 * tools/gpu-check.sh; `driftwood bench decode` refuses non-CPU backends for now.
 *
 *   bench-decode-cuda --model DIR [--prompt 16] [--gen 256] [--long 4096] [--prefill 512]
 *
 * Prints one JSON object (last line) and a table before it. Logits land in a registered
 * region (as in an actor), so the copy is the zero-copy path. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "driftwood/backend.h"
#include "driftwood/engine.h"
#include "driftwood/model.h"
#include "engine/engine_impl.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The caller's greedy pick (the first index of the largest logit): the maximum with 8
 * independent chains (the compiler vectorizes them), then the first index holding it. */
static int argmax(const float *v, int n) {
    float m[8];
    for (int j = 0; j < 8; j++) m[j] = v[0];
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) m[j] = v[i + j] > m[j] ? v[i + j] : m[j];
    float best = m[0];
    for (int j = 1; j < 8; j++) best = m[j] > best ? m[j] : best;
    for (; i < n; i++) best = v[i] > best ? v[i] : best;
    for (i = 0; i < n; i++)
        if (v[i] == best) return i;
    return 0;
}

static int argmax_simple(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static void fail(const dw_error *err) {
    fprintf(stderr, "bench-decode-cuda: %s\n", err->message);
    exit(1);
}

static void prompt_ids(int32_t *ids, int n, int vocab, uint32_t seed) {
    uint32_t x = seed;
    for (int i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        ids[i] = (int32_t)((x >> 8) % (uint32_t)vocab);
    }
}

/* Where a decode token's time goes (per token, ms): the wall time of the loop, the GPU time of
 * the step's kernels (events), queuing the step, the download (its wait included), the
 * caller's argmax; host = wall - GPU (launches, synchronisation, copy, sampling). */
typedef struct split_ms {
    double wall, gpu, enqueue, download, argmax, host;
} split_ms;

/* Prefills n_prompt tokens, then decodes n_gen greedy tokens: decode tok/s and median ms. */
static void run_decode(dw_model *m, int n_prompt, int n_gen, float *logits, double *tps, double *median_ms,
                       split_ms *sp) {
    dw_error err = {0};
    const dw_model_config *c = dw_model_get_config(m);
    dw_session *s;
    dw_session_options so = {.ctx = n_prompt + n_gen + 8, .max_batch = 512};
    if (dw_session_create(m, &so, &s, &err)) fail(&err);
    int32_t *ids = malloc(sizeof(int32_t) * n_prompt);
    prompt_ids(ids, n_prompt, c->vocab_size, 12345);
    if (dw_session_prefill(s, ids, n_prompt, logits, &err)) fail(&err);
    double *dt = malloc(sizeof(double) * n_gen);
    dw_backend_stats st0, st1;
    dw_backend_get_stats(m->backend, &st0);
    double t0 = now_s(), t_arg = 0;
    for (int g = 0; g < n_gen; g++) {
        double a = now_s();
        int next = argmax(logits, c->vocab_size);
        t_arg += now_s() - a;
        if (dw_session_decode(s, next, logits, &err)) fail(&err);
        dt[g] = now_s() - a;
    }
    double total = now_s() - t0;
    dw_backend_get_stats(m->backend, &st1);
    if (sp) {
        long timed = st1.timed_steps - st0.timed_steps;
        sp->wall = total / n_gen * 1e3;
        sp->gpu = timed > 0 ? (st1.gpu_step_ms - st0.gpu_step_ms) / timed : 0;
        sp->enqueue = (st1.enqueue_s - st0.enqueue_s) / n_gen * 1e3;
        sp->download = (st1.download_s - st0.download_s) / n_gen * 1e3;
        sp->argmax = t_arg / n_gen * 1e3;
        sp->host = sp->wall - sp->gpu;
    }
    for (int i = 1; i < n_gen; i++) /* insertion sort: small */
        for (int j = i; j > 0 && dt[j] < dt[j - 1]; j--) {
            double t = dt[j];
            dt[j] = dt[j - 1], dt[j - 1] = t;
        }
    *tps = n_gen / total;
    *median_ms = dt[n_gen / 2] * 1e3;
    free(dt), free(ids);
    dw_session_free(s);
}

/* Prefills n_prompt tokens, then n_gen greedy tokens chosen on the device
 * (dw_session_decode_greedy): tok/s over the call, and the GPU time per step. */
static double run_greedy(dw_model *m, int n_prompt, int n_gen, float *logits, double *gpu_ms) {
    dw_error err = {0};
    const dw_model_config *c = dw_model_get_config(m);
    dw_session *s;
    dw_session_options so = {.ctx = n_prompt + n_gen + 8, .max_batch = 512};
    if (dw_session_create(m, &so, &s, &err)) fail(&err);
    int32_t *ids = malloc(sizeof(int32_t) * (n_prompt + n_gen + 2)); /* prompt, 2 warm-up steps, n_gen */
    prompt_ids(ids, n_prompt, c->vocab_size, 12345);
    if (dw_session_prefill(s, ids, n_prompt - 1, logits, &err)) fail(&err);
    /* two steps first: the session's graph is recorded on its second step */
    if (dw_session_decode_greedy(s, ids[n_prompt - 1], 2, ids + n_prompt, &err)) fail(&err);
    dw_backend_stats st0, st1;
    dw_backend_get_stats(m->backend, &st0);
    double t0 = now_s();
    if (dw_session_decode_greedy(s, ids[n_prompt + 1], n_gen, ids + n_prompt + 2, &err)) fail(&err);
    double total = now_s() - t0;
    dw_backend_get_stats(m->backend, &st1);
    long timed = st1.timed_steps - st0.timed_steps;
    *gpu_ms = timed > 0 ? (st1.gpu_step_ms - st0.gpu_step_ms) / timed : 0;
    free(ids);
    dw_session_free(s);
    return n_gen / total;
}

static double run_prefill(dw_model *m, int n, float *logits) {
    dw_error err = {0};
    const dw_model_config *c = dw_model_get_config(m);
    dw_session *s;
    dw_session_options so = {.ctx = n + 8, .max_batch = n};
    if (dw_session_create(m, &so, &s, &err)) fail(&err);
    int32_t *ids = malloc(sizeof(int32_t) * n);
    prompt_ids(ids, n, c->vocab_size, 777);
    double best = 1e30;
    for (int r = 0; r < 4; r++) { /* the first is a warm-up (cuBLAS picks its kernels) */
        dw_session_reset(s);
        double a = now_s();
        if (dw_session_prefill(s, ids, n, logits, &err)) fail(&err);
        double t = now_s() - a;
        if (r && t < best) best = t;
    }
    free(ids);
    dw_session_free(s);
    return n / best;
}

/* Per-op timing, outside graphs: reps calls then one synchronize; µs per call and the weight
 * (or cache) bytes per second it implies. Kernels shorter than a launch show the launch rate. */
#define OP_REPS 200
#define TIME_OP(label, bytes, call)                                                                  \
    do {                                                                                             \
        for (int r_ = 0; r_ < 10; r_++) call;                                                        \
        if (ops->synchronize(ctx, &err)) fail(&err);                                                 \
        double a_ = now_s();                                                                         \
        for (int r_ = 0; r_ < OP_REPS; r_++) call;                                                   \
        if (ops->synchronize(ctx, &err)) fail(&err);                                                 \
        double us_ = (now_s() - a_) / OP_REPS * 1e6;                                                 \
        printf("  %-34s %8.1f us  %7.0f GB/s\n", label, us_, (double)(bytes) / (us_ * 1e-6) / 1e9); \
    } while (0)

/* Bytes per weight of a matrix as stored (codes, scales and biases when quantized). */
static double bytes_per_weight(const dw_cweight *w) {
    if (w->qbits) return w->qbits / 8.0 + 2.0 * dw_dtype_size(w->qsdtype) / w->qgroup;
    return (double)dw_dtype_size(w->dtype);
}

static void op_bench(dw_model *m, float *region_logits) {
    dw_error err = {0};
    const dw_model_config *c = dw_model_get_config(m);
    const dw_backend_ops *ops = m->backend->ops;
    void *ctx = m->backend->ctx;
    dw_session *s;
    dw_session_options so = {.ctx = 4104, .max_batch = 1};
    if (dw_session_create(m, &so, &s, &err)) fail(&err);
    /* fill a few buffers with real activations: one decode step */
    float *lg = malloc(sizeof(float) * c->vocab_size);
    if (dw_session_decode(s, 1, lg, &err)) fail(&err);
    const dw_layer_weights *L = &m->layers[0];
    const int H = c->hidden_size, I = c->intermediate_size;
    const double w2 = bytes_per_weight(&L->wq);
    printf("ops (layer 0, batch 1, median-free mean of %d calls):\n", OP_REPS);
    TIME_OP("lm_head matvec (+norm)", bytes_per_weight(&m->lm_head) * c->vocab_size * H, (ops->rmsnorm(ctx, s->xn, s->x, &m->final_norm, 1, H, 1e-5f), ops->matmul(ctx, s->logits, s->xn, 1, &m->lm_head, NULL)));
    float *qkv[3] = {s->q, s->k, s->v};
    const dw_cweight *wqkv[3] = {&L->wq, &L->wk, &L->wv};
    double qkv_bytes = w2 * H * (L->wq.rows + L->wk.rows + L->wv.rows);
    TIME_OP("norm + q,k,v matvec", qkv_bytes, (ops->rmsnorm(ctx, s->xn, s->x, &L->attn_norm, 1, H, 1e-5f), ops->matmul_multi(ctx, 3, qkv, s->xn, 1, wqkv, NULL)));
    TIME_OP("o matvec + residual", w2 * H * L->wo.cols, (ops->matmul(ctx, s->o, s->att, 1, &L->wo, NULL), ops->add(ctx, s->up, s->o, H)));
    float *gu[2] = {s->gate, s->up};
    const dw_cweight *wgu[2] = {&L->w_gate, &L->w_up};
    TIME_OP("norm + gate,up matvec + swiglu", w2 * 2 * H * I, (ops->rmsnorm(ctx, s->xn, s->x, &L->ffn_norm, 1, H, 1e-5f), ops->matmul_multi(ctx, 2, gu, s->xn, 1, wgu, NULL), ops->swiglu(ctx, s->gate, s->gate, s->up, I)));
    TIME_OP("down matvec + residual", w2 * H * I, (ops->matmul(ctx, s->o, s->gate, 1, &L->w_down, NULL), ops->add(ctx, s->up, s->o, H)));
    TIME_OP("rope + kv_write", 0, (ops->rope(ctx, s->q, s->k, 1, c->n_heads, c->n_kv_heads, c->head_dim, 100, m->inv_freq), ops->kv_write(ctx, &s->kv[0], s->k, s->v, 100, 1)));
    int lens[3] = {272, 1024, 4096};
    for (int i = 0; i < 3; i++) {
        dw_attn_params ap = {c->n_heads, c->n_kv_heads, c->head_dim, lens[i] - 1, 1, 0, 0.125f};
        char label[64];
        snprintf(label, sizeof label, "attention, %d in context", lens[i]);
        TIME_OP(label, 2.0 * 2 * c->n_kv_heads * lens[i] * c->head_dim, ops->attention(ctx, s->att, s->q, &s->kv[0], &ap));
    }
    {
        dw_attn_params ap = {c->n_heads, c->n_kv_heads, c->head_dim, 271, 1, 0, 0.125f};
        TIME_OP("rope + kv_write + attention, 272", 0, (ops->rope(ctx, s->q, s->k, 1, c->n_heads, c->n_kv_heads, c->head_dim, 271, m->inv_freq), ops->kv_write(ctx, &s->kv[0], s->k, s->v, 271, 1), ops->attention(ctx, s->att, s->q, &s->kv[0], &ap)));
    }
    TIME_OP("rmsnorm alone", 0, (ops->rmsnorm(ctx, s->xn, s->x, &L->attn_norm, 1, H, 1e-5f), ops->add(ctx, s->o, s->xn, H)));
    /* what a decode step does besides the graph: logits to the host, and the caller's argmax */
    size_t lbytes = sizeof(float) * (size_t)c->vocab_size;
    TIME_OP("download logits, registered region", lbytes, (void)ops->download(ctx, region_logits, s->logits, lbytes, &err));
    TIME_OP("download logits, malloc'd memory", lbytes, (void)ops->download(ctx, lg, s->logits, lbytes, &err));
    volatile int sink = 0;
    TIME_OP("host argmax over the logits", lbytes, sink += argmax(region_logits, c->vocab_size));
    TIME_OP("host argmax, one chain (before)", lbytes, sink += argmax_simple(region_logits, c->vocab_size));
    if (argmax(region_logits, c->vocab_size) != argmax_simple(region_logits, c->vocab_size)) {
        fprintf(stderr, "bench-decode-cuda: the two argmax disagree\n");
        exit(1);
    }
    (void)sink;
    free(lg);
    dw_session_free(s);
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    int n_prompt = 16, n_gen = 256, n_long = 4096, n_prefill = 512;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--model") && v) dir = v, i++;
        else if (!strcmp(argv[i], "--prompt") && v) n_prompt = atoi(v), i++;
        else if (!strcmp(argv[i], "--gen") && v) n_gen = atoi(v), i++;
        else if (!strcmp(argv[i], "--long") && v) n_long = atoi(v), i++;
        else if (!strcmp(argv[i], "--prefill") && v) n_prefill = atoi(v), i++;
        else {
            fprintf(stderr, "usage: bench-decode-cuda --model DIR [--prompt N] [--gen N] [--long N] [--prefill N]\n");
            return 2;
        }
    }
    if (!dir) return fprintf(stderr, "bench-decode-cuda: --model DIR is required\n"), 2;
    dw_error err = {0};
    dw_backend *be;
    dw_model *m;
    if (dw_backend_open("cuda", &be, &err)) fail(&err);
    double t0 = now_s();
    if (dw_model_load(dir, be, NULL, &m, &err)) fail(&err);
    double load_s = now_s() - t0;
    const dw_model_config *c = dw_model_get_config(m);

    /* logits into a registered region, in 64 KiB pieces like a grown Wasm memory */
    size_t piece = 64 << 10, len = ((size_t)c->vocab_size * 4 + piece - 1) / piece * piece;
    char *region = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(region, 0, len);
    for (size_t off = 0; off < len; off += piece)
        if (dw_backend_register_range(be, region + off, piece, &err)) fail(&err);
    float *logits = (float *)region;

    double bw;
    if (dw_backend_memory_bandwidth(m->backend, (size_t)1 << 30, 10, &bw, &err)) fail(&err);
    double wbytes = (double)dw_model_weight_bytes(m);
    double bound = bw * 1e9 / wbytes;

    /* a phase given 0 tokens is skipped (for profiling one phase) */
    if (getenv("DW_BENCH_OPS") && *getenv("DW_BENCH_OPS") == '1') op_bench(m, logits);
    double prefill_tps = n_prefill > 0 ? run_prefill(m, n_prefill, logits) : 0;
    double short_tps = 0, short_ms = 0, long_tps = 0, long_ms = 0, eager_tps = 0, eager_ms = 0;
    split_ms sp_short = {0}, sp_long = {0}, sp_eager = {0};
    run_decode(m, n_prompt, n_gen, logits, &short_tps, &short_ms, &sp_short);
    double greedy_gpu_ms = 0, greedy_tps = run_greedy(m, n_prompt, n_gen - 2, logits, &greedy_gpu_ms);
    dw_backend_stats st;
    dw_backend_get_stats(m->backend, &st);
    double long_greedy_gpu_ms = 0, long_greedy_tps = 0;
    if (n_long > 0) {
        run_decode(m, n_long, 128, logits, &long_tps, &long_ms, &sp_long);
        long_greedy_tps = run_greedy(m, n_long, 126, logits, &long_greedy_gpu_ms);
        dw__cuda_set_graphs(m->backend, 0);
        run_decode(m, n_prompt, 64, logits, &eager_tps, &eager_ms, &sp_eager);
        dw__cuda_set_graphs(m->backend, 1);
    }
    dw_backend_stats st_end;
    dw_backend_get_stats(m->backend, &st_end);

    printf("model              %s (%d layers, hidden %d, vocab %d)\n", dir, c->n_layers, c->hidden_size, c->vocab_size);
    printf("load               %.2f s\n", load_s);
    printf("copy bandwidth     %.0f GB/s (device to device, read + write)\n", bw);
    printf("bound              %.0f tok/s (%.3f GB of weights per token)\n", bound, wbytes / 1e9);
    printf("prefill %-5d      %.0f tok/s\n", n_prefill, prefill_tps);
    printf("decode %d+%d       %.1f tok/s (median %.3f ms/token), %.1f%% of the bound; graphs: %ld replays\n", n_prompt,
           n_gen, short_tps, short_ms, 100 * short_tps / bound, st.graph_replays);
    printf("decode, greedy on the device %d+%d  %.1f tok/s (%.3f ms/token; GPU %.3f ms/step), %.1f%% of the bound\n",
           n_prompt, n_gen, greedy_tps, 1e3 / greedy_tps, greedy_gpu_ms, 100 * greedy_tps / bound);
    printf("decode at %d     %.1f tok/s (median %.3f ms/token), %.1f%% of the bound\n", n_long, long_tps, long_ms,
           100 * long_tps / bound);
    printf("decode at %d, greedy on the device  %.1f tok/s (GPU %.3f ms/step)\n", n_long, long_greedy_tps,
           long_greedy_gpu_ms);
    printf("decode no graphs   %.1f tok/s (median %.3f ms/token)\n", eager_tps, eager_ms);
    const split_ms *sps[3] = {&sp_short, &sp_long, &sp_eager};
    const char *spn[3] = {"short", "long", "no graphs"};
    printf("per token (ms)     wall     GPU    host  (queue  download+wait  argmax)\n");
    for (int i = 0; i < 3; i++)
        printf("  %-14s %7.3f %7.3f %7.3f  (%6.3f %8.3f %14.3f)\n", spn[i], sps[i]->wall, sps[i]->gpu, sps[i]->host,
               sps[i]->enqueue, sps[i]->download, sps[i]->argmax);
    printf("downloads straight into the region: %ld\n", st_end.direct_downloads);
    printf("{\"model\": \"%s\", \"backend\": \"cuda\", \"load_s\": %.3f, \"copy_bandwidth_gbs\": %.1f, "
           "\"weight_bytes_per_token\": %.0f, \"bound_tok_s\": %.1f, \"prefill_tokens\": %d, \"prefill_tok_s\": %.0f, "
           "\"prompt_tokens\": %d, \"gen_tokens\": %d, \"decode_tok_s\": %.2f, \"decode_ms_median\": %.4f, "
           "\"fraction_of_bound\": %.4f, \"long_context\": %d, \"long_decode_tok_s\": %.2f, "
           "\"long_decode_ms_median\": %.4f, \"no_graph_decode_tok_s\": %.2f, \"gpu_ms_per_token\": %.4f, "
           "\"host_ms_per_token\": %.4f, \"long_gpu_ms_per_token\": %.4f, \"long_host_ms_per_token\": %.4f, "
           "\"greedy_device_tok_s\": %.2f, \"greedy_device_gpu_ms_per_token\": %.4f, \"long_greedy_device_tok_s\": %.2f, "
           "\"long_greedy_device_gpu_ms_per_token\": %.4f}\n",
           dir, load_s, bw, wbytes, bound, n_prefill, prefill_tps, n_prompt, n_gen, short_tps, short_ms,
           short_tps / bound, n_long, long_tps, long_ms, eager_tps, sp_short.gpu, sp_short.host, sp_long.gpu,
           sp_long.host, greedy_tps, greedy_gpu_ms, long_greedy_tps, long_greedy_gpu_ms);
    dw_backend_release_range(be, region, len);
    munmap(region, len);
    dw_model_free(m);
    dw_backend_close(be);
    return 0;
}
