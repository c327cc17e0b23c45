/* The benchmark actor (a WASI reactor), embedded in the driftwood program: exports what
 * `bench zerocopy` and `bench hostcall` drive — buffers in its own memory, GEMM through
 * dw.gemm on them, and a loop of no-op host calls. */
#include <driftwood/guest.h>
#include <stdint.h>
#include <stdlib.h>

#define EXPORT(name) __attribute__((export_name(#name)))

/* A 64-byte-aligned buffer of bytes in the actor's memory; 0 if out of memory. */
EXPORT(alloc) int32_t alloc(int32_t bytes) { return (int32_t)(uintptr_t)aligned_alloc(64, ((size_t)bytes + 63) & ~63u); }

/* Fills count floats at p with values in [-1, 1) from seed (fresh data, never zeros). */
EXPORT(fill) void fill(float *p, int32_t count, int32_t seed) {
    uint32_t s = (uint32_t)seed * 2654435761u + 12345u;
    for (int32_t i = 0; i < count; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)(s >> 8) / (float)(1 << 23) - 1.0f;
    }
}

/* C = A×B (n×n) on the actor's backend, in place; returns the dw_gemm code. */
EXPORT(gemm) int32_t gemm(int32_t n, const float *a, const float *b, float *c) { return dw_gemm(n, n, n, a, b, c); }

/* Calls the no-op host function n times. */
EXPORT(call_nop) void call_nop(int32_t n) {
    for (int32_t i = 0; i < n; i++) dw_nop();
}

/* --- inference through the actor (bench actor) ----------------------------------------------
 * The guest holds the logits buffer and picks tokens itself (argmax), as a chat actor does. */
static int32_t llm_model, llm_session, llm_vocab;
static float *llm_logits;
static int32_t llm_ids[8192];

/* Opens model "default" and a session of ctx tokens; returns the vocabulary size. */
EXPORT(llm_setup) int32_t llm_setup(int32_t ctx) {
    dw_model_info info;
    if ((llm_model = dw_model_open("default", 7)) < 0) return llm_model;
    if (dw_model_info_get(llm_model, &info) < 0) return -1;
    llm_vocab = info.vocab_size;
    if (!(llm_logits = malloc(sizeof(float) * (size_t)llm_vocab))) return DW_E_LIMIT;
    if ((llm_session = dw_session_create(llm_model, ctx)) < 0) return llm_session;
    return llm_vocab;
}

/* Rewinds the session and prefills n tokens (ids derived from seed); returns the code. */
EXPORT(llm_prefill) int32_t llm_prefill(int32_t n, int32_t seed) {
    if (n <= 0 || n > 8192) return DW_E_INVALID;
    for (int32_t i = 0; i < n; i++) llm_ids[i] = (int32_t)(((uint32_t)seed * 7919u + (uint32_t)i * 104729u) % (uint32_t)llm_vocab);
    int32_t rc = dw_session_truncate(llm_session, 0);
    return rc < 0 ? rc : dw_prefill(llm_session, llm_ids, n, llm_logits, llm_vocab);
}

static int32_t argmax(const float *x, int32_t n) { return dw_argmax_f32(x, n); }

/* Generates n tokens greedily and returns the last: host_sampler 0 picks each token in the
 * guest (argmax over the logits in its memory), 1 with the host-side sampler (dw.sample). */
EXPORT(llm_decode) int32_t llm_decode(int32_t n, int32_t host_sampler) {
    static dw_sample_params greedy = {0.0f, 1.0f, 0.0f, 1.0f, 0, 0, 0};
    static uint8_t state[DW_SAMPLER_STATE_BYTES];
    int32_t next = 0;
    for (int32_t i = 0; i < n; i++) {
        next = host_sampler ? dw_sample(llm_logits, llm_vocab, &greedy, state, llm_ids, 0) : argmax(llm_logits, llm_vocab);
        int32_t rc = dw_decode(llm_session, next, llm_logits, llm_vocab);
        if (rc < 0) return rc;
    }
    return next;
}

/* The guest's own work per token, alone: n argmax passes over the logits. */
EXPORT(llm_argmax) int32_t llm_argmax(int32_t n) {
    int32_t r = 0;
    for (int32_t i = 0; i < n; i++) r += argmax(llm_logits, llm_vocab);
    return r;
}

/* --- many actors at once (bench batch) -------------------------------------------------------
 * Each actor prefills a prompt whose first `shared` tokens are the same for every actor (a system
 * prompt) and the rest its own, then generates one token per call, chosen on the host's device
 * (dw.decode_greedy, or dw.decode_sample at a temperature: no logits cross into the guest) or,
 * with guest_picks, by the guest itself from logits the host writes into its memory (the argmax,
 * or at a temperature the same rule as the device's, dw_pick_top_k), as a chat actor would. */
static int32_t llm_next;
static uint64_t llm_draws = 0x9E3779B97F4A7C15ull; /* xorshift64: the uniform numbers of sampling */

static double next_unit(void) {
    llm_draws ^= llm_draws << 13, llm_draws ^= llm_draws >> 7, llm_draws ^= llm_draws << 17;
    return (double)(llm_draws >> 11) * (1.0 / 9007199254740992.0);
}

EXPORT(llm_prefill_shared) int32_t llm_prefill_shared(int32_t n, int32_t seed, int32_t shared) {
    if (n <= 0 || n > 8192 || shared < 0 || shared > n) return DW_E_INVALID;
    for (int32_t i = 0; i < n; i++) { /* as src/cli/cmd_bench_batch.c's prompt_id */
        uint32_t x = i < shared ? ((uint32_t)seed >> 16) * 2654435761u + 7u : (uint32_t)seed * 2246822519u + 13u;
        x += (uint32_t)i * 3266489917u;
        x ^= x >> 15, x *= 2246822519u, x ^= x >> 13;
        llm_ids[i] = (int32_t)(x % (uint32_t)llm_vocab);
    }
    int32_t rc = dw_session_truncate(llm_session, 0);
    if (rc >= 0) rc = dw_prefill(llm_session, llm_ids, n, llm_logits, llm_vocab);
    llm_next = argmax(llm_logits, llm_vocab);
    return rc;
}

/* One more token; returns it (or a negative code). temperature_milli > 0 samples at that
 * temperature / 1000 (top-p 1, the 64 most likely tokens). */
EXPORT(llm_step) int32_t llm_step(int32_t guest_picks, int32_t temperature_milli) {
    const dw_device_sampling s = {.temperature = (float)temperature_milli / 1000.0f, .top_p = 1.0f};
    int32_t rc;
    if (guest_picks) {
        rc = dw_decode(llm_session, llm_next, llm_logits, llm_vocab);
        if (rc >= 0)
            llm_next = temperature_milli > 0 ? dw_pick_top_k(llm_logits, llm_vocab, &s, next_unit())
                                             : argmax(llm_logits, llm_vocab);
    } else {
        int32_t out;
        double u = next_unit();
        rc = temperature_milli > 0 ? dw_decode_sample(llm_session, llm_next, 1, &s, &u, &out)
                                   : dw_decode_greedy(llm_session, llm_next, 1, &out);
        if (rc >= 0) llm_next = out;
    }
    return rc < 0 ? rc : llm_next;
}
