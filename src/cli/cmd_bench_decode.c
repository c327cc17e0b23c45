/* `driftwood bench decode`: how fast a model runs on a backend, against the bound set by the
 * device's memory bandwidth measured in the same run: prefill tok/s; decode tok/s with the
 * caller choosing each token from logits written into a registered buffer (as an actor's); decode
 * with the tokens chosen on the device (dw_session_decode_greedy); both again at a long context.
 * Random prompt tokens; no tokenizer needed. Public API only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cli/bench_util.h"
#include "cli/command.h"
#include "driftwood/backend.h"
#include "driftwood/engine.h"
#include "driftwood/model.h"

typedef struct bench_args {
    const char *model_dir, *backend;
    long n_prompt, n_gen, n_prefill, n_long, n_long_gen, threads, bw_mb;
    int interleave, json;
} bench_args;

/* What a run of decode steps measured. gpu/enqueue/download: per token, from the backend's
 * counters (0 where the backend keeps none). */
typedef struct decode_result {
    double tok_s, median_ms;
    double gpu_ms, enqueue_ms, download_ms, argmax_ms;
} decode_result;

/* The bandwidth bound: passes of the backend's bandwidth probe, the highest one counting (other
 * processes on a shared machine can only lower a measurement). */
typedef struct bound_probe {
    dw_backend *backend;
    size_t bytes;
    int reps;
} bound_probe;

static double probe_pass(const bound_probe *p, dw_error *err) {
    double g = 0;
    if (dw_backend_memory_bandwidth(p->backend, p->bytes, p->reps, &g, err) != DW_OK) return -1;
    return g;
}

/* The caller's greedy pick: the largest logit (8 independent chains), then its first index. */
static int32_t host_argmax(const float *v, int n) {
    float m[8];
    for (int j = 0; j < 8; j++) m[j] = v[0];
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) m[j] = v[i + j] > m[j] ? v[i + j] : m[j];
    for (; i < n; i++) m[0] = v[i] > m[0] ? v[i] : m[0];
    for (int j = 1; j < 8; j++) m[0] = m[j] > m[0] ? m[j] : m[0];
    int32_t next = 0;
    while (next < n - 1 && v[next] != m[0]) next++;
    return next;
}

