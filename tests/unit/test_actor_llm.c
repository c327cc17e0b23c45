/* Actors driving inference through the dw host API: handle isolation, bad pointers and
 * handles, small buffers, context overflow, and two actors sharing one model. The model is
 * $DW_TEST_MODEL, else the shipped models/driftwood-tiny. */
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driftwood/actor.h"
#include "driftwood/guest.h"
#include "driftwood/tokenizer.h"
#include "driftwood/model.h"
#include "driftwood/runtime.h"
#include "test.h"
#include "test_actor_call.h"

typedef struct fixture {
    dw_runtime *rt;
    dw_module *module;
    dw_actor *actor; /* one actor of llm_probe with default options */
} fixture;

static dw_status setup_with(fixture *f, int batching, dw_error *err) {
    char path[512], cache[600];
    memset(f, 0, sizeof *f);
    snprintf(path, sizeof path, "%s/guests/llm_probe.wasm", dw_test_build_dir());
    snprintf(cache, sizeof cache, "%s/modules", dw_test_tmp_dir());
    dw_runtime_options o = {.module_cache_dir = cache};
    dw_status st = dw_runtime_create(&o, &f->rt, err);
    dw_model_use_options uo = {.batching = batching};
    if (st == DW_OK) st = dw_runtime_register_model_with(f->rt, "default", dw_test_model_dir(), &uo, err);
    if (st == DW_OK) st = dw_module_load_file(f->rt, path, &f->module, err);
    if (st == DW_OK) st = dw_actor_create(f->rt, f->module, NULL, &f->actor, err);
    return st;
}

static dw_status setup(fixture *f, dw_error *err) { return setup_with(f, 0, err); }

static void teardown(fixture *f) {
    dw_actor_free(f->actor);
    dw_module_free(f->module);
    dw_runtime_free(f->rt);
}

TEST(llm_bad_handles_get_error_codes_not_crashes) {
    dw_error err;
    fixture f;
    CHECK_OK(setup(&f, &err));
    dw_actor *a = f.actor;
    int32_t r;
    CHECK_OK(actor_call(a, "open_missing", 0, 0, 0, &r, &err));
    CHECK(r == DW_E_NOT_FOUND);
    CHECK_OK(actor_call(a, "decode_into", 2, 12345, 1 << 18, &r, &err));
    CHECK(r == DW_E_NOT_FOUND);
    int32_t s;
    CHECK_OK(actor_call(a, "new_session", 1, 64, 0, &s, &err));
    CHECK(s > 0);
    CHECK_OK(actor_call(a, "free_session", 1, s, 0, &r, &err));
    CHECK(r == DW_E_OK);
    CHECK_OK(actor_call(a, "decode_into", 2, s, 1 << 18, &r, &err)); /* a freed handle stays invalid */
    CHECK(r == DW_E_NOT_FOUND);
    CHECK_OK(actor_call(a, "free_session", 1, s, 0, &r, &err));
    CHECK(r == DW_E_NOT_FOUND);
    teardown(&f);
}

TEST(llm_one_actor_cannot_use_another_actors_session) {
    dw_error err;
    fixture f;
    CHECK_OK(setup(&f, &err));
    dw_actor *a, *b;
    CHECK_OK(dw_actor_create(f.rt, f.module, NULL, &a, &err));
    CHECK_OK(dw_actor_create(f.rt, f.module, NULL, &b, &err));
    int32_t s, r;
    CHECK_OK(actor_call(a, "new_session", 1, 64, 0, &s, &err));
    CHECK(s > 0);
    CHECK_OK(actor_call(b, "decode_into", 2, s, 1 << 18, &r, &err));
    CHECK(r == DW_E_NOT_FOUND);
    CHECK_OK(actor_call(a, "decode_into", 2, s, 1 << 18, &r, &err));
    CHECK(r == DW_E_OK);
    dw_actor_free(a);
    dw_actor_free(b);
    teardown(&f);
}

TEST(llm_bad_pointers_trap_and_runtime_goes_on) {
    dw_error err;
    fixture f;
    CHECK_OK(setup(&f, &err));
    dw_actor *a = f.actor;
    int32_t s, r;
    CHECK_OK(actor_call(a, "new_session", 1, 64, 0, &s, &err));
    CHECK(actor_call(a, "decode_bad_pointer", 1, s, 0, &r, &err) == DW_ERR_TRAP);
    CHECK_MSG(strstr(err.message, "dw.decode") && strstr(err.message, "outside guest memory"), "%s", err.message);
    CHECK(actor_call(a, "tokenize_bad_pointer", 0, 0, 0, &r, &err) == DW_ERR_TRAP);
    CHECK_MSG(strstr(err.message, "dw.tokenize"), "%s", err.message);
    CHECK_OK(actor_call(a, "decode_into", 2, s, 1 << 18, &r, &err)); /* the actor still works */
    CHECK(r == DW_E_OK);
    teardown(&f);
}

