/* Snapshots: KV files continue bit-identically; corrupted, truncated, foreign and mismatched
 * files are refused without changing anything, with messages naming the file once; tensors at
 * any alignment load; a save killed midway leaves the previous file; whole actors survive a
 * snapshot; a model swap, even to another vocabulary, rebuilds the cache. Model:
 * $DW_TEST_MODEL, else models/driftwood-tiny. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driftwood/actor.h"
#include "driftwood/engine.h"
#include "driftwood/model.h"
#include "driftwood/safetensors.h"
#include "driftwood/sampler.h"
#include "driftwood/snapshot.h"
#include "driftwood/tokenizer.h"
#include "test.h"

typedef struct fixture {
    dw_backend *backend;
    dw_model *model;
    dw_tokenizer *tok;
    int vocab;
} fixture;

static dw_status setup(fixture *f, dw_error *err) {
    char path[600];
    memset(f, 0, sizeof *f);
    snprintf(path, sizeof path, "%s/tokenizer.json", dw_test_model_dir());
    dw_status st = dw_backend_open("cpu", &f->backend, err);
    if (!st) st = dw_tokenizer_load(path, &f->tok, err);
    if (!st) st = dw_model_load(dw_test_model_dir(), f->backend, NULL, &f->model, err);
    if (!st) f->vocab = dw_model_get_config(f->model)->vocab_size;
    return st;
}

static void teardown(fixture *f) {
    dw_model_free(f->model);
    dw_tokenizer_free(f->tok);
    dw_backend_close(f->backend);
}

static uint64_t rng_state = 0x1234567;
static uint32_t rnd(uint32_t n) {
    rng_state = rng_state * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(rng_state >> 33) % n;
}

/* Generates n tokens from the session's logits with sampler s (decoding each), into out. */
static dw_status run(dw_session *sess, dw_sampler *s, float *logits, int n, int32_t *out, dw_error *err) {
    for (int i = 0; i < n; i++) {
        dw_status st = dw_sampler_sample(s, logits, dw_session_tokens(sess), dw_session_n_tokens(sess), &out[i], err);
        if (!st) st = dw_session_decode(sess, out[i], logits, err);
        if (st) return st;
    }
    return DW_OK;
}

TEST(kv_file_continuation_is_bit_identical_in_40_random_cases) {
    dw_error err;
    fixture f;
    CHECK_OK(setup(&f, &err));
    float *logits = malloc(sizeof(float) * (size_t)f.vocab);
    char path[600];
    snprintf(path, sizeof path, "%s/cont.kv", dw_test_tmp_dir());
    for (int c = 0; c < 40; c++) {
        int greedy = c < 20, n_prompt = 1 + (int)rnd(24), N = 24, k = (int)rnd((uint32_t)N + 1);
        int32_t prompt[32], full[32], part[32];
        for (int i = 0; i < n_prompt; i++) prompt[i] = (int32_t)rnd((uint32_t)f.vocab);
        dw_sampler_params p = dw_sampler_default_params();
        p.temperature = greedy ? 0.0f : 0.9f, p.top_p = greedy ? 1.0f : 0.95f, p.seed = (uint64_t)c;
        dw_session_options so = {.ctx = 128};
        dw_session *a, *b, *r;
        dw_sampler *sa, *sb, *sr;
        CHECK_OK(dw_session_create(f.model, &so, &a, &err));
        CHECK_OK(dw_session_create(f.model, &so, &b, &err));
        CHECK_OK(dw_session_create(f.model, &so, &r, &err));
        CHECK_OK(dw_sampler_create(&p, f.vocab, &sa, &err));
        CHECK_OK(dw_sampler_create(&p, f.vocab, &sb, &err));
        CHECK_OK(dw_sampler_create(&p, f.vocab, &sr, &err));
        /* uninterrupted */
        CHECK_OK(dw_session_prefill(a, prompt, n_prompt, logits, &err));
        CHECK_OK(run(a, sa, logits, N, full, &err));
        /* k tokens, save, restore into a fresh session and sampler, the rest */
        CHECK_OK(dw_session_prefill(b, prompt, n_prompt, logits, &err));
        CHECK_OK(run(b, sb, logits, k, part, &err));
        uint8_t state[DW_SAMPLER_STATE_SIZE];
        dw_sampler_save(sb, state);
        dw_kv_extras ex = {.logits = logits, .n_logits = f.vocab, .sampler_state = state};
        CHECK_OK(dw_kv_save(b, f.tok, path, &ex, NULL, &err));
        memset(logits, 0, sizeof(float) * (size_t)f.vocab);
        memset(state, 0, sizeof state);
        dw_kv_report rep;
        CHECK_OK(dw_kv_load(r, f.tok, path, &ex, &rep, &err));
        CHECK(ex.has_logits && ex.has_sampler_state && !rep.rebuilt);
        CHECK(rep.n_tokens == n_prompt + k);
        CHECK_OK(dw_sampler_load(sr, state, &err));
        CHECK_OK(run(r, sr, logits, N - k, part + k, &err));
        CHECK_MSG(!memcmp(full, part, sizeof(int32_t) * (size_t)N), "case %d (%s, prompt %d, k=%d) diverged", c,
                  greedy ? "greedy" : "sampled", n_prompt, k);
        dw_sampler_free(sa), dw_sampler_free(sb), dw_sampler_free(sr);
        dw_session_free(a), dw_session_free(b), dw_session_free(r);
    }
    free(logits);
    teardown(&f);
}

