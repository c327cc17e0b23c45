/* Batching (engine.h, "Batching"), on the CPU and on CUDA: a session's logits and its tokens
 * chosen on the device (greedy or sampled) are bit-identical alone and among 15 others joining
 * and leaving mid-run (bf16 and 4-bit); sampled tokens follow the rule of driftwood/pick.h;
 * forks continue exactly as their parent; eviction to host memory and back changes nothing; a
 * full pool gives a clear error; a session never sees another's KV; sessions with a common
 * prompt share its blocks and compute them once; KV export/import of paged sessions. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driftwood/backend.h"
#include "driftwood/engine.h"
#include "driftwood/model.h"
#include "test.h"
#include "test_cuda.h"
#include "test_engine_util.h"

#define N_SESSIONS 16
#define GEN 64

static int dir_counter;

static void sample_ids(int32_t *ids, int n, int vocab, int seed) {
    uint32_t x = 2166136261u ^ (uint32_t)seed;
    for (int i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        ids[i] = (int32_t)((x >> 8) % (uint32_t)vocab);
    }
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* A small model whose matrices every kernel takes (k a multiple of 64: quantizable). */
static tmodel_spec batch_spec(void) {
    return (tmodel_spec){.arch = "LlamaForCausalLM", .vocab = 97, .hidden = 64, .inter = 128, .layers = 2,
                         .heads = 4, .kv_heads = 2, .head_dim = 16, .max_pos = 512, .dtype = DW_DTYPE_BF16, .seed = 5};
}

/* Writes the test model (4-bit when bits == 4) and returns its directory in dir. */
static dw_status write_model(char *dir, size_t size, int bits, dw_error *err) {
    char raw[512];
    snprintf(raw, sizeof raw, "%s/batch-model-%d", dw_test_tmp_dir(), dir_counter++);
    tmodel_spec spec = batch_spec();
    tmodel tm;
    dw_status st = tmodel_write(&spec, raw, 1, &tm, err);
    if (st) return st;
    tmodel_free(&tm);
    if (bits == 0) {
        snprintf(dir, size, "%s", raw);
        return DW_OK;
    }
    snprintf(dir, size, "%s-q%d", raw, bits);
    return dw_model_quantize(raw, dir, bits, 64, err);
}

typedef struct world {
    dw_backend *be;
    dw_model *m;
} world;

static dw_status world_open(world *w, const char *backend, const char *dir, const dw_batch_options *bo, dw_error *err) {
    memset(w, 0, sizeof *w);
    dw_status st = dw_backend_open(backend, &w->be, err);
    if (!st) st = dw_model_load(dir, w->be, NULL, &w->m, err);
    if (!st) st = dw_model_batching_start(w->m, bo, err);
    return st;
}

static void world_close(world *w) {
    dw_model_free(w->m);
    dw_backend_close(w->be);
}