static void random_ids(int32_t *ids, long n, int vocab, uint32_t seed) {
    for (long i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        ids[i] = (int32_t)((seed >> 8) % (uint32_t)vocab);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Prefill: n tokens into a fresh session, the best of 3 after a warm-up. */
static dw_status run_prefill(dw_model *m, long n, float *logits, double *tok_s, dw_error *err) {
    const dw_model_config *c = dw_model_get_config(m);
    dw_session *s;
    dw_session_options so = {.ctx = (int)n + 8, .max_batch = (int)n};
    dw_status st = dw_session_create(m, &so, &s, err);
    if (st) return st;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    random_ids(ids, n, c->vocab_size, 777);
    double best = 1e30;
    for (int r = 0; r < 4 && !st; r++) {
        dw_session_reset(s);
        double t0 = dw_cli_now_s();
        st = dw_session_prefill(s, ids, (int)n, logits, err);
        double t = dw_cli_now_s() - t0;
        if (r && t < best) best = t;
    }
    *tok_s = n / best;
    free(ids);
    dw_session_free(s);
    return st;
}

/* A session with room for n_prompt + n_gen tokens and n_ids random prompt ids (the first
 * n_prompt of them set); *ids is the caller's to free. */
static dw_status bench_session(dw_model *m, long n_prompt, long n_gen, long n_ids, dw_session **s, int32_t **ids,
                               dw_error *err) {
    dw_session_options so = {.ctx = (int)(n_prompt + n_gen + 8), .max_batch = n_prompt < 512 ? (int)n_prompt : 512};
    *ids = NULL;
    dw_status st = dw_session_create(m, &so, s, err);
    if (st) return st;
    if (!(*ids = malloc(sizeof(int32_t) * (size_t)n_ids))) {
        dw_session_free(*s);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "out of memory");
    }
    random_ids(*ids, n_prompt, dw_model_get_config(m)->vocab_size, 12345);
    return DW_OK;
}

/* Decode with the caller choosing tokens: prefill n_prompt, then n_gen steps, each step's logits
 * downloaded into `logits`. tok_bw (n_gen + 1 entries, or NULL): a bandwidth pass before the
 * first token and after each one, outside the timed part. */
static dw_status run_decode(dw_model *m, long n_prompt, long n_gen, float *logits, const bound_probe *probe,
                            double *tok_bw, decode_result *r, dw_error *err) {
    const dw_model_config *c = dw_model_get_config(m);
    dw_backend *b = dw_model_backend(m);
    dw_session *s;
    int32_t *ids;
    dw_status st = bench_session(m, n_prompt, n_gen, n_prompt, &s, &ids, err);
    if (st) return st;
    double *dt = malloc(sizeof(double) * (size_t)n_gen);
    if ((st = dw_session_prefill(s, ids, (int)n_prompt, logits, err))) goto out;
    if (tok_bw && (tok_bw[0] = probe_pass(probe, err)) < 0) goto fail_probe;
    dw_backend_stats st0, st1;
    dw_backend_get_stats(b, &st0);
    double total = 0, t_arg = 0;
    for (long g = 0; g < n_gen; g++) {
        double a = dw_cli_now_s();
        int32_t next = host_argmax(logits, c->vocab_size);
        double a1 = dw_cli_now_s();
        t_arg += a1 - a;
        if ((st = dw_session_decode(s, next, logits, err))) goto out;
        dt[g] = dw_cli_now_s() - a;
        total += dt[g];
        if (tok_bw && (tok_bw[g + 1] = probe_pass(probe, err)) < 0) goto fail_probe;
    }
    dw_backend_get_stats(b, &st1);
    long timed = st1.timed_steps - st0.timed_steps;
    r->gpu_ms = timed > 0 ? (st1.gpu_step_ms - st0.gpu_step_ms) / timed : 0;
    r->enqueue_ms = (st1.enqueue_s - st0.enqueue_s) * 1e3 / n_gen;
    r->download_ms = (st1.download_s - st0.download_s) * 1e3 / n_gen;
    r->argmax_ms = t_arg * 1e3 / n_gen;
    r->tok_s = n_gen / total;
    qsort(dt, (size_t)n_gen, sizeof *dt, cmp_double);
    r->median_ms = dt[n_gen / 2] * 1e3;
    goto out;
fail_probe:
    st = err->status;
out:
    free(dt), free(ids);
    dw_session_free(s);
    return st;
}

/* Decode with the tokens chosen on the device: prefill n_prompt - 1, two steps (a decode
 * recording is made on a session's second step), then n_gen timed steps. */
static dw_status run_greedy(dw_model *m, long n_prompt, long n_gen, float *logits, decode_result *r, dw_error *err) {
    dw_backend *b = dw_model_backend(m);
    dw_session *s;
    int32_t *ids; /* the prompt, 2 warm-up steps, n_gen */
    dw_status st = bench_session(m, n_prompt, n_gen, n_prompt + n_gen + 2, &s, &ids, err);
    if (st) return st;
    if (!(st = dw_session_prefill(s, ids, (int)n_prompt - 1, logits, err)) &&
        !(st = dw_session_decode_greedy(s, ids[n_prompt - 1], 2, ids + n_prompt, err))) {
        dw_backend_stats st0, st1;
        dw_backend_get_stats(b, &st0);
        double t0 = dw_cli_now_s();
        st = dw_session_decode_greedy(s, ids[n_prompt + 1], (int)n_gen, ids + n_prompt + 2, err);
        double total = dw_cli_now_s() - t0;
        dw_backend_get_stats(b, &st1);
        long timed = st1.timed_steps - st0.timed_steps;
        r->tok_s = n_gen / total;
        r->median_ms = 1e3 / r->tok_s;
        r->gpu_ms = timed > 0 ? (st1.gpu_step_ms - st0.gpu_step_ms) / timed : 0;
    }
    free(ids);
    dw_session_free(s);
    return st;
}

/* The interleaved bound: each token set against the bandwidth just around it (the highest of
 * the passes on either side, four at most); returns the ideal seconds for the n_gen tokens. */
static double interleaved_ideal_s(const double *tok_bw, long n_gen, double wbytes, double *lo, double *hi) {
    double ideal = 0;
    *lo = 1e30, *hi = 0;
    for (long g = 0; g < n_gen; g++) {
        double b = 0;
        for (long i = g - 1; i <= g + 2; i++)
            if (i >= 0 && i <= n_gen && tok_bw[i] > b) b = tok_bw[i];
        ideal += wbytes / (b * 1e9);
    }
    for (long g = 0; g <= n_gen; g++) {
        if (tok_bw[g] < *lo) *lo = tok_bw[g];
        if (tok_bw[g] > *hi) *hi = tok_bw[g];
    }
    return ideal;
}

static int parse_args(int argc, char **argv, bench_args *a) {
    *a = (bench_args){.backend = "cpu", .n_prompt = 16, .n_gen = 128, .n_prefill = 512, .n_long_gen = 128,
                      .bw_mb = 1024, .interleave = 1};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = 0;
        if (!strcmp(o, "--model") && v) a->model_dir = v, i++;
        else if (!strcmp(o, "--backend") && v) a->backend = v, i++;
        else if (!strcmp(o, "--prompt-tokens") && v) r = dw_cli_parse_long(o, v, 2, 1 << 20, &a->n_prompt), i++;
        else if (!strcmp(o, "--gen-tokens") && v) r = dw_cli_parse_long(o, v, 1, 1 << 20, &a->n_gen), i++;
        else if (!strcmp(o, "--prefill-tokens") && v) r = dw_cli_parse_long(o, v, 0, 1 << 20, &a->n_prefill), i++;
        else if (!strcmp(o, "--long") && v) r = dw_cli_parse_long(o, v, 0, 1 << 20, &a->n_long), i++;
        else if (!strcmp(o, "--long-gen-tokens") && v) r = dw_cli_parse_long(o, v, 1, 1 << 20, &a->n_long_gen), i++;
        else if (!strcmp(o, "--threads") && v) r = dw_cli_parse_long(o, v, 1, 1024, &a->threads), i++;
        else if (!strcmp(o, "--bw-mb") && v) r = dw_cli_parse_long(o, v, 64, 1 << 20, &a->bw_mb), i++;
        else if (!strcmp(o, "--json")) a->json = 1;
        else if (!strcmp(o, "--no-interleaved-bound")) a->interleave = 0;
        else return dw_cli_fail("bench decode: unexpected argument '%s'", o);
        if (r) return 1;
    }
    if (!a->model_dir) a->model_dir = dw_cli_default_model_dir();
    return 0;
}

