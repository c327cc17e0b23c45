/* `driftwood bench batch`: many actors decoding at once on one model with batching on (engine.h,
 * "Batching"): for each actor count, every actor prefills its prompt (the first --shared-prefix
 * tokens common to all), all wait at a barrier, then each generates --gen-tokens tokens one call
 * at a time. Reports aggregate decode tok/s (all actors' tokens over the decode phase's wall
 * time), per-actor inter-token latency p50/p99, time to first token p50/p99 (prompt submitted to
 * its logits), KV memory at peak and prefix-cache hits — through real Wasm actors (the embedded
 * benchmark actor) and directly through the engine API, in the same run. Tokens are greedy, or
 * at --temperature drawn by the device sampler's rule (driftwood/pick.h): inside the batched step,
 * or with --guest-picks from the logits in the caller's memory, as a chat actor did before. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/bench_util.h"
#include "cli/command.h"
#include "cli/embedded_guests.h"
#include "driftwood/actor.h"
#include "driftwood/engine.h"
#include "driftwood/file.h"
#include "driftwood/model.h"
#include "driftwood/runtime.h"

#define MAX_COUNTS 16
#define MAX_ACTORS 1024

typedef struct bench_args {
    const char *model_dir, *backend, *modes;
    int counts[MAX_COUNTS], n_counts;
    long prompt, gen, shared, reps, kv_mb, step_tokens;
    long per_call; /* engine mode: tokens a decode call asks for (dw_session_decode_greedy's n) */
    long temperature_milli; /* > 0: tokens sampled at this temperature / 1000 (top-p 1, top-k 64) */
    int guest_picks, json;
} bench_args;

/* One actor's (or engine session's) run. */
typedef struct worker {
    const bench_args *a;
    int index, seed;
    dw_model *model;   /* engine mode */
    dw_actor *actor;   /* actor mode */
    pthread_barrier_t *ready, *prefilled;
    double t_start, ttft_ms, t_dec0, t_end;
    double *itl_ms;    /* [gen] */
    dw_status st;
    dw_error err;
} worker;

/* Token i of a prompt: the first `shared` from seed's upper half (the same for every actor of a
 * round), the rest from the whole seed (the benchmark actor makes the same ones). */
static int32_t prompt_id(int seed, int i, int shared, int vocab) {
    uint32_t x = i < shared ? ((uint32_t)seed >> 16) * 2654435761u + 7u : (uint32_t)seed * 2246822519u + 13u;
    x += (uint32_t)i * 3266489917u;
    x ^= x >> 15, x *= 2246822519u, x ^= x >> 13;
    return (int32_t)(x % (uint32_t)vocab);
}

/* A uniform number in [0, 1) from a xorshift64 state. */
static double unit_from(uint64_t *x) {
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return (double)(*x >> 11) * (1.0 / 9007199254740992.0);
}

static int32_t argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* The model's config.json, for sizing the KV pool before the model loads. */
static dw_status read_config(const char *dir, dw_model_config *cfg, dw_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text;
    size_t len;
    dw_status st = dw_file_read_all(path, 4u << 20, &text, &len, err);
    if (st) return st;
    st = dw_model_config_parse(path, text, cfg, err);
    free(text);
    return st;
}

static dw_status invoke(dw_actor *actor, const char *fn, const int32_t *args, int n, int32_t *result, dw_error *err) {
    dw_value in[3], out;
    for (int i = 0; i < n; i++) in[i] = (dw_value){DW_I32, {.i32 = args[i]}};
    size_t nres;
    dw_status st = dw_actor_invoke(actor, fn, in, (size_t)n, &out, 1, &nres, err);
    if (!st && out.of.i32 < 0) st = dw_error_set(err, DW_ERR_STATE, "bench actor: %s returned %d", fn, out.of.i32);
    if (!st && result) *result = out.of.i32;
    return st;
}