/* The uniform numbers of sampled runs: a fixed sequence per session (u[t] for token t). */
static double unit_at(int session, int t) {
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(session * 1000 + t + 1);
    x ^= x >> 31, x *= 0xBF58476D1CE4E5B9ull, x ^= x >> 29;
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

/* Sampled runs' settings: top-k 40 of the 97-token vocabulary, top-p 0.9. */
static const dw_device_sampling run_sampling = {.temperature = 0.8f, .top_p = 0.9f, .top_k = 40};

/* ---- one session's run: a prompt, then GEN tokens: logits to the host (the host picks) for even
 * sessions, on the device for odd ones in uneven pieces, greedy (index % 4 == 1) or sampled
 * (index % 4 == 3). */
typedef struct run {
    world *w;
    int index, prompt_len, gen;
    int32_t prompt[200];
    float *logits;        /* [gen + 1, vocab] for host-chosen runs */
    int32_t tokens[GEN];
    pthread_barrier_t *start; /* NULL: start at once */
    int start_after;     /* wait until this many steps have run (joins mid-run) */
    dw_status st;
    dw_error err;
} run;

static void *run_session(void *arg) {
    run *r = arg;
    const int V = dw_model_get_config(r->w->m)->vocab_size;
    dw_session *s = NULL;
    if (r->start) pthread_barrier_wait(r->start);
    for (;;) { /* join when the others have run a while */
        dw_batch_stats bs;
        dw_model_batch_stats(r->w->m, &bs);
        if (bs.steps >= (uint64_t)r->start_after) break;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    if ((r->st = dw_session_create(r->w->m, NULL, &s, &r->err))) return NULL;
    if ((r->st = dw_session_prefill(s, r->prompt, r->prompt_len, r->logits, &r->err))) goto out;
    int32_t next = argmax(r->logits, V);
    if (r->index % 2 == 0) {
        for (int t = 0; t < r->gen; t++) {
            r->tokens[t] = next;
            if ((r->st = dw_session_decode(s, next, r->logits + (size_t)(t + 1) * V, &r->err))) goto out;
            next = argmax(r->logits + (size_t)(t + 1) * V, V);
        }
    } else {
        r->tokens[0] = next;
        for (int done = 0; done < r->gen - 1;) {
            int piece = 1 + (r->index + done) % 7;
            if (piece > r->gen - 1 - done) piece = r->gen - 1 - done;
            if (r->index % 4 == 1)
                r->st = dw_session_decode_greedy(s, r->tokens[done], piece, r->tokens + done + 1, &r->err);
            else {
                double u[8];
                for (int j = 0; j < piece; j++) u[j] = unit_at(r->index, done + 1 + j);
                r->st = dw_session_decode_sample(s, r->tokens[done], piece, &run_sampling, u, r->tokens + done + 1, &r->err);
            }
            if (r->st) goto out;
            done += piece;
        }
    }
out:
    dw_session_free(s);
    return NULL;
}

static void setup_runs(run *runs, int count, world *w, int V) {
    for (int i = 0; i < count; i++) {
        run *r = &runs[i];
        memset(r, 0, sizeof *r);
        r->w = w;
        r->index = i;
        r->prompt_len = 3 + (i * 37) % 150; /* different lengths, some past a block, some long chunks */
        r->gen = GEN - (i % 3) * 20;        /* some leave early */
        sample_ids(r->prompt, r->prompt_len, V, 100 + i);
        r->logits = calloc((size_t)(GEN + 1) * V, sizeof(float));
        r->start_after = (i % 4) * 5;       /* some join after others have run steps */
    }
}

static void batch_invariance(const char *backend, int bits, int *dw_test_failed_) {
    dw_error err = {0};
    char dir[600];
    CHECK_OK(write_model(dir, sizeof dir, bits, &err));
    const int V = batch_spec().vocab;
    static run alone[N_SESSIONS], together[N_SESSIONS];
    dw_batch_options bo = {.kv_memory = 64u << 20, .step_tokens = 64};

    world w;
    CHECK_OK(world_open(&w, backend, dir, &bo, &err));
    setup_runs(alone, N_SESSIONS, &w, V);
    for (int i = 0; i < N_SESSIONS; i++) {
        alone[i].start_after = 0;
        run_session(&alone[i]);
        CHECK_OK((err = alone[i].err, alone[i].st));
    }
    world_close(&w);

    CHECK_OK(world_open(&w, backend, dir, &bo, &err));
    setup_runs(together, N_SESSIONS, &w, V);
    pthread_t th[N_SESSIONS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N_SESSIONS);
    for (int i = 0; i < N_SESSIONS; i++) together[i].start = &start, pthread_create(&th[i], NULL, run_session, &together[i]);
    for (int i = 0; i < N_SESSIONS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    dw_batch_stats bs;
    dw_model_batch_stats(w.m, &bs);
    world_close(&w);

    for (int i = 0; i < N_SESSIONS; i++) {
        CHECK_OK((err = together[i].err, together[i].st));
        CHECK_MSG(!memcmp(alone[i].tokens, together[i].tokens, sizeof(int32_t) * (size_t)alone[i].gen),
                  "session %d: %s tokens differ alone and batched", i, i % 4 == 3 ? "sampled" : "greedy");
        if (i % 2 == 0)
            for (int t = 0; t <= alone[i].gen; t++)
                CHECK_MSG(!memcmp(alone[i].logits + (size_t)t * V, together[i].logits + (size_t)t * V, sizeof(float) * V),
                          "session %d: logits of step %d differ alone and batched", i, t);
        free(alone[i].logits), free(together[i].logits);
    }
    /* the sessions did share steps, and prompts did run in chunks beside decodes */
    CHECK_MSG(bs.max_rows > 8, "at most %llu tokens ran in one step", (unsigned long long)bs.max_rows);
    CHECK(bs.steps < bs.rows);
}

TEST(batch_cpu_bf16_sessions_alone_and_together_are_bit_identical) { batch_invariance("cpu", 0, dw_test_failed_); }
TEST(batch_cpu_4bit_sessions_alone_and_together_are_bit_identical) { batch_invariance("cpu", 4, dw_test_failed_); }

TEST(cuda_batch_bf16_sessions_alone_and_together_are_bit_identical) {
    SKIP_WITHOUT_CUDA();
    batch_invariance("cuda", 0, dw_test_failed_);
}

TEST(cuda_batch_4bit_sessions_alone_and_together_are_bit_identical) {
    SKIP_WITHOUT_CUDA();
    batch_invariance("cuda", 4, dw_test_failed_);
}

/* ---- sampled decoding follows the rule ------------------------------------------------------------ */

/* Two sessions of one prompt: one downloads each step's logits and applies dw_pick_top_k on the
 * host, the other decodes with dw_session_decode_sample in pieces; their tokens must agree, under
 * several settings, with and without batching. The draws must also leave the argmax often
 * (otherwise nothing was sampled). */
static void sampled_follows_the_rule(const char *backend, int batching, int *dw_test_failed_) {
    dw_error err = {0};
    char dir[600];
    CHECK_OK(write_model(dir, sizeof dir, 0, &err));
    const int V = batch_spec().vocab, gen = 40;
    dw_batch_options bo = {.kv_memory = 16u << 20, .step_tokens = 64};
    world w;
    if (batching) CHECK_OK(world_open(&w, backend, dir, &bo, &err));
    else {
        memset(&w, 0, sizeof w);
        CHECK_OK(dw_backend_open(backend, &w.be, &err));
        CHECK_OK(dw_model_load(dir, w.be, NULL, &w.m, &err));
    }
    static const dw_device_sampling cases[] = {
        {.temperature = 1.0f, .top_p = 1.0f, .top_k = 0},
        {.temperature = 0.7f, .top_p = 0.8f, .top_k = 20},
        {.temperature = 1.5f, .top_p = 0.95f, .top_k = 64},
        {.temperature = 0.3f, .top_p = 1.0f, .top_k = 3},
    };
    int32_t prompt[30], by_host[41], on_device[41];
    float *logits = malloc(sizeof(float) * V);
    double u[41];
    int left_argmax = 0;
    for (int c = 0; c < 4; c++) {
        sample_ids(prompt, 30, V, 7 + c);
        for (int t = 0; t <= gen; t++) u[t] = unit_at(50 + c, t);
        dw_session *a = NULL, *b = NULL;
        CHECK_OK(dw_session_create(w.m, NULL, &a, &err));
        CHECK_OK(dw_session_create(w.m, NULL, &b, &err));
        CHECK_OK(dw_session_prefill(a, prompt, 30, logits, &err));
        by_host[0] = dw_pick_top_k(logits, V, &cases[c], u[0]);
        for (int t = 1; t <= gen; t++) {
            CHECK_OK(dw_session_decode(a, by_host[t - 1], logits, &err));
            by_host[t] = dw_pick_top_k(logits, V, &cases[c], u[t]);
            left_argmax += by_host[t] != argmax(logits, V);
        }
        CHECK_OK(dw_session_prefill(b, prompt, 30, NULL, &err));
        on_device[0] = by_host[0];
        for (int done = 0; done < gen;) {
            int piece = 1 + (done + c) % 9;
            if (piece > gen - done) piece = gen - done;
            CHECK_OK(dw_session_decode_sample(b, on_device[done], piece, &cases[c], u + done + 1, on_device + done + 1, &err));
            done += piece;
        }
        for (int t = 0; t <= gen; t++)
            CHECK_MSG(on_device[t] == by_host[t], "case %d token %d: the device drew %d, the rule on the logits %d", c, t,
                      on_device[t], by_host[t]);
        CHECK(dw_session_n_tokens(a) == dw_session_n_tokens(b));
        dw_session_free(a);
        dw_session_free(b);
    }
    CHECK_MSG(left_argmax > 20, "only %d of 160 draws left the argmax", left_argmax);
    /* settings out of range are refused, naming them, and change nothing */
    dw_session *s = NULL;
    CHECK_OK(dw_session_create(w.m, NULL, &s, &err));
    CHECK_OK(dw_session_prefill(s, prompt, 5, NULL, &err));
    dw_device_sampling bad = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 65};
    int32_t out[2];
    CHECK(dw_session_decode_sample(s, 1, 2, &bad, u, out, &err) == DW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "top_k"));
    double bad_u[2] = {0.5, 1.0};
    CHECK(dw_session_decode_sample(s, 1, 2, &cases[0], bad_u, out, &err) == DW_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "token 1"));
    CHECK(dw_session_n_tokens(s) == 5);
    dw_session_free(s);
    free(logits);
    world_close(&w);
}

