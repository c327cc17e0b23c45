/* The guest of the `dw` ABI fuzz target (fuzz/fuzz_abi.c): a reactor whose dw_on_message reads
 * the fuzz input as its message and plays it as a program of host calls with fuzzed arguments.
 * The host must answer every call with a result, an error code or a trap, never a crash.
 *
 * Program: up to MAX_CALLS records, each one byte naming the call (modulo the number of calls)
 * and then 4 bytes (little-endian; missing bytes are 0) per argument. An argument is read as
 *   0x7FFFFF00..0x7FFFFF0F   the result of one of the last 16 calls (handles, sizes), else
 *   a pointer:  top bits 00 or 01: into the work area (offset modulo its size; the message
 *                                  itself lies at its start, so text, ids and params are fuzzed),
 *               top bits 10:       the low 30 bits as an address anywhere (may be past the memory),
 *               top bits 11:       the value as it is (always past a memory of under 2 GiB);
 *   a count that makes the host compute (GEMM sizes, prefill lengths, contexts): a value in
 *               [0, 2^20) is reduced modulo a small bound so that one input cannot hold the
 *               fuzzer for seconds; other values (negative, huge) pass unchanged;
 *   anything else: passed unchanged. */
#include <driftwood/guest.h>
#include <stdint.h>
#include <string.h>

#define EXPORT(name) __attribute__((export_name(#name)))

#define MAX_CALLS 64
#define WORK_BYTES (256 * 1024)
#define RESULT_REF 0x7FFFFF00

static uint8_t work[WORK_BYTES] __attribute__((aligned(64)));
static int32_t results[16];
static unsigned n_results;

typedef struct program {
    const uint8_t *at, *end;
} program;

static int32_t next_raw(program *p) {
    uint32_t v = 0;
    for (int b = 0; b < 4; b++) v |= (uint32_t)(p->at < p->end ? *p->at++ : 0) << (8 * b);
    return (int32_t)v;
}

static int is_result_ref(int32_t raw) { return raw >= RESULT_REF && raw < RESULT_REF + 16; }

static int32_t value(program *p) {
    int32_t raw = next_raw(p);
    return is_result_ref(raw) ? results[(n_results - 1 - (raw - RESULT_REF)) % 16] : raw;
}

static void *pointer(program *p) {
    int32_t raw = next_raw(p);
    uint32_t u = (uint32_t)raw;
    if (is_result_ref(raw)) u = (uint32_t)results[(n_results - 1 - (raw - RESULT_REF)) % 16];
    else if ((u >> 30) < 2) return work + (u % WORK_BYTES);
    else if ((u >> 30) == 2) u &= 0x3FFFFFFFu;
    return (void *)(uintptr_t)u;
}

static int32_t count(program *p, int32_t bound) {
    int32_t v = value(p);
    return v >= 0 && v < (1 << 20) ? v % bound : v;
}

static void remember(int32_t r) { results[n_results++ % 16] = r; }

/* One call; returns its result (what `remember` keeps for later arguments). */
static int32_t call(program *p, unsigned which) {
    switch (which) {
    case 0: dw_nop(); return 0;
    case 1: return (int32_t)dw_now();
    case 2: { char *buf = pointer(p); return dw_last_error(buf, value(p)); }
    case 3: { const void *bytes = pointer(p); dw_emit(bytes, value(p)); return 0; }
    case 4: { void *buf = pointer(p); return dw_message_read(buf, value(p)); }
    case 5: {
        int32_t m = count(p, 65), n = count(p, 65), k = count(p, 65);
        const float *a = pointer(p), *b = pointer(p);
        return dw_gemm(m, n, k, a, b, pointer(p));
    }
    case 6: { const char *name = pointer(p); return dw_model_open(name, value(p)); }
    case 7: { int32_t model = value(p); return dw_model_info_get(model, pointer(p)); }
    case 8: { int32_t model = value(p); return dw_session_create(model, count(p, 65)); }
    case 9: return dw_session_free(value(p));
    case 10: { int32_t s = value(p); return dw_session_info_get(s, pointer(p)); }
    case 11: { int32_t s = value(p); return dw_session_truncate(s, value(p)); }
    case 12: {
        int32_t model = value(p);
        const char *text = pointer(p);
        int32_t len = value(p), flags = value(p);
        int32_t *ids = pointer(p);
        return dw_tokenize(model, text, len, flags, ids, value(p));
    }
    case 13: {
        int32_t model = value(p);
        const int32_t *ids = pointer(p);
        int32_t n = value(p), flags = value(p);
        char *out = pointer(p);
        return dw_detokenize(model, ids, n, flags, out, value(p));
    }
    case 14: {
        int32_t s = value(p);
        const int32_t *ids = pointer(p);
        int32_t n = count(p, 17);
        float *logits = pointer(p);
        return dw_prefill(s, ids, n, logits, value(p));
    }
    case 15: {
        int32_t s = value(p), id = value(p);
        float *logits = pointer(p);
        return dw_decode(s, id, logits, value(p));
    }
    case 16: {
        const float *logits = pointer(p);
        int32_t n = value(p);
        const dw_sample_params *params = pointer(p);
        uint8_t *state = pointer(p);
        const int32_t *history = pointer(p);
        return dw_sample(logits, n, params, state, history, value(p));
    }
    case 17: return (int32_t)__builtin_wasm_memory_grow(0, (uint32_t)count(p, 65));
    case 18: {
        int32_t s = value(p), id = value(p), n = count(p, 17);
        return dw_decode_greedy(s, id, n, pointer(p));
    }
    default: {
        int32_t s = value(p), id = value(p), n = count(p, 17);
        const dw_device_sampling *params = pointer(p);
        const double *u = pointer(p);
        return dw_decode_sample(s, id, n, params, u, pointer(p));
    }
    }
}
#define N_CALLS 20

/* The message is the program: copied to the start of the work area (where pointers land),
 * then run from there. */
EXPORT(dw_on_message) void dw_on_message(int32_t len) {
    if (len < 0) return;
    int32_t n = dw_message_read(work, WORK_BYTES);
    if (n < 0) return;
    if (n > WORK_BYTES) n = WORK_BYTES;
    static uint8_t code[WORK_BYTES];
    memcpy(code, work, (size_t)n);
    program p = {code, code + n};
    memset(results, 0, sizeof results);
    n_results = 0;
    for (int i = 0; i < MAX_CALLS && p.at < p.end; i++) remember(call(&p, *p.at++ % N_CALLS));
}