/* A session holding 10 tokens, saved to path; returns the session. */
static dw_session *saved_session(fixture *f, const char *path, dw_error *err) {
    dw_session *s;
    dw_session_options so = {.ctx = 64};
    int32_t ids[10] = {5, 17, 42, 99, 100, 7, 3, 250, 251, 11};
    if (dw_session_create(f->model, &so, &s, err) || dw_session_prefill(s, ids, 10, NULL, err) ||
        dw_kv_save(s, f->tok, path, NULL, NULL, err))
        return NULL;
    return s;
}

static int copy_file(const char *from, const char *to, long truncate_at, long flip_at) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    if (!in || !out) return -1;
    int ch;
    long pos = 0;
    while ((ch = fgetc(in)) != EOF && (truncate_at < 0 || pos < truncate_at)) {
        if (pos == flip_at) ch ^= 0x10;
        fputc(ch, out);
        pos++;
    }
    fclose(in);
    fclose(out);
    return 0;
}

static int occurrences(const char *haystack, const char *needle) {
    int n = 0;
    for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

TEST(kv_file_damaged_or_foreign_is_refused_and_session_unchanged) {
    dw_error err;
    fixture f;
    CHECK_OK(setup(&f, &err));
    char good[600], bad[600];
    snprintf(good, sizeof good, "%s/good.kv", dw_test_tmp_dir());
    snprintf(bad, sizeof bad, "%s/bad.kv", dw_test_tmp_dir());
    dw_session *src = saved_session(&f, good, &err);
    CHECK_MSG(src, "%s", err.message);
    dw_session *s;
    dw_session_options so = {.ctx = 64};
    CHECK_OK(dw_session_create(f.model, &so, &s, &err));
    int32_t mine[3] = {1, 2, 3};
    CHECK_OK(dw_session_prefill(s, mine, 3, NULL, &err));
    long size = file_size(good);
    struct {
        long truncate_at, flip_at;
        const char *expect;
    } cases[] = {
        {size - 100, -1, ""},           /* truncated tensor data */
        {7, -1, ""},                    /* truncated header length */
        {-1, size - 10, "checksum"},    /* a bit flipped in the KV data */
        {-1, 40, ""},                   /* a bit flipped in the header */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(copy_file(good, bad, cases[i].truncate_at, cases[i].flip_at) == 0);
        dw_status st = dw_kv_load(s, f.tok, bad, NULL, NULL, &err);
        CHECK_MSG(st != DW_OK, "case %zu loaded", i);
        CHECK_MSG(occurrences(err.message, bad) == 1 && strstr(err.message, cases[i].expect), "case %zu: %s", i,
                  err.message);
        CHECK(dw_session_n_tokens(s) == 3 && dw_session_tokens(s)[2] == 3);
    }
    /* a safetensors file that is not a snapshot: the model's own weights */
    char weights[600];
    snprintf(weights, sizeof weights, "%s/model.safetensors", dw_test_model_dir());
    CHECK(dw_kv_load(s, f.tok, weights, NULL, NULL, &err) == DW_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "not a Driftwood snapshot"), "%s", err.message);
    CHECK(dw_session_n_tokens(s) == 3);
    /* the good file still loads */
    CHECK_OK(dw_kv_load(s, f.tok, good, NULL, NULL, &err));
    CHECK(dw_session_n_tokens(s) == 10);
    dw_session_free(s), dw_session_free(src);
    teardown(&f);
}

