/* Test actor that pushes on the per-actor limits (tests/cli/test_hostile_limits.sh): host
 * calls that would run long (a large dw.gemm, a long dw.prefill, a large dw.tokenize), a
 * dw.detokenize of many ids, a dw.sample over a huge vocabulary, and memory grown to a size whose pages are never touched. Each
 * export ends right after its host call, so only the host's own checks can stop it. */
#include <driftwood/guest.h>
#include <stdint.h>
#include <string.h>

#define EXPORT(name) __attribute__((export_name(#name)))

static float logits[1 << 14];

/* Grows memory so that `bytes` more bytes lie past the current end; returns their offset, or 0. */
static uintptr_t fresh_bytes(uint64_t bytes) {
    uint64_t pages = (bytes + 65535) / 65536;
    int32_t old = (int32_t)__builtin_wasm_memory_grow(0, (uintptr_t)pages);
    return old < 0 ? 0 : (uintptr_t)old * 65536u;
}

/* dw.gemm of an m×k by k×n product of zeros in fresh memory; returns its code. */
EXPORT(gemm_zeros) int32_t gemm_zeros(int32_t m, int32_t n, int32_t k) {
    uintptr_t base = fresh_bytes(4 * ((uint64_t)m * k + (uint64_t)k * n + (uint64_t)m * n));
    if (!base) return -100;
    float *a = (float *)base, *b = a + (size_t)m * k, *c = b + (size_t)k * n;
    return dw_gemm(m, n, k, a, b, c);
}

/* Prefills n tokens (ids 1..) into a fresh session of the "default" model; returns its code. */
EXPORT(prefill_tokens) int32_t prefill_tokens(int32_t n) {
    int32_t session = dw_session_create(dw_model_open("default", 7), n);
    if (session < 0) return session;
    int32_t *ids = (int32_t *)fresh_bytes(4 * (uint64_t)n);
    if (!ids) return -100;
    for (int32_t i = 0; i < n; i++) ids[i] = 1 + i % 200;
    return dw_prefill(session, ids, n, logits, (int32_t)(sizeof logits / sizeof logits[0]));
}

/* Greedy decoding of n tokens in one dw.decode_greedy call, in a fresh session of n + 1 tokens
 * of the "default" model; returns its code. */
EXPORT(greedy_tokens) int32_t greedy_tokens(int32_t n) {
    int32_t session = dw_session_create(dw_model_open("default", 7), n + 1);
    if (session < 0) return session;
    int32_t *out = (int32_t *)fresh_bytes(4 * (uint64_t)n);
    if (!out) return -100;
    return dw_decode_greedy(session, 1, n, out);
}

/* Sampled decoding of n tokens in one dw.decode_sample call (temperature 1, numbers spread over
 * [0, 1)), in a fresh session of n + 1 tokens of the "default" model; returns its code. */
EXPORT(sampled_tokens) int32_t sampled_tokens(int32_t n) {
    int32_t session = dw_session_create(dw_model_open("default", 7), n + 1);
    if (session < 0) return session;
    int32_t *out = (int32_t *)fresh_bytes(4 * (uint64_t)n);
    double *u = (double *)fresh_bytes(8 * (uint64_t)n);
    if (!out || !u) return -100;
    for (int32_t i = 0; i < n; i++) u[i] = (double)((i * 7919) % n) / (double)n;
    const dw_device_sampling p = {.temperature = 1.0f, .top_p = 1.0f};
    return dw_decode_sample(session, 1, n, &p, u, out);
}

/* Tokenizes len bytes of "ab ab ab ..." (asking for the count only); returns the count or code. */
EXPORT(tokenize_bytes) int32_t tokenize_bytes(int32_t len) {
    char *text = (char *)fresh_bytes((uint64_t)len);
    if (!text) return -100;
    for (int32_t i = 0; i < len; i++) text[i] = "ab "[i % 3];
    return dw_tokenize(dw_model_open("default", 7), text, len, 0, NULL, 0);
}

/* Detokenizes count ids (all id `id`, in fresh memory) with dw_detokenize flags into a
 * 64-byte buffer; returns the length or code. */
EXPORT(detokenize_ids) int32_t detokenize_ids(int32_t count, int32_t id, int32_t flags) {
    int32_t *ids = (int32_t *)fresh_bytes(4 * (uint64_t)count);
    if (!ids) return -100;
    for (int32_t i = 0; i < count; i++) ids[i] = id;
    static char out[64];
    return dw_detokenize(dw_model_open("default", 7), ids, count, flags, out, (int32_t)sizeof out);
}

/* dw.sample over n zero logits in fresh memory (greedy); returns the token or code. */
EXPORT(sample_zeros) int32_t sample_zeros(int32_t n) {
    float *zeros = (float *)fresh_bytes(4 * (uint64_t)n);
    if (!zeros) return -100;
    static const dw_sample_params greedy = {.temperature = 0, .top_p = 1, .repetition_penalty = 1};
    static uint8_t state[DW_SAMPLER_STATE_BYTES];
    return dw_sample(zeros, n, &greedy, state, NULL, 0);
}

/* Grows memory to `pages` pages without touching them and writes 7 into its last byte;
 * returns the new size in pages (or -1). */
EXPORT(grow_sparse_to) int32_t grow_sparse_to(int32_t pages) {
    int32_t old = (int32_t)__builtin_wasm_memory_size(0);
    if (pages < old || (int32_t)__builtin_wasm_memory_grow(0, (uintptr_t)(pages - old)) < 0) return -1;
    *(volatile uint8_t *)(uintptr_t)((uint32_t)pages * 65536u - 1) = 7;
    return (int32_t)__builtin_wasm_memory_size(0);
}
/* The byte at offset (to check a restore). */
EXPORT(byte_at) int32_t byte_at(int32_t offset) { return *(volatile uint8_t *)(uintptr_t)offset; }