TEST(batch_cpu_sampled_tokens_follow_the_rule_on_the_logits) { sampled_follows_the_rule("cpu", 1, dw_test_failed_); }
TEST(engine_cpu_sampled_tokens_follow_the_rule_without_batching) { sampled_follows_the_rule("cpu", 0, dw_test_failed_); }

TEST(cuda_batch_sampled_tokens_follow_the_rule_on_the_logits) {
    SKIP_WITHOUT_CUDA();
    sampled_follows_the_rule("cuda", 1, dw_test_failed_);
}

TEST(cuda_sampled_tokens_follow_the_rule_without_batching) {
    SKIP_WITHOUT_CUDA();
    sampled_follows_the_rule("cuda", 0, dw_test_failed_);
}

/* ---- forks, eviction, limits, isolation, shared prefixes ---------------------------------------- */

static dw_status greedy(dw_session *s, int32_t first, int n, int32_t *out, dw_error *err) {
    return dw_session_decode_greedy(s, first, n, out, err);
}

TEST(batch_fork_continues_exactly_as_its_parent) {
    dw_error err = {0};
    char dir[600];
    CHECK_OK(write_model(dir, sizeof dir, 0, &err));
    world w;
    CHECK_OK(world_open(&w, "cpu", dir, NULL, &err));
    const int V = batch_spec().vocab;
    int32_t prompt[40], a[30], b[30], c[30];
    sample_ids(prompt, 40, V, 3);
    float *logits = malloc(sizeof(float) * V);
    dw_session *parent, *child, *fresh;
    CHECK_OK(dw_session_create(w.m, NULL, &parent, &err));
    CHECK_OK(dw_session_prefill(parent, prompt, 37, logits, &err)); /* mid-block: the fork shares a partial block */
    CHECK_OK(dw_session_fork(parent, &child, &err));
    CHECK(dw_session_n_tokens(child) == 37);
    CHECK_OK(greedy(parent, prompt[37], 30, a, &err)); /* the parent writes first: copy on write */
    CHECK_OK(greedy(child, prompt[37], 30, b, &err));
    CHECK_OK(dw_session_create(w.m, NULL, &fresh, &err));
    CHECK_OK(dw_session_prefill(fresh, prompt, 37, logits, &err));
    CHECK_OK(greedy(fresh, prompt[37], 30, c, &err));
    CHECK(!memcmp(a, b, sizeof a));
    CHECK(!memcmp(a, c, sizeof a));
    /* and a different continuation of the child leaves the parent's tokens alone */
    CHECK(!memcmp(dw_session_tokens(child), prompt, sizeof(int32_t) * 37));
    dw_batch_stats bs;
    dw_model_batch_stats(w.m, &bs);
    CHECK(bs.cow_copies >= 1);
    dw_session_free(parent), dw_session_free(child), dw_session_free(fresh);
    free(logits);
    world_close(&w);
}