TEST(llm_logits_buffer_too_small_is_refused) {
    dw_error err;
    fixture f;
    CHECK_OK(setup(&f, &err));
    dw_actor *a = f.actor;
    int32_t s, r, vocab;
    CHECK_OK(actor_call(a, "vocab", 0, 0, 0, &vocab, &err));
    CHECK(vocab > 0);
    CHECK_OK(actor_call(a, "new_session", 1, 64, 0, &s, &err));
    CHECK_OK(actor_call(a, "decode_into", 2, s, vocab - 1, &r, &err));
    CHECK(r == DW_E_LIMIT);
    CHECK_OK(actor_call(a, "position", 1, s, 0, &r, &err));
    CHECK(r == 0); /* nothing was run */
    teardown(&f);
}

TEST(llm_context_overflow_is_an_error_code) {
    dw_error err;
    fixture f;
    CHECK_OK(setup(&f, &err));
    dw_actor *a = f.actor;
    int32_t s, r;
    CHECK_OK(actor_call(a, "new_session", 1, 16, 0, &s, &err));
    CHECK_OK(actor_call(a, "prefill_n", 2, s, 12, &r, &err));
    CHECK(r == DW_E_OK);
    CHECK_OK(actor_call(a, "prefill_n", 2, s, 5, &r, &err)); /* 17 > 16 */
    CHECK(r == DW_E_LIMIT);
    CHECK_OK(actor_call(a, "position", 1, s, 0, &r, &err));
    CHECK(r == 12);
    CHECK_OK(actor_call(a, "prefill_n", 2, s, 4, &r, &err)); /* exactly fills it */
    CHECK(r == DW_E_OK);
    teardown(&f);
}

typedef struct {
    fixture *f;
    int32_t first_token, hash;
    dw_status st;
    dw_error err;
} greedy_job;

static void *greedy_worker(void *arg) {
    greedy_job *j = arg;
    dw_actor *a = NULL;
    j->st = dw_actor_create(j->f->rt, j->f->module, NULL, &a, &j->err);
    if (j->st == DW_OK) j->st = actor_call(a, "greedy_hash", 2, 24, j->first_token, &j->hash, &j->err);
    dw_actor_free(a);
    return NULL;
}

/* Two actors generating greedily at once give what each gives alone (batching: in shared steps). */
static void two_actors_match_alone(int batching, int *dw_test_failed_) {
    dw_error err;
    fixture f;
    CHECK_OK(setup_with(&f, batching, &err));
    greedy_job alone[2] = {{&f, 11, 0, 0, {0}}, {&f, 977, 0, 0, {0}}}, together[2];
    for (int i = 0; i < 2; i++) {
        greedy_worker(&alone[i]);
        CHECK_MSG(alone[i].st == DW_OK && alone[i].hash > 0, "alone %d: %s (%d)", i, alone[i].err.message, alone[i].hash);
        together[i] = (greedy_job){&f, alone[i].first_token, 0, 0, {0}};
    }
    CHECK(alone[0].hash != alone[1].hash);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, greedy_worker, &together[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK_MSG(together[i].st == DW_OK, "%s", together[i].err.message);
        CHECK(together[i].hash == alone[i].hash);
    }
    teardown(&f);
}

TEST(llm_two_actors_sharing_a_model_match_running_alone) { two_actors_match_alone(0, dw_test_failed_); }
TEST(llm_two_actors_batched_match_running_alone) { two_actors_match_alone(1, dw_test_failed_); }

TEST(llm_a_forked_session_continues_as_its_parent_and_without_batching_fork_is_refused) {
    dw_error err;
    fixture f;
    int32_t r;
    CHECK_OK(setup_with(&f, 1, &err));
    CHECK_OK(actor_call(f.actor, "fork_agrees", 1, 40, 0, &r, &err));
    CHECK_MSG(r == 1, "fork_agrees gave %d", r);
    teardown(&f);
    CHECK_OK(setup(&f, &err));
    CHECK_OK(actor_call(f.actor, "fork_agrees", 1, 40, 0, &r, &err));
    CHECK_MSG(r == DW_E_INVALID, "fork without batching gave %d", r);
    teardown(&f);
}

static void ignore_output(void *user, const char *bytes, size_t len) {
    size_t *total = user;
    *total += len;
}