/* Writes a copy of the safetensors file `from` whose header is `extra` bytes longer (trailing
 * spaces, which JSON allows), so that every tensor lies `extra` bytes further on. */
static int copy_with_longer_header(const char *from, const char *to, int extra) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    uint8_t len8[8];
    if (!in || !out || fread(len8, 1, 8, in) != 8) return -1;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | len8[i];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((n + (uint64_t)extra) >> (8 * i));
    fwrite(len8, 1, 8, out);
    int ch;
    for (uint64_t i = 0; i < n && (ch = fgetc(in)) != EOF; i++) fputc(ch, out);
    for (int i = 0; i < extra; i++) fputc(' ', out);
    while ((ch = fgetc(in)) != EOF) fputc(ch, out);
    fclose(in);
    fclose(out);
    return 0;
}

TEST(kv_file_whose_tensors_are_not_aligned_loads_the_same_history) {
    dw_error err;
    fixture f;
    CHECK_OK(setup(&f, &err));
    char good[600], shifted[600];
    snprintf(good, sizeof good, "%s/aligned.kv", dw_test_tmp_dir());
    snprintf(shifted, sizeof shifted, "%s/shifted.kv", dw_test_tmp_dir());
    dw_session *src = saved_session(&f, good, &err);
    CHECK_MSG(src, "%s", err.message);
    CHECK(copy_with_longer_header(good, shifted, 3) == 0); /* int32 token ids at an odd address */
    dw_session *s;
    dw_session_options so = {.ctx = 64};
    CHECK_OK(dw_session_create(f.model, &so, &s, &err));
    CHECK_OK(dw_kv_load(s, f.tok, shifted, NULL, NULL, &err));
    CHECK(dw_session_n_tokens(s) == 10 && !memcmp(dw_session_tokens(s), dw_session_tokens(src), 10 * sizeof(int32_t)));
    dw_session_free(s), dw_session_free(src);
    teardown(&f);
}

TEST(kv_file_with_a_bad_sampler_record_is_refused_naming_the_file) {
    dw_error err;
    fixture f;
    CHECK_OK(setup(&f, &err));
    char path[600];
    snprintf(path, sizeof path, "%s/bad-sampler.kv", dw_test_tmp_dir());
    dw_session *s;
    dw_session_options so = {.ctx = 64};
    int32_t ids[4] = {5, 6, 7, 8};
    uint8_t record[DW_SAMPLER_STATE_SIZE] = "not a sampler record";
    dw_kv_extras saved = {.sampler_state = record};
    CHECK_OK(dw_session_create(f.model, &so, &s, &err));
    CHECK_OK(dw_session_prefill(s, ids, 4, NULL, &err));
    CHECK_OK(dw_kv_save(s, f.tok, path, &saved, NULL, &err)); /* a checksummed file with a record that cannot load */
    dw_session_reset(s);
    CHECK_OK(dw_session_prefill(s, ids, 2, NULL, &err));
    uint8_t state[DW_SAMPLER_STATE_SIZE];
    dw_kv_extras ex = {.sampler_state = state};
    dw_status st = dw_kv_load(s, f.tok, path, &ex, NULL, &err);
    CHECK(st == DW_ERR_FORMAT);
    CHECK_MSG(occurrences(err.message, path) == 1 && strstr(err.message, "'sampler'") && strstr(err.message, "bad magic"),
              "%s", err.message);
    CHECK(dw_session_n_tokens(s) == 2 && !ex.has_sampler_state);
    dw_session_free(s);
    teardown(&f);
}

