/* Driftwood guest SDK: the host functions an actor imports from module "dw", and the types
 * and codes host and guest share. Compile actors with sdk/guest.mk (clang --target=wasm32-wasi).
 * Pointers are offsets in the actor's own memory; a pointer or length outside it traps (the
 * actor is never trusted with the host's memory). Functions returning int32_t return 0 or more
 * on success and a negative DW_E_* code on failure; dw_last_error() then gives the message. */
#ifndef DRIFTWOOD_GUEST_H
#define DRIFTWOOD_GUEST_H

#include <stdint.h>

#include "driftwood/pick.h"

enum {
    DW_E_OK = 0,
    DW_E_INVALID = -1,   /* an argument is out of range */
    DW_E_BACKEND = -2,   /* the compute device failed */
    DW_E_NOT_FOUND = -3, /* no such model, session or name */
    DW_E_LIMIT = -4,     /* a capacity (context, buffer, handle table) is exceeded */
    DW_E_STATE = -5,     /* not allowed now */
};

/* Layouts shared by host and guest (fields of 4 or 8 bytes, little-endian). */
typedef struct dw_model_info {
    int32_t vocab_size;
    int32_t context_length;   /* max_position_embeddings */
    int32_t n_layers;
    int32_t chat_format;      /* DW_CHAT_LLAMA3 or DW_CHAT_NONE */
    int32_t bos_id;           /* -1 when the model has none */
    int32_t eos_id;           /* <|end_of_text|> or the first eos id */
    int32_t eot_id;           /* <|eot_id|> (end of a chat turn), or -1 */
    int32_t start_header_id;  /* <|start_header_id|>, or -1 */
    int32_t end_header_id;    /* <|end_header_id|>, or -1 */
    int32_t n_stop;           /* tokens that end generation: stop_ids[0..n_stop) */
    int32_t stop_ids[8];
} dw_model_info;

enum { DW_CHAT_NONE = 0, DW_CHAT_LLAMA3 = 1 };

typedef struct dw_session_info {
    int32_t model;      /* the model handle */
    int32_t position;   /* tokens in the KV cache = where the next token goes */
    int32_t capacity;   /* context length of this session */
    int32_t vocab_size;
} dw_session_info;

/* Settings of the host-side sampler (dw_sample). */
typedef struct dw_sample_params {
    float temperature;         /* 0: greedy */
    float top_p;               /* 1: off */
    float min_p;               /* 0: off */
    float repetition_penalty;  /* 1: off */
    int32_t top_k;             /* 0: off */
    int32_t repetition_last_n; /* 0: all of history */
    uint64_t seed;
} dw_sample_params;

/* The host-side sampler's generator state lives in guest memory, so it is part of the actor's
 * state (and of its snapshots). Zero it before first use: zero means "start from the seed". */
#define DW_SAMPLER_STATE_BYTES 72

enum { DW_TOK_SPECIAL = 1, DW_TOK_BOS = 2 }; /* dw_tokenize flags: parse special-token text, add BOS */
enum { DW_DETOK_SKIP_SPECIAL = 1 };          /* dw_detokenize flags */

/* ------------------------------------------------------------------------------------------
 * Helpers for guests (static inline: they cost no import). */

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>
#endif

/* The index of the largest of x[0..n) (the first one on ties): greedy decoding over logits.
 * With SIMD (sdk/guest.mk compiles with -msimd128) four lanes at a time. */
static inline int32_t dw_argmax_f32(const float *x, int32_t n) {
    int32_t best = 0, i = 0;
    float best_v = n > 0 ? x[0] : 0.0f;
#if defined(__wasm_simd128__)
    if (n >= 8) {
        v128_t vmax = wasm_v128_load(x), vidx = wasm_i32x4_make(0, 1, 2, 3), cur = vidx;
        const v128_t four = wasm_i32x4_splat(4);
        for (i = 4; i + 4 <= n; i += 4) {
            cur = wasm_i32x4_add(cur, four);
            v128_t v = wasm_v128_load(x + i);
            v128_t gt = wasm_f32x4_gt(v, vmax); /* strictly greater: keeps the first index per lane */
            vmax = wasm_v128_bitselect(v, vmax, gt);
            vidx = wasm_v128_bitselect(cur, vidx, gt);
        }
        float lane_v[4];
        int32_t lane_i[4];
        wasm_v128_store(lane_v, vmax);
        wasm_v128_store(lane_i, vidx);
        best_v = lane_v[0], best = lane_i[0];
        for (int k = 1; k < 4; k++)
            if (lane_v[k] > best_v || (lane_v[k] == best_v && lane_i[k] < best)) best_v = lane_v[k], best = lane_i[k];
    }
#endif
    for (; i < n; i++)
        if (x[i] > best_v) best_v = x[i], best = i;
    return best;
}

/* ------------------------------------------------------------------------------------------
 * The imports (guests only: the host includes this header for the types and codes above). */
#if defined(__wasm__)
#define DW_IMPORT(name) __attribute__((import_module("dw"), import_name(#name)))

/* C[m×n] = A[m×k] × B[k×n]: f32, row-major, computed on the actor's backend in place in the
 * actor's memory (on CUDA the GPU reads A and B and writes C through these very pages).
 * Finished when it returns. Under the actor's time limit a large product runs in blocks of rows
 * and traps ("timeout") when the limit runs out, as dw_prefill does between its batches. */
DW_IMPORT(gemm) int32_t dw_gemm(int32_t m, int32_t n, int32_t k, const float *a, const float *b, float *c);