static void *run_worker(void *arg) {
    worker *w = arg;
    const bench_args *a = w->a;
    dw_session *s = NULL;
    int vocab = 0;
    int32_t *ids = NULL, next = 0;
    float *logits = NULL;
    const dw_device_sampling sampling = {.temperature = (float)a->temperature_milli / 1000.0f, .top_p = 1.0f};
    uint64_t draws = 0x9E3779B97F4A7C15ull * (uint64_t)(w->index + 1); /* the uniform numbers of sampling */
    if (w->model) {
        vocab = dw_model_get_config(w->model)->vocab_size;
        dw_session_options so = {.ctx = (int)(a->prompt + a->gen + 8)};
        ids = malloc(sizeof(int32_t) * (size_t)a->prompt);
        logits = malloc(sizeof(float) * (size_t)vocab);
        if (!ids || !logits) w->st = dw_error_set(&w->err, DW_ERR_NO_MEMORY, "out of memory");
        else w->st = dw_session_create(w->model, &so, &s, &w->err);
        for (int i = 0; !w->st && i < a->prompt; i++) ids[i] = prompt_id(w->seed, i, (int)a->shared, vocab);
    }
    pthread_barrier_wait(w->ready);
    w->t_start = dw_cli_now_ms();
    if (!w->st) {
        if (w->model) {
            if (!(w->st = dw_session_prefill(s, ids, (int)a->prompt, logits, &w->err))) next = argmax(logits, vocab);
        } else {
            int32_t args[3] = {(int32_t)a->prompt, w->seed, (int32_t)a->shared};
            w->st = invoke(w->actor, "llm_prefill_shared", args, 3, NULL, &w->err);
        }
    }
    w->ttft_ms = dw_cli_now_ms() - w->t_start;
    pthread_barrier_wait(w->prefilled);
    double t = w->t_dec0 = dw_cli_now_ms();
    for (long i = 0; i < a->gen && !w->st; i++) {
        if (w->model && !a->guest_picks) {
            /* --tokens-per-call tokens a call (the session stays in the scheduler's steps between
             * them); each token is given the call's time over its tokens */
            int32_t out[64];
            int k = (int)(a->gen - i < a->per_call ? a->gen - i : a->per_call);
            if (a->temperature_milli > 0) {
                double u[64];
                for (int j = 0; j < k; j++) u[j] = unit_from(&draws);
                w->st = dw_session_decode_sample(s, next, k, &sampling, u, out, &w->err);
            } else
                w->st = dw_session_decode_greedy(s, next, k, out, &w->err);
            if (!w->st) next = out[k - 1];
            double now = dw_cli_now_ms();
            for (int j = 0; j < k; j++) w->itl_ms[i + j] = (now - t) / k;
            t = now;
            i += k - 1;
            continue;
        }
        if (w->model) {
            if (!(w->st = dw_session_decode(s, next, logits, &w->err)))
                next = a->temperature_milli > 0 ? dw_pick_top_k(logits, vocab, &sampling, unit_from(&draws))
                                                : argmax(logits, vocab);
        } else {
            int32_t args[2] = {a->guest_picks, (int32_t)a->temperature_milli};
            w->st = invoke(w->actor, "llm_step", args, 2, NULL, &w->err);
        }
        double now = dw_cli_now_ms();
        w->itl_ms[i] = now - t;
        t = now;
    }
    w->t_end = t;
    dw_session_free(s);
    free(ids), free(logits);
    return NULL;
}

static double percentile(double *v, size_t n, double q) {
    if (!n) return 0;
    dw_cli_median(v, n); /* sorts */
    size_t k = (size_t)ceil(q * (double)n);
    return v[k ? k - 1 : 0];
}

typedef struct result {
    const char *mode;
    int actors;
    double decode_tok_s, prefill_tok_s, itl_p50, itl_p99, ttft_p50, ttft_p99;
    dw_batch_stats stats;
} result;

/* One measured round of n workers; fills r (one repetition). Every round has prompts of its own
 * (round_no in the seeds), so no round finds another's blocks in the prefix cache. */