TEST(kv_file_from_a_model_with_another_vocabulary_is_rebuilt_from_text) {
    dw_error err;
    fixture f, other;
    CHECK_OK(setup(&f, &err));
    char dir[600], cmd[1400], path[600];
    snprintf(dir, sizeof dir, "%s/wide-vocab-model", dw_test_tmp_dir());
    snprintf(cmd, sizeof cmd, "%s/bin/driftwood mkmodel --shape tiny --dtype bf16 --seed 3 --out %s >/dev/null",
             dw_test_build_dir(), dir);
    CHECK(system(cmd) == 0);
    memset(&other, 0, sizeof other);
    char tok_path[700];
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", dir);
    CHECK_OK(dw_backend_open("cpu", &other.backend, &err));
    CHECK_OK(dw_tokenizer_load(tok_path, &other.tok, &err));
    CHECK_OK(dw_model_load(dir, other.backend, NULL, &other.model, &err));
    other.vocab = dw_model_get_config(other.model)->vocab_size;
    CHECK(other.vocab != f.vocab);

    /* saved with the last logits and the sampler's state, as `generate --save-kv` does */
    snprintf(path, sizeof path, "%s/narrow-vocab.kv", dw_test_tmp_dir());
    dw_session *s, *t;
    dw_session_options so = {.ctx = 64};
    int32_t ids[6] = {5, 17, 42, 99, 100, 7};
    float *logits = malloc(sizeof(float) * (size_t)f.vocab), *wide = malloc(sizeof(float) * (size_t)other.vocab);
    uint8_t state[DW_SAMPLER_STATE_SIZE], state_back[DW_SAMPLER_STATE_SIZE];
    dw_sampler *sampler;
    dw_sampler_params sp = dw_sampler_default_params();
    sp.temperature = 0.7f, sp.seed = 5;
    CHECK_OK(dw_sampler_create(&sp, f.vocab, &sampler, &err));
    dw_sampler_save(sampler, state);
    dw_sampler_free(sampler);
    CHECK_OK(dw_session_create(f.model, &so, &s, &err));
    CHECK_OK(dw_session_prefill(s, ids, 6, logits, &err));
    dw_kv_extras saved = {.logits = logits, .n_logits = f.vocab, .sampler_state = state};
    CHECK_OK(dw_kv_save(s, f.tok, path, &saved, NULL, &err));

    CHECK_OK(dw_session_create(other.model, &so, &t, &err));
    dw_kv_extras ex = {.logits = wide, .n_logits = other.vocab, .sampler_state = state_back};
    dw_kv_report rep;
    CHECK_OK(dw_kv_load(t, other.tok, path, &ex, &rep, &err));
    CHECK(rep.rebuilt == 1 && dw_session_n_tokens(t) > 0);
    CHECK(!ex.has_logits); /* the other model's logits are dropped with its cache */
    CHECK(ex.has_sampler_state && !memcmp(state, state_back, sizeof state));
    free(logits), free(wide);
    dw_session_free(s), dw_session_free(t);
    teardown(&other);
    teardown(&f);
}