DW_COMMAND_NAMED(bench_decode, "bench decode",
                 "bench decode [--model DIR] [--backend cpu|cuda] [--prompt-tokens N] [--gen-tokens N] "
                 "[--prefill-tokens N] [--long N] [--long-gen-tokens N] [--threads N] [--bw-mb N] [--no-interleaved-bound] [--json]",
                 "prefill and decode tok/s (host and device token choice, long context) against the "
                 "memory-bandwidth bound") {
    bench_args a;
    if (parse_args(argc, argv, &a)) return 1;
    dw_error err = {0};
    dw_backend *be = NULL;
    dw_model *model = NULL;
    float *logits = NULL;
    double *tok_bw = NULL;
    size_t logits_len = 0;
    int rc = 1;
    dw_backend_options bo = {.n_threads = (int)a.threads};
    if (dw_backend_open_with(a.backend, &bo, &be, &err)) goto fail;
    dw_backend_info info;
    dw_backend_describe(be, &info);
    int is_cpu = !strcmp(info.name, "cpu");
    double t_load0 = dw_cli_now_s();
    dw_model_options mo = {.skip_tokenizer = 1};
    if (dw_model_load(a.model_dir, be, &mo, &model, &err)) goto fail;
    double load_s = dw_cli_now_s() - t_load0;
    const dw_model_config *cfg = dw_model_get_config(model);

    /* logits land in a registered buffer, in 64 KiB pieces like a grown Wasm memory */
    const size_t piece = 64 << 10;
    logits_len = ((size_t)cfg->vocab_size * sizeof(float) + piece - 1) / piece * piece;
    logits = mmap(NULL, logits_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (logits == MAP_FAILED) {
        logits = NULL;
        dw_error_set(&err, DW_ERR_NO_MEMORY, "cannot map the logits buffer");
        goto fail;
    }
    for (size_t off = 0; off < logits_len; off += piece)
        if (dw_backend_register_range(be, (char *)logits + off, piece, &err)) goto fail;

    /* the bound: on the CPU the read bandwidth of a bw_mb buffer through the kernels' threads,
     * the best of 5 passes before the prefill and after the decode (and, interleaved, one pass
     * between tokens); on a GPU its device-to-device copy bandwidth, the median of 10 */
    bound_probe probe = {be, (size_t)a.bw_mb << 20, 1};
    if (!is_cpu) probe = (bound_probe){be, (size_t)1 << 30, 10};
    double gbs_before = 0, gbs_after = 0;
    for (int r = 0; r < (is_cpu ? 5 : 1); r++) {
        double g = probe_pass(&probe, &err);
        if (g < 0) goto fail;
        if (g > gbs_before) gbs_before = g;
    }

    double prefill_tps = 0;
    if (a.n_prefill > 0 && run_prefill(model, a.n_prefill, logits, &prefill_tps, &err))
        goto fail;
    int interleave = a.interleave && is_cpu;
    if (interleave) tok_bw = calloc((size_t)a.n_gen + 1, sizeof *tok_bw);
    decode_result dec = {0}, greedy = {0}, long_dec = {0}, long_greedy = {0};
    if (run_decode(model, a.n_prompt, a.n_gen, logits, &probe, tok_bw, &dec, &err)) goto fail;
    if (run_greedy(model, a.n_prompt, a.n_gen, logits, &greedy, &err)) goto fail;
    if (a.n_long > 0 && (run_decode(model, a.n_long, a.n_long_gen, logits, NULL, NULL, &long_dec, &err) ||
                         run_greedy(model, a.n_long, a.n_long_gen, logits, &long_greedy, &err)))
        goto fail;
    for (int r = 0; is_cpu && r < 5; r++) {
        double g = probe_pass(&probe, &err);
        if (g < 0) goto fail;
        if (g > gbs_after) gbs_after = g;
    }
    dw_backend_stats stats;
    dw_backend_get_stats(be, &stats);

    double gbs = gbs_before > gbs_after ? gbs_before : gbs_after;
    double wbytes = (double)dw_model_weight_bytes(model);
    double bound = gbs * 1e9 / wbytes;
    double il_lo = 0, il_hi = 0, il_ideal = interleave ? interleaved_ideal_s(tok_bw, a.n_gen, wbytes, &il_lo, &il_hi) : 0;
    double il_fraction = interleave ? il_ideal * dec.tok_s / a.n_gen : 0;
    double huge = is_cpu ? dw_cli_huge_mapped_fraction(a.model_dir) : -1;
    double host_ms = dec.gpu_ms > 0 ? 1e3 / dec.tok_s - dec.gpu_ms : 0;
    if (a.json) {
        printf("{\"model\": \"%s\", \"backend\": \"%s\", \"device\": \"%s\", \"kernels\": \"%s\", \"threads\": %d, "
               "\"load_s\": %.3f, \"weight_bytes_per_token\": %.0f, \"bandwidth_gbs\": %.2f, "
               "\"bandwidth_before_gbs\": %.2f, \"bandwidth_after_gbs\": %.2f, \"bound_tok_s\": %.3f, "
               "\"prefill_tokens\": %ld, \"prefill_tok_s\": %.1f, \"prompt_tokens\": %ld, \"gen_tokens\": %ld, "
               "\"decode_tok_s\": %.3f, \"decode_ms_median\": %.4f, \"fraction_of_bound\": %.4f, "
               "\"argmax_ms_per_token\": %.4f, \"gpu_ms_per_token\": %.4f, \"host_ms_per_token\": %.4f, "
               "\"launch_ms_per_token\": %.4f, \"sync_download_ms_per_token\": %.4f, "
               "\"greedy_device_tok_s\": %.3f, \"greedy_device_gpu_ms_per_token\": %.4f, \"long_context\": %ld, "
               "\"long_decode_tok_s\": %.3f, \"long_decode_ms_median\": %.4f, \"long_greedy_device_tok_s\": %.3f, "
               "\"graph_replays\": %ld, \"direct_downloads\": %ld",
               a.model_dir, info.name, info.device, info.kernels, info.n_threads, load_s, wbytes, gbs, gbs_before,
               gbs_after, bound, a.n_prefill, prefill_tps, a.n_prompt, a.n_gen, dec.tok_s, dec.median_ms,
               dec.tok_s / bound, dec.argmax_ms, dec.gpu_ms, host_ms, dec.enqueue_ms, dec.download_ms, greedy.tok_s,
               greedy.gpu_ms, a.n_long, long_dec.tok_s, long_dec.median_ms, long_greedy.tok_s, stats.graph_replays,
               stats.direct_downloads);
        if (huge >= 0) printf(", \"weights_huge_mapped_fraction\": %.3f", huge);
        if (interleave)
            printf(", \"interleaved_bandwidth_gbs\": %.2f, \"interleaved_bandwidth_min_gbs\": %.2f, "
                   "\"interleaved_bandwidth_max_gbs\": %.2f, \"interleaved_bound_tok_s\": %.3f, "
                   "\"fraction_of_interleaved_bound\": %.4f",
                   wbytes * a.n_gen / il_ideal / 1e9, il_lo, il_hi, a.n_gen / il_ideal, il_fraction);
        printf("}\n");
    } else {
        printf("model            %s (%s, %d layers, hidden %d, vocab %d)\n", a.model_dir, cfg->architecture,
               cfg->n_layers, cfg->hidden_size, cfg->vocab_size);
        printf("backend          %s: %s, kernels %s", info.name, info.device, info.kernels);
        if (is_cpu) printf(", %d threads", info.n_threads);
        printf("\nload             %.3f s\n", load_s);
        printf("bandwidth        %.2f GB/s (%s)\n", gbs,
               is_cpu ? "read; best pass before the prefill and after the decode" : "device-to-device copy");
        printf("bound            %.1f tok/s (%.3f GB of weights per token)\n", bound, wbytes / 1e9);
        if (a.n_prefill > 0) printf("prefill %-8ld %.1f tok/s\n", a.n_prefill, prefill_tps);
        printf("decode %ld+%ld    %.2f tok/s (median %.3f ms/token), %.1f%% of the bound\n", a.n_prompt, a.n_gen,
               dec.tok_s, dec.median_ms, 100 * dec.tok_s / bound);
        if (dec.gpu_ms > 0)
            printf("  per token      device %.3f ms; host %.3f ms (queue %.3f, wait + download %.3f, argmax %.3f)\n",
                   dec.gpu_ms, host_ms, dec.enqueue_ms, dec.download_ms, dec.argmax_ms);
        printf("greedy on device %.2f tok/s, %.1f%% of the bound\n", greedy.tok_s, 100 * greedy.tok_s / bound);
        if (a.n_long > 0)
            printf("at %ld in context: %.2f tok/s (median %.3f ms), greedy on device %.2f tok/s\n", a.n_long,
                   long_dec.tok_s, long_dec.median_ms, long_greedy.tok_s);
        if (huge >= 0) printf("huge pages       %.0f%% of the resident weights mapped with huge pages\n", 100 * huge);
        if (interleave)
            printf("interleaved      %.1f%% of the bound measured between tokens (single passes %.2f-%.2f GB/s)\n",
                   100 * il_fraction, il_lo, il_hi);
    }
    rc = 0;
    goto done;
fail:
    rc = dw_cli_fail("bench decode: %s", err.message);
done:
    if (logits) {
        if (be) dw_backend_release_range(be, logits, logits_len);
        munmap(logits, logits_len);
    }
    free(tok_bw);
    dw_model_free(model);
    dw_backend_close(be);
    return rc;
}