/* Runs 4 sessions in turns (prompt, then greedy pieces), returns their tokens. */
static dw_status take_turns(world *w, int32_t out[4][48], dw_error *err) {
    const int V = batch_spec().vocab;
    dw_session *s[4] = {0};
    float *logits = malloc(sizeof(float) * V);
    int32_t next[4];
    dw_status st = DW_OK;
    for (int i = 0; i < 4 && !st; i++) {
        int32_t prompt[70];
        sample_ids(prompt, 70, V, 40 + i);
        if (!(st = dw_session_create(w->m, NULL, &s[i], err)) && !(st = dw_session_prefill(s[i], prompt, 60 + i, logits, err)))
            next[i] = argmax(logits, V);
    }
    for (int turn = 0; turn < 4 && !st; turn++)
        for (int i = 0; i < 4 && !st; i++) {
            if (!(st = greedy(s[i], next[i], 12, out[i] + turn * 12, err))) next[i] = out[i][turn * 12 + 11];
        }
    for (int i = 0; i < 4; i++) dw_session_free(s[i]);
    free(logits);
    return st;
}

TEST(batch_eviction_to_host_and_back_continues_bit_identically) {
    dw_error err = {0};
    char dir[600];
    CHECK_OK(write_model(dir, sizeof dir, 0, &err));
    static int32_t roomy[4][48], tight[4][48];
    world w;
    CHECK_OK(world_open(&w, "cpu", dir, NULL, &err));
    CHECK_OK(take_turns(&w, roomy, &err));
    world_close(&w);
    /* room for about two sessions: every turn evicts someone */
    dw_batch_stats probe;
    CHECK_OK(world_open(&w, "cpu", dir, NULL, &err));
    dw_model_batch_stats(w.m, &probe);
    world_close(&w);
    dw_batch_options bo = {.kv_memory = probe.block_bytes * 10};
    CHECK_OK(world_open(&w, "cpu", dir, &bo, &err));
    CHECK_OK(take_turns(&w, tight, &err));
    dw_batch_stats bs;
    dw_model_batch_stats(w.m, &bs);
    world_close(&w);
    CHECK_MSG(bs.evictions >= 4 && bs.restores >= 4, "%llu evictions, %llu restores", (unsigned long long)bs.evictions,
              (unsigned long long)bs.restores);
    CHECK(!memcmp(roomy, tight, sizeof roomy));
}