TEST(kv_file_bytes_per_token_are_exact) {
    dw_error err;
    fixture f;
    CHECK_OK(setup(&f, &err));
    char path[600];
    snprintf(path, sizeof path, "%s/size.kv", dw_test_tmp_dir());
    dw_session *s = saved_session(&f, path, &err);
    CHECK_MSG(s, "%s", err.message);
    dw_safetensors *st;
    CHECK_OK(dw_safetensors_open(path, &st, &err));
    const dw_model_config *c = dw_model_get_config(f.model);
    size_t kv = 0;
    for (size_t i = 0; i < dw_safetensors_count(st); i++) {
        const dw_tensor_info *t = dw_safetensors_tensor(st, i);
        if (strstr(t->name, "past_key_values.")) kv += t->nbytes;
    }
    CHECK(kv == (size_t)c->n_layers * 2 * (size_t)c->n_kv_heads * (size_t)c->head_dim * 2 /* bf16 */ * 10);
    const dw_tensor_info *k0 = dw_safetensors_find(st, "past_key_values.0.key");
    CHECK(k0 && k0->ndim == 4 && k0->shape[0] == 1 && k0->shape[1] == c->n_kv_heads && k0->shape[2] == 10 &&
          k0->shape[3] == c->head_dim);
    dw_safetensors_close(st);
    dw_session_free(s);
    teardown(&f);
}

/* Another process (the driftwood program, exec'd: a forked copy of this multithreaded test
 * could not run the thread pool) saves a long session over the file in a loop; it is killed
 * with SIGKILL at random moments, most of them inside a save. Each time, the file must load and
 * hold either the previous snapshot or a complete new one; at least one new one must land. */
TEST(kv_save_killed_midway_leaves_previous_file_loadable) {
    dw_error err;
    fixture f;
    CHECK_OK(setup(&f, &err));
    char path[600], prompt[8000] = "", script[12000];
    snprintf(path, sizeof path, "%s/killed.kv", dw_test_tmp_dir());
    dw_session *s = saved_session(&f, path, &err); /* the previous snapshot: 10 tokens */
    CHECK_MSG(s, "%s", err.message);
    for (int i = 0; i < 150; i++) strcat(prompt, "the old sailor and the sea ");
    snprintf(script, sizeof script, "while :; do '%s/bin/driftwood' generate --model '%s' --prompt '%s' -n 0 --save-kv '%s' "
             ">/dev/null 2>&1; done", dw_test_build_dir(), dw_test_model_dir(), prompt, path);
    int saw_new = 0;
    for (int round = 0; round < 8; round++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            setpgid(0, 0);
            execl("/bin/sh", "sh", "-c", script, (char *)NULL);
            _exit(127);
        }
        setpgid(pid, pid);
        /* the last round lasts long enough for saves to land even on a loaded machine */
        usleep(150000 + (useconds_t)rnd(250000) + (round == 7 ? 4000000 : 0));
        kill(-pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status));
        dw_session *r;
        dw_session_options so = {.ctx = 2048};
        CHECK_OK(dw_session_create(f.model, &so, &r, &err));
        CHECK_MSG(dw_kv_load(r, f.tok, path, NULL, NULL, &err) == DW_OK, "round %d: %s", round, err.message);
        int n = dw_session_n_tokens(r);
        CHECK_MSG(n == 10 || n > 500, "round %d: %d tokens", round, n);
        saw_new |= n > 500;
        dw_session_free(r);
    }
    CHECK_MSG(saw_new, "no save completed in 8 rounds: the test did not exercise anything");
    dw_session_free(s);
    teardown(&f);
}

/* --- whole actors ------------------------------------------------------------------------- */

typedef struct chat_fixture {
    dw_runtime *rt;
    dw_module *chat;
    char out[8192];
    size_t out_len;
} chat_fixture;

static void collect(void *user, const char *bytes, size_t len) {
    chat_fixture *c = user;
    if (c->out_len + len < sizeof c->out) memcpy(c->out + c->out_len, bytes, len), c->out_len += len;
}

static const char *const chat_argv[] = {"chat", "-n", "16", "--temp", "0.8", "--seed", "42", "--system", "You are terse."};
#define CHAT_ARGC 9