/* Writes len bytes of msg to the host's log (stderr), one line. */
DW_IMPORT(log) void dw_log(const char *msg, int32_t len);
/* Monotonic clock, nanoseconds. */
DW_IMPORT(now) int64_t dw_now(void);
/* Does nothing: measures the cost of a host call. */
DW_IMPORT(nop) void dw_nop(void);
/* Copies the message of the last failed call (NUL-terminated, truncated to cap); returns its length. */
DW_IMPORT(last_error) int32_t dw_last_error(char *buf, int32_t cap);

/* Messages and output. An actor handles one message at a time: the host calls the actor's
 * export `dw_on_message(int32_t len)`, which reads the message with dw_message_read and
 * answers with dw_emit (streamed to the host's stdout or to the embedding application). */
DW_IMPORT(message_read) int32_t dw_message_read(void *buf, int32_t cap); /* returns the length */
DW_IMPORT(emit) void dw_emit(const void *bytes, int32_t len);

/* Language models. Models are registered with the runtime by name (driftwood --model NAME=DIR);
 * a guest opens them by name and never sees files. Handles (models, sessions) belong to the
 * actor: another actor's handle numbers mean nothing here. */

/* Opens the registered model `name` (len bytes); returns a model handle (> 0). A handle stays
 * valid across snapshots, but the model behind a name may change when an actor is restored
 * onto another model: read dw_model_info_get again at each message rather than caching it. */
DW_IMPORT(model_open) int32_t dw_model_open(const char *name, int32_t len);
DW_IMPORT(model_info) int32_t dw_model_info_get(int32_t model, dw_model_info *out);

/* A session: one KV-cache sequence of ctx tokens (0: the model's default) owned by this actor. */
DW_IMPORT(session_create) int32_t dw_session_create(int32_t model, int32_t ctx);
DW_IMPORT(session_free) int32_t dw_session_free(int32_t session);
DW_IMPORT(session_info) int32_t dw_session_info_get(int32_t session, dw_session_info *out);
/* Keeps the first n tokens of the session (rewinds); n ≤ position. */
DW_IMPORT(session_truncate) int32_t dw_session_truncate(int32_t session, int32_t n);
/* A new session that continues exactly as `session` would from its position (returns its handle,
 * > 0). On a batching host the child shares the parent's KV blocks until one of them writes, so a
 * fork costs almost nothing; elsewhere DW_E_INVALID. Counts against the actor's sessions. */
DW_IMPORT(session_fork) int32_t dw_session_fork(int32_t session);

/* Text → ids: writes up to cap ids and returns how many the text needs (> cap: call again).
 * At most 1 MiB of text per call (DW_E_LIMIT beyond: tokenize it in parts). */
DW_IMPORT(tokenize) int32_t dw_tokenize(int32_t model, const char *text, int32_t len, int32_t flags, int32_t *ids,
                                        int32_t cap);
/* Ids → UTF-8: writes up to cap bytes (no NUL) and returns how many the text needs. At most
 * 65536 ids and 64 KiB of text per call (DW_E_LIMIT beyond). */
DW_IMPORT(detokenize) int32_t dw_detokenize(int32_t model, const int32_t *ids, int32_t n, int32_t flags, char *out,
                                            int32_t cap);

/* Appends n tokens to the session and writes the last position's logits (vocab_size f32) into
 * logits, which must hold logits_cap ≥ vocab_size floats. On CUDA the GPU writes them straight
 * into this memory. Returns 0, or DW_E_LIMIT when the tokens overflow the session's context. */
DW_IMPORT(prefill) int32_t dw_prefill(int32_t session, const int32_t *ids, int32_t n, float *logits,
                                      int32_t logits_cap);
/* One token: dw_prefill of n = 1 on the decode path. */
DW_IMPORT(decode) int32_t dw_decode(int32_t session, int32_t id, float *logits, int32_t logits_cap);
/* Greedy decoding of n tokens from id, chosen on the host's device (the first largest logit): out
 * gets n ids; the session then holds id and out[0..n-2] more (out[n-1] is the next to feed). No
 * logits cross into the guest. Returns 0, or DW_E_LIMIT when n tokens overflow the context. */
DW_IMPORT(decode_greedy) int32_t dw_decode_greedy(int32_t session, int32_t id, int32_t n, int32_t *out);

/* Sampled decoding of n tokens from id on the host's device: as dw.decode_greedy, but each token
 * drawn by the device sampler's rule (driftwood/pick.h, which guests may also apply to logits
 * themselves: dw_pick_top_k) with params (temperature > 0, top-p, top-k of at most 64) and u[i]
 * in [0, 1), the guest's own uniform number for out[i]. No logits cross into the guest. Returns 0,
 * DW_E_INVALID naming a setting or number out of range, or DW_E_LIMIT when n tokens overflow the
 * context. */
DW_IMPORT(decode_sample) int32_t dw_decode_sample(int32_t session, int32_t id, int32_t n,
                                                  const dw_device_sampling *params, const double *u, int32_t *out);

/* Host-side sampling for guests that do not sample themselves: picks a token from logits[n]
 * with params, history (for the repetition penalty) and the generator state (updated). n is at
 * most 2^21 (DW_E_LIMIT beyond). NaN logits are never picked and +inf ones beat every finite one
 * (sampler.h); returns the token, or DW_E_INVALID for bad settings or when no logit is above -inf. */
DW_IMPORT(sample) int32_t dw_sample(const float *logits, int32_t n, const dw_sample_params *params, uint8_t *state,
                                    const int32_t *history, int32_t n_history);
#endif /* __wasm__ */

#endif