TEST(batch_full_pool_fails_with_a_clear_error_and_the_session_stays_usable) {
    dw_error err = {0};
    char dir[600];
    CHECK_OK(write_model(dir, sizeof dir, 0, &err));
    world w;
    dw_batch_stats probe;
    CHECK_OK(world_open(&w, "cpu", dir, NULL, &err));
    dw_model_batch_stats(w.m, &probe);
    world_close(&w);
    dw_batch_options bo = {.kv_memory = probe.block_bytes * 3}; /* 48 tokens */
    CHECK_OK(world_open(&w, "cpu", dir, &bo, &err));
    const int V = batch_spec().vocab;
    int32_t prompt[100];
    sample_ids(prompt, 100, V, 8);
    float *logits = malloc(sizeof(float) * V);
    dw_session *s;
    CHECK_OK(dw_session_create(w.m, NULL, &s, &err));
    dw_status st = dw_session_prefill(s, prompt, 100, logits, &err);
    CHECK(st == DW_ERR_LIMIT);
    CHECK_MSG(strstr(err.message, "KV pool is full") != NULL, "message: %s", err.message);
    CHECK(dw_session_n_tokens(s) < 100);
    CHECK_OK(dw_session_truncate(s, 0, &err));
    CHECK_OK(dw_session_prefill(s, prompt, 40, logits, &err)); /* fits: works after the failure */
    dw_session_free(s);
    free(logits);
    world_close(&w);
}

TEST(batch_a_session_never_sees_another_sessions_kv) {
    dw_error err = {0};
    char dir[600];
    CHECK_OK(write_model(dir, sizeof dir, 0, &err));
    const int V = batch_spec().vocab;
    int32_t secret[64], mine[64];
    sample_ids(secret, 64, V, 77);
    memcpy(mine, secret, sizeof mine);
    mine[20] = (secret[20] + 1) % V; /* same start, differs inside the second block */
    float *want = malloc(sizeof(float) * V), *got = malloc(sizeof(float) * V);
    int32_t want_toks[20], got_toks[20];
    world w;
    CHECK_OK(world_open(&w, "cpu", dir, NULL, &err));
    dw_session *b;
    CHECK_OK(dw_session_create(w.m, NULL, &b, &err));
    CHECK_OK(dw_session_prefill(b, mine, 50, want, &err));
    CHECK_OK(greedy(b, mine[50], 20, want_toks, &err));
    dw_session_free(b);
    world_close(&w);

    /* Another session fills the pool with its secret, frees half of it, stays alive with the rest;
     * ours then takes recycled blocks, and must see only its own tokens. */
    dw_batch_stats probe;
    CHECK_OK(world_open(&w, "cpu", dir, NULL, &err));
    dw_model_batch_stats(w.m, &probe);
    world_close(&w);
    dw_batch_options bo = {.kv_memory = probe.block_bytes * 12};
    CHECK_OK(world_open(&w, "cpu", dir, &bo, &err));
    dw_session *a, *a2;
    CHECK_OK(dw_session_create(w.m, NULL, &a, &err));
    CHECK_OK(dw_session_prefill(a, secret, 64, got, &err));
    CHECK_OK(dw_session_create(w.m, NULL, &a2, &err));
    CHECK_OK(dw_session_prefill(a2, secret, 64, got, &err)); /* shares a's blocks */
    dw_session_free(a);
    CHECK_OK(dw_session_create(w.m, NULL, &b, &err));
    CHECK_OK(dw_session_prefill(b, mine, 50, got, &err));
    CHECK_OK(greedy(b, mine[50], 20, got_toks, &err));
    CHECK(!memcmp(want, got, sizeof(float) * V));
    CHECK(!memcmp(want_toks, got_toks, sizeof want_toks));
    dw_batch_stats bs;
    dw_model_batch_stats(w.m, &bs);
    CHECK_MSG(bs.shared_hits == 3 + 1, "%llu shared blocks (want a2 to take the first 3 and b its first one)", (unsigned long long)bs.shared_hits);
    dw_session_free(b), dw_session_free(a2);
    free(want), free(got);
    world_close(&w);
}