static dw_status round_of(const bench_args *a, dw_model *model, dw_actor **actors, int n, int rep, result *r,
                          dw_error *err) {
    static int round_no;
    (void)rep;
    round_no++;
    worker *ws = calloc((size_t)n, sizeof *ws);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    double *itl = malloc(sizeof(double) * (size_t)n * (size_t)a->gen), *ttft = malloc(sizeof(double) * (size_t)n);
    if (!ws || !th || !itl || !ttft) {
        free(ws), free(th), free(itl), free(ttft);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "out of memory");
    }
    pthread_barrier_t ready, prefilled;
    pthread_barrier_init(&ready, NULL, (unsigned)n);
    pthread_barrier_init(&prefilled, NULL, (unsigned)n);
    dw_batch_stats before;
    dw_model_batch_reset_peak(model);
    dw_model_batch_stats(model, &before);
    for (int i = 0; i < n; i++) {
        ws[i] = (worker){.a = a, .index = i, .seed = round_no << 16 | (i + 1), .model = actors ? NULL : model,
                         .actor = actors ? actors[i] : NULL, .ready = &ready, .prefilled = &prefilled,
                         .itl_ms = itl + (size_t)i * a->gen};
        pthread_create(&th[i], NULL, run_worker, &ws[i]);
    }
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&prefilled);
    dw_status st = DW_OK;
    double t0 = INFINITY, t1 = 0, p0 = INFINITY, p1 = 0;
    for (int i = 0; i < n && !st; i++) {
        if (ws[i].st) {
            *err = ws[i].err;
            st = ws[i].st;
        }
        t0 = fmin(t0, ws[i].t_dec0), t1 = fmax(t1, ws[i].t_end);
        p0 = fmin(p0, ws[i].t_start), p1 = fmax(p1, ws[i].t_start + ws[i].ttft_ms);
        ttft[i] = ws[i].ttft_ms;
    }
    if (!st) {
        r->actors = n;
        r->decode_tok_s = (double)n * (double)a->gen / ((t1 - t0) / 1e3);
        r->prefill_tok_s = (double)n * (double)a->prompt / ((p1 - p0) / 1e3);
        r->itl_p50 = percentile(itl, (size_t)n * a->gen, 0.5);
        r->itl_p99 = percentile(itl, (size_t)n * a->gen, 0.99);
        r->ttft_p50 = percentile(ttft, (size_t)n, 0.5);
        r->ttft_p99 = percentile(ttft, (size_t)n, 0.99);
        dw_batch_stats after;
        dw_model_batch_stats(model, &after);
        r->stats = after;
        r->stats.steps -= before.steps, r->stats.rows -= before.rows;
        r->stats.shared_hits -= before.shared_hits, r->stats.prefix_tokens_reused -= before.prefix_tokens_reused;
        r->stats.evictions -= before.evictions;
    }
    free(ws), free(th), free(itl), free(ttft);
    return st;
}

