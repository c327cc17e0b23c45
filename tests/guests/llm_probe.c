/* Test actor for the language-model host API: each export exercises one behaviour (bad
 * handles, bad pointers, small buffers, context overflow, the device sampler) or runs a greedy
 * generation. */
#include <driftwood/guest.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT(name) __attribute__((export_name(#name)))

static float logits[1 << 18];
static int32_t ids[4096];

static int32_t open_model(void) { return dw_model_open("default", 7); }

EXPORT(open_default) int32_t open_default(void) { return open_model(); }
EXPORT(open_missing) int32_t open_missing(void) { return dw_model_open("nope", 4); }
EXPORT(vocab) int32_t vocab(void) {
    dw_model_info info;
    int32_t rc = dw_model_info_get(open_model(), &info);
    return rc < 0 ? rc : info.vocab_size;
}
EXPORT(new_session) int32_t new_session(int32_t ctx) { return dw_session_create(open_model(), ctx); }
EXPORT(free_session) int32_t free_session(int32_t s) { return dw_session_free(s); }
EXPORT(position) int32_t position(int32_t s) {
    dw_session_info si;
    int32_t rc = dw_session_info_get(s, &si);
    return rc < 0 ? rc : si.position;
}
/* Decodes token 1 in session s into the logits buffer; returns the host's code. */
EXPORT(decode_into) int32_t decode_into(int32_t s, int32_t cap) { return dw_decode(s, 1, logits, cap); }
EXPORT(decode_bad_pointer) int32_t decode_bad_pointer(int32_t s) {
    return dw_decode(s, 1, (float *)(uintptr_t)(__builtin_wasm_memory_size(0) * 65536u - 64), 1 << 20);
}
EXPORT(prefill_n) int32_t prefill_n(int32_t s, int32_t n) {
    for (int i = 0; i < n; i++) ids[i] = 100 + i;
    return dw_prefill(s, ids, n, logits, (int32_t)(sizeof logits / sizeof logits[0]));
}
EXPORT(tokenize_bad_pointer) int32_t tokenize_bad_pointer(void) {
    return dw_tokenize(open_model(), (const char *)(uintptr_t)0xFFFFFF00u, 1000, 0, ids, 10);
}
/* Tokenizes n x "a" then "b" with the model "hostile"; returns the host's result. */
EXPORT(tokenize_a_run) int32_t tokenize_a_run(int32_t n) {
    static char text[4096];
    if (n < 0 || n >= (int32_t)sizeof text) return -100;
    memset(text, 'a', (size_t)n);
    text[n] = 'b';
    return dw_tokenize(dw_model_open("hostile", 7), text, n + 1, 0, ids, 4096);
}
/* Greedy generation of n tokens after a fixed prompt; returns a hash of the token ids. */
EXPORT(greedy_hash) int32_t greedy_hash(int32_t n, int32_t first_token) {
    int32_t m = open_model(), s = dw_session_create(m, 256);
    dw_model_info info;
    if (s < 0 || dw_model_info_get(m, &info) < 0) return -1;
    int32_t prompt[8];
    for (int i = 0; i < 8; i++) prompt[i] = (first_token + 37 * i) % info.vocab_size;
    if (dw_prefill(s, prompt, 8, logits, info.vocab_size) < 0) return -2;
    uint32_t h = 2166136261u;
    for (int t = 0; t < n; t++) {
        int32_t best = 0;
        for (int i = 1; i < info.vocab_size; i++)
            if (logits[i] > logits[best]) best = i;
        h = (h ^ (uint32_t)best) * 16777619u;
        if (dw_decode(s, best, logits, info.vocab_size) < 0) return -3;
    }
    dw_session_free(s);
    return (int32_t)(h & 0x7FFFFFFF);
}

/* dw.sample on logits with nothing to choose (NaN and -inf only) at temperature tenths/10:
 * 1 when it fails with DW_E_INVALID and a message naming NaN; else the token or code it gave. */
EXPORT(host_sampler_refuses_nan_logits) int32_t host_sampler_refuses_nan_logits(int32_t tenths) {
    static dw_sample_params p;
    static uint8_t state[DW_SAMPLER_STATE_BYTES];
    static char message[256];
    p.temperature = (float)tenths / 10.0f, p.top_p = 1, p.repetition_penalty = 1;
    for (int i = 0; i < 100; i++) logits[i] = i % 3 ? __builtin_nanf("") : -__builtin_inff();
    int32_t r = dw_sample(logits, 100, &p, state, ids, 0);
    if (r != DW_E_INVALID) return r >= 0 ? 1000 + r : r;
    if (dw_last_error(message, sizeof message) < 0 || !strstr(message, "NaN")) return -100;
    return 1;
}

/* The host-side sampler: greedy equals the guest's own argmax; seeded sampling from a zeroed
 * state in guest memory is reproducible and advances that state. Returns 1 when all hold. */