TEST(chat_second_turn_prefills_only_its_new_tokens) {
    dw_error err;
    fixture f;
    CHECK_OK(setup(&f, &err));
    char path[512];
    snprintf(path, sizeof path, "%s/guests/chat.wasm", dw_test_build_dir());
    dw_module *chat;
    CHECK_OK(dw_module_load_file(f.rt, path, &chat, &err));
    static const char *const argv[] = {"chat", "-n", "12", "--system", "Be brief."};
    size_t out_bytes = 0;
    dw_actor_options o = {.argc = 5, .argv = argv, .output = ignore_output, .output_user = &out_bytes};
    dw_actor *a;
    CHECK_OK(dw_actor_create(f.rt, chat, &o, &a, &err));
    struct dw_model *model;
    struct dw_tokenizer *tok;
    CHECK_OK(dw_runtime_model(f.rt, "default", "cpu", &model, &tok, NULL, &err));

    const char *turn1 = "Hello there.", *turn2 = "Tell me more about it.";
    CHECK_OK(dw_actor_send(a, turn1, strlen(turn1), &err));
    dw_actor_stats s1;
    dw_actor_stats_get(a, &s1);
    dw_actor_stats_reset(a);
    CHECK_OK(dw_actor_send(a, turn2, strlen(turn2), &err));
    dw_actor_stats s2;
    dw_actor_stats_get(a, &s2);

    /* what turn 2 must add: close the reply, the user's turn, the assistant header */
    char text[256];
    snprintf(text, sizeof text,
             "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|>"
             "<|start_header_id|>assistant<|end_header_id|>\n\n", turn2);
    int32_t ids[256];
    size_t n_new;
    CHECK_OK(dw_tokenizer_encode(tok, text, strlen(text), DW_TOKENIZE_PARSE_SPECIAL, ids, 256, &n_new, &err));
    CHECK_MSG(s2.prefill_calls == 1 && s2.prefill_tokens == n_new, "turn 2 prefilled %llu tokens in %llu calls, expected %zu",
              (unsigned long long)s2.prefill_tokens, (unsigned long long)s2.prefill_calls, n_new);
    CHECK(s1.prefill_tokens > n_new); /* turn 1 carried the BOS and system prompt too */
    dw_actor_free(a);
    dw_module_free(chat);
    teardown(&f);
}

TEST(llm_host_sampler_is_greedy_at_zero_and_reproducible_from_guest_state) {
    dw_error err;
    fixture f;
    CHECK_OK(setup(&f, &err));
    dw_actor *a = f.actor;
    int32_t s, r;
    CHECK_OK(actor_call(a, "new_session", 1, 64, 0, &s, &err));
    CHECK_OK(actor_call(a, "host_sampler_behaves", 1, s, 0, &r, &err));
    CHECK_MSG(r == 1, "host_sampler_behaves returned %d", r);
    teardown(&f);
}

/* A copy of the test model (links to its files) whose tokenizer.json first splits on the regex
 * (a+)+$, which hits PCRE2's match limit on 40 x "a" then "b". Returns 0 on success. */
static int write_hostile_model(const char *dir) {
    const char *model = dw_test_model_dir();
    char from[1024], to[1024];
    if (mkdir(dir, 0755)) return -1;
    DIR *d = opendir(model);
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, "tokenizer.json")) continue;
        snprintf(from, sizeof from, "%s/%s", model, e->d_name);
        char *real = realpath(from, NULL);
        snprintf(to, sizeof to, "%s/%s", dir, e->d_name);
        int rc = real ? symlink(real, to) : -1;
        free(real);
        if (rc) return closedir(d), -1;
    }
    closedir(d);
    snprintf(from, sizeof from, "%s/tokenizer.json", model);
    json_t *tok = json_load_file(from, 0, NULL);
    if (!tok) return -1;
    json_t *split = json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex", "(a+)+$", "behavior",
                              "Isolated", "invert", 0);
    json_t *pre = json_object_get(tok, "pre_tokenizer"), *steps = json_object_get(pre, "pretokenizers");
    if (json_is_array(steps)) json_array_insert_new(steps, 0, split);
    else json_object_set_new(tok, "pre_tokenizer", json_pack("{s:s, s:[o, O]}", "type", "Sequence", "pretokenizers", split, pre));
    snprintf(to, sizeof to, "%s/tokenizer.json", dir);
    int rc = json_dump_file(tok, to, 0);
    json_decref(tok);
    return rc;
}

/* dw.tokenize hands a tokenizer failure to the guest as an error, never as an empty result
 * (issue 21: the chat actor dropped the user's text). */
/* dw.decode_sample gives the tokens the guest's own dw_pick_top_k picks from the logits, with and
 * without batching, refuses bad settings with an error code, and traps on a misaligned array. */