typedef struct prefix_run {
    world *w;
    int32_t prompt[300];
    int n;
    float *logits;
    dw_status st;
    dw_error err;
    dw_session *s;
} prefix_run;

static void *prefix_session(void *arg) {
    prefix_run *r = arg;
    if (!(r->st = dw_session_create(r->w->m, NULL, &r->s, &r->err))) r->st = dw_session_prefill(r->s, r->prompt, r->n, r->logits, &r->err);
    return NULL;
}

TEST(batch_sessions_with_a_common_prompt_share_its_blocks_and_compute_it_once) {
    dw_error err = {0};
    char dir[600];
    CHECK_OK(write_model(dir, sizeof dir, 0, &err));
    const int V = batch_spec().vocab, n_sys = 200, n = 8;
    int32_t system[200];
    sample_ids(system, n_sys, V, 55);
    static prefix_run runs[8], alone;
    world w;
    CHECK_OK(world_open(&w, "cpu", dir, NULL, &err));
    pthread_t th[8];
    for (int i = 0; i < n; i++) {
        runs[i].w = &w;
        memcpy(runs[i].prompt, system, sizeof system);
        sample_ids(runs[i].prompt + n_sys, 20, V, 900 + i);
        runs[i].n = n_sys + 20;
        runs[i].logits = malloc(sizeof(float) * V);
        pthread_create(&th[i], NULL, prefix_session, &runs[i]);
    }
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    dw_batch_stats bs;
    dw_model_batch_stats(w.m, &bs);
    for (int i = 0; i < n; i++) CHECK_OK((err = runs[i].err, runs[i].st));
    /* 12 full blocks of the system prompt stored once; each session: the rest (8 + 20 tokens, 2 blocks) */
    const uint64_t shared_blocks = n_sys / 16, own = 2;
    CHECK_MSG(bs.blocks_used <= shared_blocks + n * own, "%llu blocks used", (unsigned long long)bs.blocks_used);
    CHECK_MSG(bs.prefix_tokens_reused == (uint64_t)(n - 1) * shared_blocks * 16, "%llu prompt tokens reused",
              (unsigned long long)bs.prefix_tokens_reused);
    /* the first computes its whole prompt, the others only what follows the shared blocks */
    const uint64_t computed = (uint64_t)n_sys + 20 + (uint64_t)(n - 1) * (n_sys - shared_blocks * 16 + 20);
    CHECK_MSG(bs.prefill_rows == computed, "%llu prompt tokens computed, want %llu", (unsigned long long)bs.prefill_rows,
              (unsigned long long)computed);
    for (int i = 0; i < n; i++) dw_session_free(runs[i].s);
    world_close(&w);
    /* and each one's logits are those of its prompt run alone */
    for (int i = 0; i < n; i++) {
        CHECK_OK(world_open(&w, "cpu", dir, NULL, &err));
        alone = runs[i];
        alone.logits = malloc(sizeof(float) * V);
        prefix_session(&alone);
        CHECK_OK((err = alone.err, alone.st));
        CHECK_MSG(!memcmp(alone.logits, runs[i].logits, sizeof(float) * V), "session %d", i);
        dw_session_free(alone.s);
        free(alone.logits), free(runs[i].logits);
        world_close(&w);
    }
}