static dw_status chat_setup_with(chat_fixture *c, const char *model, int batching, dw_error *err) {
    char path[512], cache[600];
    memset(c, 0, sizeof *c);
    snprintf(path, sizeof path, "%s/guests/chat.wasm", dw_test_build_dir());
    snprintf(cache, sizeof cache, "%s/modules", dw_test_tmp_dir());
    dw_runtime_options o = {.module_cache_dir = cache};
    dw_status st = dw_runtime_create(&o, &c->rt, err);
    dw_model_use_options uo = {.batching = batching};
    if (!st) st = dw_runtime_register_model_with(c->rt, "default", model, &uo, err);
    if (!st) st = dw_module_load_file(c->rt, path, &c->chat, err);
    return st;
}

static dw_status chat_setup(chat_fixture *c, const char *model, dw_error *err) { return chat_setup_with(c, model, 0, err); }

static void chat_teardown(chat_fixture *c) {
    dw_module_free(c->chat);
    dw_runtime_free(c->rt);
}

static dw_actor_options chat_options(chat_fixture *c) {
    return (dw_actor_options){.argc = CHAT_ARGC, .argv = chat_argv, .output = collect, .output_user = c};
}

static dw_status say(dw_actor *a, const char *text, dw_error *err) { return dw_actor_send(a, text, strlen(text), err); }

/* Three chat turns, against a snapshot taken after the first restored and given the last two. */
static void restored_chat_continues(int batching, int *dw_test_failed_) {
    dw_error err;
    chat_fixture c;
    CHECK_OK(chat_setup_with(&c, dw_test_model_dir(), batching, &err));
    char path[600];
    snprintf(path, sizeof path, "%s/chat.snap", dw_test_tmp_dir());
    dw_actor_options o = chat_options(&c);
    dw_actor *a, *b;
    /* uninterrupted: three turns */
    CHECK_OK(dw_actor_create(c.rt, c.chat, &o, &a, &err));
    CHECK_OK(say(a, "Hello!", &err));
    size_t after_first = c.out_len;
    CHECK_OK(dw_actor_snapshot_save(a, path, NULL, &err));
    CHECK_OK(say(a, "What is the sea?", &err));
    CHECK_OK(say(a, "And the sky?", &err));
    char expected[8192];
    size_t expected_len = c.out_len - after_first;
    memcpy(expected, c.out + after_first, expected_len);
    dw_actor_free(a);
    /* restored after the first turn */
    c.out_len = 0;
    dw_actor_snapshot_report rep;
    CHECK_OK(dw_actor_snapshot_restore(c.rt, c.chat, &o, path, &b, &rep, &err));
    CHECK(rep.sessions == 1 && rep.rebuilt_sessions == 0);
    CHECK_OK(say(b, "What is the sea?", &err));
    CHECK_OK(say(b, "And the sky?", &err));
    CHECK(expected_len > 0);
    CHECK_MSG(c.out_len == expected_len && !memcmp(c.out, expected, expected_len), "restored chat diverged:\n%.*s\nvs\n%.*s",
              (int)c.out_len, c.out, (int)expected_len, expected);
    dw_actor_free(b);
    chat_teardown(&c);
}

TEST(actor_snapshot_restored_chat_continues_identically) { restored_chat_continues(0, dw_test_failed_); }

/* The same with batching on: the chat's session lives in blocks of the pool (paged KV), and the
 * snapshot holds the same safetensors layout. */
TEST(actor_snapshot_restored_chat_with_batching_continues_identically) { restored_chat_continues(1, dw_test_failed_); }

TEST(actor_snapshot_of_another_module_is_refused) {
    dw_error err;
    chat_fixture c;
    CHECK_OK(chat_setup(&c, dw_test_model_dir(), &err));
    char path[600], probe[600];
    snprintf(path, sizeof path, "%s/other.snap", dw_test_tmp_dir());
    snprintf(probe, sizeof probe, "%s/guests/probe.wasm", dw_test_build_dir());
    dw_actor_options o = chat_options(&c);
    dw_actor *a, *b = NULL;
    CHECK_OK(dw_actor_create(c.rt, c.chat, &o, &a, &err));
    CHECK_OK(say(a, "Hi", &err));
    CHECK_OK(dw_actor_snapshot_save(a, path, NULL, &err));
    dw_module *other;
    CHECK_OK(dw_module_load_file(c.rt, probe, &other, &err));
    CHECK(dw_actor_snapshot_restore(c.rt, other, NULL, path, &b, NULL, &err) == DW_ERR_STATE);
    CHECK_MSG(strstr(err.message, "taken from module"), "%s", err.message);
    CHECK(b == NULL);
    dw_module_free(other);
    dw_actor_free(a);
    chat_teardown(&c);
}