EXPORT(host_sampler_behaves) int32_t host_sampler_behaves(int32_t s) {
    dw_model_info info;
    if (dw_model_info_get(open_model(), &info) < 0) return -1;
    for (int i = 0; i < 6; i++) ids[i] = 40 + 7 * i;
    if (dw_prefill(s, ids, 6, logits, info.vocab_size) < 0) return -2;
    static dw_sample_params p;
    static uint8_t state[DW_SAMPLER_STATE_BYTES], zero[DW_SAMPLER_STATE_BYTES];
    p.temperature = 0, p.top_p = 1, p.repetition_penalty = 1;
    if (dw_sample(logits, info.vocab_size, &p, state, ids, 6) != dw_argmax_f32(logits, info.vocab_size)) return -3;
    p.temperature = 1.5f, p.top_p = 0.98f, p.seed = 1234;
    int32_t first[8], again[8];
    memset(state, 0, sizeof state);
    for (int i = 0; i < 8; i++) first[i] = dw_sample(logits, info.vocab_size, &p, state, ids, 6);
    if (!memcmp(state, zero, sizeof state)) return -4; /* the generator lives in guest memory */
    memset(state, 0, sizeof state);
    for (int i = 0; i < 8; i++) again[i] = dw_sample(logits, info.vocab_size, &p, state, ids, 6);
    if (memcmp(first, again, sizeof first)) return -5;
    int distinct = 0;
    for (int i = 1; i < 8; i++) distinct |= first[i] != first[0];
    return distinct ? 1 : -6; /* at temperature 1.5 eight draws are not all the same token */
}

/* Prefills a fixed prompt of 21 tokens, forks the session, lets the parent and then the child
 * generate n tokens each greedily on the host's device (dw.decode_greedy); returns 1 when both
 * gave the same tokens, 0 when they differ, or a negative code. */
EXPORT(fork_agrees) int32_t fork_agrees(int32_t n) {
    static int32_t a[64], b[64];
    if (n < 1 || n > 64) return -100;
    int32_t m = open_model(), s = dw_session_create(m, 256);
    if (s < 0) return s;
    for (int i = 0; i < 21; i++) ids[i] = 3 + 11 * i;
    int32_t rc = dw_prefill(s, ids, 21, logits, (int32_t)(sizeof logits / sizeof logits[0]));
    int32_t child = rc < 0 ? rc : dw_session_fork(s);
    if (child < 0) return child;
    if ((rc = dw_decode_greedy(s, 7, n, a)) < 0 || (rc = dw_decode_greedy(child, 7, n, b)) < 0) return rc;
    dw_session_free(child);
    dw_session_free(s);
    return memcmp(a, b, sizeof(int32_t) * (size_t)n) == 0;
}

/* dw.decode_sample against the rule applied in the guest: session a decodes with logits into
 * guest memory and picks with dw_pick_top_k, session b asks the host for the same 12 tokens in
 * one dw.decode_sample call with the same numbers; then settings out of range are refused with
 * DW_E_INVALID naming them, changing nothing. Returns 1 when all hold, else a negative step. */
EXPORT(device_sampler_follows_the_rule) int32_t device_sampler_follows_the_rule(void) {
    dw_model_info info;
    int32_t m = open_model();
    if (dw_model_info_get(m, &info) < 0) return -1;
    int32_t a = dw_session_create(m, 64), b = dw_session_create(m, 64);
    if (a < 0 || b < 0) return -2;
    for (int i = 0; i < 6; i++) ids[i] = 40 + 7 * i;
    static double u[13];
    static int32_t by_guest[13], by_host[12];
    uint64_t x = 0x2545F4914F6CDD1Dull;
    for (int i = 0; i < 13; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        u[i] = (double)(x >> 11) * (1.0 / 9007199254740992.0);
    }
    const dw_device_sampling p = {.temperature = 1.2f, .top_p = 0.95f, .top_k = 30};
    if (dw_prefill(a, ids, 6, logits, info.vocab_size) < 0 || dw_prefill(b, ids, 6, logits, info.vocab_size) < 0) return -3;
    by_guest[0] = dw_pick_top_k(logits, info.vocab_size, &p, u[0]);
    for (int t = 1; t < 13; t++) {
        if (dw_decode(a, by_guest[t - 1], logits, info.vocab_size) < 0) return -4;
        by_guest[t] = dw_pick_top_k(logits, info.vocab_size, &p, u[t]);
    }
    if (dw_decode_sample(b, by_guest[0], 12, &p, u + 1, by_host) < 0) return -5;
    if (memcmp(by_guest + 1, by_host, sizeof by_host)) return -6;
    static char message[256];
    dw_session_info si;
    dw_session_info_get(b, &si);
    const dw_device_sampling bad_k = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 99};
    if (dw_decode_sample(b, 1, 2, &bad_k, u, by_host) != DW_E_INVALID) return -7;
    if (dw_last_error(message, sizeof message) < 0 || !strstr(message, "top_k")) return -8;
    static double bad_u[2] = {0.25, -1.0};
    if (dw_decode_sample(b, 1, 2, &p, bad_u, by_host) != DW_E_INVALID) return -9;
    if (dw_last_error(message, sizeof message) < 0 || !strstr(message, "token 1")) return -10;
    dw_session_info after;
    dw_session_info_get(b, &after);
    if (after.position != si.position) return -11;
    dw_session_free(a);
    dw_session_free(b);
    return 1;
}

/* dw.decode_sample with its numbers at a misaligned address: a trap naming the argument. */
EXPORT(device_sampler_misaligned_numbers) int32_t device_sampler_misaligned_numbers(int32_t s) {
    static double u[3];
    const dw_device_sampling p = {.temperature = 1.0f, .top_p = 1.0f};
    int32_t out[2];
    return dw_decode_sample(s, 1, 2, &p, (const double *)((char *)u + 4), out);
}