TEST(batch_kv_export_and_import_of_paged_sessions_continue_bit_identically) {
    dw_error err = {0};
    char dir[600];
    CHECK_OK(write_model(dir, sizeof dir, 0, &err));
    world w;
    CHECK_OK(world_open(&w, "cpu", dir, NULL, &err));
    const dw_model_config *c = dw_model_get_config(w.m);
    const int V = c->vocab_size, n = 45;
    int32_t ids[60];
    sample_ids(ids, 60, V, 12);
    float *la = malloc(sizeof(float) * V), *lb = malloc(sizeof(float) * V);
    dw_session *a, *b;
    CHECK_OK(dw_session_create(w.m, NULL, &a, &err));
    CHECK_OK(dw_session_create(w.m, NULL, &b, &err));
    CHECK_OK(dw_session_prefill(a, ids, n, la, &err));
    size_t per = (size_t)c->n_kv_heads * n * c->head_dim;
    void *k[2], *v[2];
    for (int l = 0; l < c->n_layers; l++) {
        k[l] = malloc(per * 4), v[l] = malloc(per * 4);
        CHECK_OK(dw_session_kv_export(a, l, DW_DTYPE_F32, k[l], v[l], &err));
    }
    CHECK_OK(dw_session_import(b, ids, n, DW_DTYPE_F32, (const void *const *)k, (const void *const *)v, &err));
    for (int t = n; t < 60; t++) {
        CHECK_OK(dw_session_decode(a, ids[t], la, &err));
        CHECK_OK(dw_session_decode(b, ids[t], lb, &err));
        CHECK_MSG(!memcmp(la, lb, sizeof(float) * V), "position %d differs", t);
    }
    for (int l = 0; l < c->n_layers; l++) free(k[l]), free(v[l]);
    dw_session_free(a), dw_session_free(b);
    free(la), free(lb);
    world_close(&w);
}

typedef struct long_prompt {
    world *w;
    int32_t *ids;
    int n;
    volatile int done;
    dw_status st;
    dw_error err;
} long_prompt;

static void *run_long_prompt(void *arg) {
    long_prompt *lp = arg;
    dw_session *s = NULL;
    dw_session_options so = {.ctx = lp->n + 8};
    if (!(lp->st = dw_session_create(lp->w->m, &so, &s, &lp->err))) lp->st = dw_session_prefill(s, lp->ids, lp->n, NULL, &lp->err);
    lp->done = 1;
    dw_session_free(s);
    return NULL;
}

TEST(batch_a_long_prompt_never_holds_back_a_decoding_session) {
    dw_error err = {0};
    char raw[512];
    snprintf(raw, sizeof raw, "%s/batch-model-long-%d", dw_test_tmp_dir(), dir_counter++);
    tmodel_spec spec = batch_spec();
    spec.max_pos = 4096;
    tmodel tm;
    CHECK_OK(tmodel_write(&spec, raw, 1, &tm, &err));
    tmodel_free(&tm);
    world w;
    dw_batch_options bo = {.step_tokens = 16};
    CHECK_OK(world_open(&w, "cpu", raw, &bo, &err));
    /* a prompt of 2,000 tokens takes 125 steps of 16; it arrives first */
    static int32_t ids[2000];
    sample_ids(ids, 2000, spec.vocab, 4);
    long_prompt lp = {.w = &w, .ids = ids, .n = 2000};
    pthread_t th;
    pthread_create(&th, NULL, run_long_prompt, &lp);
    for (;;) {
        dw_batch_stats bs;
        dw_model_batch_stats(w.m, &bs);
        if (bs.steps >= 1 || lp.done) break;
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    /* a session that then generates 10 tokens gets a row in each of the next steps */
    dw_session *s;
    int32_t out[10];
    CHECK_OK(dw_session_create(w.m, NULL, &s, &err));
    CHECK_OK(dw_session_decode_greedy(s, 5, 10, out, &err));
    int prompt_done_first = lp.done;
    pthread_join(th, NULL);
    CHECK_OK((err = lp.err, lp.st));
    CHECK_MSG(!prompt_done_first, "the decoding session finished after the 125-step prompt: it waited for it");
    dw_session_free(s);
    world_close(&w);
}