TEST(actor_snapshot_refuses_module_with_hidden_mutable_global) {
    dw_error err;
    chat_fixture c;
    CHECK_OK(chat_setup(&c, dw_test_model_dir(), &err));
    /* (memory 1) (global (mut i32) (i32.const 0)) (export "memory" (memory 0)): the global is not exported */
    static const uint8_t wasm[] = {0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x05, 0x03, 0x01, 0x00, 0x01,
                                   0x06, 0x06, 0x01, 0x7f, 0x01, 0x41, 0x00, 0x0b, 0x07, 0x0a, 0x01, 0x06, 'm',
                                   'e',  'm',  'o',  'r',  'y',  0x02, 0x00};
    dw_module *m;
    CHECK_OK(dw_module_load_bytes(c.rt, "hidden.wasm", wasm, sizeof wasm, &m, &err));
    dw_actor *a;
    CHECK_OK(dw_actor_create(c.rt, m, NULL, &a, &err));
    char path[600];
    snprintf(path, sizeof path, "%s/hidden.snap", dw_test_tmp_dir());
    CHECK(dw_actor_snapshot_save(a, path, NULL, &err) == DW_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.message, "mutable globals"), "%s", err.message);
    CHECK(access(path, F_OK) != 0); /* nothing written */
    dw_actor_free(a);
    dw_module_free(m);
    chat_teardown(&c);
}

/* A snapshot restored onto another model (its KV rebuilt from the text), batching on (paged KV)
 * on both sides or off on both. */
static void onto_another_model(int batching, int *dw_test_failed_) {
    dw_error err;
    chat_fixture c, d;
    CHECK_OK(chat_setup_with(&c, dw_test_model_dir(), batching, &err));
    char other[600], cmd[1400], path[600];
    snprintf(other, sizeof other, "%s/other-model-%d", dw_test_tmp_dir(), batching);
    snprintf(cmd, sizeof cmd, "%s/bin/driftwood mkmodel --shape tiny --dtype bf16 --seed 9 --out %s >/dev/null",
             dw_test_build_dir(), other);
    CHECK(system(cmd) == 0);
    CHECK_OK(chat_setup_with(&d, other, batching, &err));
    snprintf(path, sizeof path, "%s/swap-%d.snap", dw_test_tmp_dir(), batching);
    dw_actor_options o = chat_options(&c), od = chat_options(&d);
    dw_actor *a, *b;
    CHECK_OK(dw_actor_create(c.rt, c.chat, &o, &a, &err));
    CHECK_OK(say(a, "Remember the word lighthouse.", &err));
    CHECK_OK(dw_actor_snapshot_save(a, path, NULL, &err));
    dw_actor_snapshot_report rep;
    CHECK_OK(dw_actor_snapshot_restore(d.rt, c.chat, &od, path, &b, &rep, &err));
    CHECK(rep.sessions == 1 && rep.rebuilt_sessions == 1);
    dw_actor_stats_reset(b);
    CHECK_OK(say(b, "What was the word?", &err)); /* the conversation goes on, on the new model */
    dw_actor_stats s;
    dw_actor_stats_get(b, &s);
    CHECK(s.prefill_calls == 1 && s.decode_tokens > 0);
    dw_actor_free(a);
    dw_actor_free(b);
    chat_teardown(&c);
    chat_teardown(&d);
}

TEST(actor_snapshot_onto_another_model_rebuilds_and_continues) { onto_another_model(0, dw_test_failed_); }
TEST(actor_snapshot_onto_another_model_with_batching_rebuilds_and_continues) { onto_another_model(1, dw_test_failed_); }