static void device_sampler_in_a_guest(int batching, int *dw_test_failed_) {
    dw_error err;
    fixture f;
    CHECK_OK(setup_with(&f, batching, &err));
    int32_t r, s;
    CHECK_OK(actor_call(f.actor, "device_sampler_follows_the_rule", 0, 0, 0, &r, &err));
    CHECK_MSG(r == 1, "device_sampler_follows_the_rule gave %d", r);
    CHECK_OK(actor_call(f.actor, "new_session", 1, 64, 0, &s, &err));
    CHECK(actor_call(f.actor, "device_sampler_misaligned_numbers", 1, s, 0, &r, &err) == DW_ERR_TRAP);
    CHECK_MSG(strstr(err.message, "dw.decode_sample: u at") && strstr(err.message, "misaligned"), "%s", err.message);
    teardown(&f);
}

TEST(llm_device_sampler_follows_the_rule_the_guest_applies) { device_sampler_in_a_guest(0, dw_test_failed_); }
TEST(llm_device_sampler_follows_the_rule_with_batching) { device_sampler_in_a_guest(1, dw_test_failed_); }

TEST(llm_tokenize_failure_is_an_error_for_the_guest) {
    dw_error err;
    fixture f;
    CHECK_OK(setup(&f, &err));
    char dir[512];
    snprintf(dir, sizeof dir, "%s/hostile_model", dw_test_tmp_dir());
    CHECK(write_hostile_model(dir) == 0);
    CHECK_OK(dw_runtime_register_model(f.rt, "hostile", dir, &err));
    int32_t r;
    CHECK_OK(actor_call(f.actor, "tokenize_a_run", 1, 3, 0, &r, &err));
    CHECK_MSG(r > 0, "tokenize_a_run(3) returned %d", r); /* "aaab" tokenizes */
    CHECK_OK(actor_call(f.actor, "tokenize_a_run", 1, 40, 0, &r, &err));
    CHECK_MSG(r == DW_E_LIMIT, "tokenize_a_run(40) returned %d", r);
    teardown(&f);
}

TEST(llm_host_sampler_returns_invalid_for_logits_with_nothing_to_choose) {
    dw_error err;
    fixture f;
    CHECK_OK(setup(&f, &err));
    int32_t greedy, sampled;
    CHECK_OK(actor_call(f.actor, "host_sampler_refuses_nan_logits", 1, 0, 0, &greedy, &err));
    CHECK_OK(actor_call(f.actor, "host_sampler_refuses_nan_logits", 1, 8, 0, &sampled, &err));
    teardown(&f);
    CHECK_MSG(greedy == 1 && sampled == 1, "greedy %d, sampled %d (1: DW_E_INVALID naming NaN; 1000 + t: token t)", greedy,
              sampled);
}

/* The KV caches an actor's sessions hold are memory the host makes on its behalf: counted
 * against the actor's kv_memory_limit before they are made (issue 21), and given back on free. */
TEST(llm_sessions_kv_memory_is_bounded_per_actor) {
    dw_error err;
    fixture f;
    CHECK_OK(setup(&f, &err));
    struct dw_model *m;
    struct dw_tokenizer *tok;
    CHECK_OK(dw_runtime_model(f.rt, "default", NULL, &m, &tok, NULL, &err));
    const dw_model_config *c = dw_model_get_config(m);
    size_t one = 2u * (size_t)c->n_layers * (size_t)c->n_kv_heads * (size_t)c->head_dim * 64 * 2; /* 64 tokens, bf16 */
    dw_actor_options o = {.kv_memory_limit = 2 * one + one / 2};
    dw_actor *a;
    CHECK_OK(dw_actor_create(f.rt, f.module, &o, &a, &err));
    int32_t s1, s2, s3, r;
    CHECK_OK(actor_call(a, "new_session", 1, 64, 0, &s1, &err));
    CHECK_OK(actor_call(a, "new_session", 1, 64, 0, &s2, &err));
    CHECK(s1 > 0 && s2 > 0);
    CHECK_OK(actor_call(a, "new_session", 1, 64, 0, &s3, &err)); /* a third would pass the limit */
    CHECK_MSG(s3 == DW_E_LIMIT, "third session: %d", s3);
    CHECK_OK(actor_call(a, "free_session", 1, s1, 0, &r, &err));
    CHECK(r == DW_E_OK);
    CHECK_OK(actor_call(a, "new_session", 1, 64, 0, &s3, &err)); /* freeing gave its share back */
    CHECK(s3 > 0);
    CHECK_OK(actor_call(a, "new_session", 1, 1 << 20, 0, &r, &err)); /* too large alone: refused before made */
    CHECK(r == DW_E_LIMIT || r == DW_E_INVALID);
    dw_actor_free(a);
    teardown(&f);
}