static int parse_counts(const char *text, bench_args *a) {
    a->n_counts = 0;
    for (const char *p = text; *p && a->n_counts < MAX_COUNTS;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > MAX_ACTORS || (*end && *end != ',')) return 1;
        a->counts[a->n_counts++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return a->n_counts == 0;
}

static int cmp_result(const void *x, const void *y) {
    double a = ((const result *)x)->decode_tok_s, b = ((const result *)y)->decode_tok_s;
    return (a > b) - (a < b);
}

static void print_result(const bench_args *a, const result *r, int first) {
    double kv_mb = (double)r->stats.blocks_peak * (double)r->stats.block_bytes / 1048576.0;
    if (a->json) {
        printf("%s{\"mode\": \"%s\", \"actors\": %d, \"decode_tok_s\": %.1f, \"prefill_tok_s\": %.1f, \"itl_p50_ms\": %.3f, "
               "\"itl_p99_ms\": %.3f, \"ttft_p50_ms\": %.2f, \"ttft_p99_ms\": %.2f, \"kv_peak_mb\": %.2f, "
               "\"shared_block_hits\": %llu, \"prefix_tokens_reused\": %llu, \"steps\": %llu, \"tokens_per_step\": %.2f, "
               "\"evictions\": %llu}",
               first ? "" : ", ", r->mode, r->actors, r->decode_tok_s, r->prefill_tok_s, r->itl_p50, r->itl_p99, r->ttft_p50,
               r->ttft_p99, kv_mb, (unsigned long long)r->stats.shared_hits, (unsigned long long)r->stats.prefix_tokens_reused,
               (unsigned long long)r->stats.steps, r->stats.steps ? (double)r->stats.rows / (double)r->stats.steps : 0.0,
               (unsigned long long)r->stats.evictions);
    } else {
        printf("  %-7s %6d %12.1f %10.3f %10.3f %10.2f %10.2f %10.1f %8llu %8.1f\n", r->mode, r->actors, r->decode_tok_s,
               r->itl_p50, r->itl_p99, r->ttft_p50, r->ttft_p99, kv_mb, (unsigned long long)r->stats.shared_hits,
               r->stats.steps ? (double)r->stats.rows / (double)r->stats.steps : 0.0);
    }
    fflush(stdout);
}

DW_COMMAND_NAMED(bench_batch, "bench batch",
                 "bench batch [--model DIR] [--backend cpu|cuda] [--actors 1,4,16,64] [--prompt-tokens N] [--gen-tokens N] "
                 "[--shared-prefix N] [--mode engine,actors] [--guest-picks] [--temperature T] [--tokens-per-call N] [--kv-memory MB] [--step-tokens N] [--reps N] [--json]",
                 "many actors decoding at once with batching: aggregate tok/s, inter-token latency, time to first token") {
    bench_args a = {.backend = "cpu", .modes = "engine,actors", .prompt = 128, .gen = 128, .reps = 3, .per_call = 1};
    parse_counts("1,4,16,64", &a);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--model") && v) a.model_dir = v, i++;
        else if (!strcmp(o, "--backend") && v) a.backend = v, i++;
        else if (!strcmp(o, "--mode") && v) a.modes = v, i++;
        else if (!strcmp(o, "--actors") && v) {
            if (parse_counts(v, &a)) return dw_cli_fail("bench batch: --actors wants counts in [1, %d] separated by commas, not '%s'", MAX_ACTORS, v);
            i++;
        } else if (!strcmp(o, "--prompt-tokens") && v) { if (dw_cli_parse_long(o, v, 1, 8192, &a.prompt)) return 1; i++; }
        else if (!strcmp(o, "--gen-tokens") && v) { if (dw_cli_parse_long(o, v, 1, 8192, &a.gen)) return 1; i++; }
        else if (!strcmp(o, "--shared-prefix") && v) { if (dw_cli_parse_long(o, v, 0, 8192, &a.shared)) return 1; i++; }
        else if (!strcmp(o, "--kv-memory") && v) { if (dw_cli_parse_long(o, v, 1, 1 << 20, &a.kv_mb)) return 1; i++; }
        else if (!strcmp(o, "--step-tokens") && v) { if (dw_cli_parse_long(o, v, 1, 65536, &a.step_tokens)) return 1; i++; }
        else if (!strcmp(o, "--tokens-per-call") && v) { if (dw_cli_parse_long(o, v, 1, 64, &a.per_call)) return 1; i++; }
        else if (!strcmp(o, "--reps") && v) { if (dw_cli_parse_long(o, v, 1, 100, &a.reps)) return 1; i++; }
        else if (!strcmp(o, "--guest-picks")) a.guest_picks = 1;
        else if (!strcmp(o, "--temperature") && v) {
            double t;
            if (dw_cli_parse_double(o, v, &t) || !(t >= 0 && t <= 2)) return dw_cli_fail("bench batch: --temperature must lie in [0, 2]");
            a.temperature_milli = lround(t * 1000.0);
            i++;
        }
        else if (!strcmp(o, "--json")) a.json = 1;
        else return dw_cli_fail("bench batch: unknown or incomplete option '%s'", o);
    }
    if (a.per_call > 1 && (a.guest_picks || strstr(a.modes, "actors")))
        return dw_cli_fail("bench batch: --tokens-per-call is for --mode engine with tokens chosen on the device");
    if (a.shared > a.prompt) return dw_cli_fail("bench batch: --shared-prefix (%ld) exceeds --prompt-tokens (%ld)", a.shared, a.prompt);
    if (!a.model_dir) a.model_dir = dw_cli_default_model_dir();
    int max_actors = 0;
    for (int i = 0; i < a.n_counts; i++) max_actors = a.counts[i] > max_actors ? a.counts[i] : max_actors;

    dw_error err = {0};
    dw_runtime *rt = NULL;
    dw_module *mod = NULL;
    dw_actor **actors = calloc((size_t)max_actors, sizeof *actors);
    dw_model *model;
    dw_tokenizer *tok;
    int rc = 1;
    /* KV room for every actor's whole context, twice over, unless told */
    long per_actor_tokens = a.prompt + a.gen + 16;
    dw_model_use_options uo = {.batching = 1, .batch = {.step_tokens = (int)a.step_tokens}};
    size_t wasm_len;
    const unsigned char *wasm = dw__embedded_bench_actor(&wasm_len);
    if (dw_runtime_create(NULL, &rt, &err) || dw_runtime_register_model_with(rt, "default", a.model_dir, &uo, &err))
        goto fail;
    if (a.kv_mb) {
        ((dw_model_use_options *)dw_runtime_model_options(rt, "default"))->batch.kv_memory = (uint64_t)a.kv_mb << 20;
    } else {
        /* bytes per token: layers x K,V x kv heads x head dim x bf16, from config.json */
        dw_model_config cfg;
        if (read_config(a.model_dir, &cfg, &err)) goto fail;
        uint64_t per_token = (uint64_t)cfg.n_layers * 2u * (uint64_t)cfg.n_kv_heads * (uint64_t)cfg.head_dim * 2u;
        uint64_t want = per_token * (uint64_t)per_actor_tokens * (uint64_t)max_actors * 2u;
        ((dw_model_use_options *)dw_runtime_model_options(rt, "default"))->batch.kv_memory = want < (64u << 20) ? 64u << 20 : want;
    }
    if (dw_runtime_model(rt, "default", a.backend, &model, &tok, NULL, &err) ||
        dw_module_load_bytes(rt, "bench_actor.wasm", wasm, wasm_len, &mod, &err))
        goto fail;

    if (!a.json)
        printf("bench batch on %s, model %s: %ld-token prompts (%ld shared), %ld generated each (%ld a call), %s, %s, median of %ld\n"
               "  %-7s %6s %12s %10s %10s %10s %10s %10s %8s %8s\n",
               a.backend, a.model_dir, a.prompt, a.shared, a.gen, a.per_call, a.guest_picks ? "logits to the guest" : "tokens chosen on the device",
               a.temperature_milli ? "sampled" : "greedy", a.reps, "mode", "actors", "decode tok/s", "itl p50", "itl p99", "ttft p50", "ttft p99", "KV MB", "shared",
               "tok/step");
    else
        printf("{\"model\": \"%s\", \"backend\": \"%s\", \"prompt_tokens\": %ld, \"gen_tokens\": %ld, \"shared_prefix\": %ld, "
               "\"guest_picks\": %d, \"temperature\": %.3f, \"tokens_per_call\": %ld, \"reps\": %ld, \"results\": [",
               a.model_dir, a.backend, a.prompt, a.gen, a.shared, a.guest_picks, (double)a.temperature_milli / 1000.0,
               a.per_call, a.reps);
    int first = 1;
    for (int pass = 0; pass < 2; pass++) {
        const char *mode = pass == 0 ? "engine" : "actors";
        if (!strstr(a.modes, mode)) continue;
        int use_actors = pass == 1;
        if (use_actors) {
            dw_actor_options ao = {.backend = a.backend};
            for (int i = 0; i < max_actors; i++) {
                int32_t args[1] = {(int32_t)per_actor_tokens};
                if (dw_actor_create(rt, mod, &ao, &actors[i], &err) || invoke(actors[i], "llm_setup", args, 1, NULL, &err))
                    goto fail;
            }
        }
        /* warm-up (not reported): a short round of the largest count */
        bench_args warm = a;
        warm.prompt = a.prompt < 16 ? a.prompt : 16, warm.gen = 4, warm.shared = 0;
        result wr;
        if (round_of(&warm, model, use_actors ? actors : NULL, max_actors, 99, &wr, &err)) goto fail;
        for (int c = 0; c < a.n_counts; c++) {
            result reps[100];
            for (int r = 0; r < a.reps; r++) {
                if (round_of(&a, model, use_actors ? actors : NULL, a.counts[c], r, &reps[r], &err)) goto fail;
                reps[r].mode = mode;
            }
            qsort(reps, (size_t)a.reps, sizeof reps[0], cmp_result);
            print_result(&a, &reps[a.reps / 2], first);
            first = 0;
        }
        if (use_actors)
            for (int i = 0; i < max_actors; i++) dw_actor_free(actors[i]), actors[i] = NULL;
    }
    if (a.json) printf("]}\n");
    rc = 0;
    goto done;
fail:
    if (a.json) printf("]}\n");
    dw_cli_fail("bench batch: %s", err.message);
done:
    for (int i = 0; i < max_actors; i++) dw_actor_free(actors[i]);
    free(actors);
    dw_module_free(mod);
    dw_runtime_free(rt);
    return rc;
}
