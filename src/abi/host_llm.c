/* The language-model host functions of module "dw": models by name, per-actor sessions,
 * tokenize/detokenize, prefill/decode writing logits into guest memory, and an optional
 * host-side sampler (include/driftwood/guest.h documents them for guests).
 * Handles index the actor's own tables (dw__abi_context), so an actor can name only its own
 * models and sessions; session handles carry a generation so a freed handle stays invalid. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "abi/abi.h"
#include "abi/guest_memory.h"
#include "driftwood/engine.h"
#include "driftwood/guest.h"
#include "driftwood/model.h"
#include "driftwood/sampler.h"
#include "driftwood/tokenizer.h"
#include "core/clock.h"

static int32_t code_of(dw_status st) {
    switch (st) {
    case DW_OK: return DW_E_OK;
    case DW_ERR_LIMIT: return DW_E_LIMIT;
    case DW_ERR_NOT_FOUND: return DW_E_NOT_FOUND;
    case DW_ERR_STATE: return DW_E_STATE;
    case DW_ERR_BACKEND: return DW_E_BACKEND;
    case DW_ERR_NO_MEMORY: return DW_E_LIMIT; /* the host could not give what the call asked for */
    default: return DW_E_INVALID;
    }
}

static dw__abi_model *model_of(dw__abi_context *ctx, int32_t handle) {
    return handle >= 1 && handle <= ctx->model_count ? &ctx->models[handle - 1] : NULL;
}

static dw__abi_session *session_of(dw__abi_context *ctx, int32_t handle) {
    int index = (handle & 0xFFFF) - 1;
    uint16_t generation = (uint16_t)((uint32_t)handle >> 16);
    if (handle <= 0 || index < 0 || index >= DW_ABI_MAX_SESSIONS) return NULL;
    dw__abi_session *s = &ctx->sessions[index];
    return s->session && s->generation == generation ? s : NULL;
}

static int32_t session_handle(const dw__abi_context *ctx, const dw__abi_session *s) {
    return (int32_t)((uint32_t)(s - ctx->sessions) + 1) | (int32_t)((uint32_t)(s->generation & 0x7FFF) << 16);
}

void dw__abi_context_release(dw__abi_context *ctx) {
    for (int i = 0; i < DW_ABI_MAX_SESSIONS; i++)
        if (ctx->sessions[i].session) dw_session_free(ctx->sessions[i].session), ctx->sessions[i].session = NULL;
    dw_sampler_free(ctx->sampler);
    ctx->sampler = NULL;
}

/* Under a time limit, dw.prefill runs in chunks of this many tokens (the engine's default
 * batch) and checks the limit between them. */
#define DW_ABI_PREFILL_CHUNK 128
/* ... and dw.decode_greedy in pieces of this many tokens. */
#define DW_ABI_GREEDY_CHUNK 16

/* What one call may ask of the host, so that the host memory and time a call costs stay bounded
 * whatever the guest passes (docs/DESIGN.md, "Limits that hold per actor"): text bytes per
 * dw.tokenize, ids per dw.detokenize, bytes of text dw.detokenize makes, dw.sample's vocabulary. */
#define DW_ABI_TOKENIZE_MAX_BYTES (1 << 20)
#define DW_ABI_DETOKENIZE_MAX_IDS (1 << 16)
#define DW_ABI_DETOKENIZE_MAX_TEXT (1 << 16)
#define DW_ABI_SAMPLE_MAX_VOCAB (1 << 21)

#define FAIL(code, ...) (args[0].i32 = dw__abi_fail(ctx, (code), __VA_ARGS__), (wasm_trap_t *)NULL)

static wasm_trap_t *host_model_open(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    int32_t len = args[1].i32;
    const char *name;
    wasm_trap_t *trap = dw__abi_span(ctx, "dw.model_open", "name", (uint32_t)args[0].i32, len, 1, 1, &name);
    if (trap) return trap;
    if (len == 0 || len > 63) return FAIL(DW_E_INVALID, "dw.model_open: model names are 1 to 63 bytes");
    char buf[64];
    memcpy(buf, name, (size_t)len);
    buf[len] = 0;
    int32_t handle;
    dw_error err;
    dw_status st = dw__abi_open_model(ctx, buf, &handle, &err);
    if (st != DW_OK) return FAIL(code_of(st), "dw.model_open: %s", err.message);
    args[0].i32 = handle;
    return NULL;
}

dw_status dw__abi_open_model(dw__abi_context *ctx, const char *name, int32_t *handle, dw_error *err) {
    for (int i = 0; i < ctx->model_count; i++)
        if (!strcmp(ctx->models[i].name, name)) return *handle = i + 1, DW_OK;
    if (strlen(name) > 63) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "model names are 1 to 63 bytes");
    if (ctx->model_count == DW_ABI_MAX_MODELS) return dw_error_set(err, DW_ERR_LIMIT, "too many models open");
    if (!ctx->open_model) return dw_error_set(err, DW_ERR_NOT_FOUND, "this actor may not use models");
    dw__abi_model *m = &ctx->models[ctx->model_count];
    dw_status st = ctx->open_model(ctx->opener_ctx, name, &m->model, &m->tokenizer, &m->kv_f32, err);
    if (st != DW_OK) return st;
    snprintf(m->name, sizeof m->name, "%s", name);
    *handle = ++ctx->model_count;
    return DW_OK;
}

static wasm_trap_t *host_model_info(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    dw__abi_model *m = model_of(ctx, args[0].i32);
    dw_model_info *out;
    wasm_trap_t *trap = dw__abi_span(ctx, "dw.model_info", "info", (uint32_t)args[1].i32, 1, sizeof *out, 4, &out);
    if (trap) return trap;
    if (!m) return FAIL(DW_E_NOT_FOUND, "dw.model_info: bad model handle %d", args[0].i32);
    const dw_model_config *cfg = dw_model_get_config(m->model);
    dw_model_info info = {
        .vocab_size = cfg->vocab_size,
        .context_length = cfg->max_position_embeddings,
        .n_layers = cfg->n_layers,
        .bos_id = cfg->bos_token_id >= 0 ? cfg->bos_token_id : dw_tokenizer_special_id(m->tokenizer, DW_SPECIAL_BOS),
        .eos_id = dw_tokenizer_special_id(m->tokenizer, DW_SPECIAL_EOS),
        .eot_id = dw_tokenizer_special_id(m->tokenizer, DW_SPECIAL_EOT),
        .start_header_id = dw_tokenizer_special_id(m->tokenizer, DW_SPECIAL_START_HEADER),
        .end_header_id = dw_tokenizer_special_id(m->tokenizer, DW_SPECIAL_END_HEADER),
    };
    if (info.eos_id < 0 && cfg->n_eos > 0) info.eos_id = cfg->eos_token_ids[0];
    info.chat_format = info.start_header_id >= 0 && info.end_header_id >= 0 && info.eot_id >= 0 ? DW_CHAT_LLAMA3 : DW_CHAT_NONE;
    /* stop tokens: the model's eos ids, then <|eot_id|> and <|end_of_text|> if not already there */
    int candidates[DW_MAX_EOS_TOKENS + 2], nc = 0;
    for (int i = 0; i < cfg->n_eos; i++) candidates[nc++] = cfg->eos_token_ids[i];
    candidates[nc++] = info.eot_id;
    candidates[nc++] = info.eos_id;
    for (int i = 0; i < nc && info.n_stop < 8; i++) {
        int dup = candidates[i] < 0;
        for (int j = 0; j < info.n_stop; j++) dup |= info.stop_ids[j] == candidates[i];
        if (!dup) info.stop_ids[info.n_stop++] = candidates[i];
    }
    *out = info;
    args[0].i32 = DW_E_OK;
    return NULL;
}

static wasm_trap_t *host_session_create(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    dw__abi_model *m = model_of(ctx, args[0].i32);
    int32_t n_ctx = args[1].i32;
    if (!m) return FAIL(DW_E_NOT_FOUND, "dw.session_create: bad model handle %d", args[0].i32);
    if (n_ctx < 0) return FAIL(DW_E_INVALID, "dw.session_create: negative context length %d", n_ctx);
    dw__abi_session *slot = NULL;
    for (int i = 0; i < DW_ABI_MAX_SESSIONS && !slot; i++)
        if (!ctx->sessions[i].session) slot = &ctx->sessions[i];
    if (!slot) return FAIL(DW_E_LIMIT, "dw.session_create: too many sessions (%d)", DW_ABI_MAX_SESSIONS);
    dw_error err;
    dw_status st = dw__abi_session_open(ctx, (int)(m - ctx->models), n_ctx, slot, &err);
    if (st != DW_OK) return FAIL(code_of(st), "dw.session_create: %s", err.message);
    args[0].i32 = session_handle(ctx, slot);
    return NULL;
}

static wasm_trap_t *host_session_free(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    dw__abi_session *s = session_of(ctx, args[0].i32);
    if (!s) return FAIL(DW_E_NOT_FOUND, "dw.session_free: bad session handle %d", args[0].i32);
    dw_session_free(s->session);
    s->session = NULL;
    s->generation++;
    args[0].i32 = DW_E_OK;
    return NULL;
}

static wasm_trap_t *host_session_fork(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    dw__abi_session *parent = session_of(ctx, args[0].i32);
    if (!parent) return FAIL(DW_E_NOT_FOUND, "dw.session_fork: bad session handle %d", args[0].i32);
    dw__abi_session *slot = NULL;
    for (int i = 0; i < DW_ABI_MAX_SESSIONS && !slot; i++)
        if (!ctx->sessions[i].session) slot = &ctx->sessions[i];
    if (!slot) return FAIL(DW_E_LIMIT, "dw.session_fork: too many sessions (%d)", DW_ABI_MAX_SESSIONS);
    /* A child may grow to its parent's context: it counts like a session of that size. */
    size_t held = 0;
    for (int i = 0; i < DW_ABI_MAX_SESSIONS; i++)
        if (ctx->sessions[i].session) held += ctx->sessions[i].kv_bytes;
    if (parent->kv_bytes > ctx->kv_limit - held)
        return FAIL(DW_E_LIMIT, "dw.session_fork: the child's KV cache (%zu bytes) would take the actor past its KV memory limit (%zu of %zu bytes in use)",
                    parent->kv_bytes, held, ctx->kv_limit);
    dw_error err;
    dw_status st = dw_session_fork(parent->session, &slot->session, &err);
    if (st != DW_OK) return FAIL(code_of(st), "dw.session_fork: %s", err.message);
    slot->model = parent->model;
    slot->kv_bytes = parent->kv_bytes;
    args[0].i32 = session_handle(ctx, slot);
    return NULL;
}

static wasm_trap_t *host_session_info(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    dw__abi_session *s = session_of(ctx, args[0].i32);
    dw_session_info *out;
    wasm_trap_t *trap = dw__abi_span(ctx, "dw.session_info", "info", (uint32_t)args[1].i32, 1, sizeof *out, 4, &out);
    if (trap) return trap;
    if (!s) return FAIL(DW_E_NOT_FOUND, "dw.session_info: bad session handle %d", args[0].i32);
    *out = (dw_session_info){
        .model = s->model + 1,
        .position = dw_session_n_tokens(s->session),
        .capacity = dw_session_ctx(s->session),
        .vocab_size = dw_model_get_config(ctx->models[s->model].model)->vocab_size,
    };
    args[0].i32 = DW_E_OK;
    return NULL;
}

static wasm_trap_t *host_session_truncate(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    dw__abi_session *s = session_of(ctx, args[0].i32);
    if (!s) return FAIL(DW_E_NOT_FOUND, "dw.session_truncate: bad session handle %d", args[0].i32);
    dw_error err;
    dw_status st = dw_session_truncate(s->session, args[1].i32, &err);
    if (st != DW_OK) return FAIL(code_of(st), "dw.session_truncate: %s", err.message);
    args[0].i32 = DW_E_OK;
    return NULL;
}

static wasm_trap_t *host_tokenize(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    dw__abi_model *m = model_of(ctx, args[0].i32);
    int32_t len = args[2].i32, flags = args[3].i32, cap = args[5].i32;
    const char *text;
    int32_t *ids;
    wasm_trap_t *trap;
    if ((trap = dw__abi_span(ctx, "dw.tokenize", "text", (uint32_t)args[1].i32, len, 1, 1, &text)) ||
        (trap = dw__abi_span(ctx, "dw.tokenize", "ids", (uint32_t)args[4].i32, cap, sizeof(int32_t), 4, &ids)))
        return trap;
    if (!m) return FAIL(DW_E_NOT_FOUND, "dw.tokenize: bad model handle %d", args[0].i32);
    if (flags & ~(DW_TOK_SPECIAL | DW_TOK_BOS)) return FAIL(DW_E_INVALID, "dw.tokenize: unknown flags %#x", flags);
    if (len > DW_ABI_TOKENIZE_MAX_BYTES)
        return FAIL(DW_E_LIMIT, "dw.tokenize: %d bytes of text are more than one call takes (%d); tokenize it in parts", len,
                    DW_ABI_TOKENIZE_MAX_BYTES);
    int tf = (flags & DW_TOK_SPECIAL ? DW_TOKENIZE_PARSE_SPECIAL : 0) | (flags & DW_TOK_BOS ? DW_TOKENIZE_ADD_BOS : 0);
    size_t n_out = 0;
    dw_error err;
    dw_status st = dw_tokenizer_encode(m->tokenizer, text, (size_t)len, tf, cap ? ids : NULL, (size_t)cap, &n_out, &err);
    /* DW_ERR_LIMIT with more ids than cap: the guest gets the count it needs; any other failure
     * (the tokenizer's own limits included) is an error, never an empty result */
    if (st != DW_OK && !(st == DW_ERR_LIMIT && n_out > (size_t)cap))
        return FAIL(code_of(st), "dw.tokenize: %s", err.message);
    args[0].i32 = (int32_t)n_out;
    return NULL;
}

static wasm_trap_t *host_detokenize(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    dw__abi_model *m = model_of(ctx, args[0].i32);
    int32_t count = args[2].i32, flags = args[3].i32, cap = args[5].i32;
    const int32_t *ids;
    char *out;
    wasm_trap_t *trap;
    if ((trap = dw__abi_span(ctx, "dw.detokenize", "ids", (uint32_t)args[1].i32, count, sizeof(int32_t), 4, &ids)) ||
        (trap = dw__abi_span(ctx, "dw.detokenize", "buffer", (uint32_t)args[4].i32, cap, 1, 1, &out)))
        return trap;
    if (!m) return FAIL(DW_E_NOT_FOUND, "dw.detokenize: bad model handle %d", args[0].i32);
    if (flags & ~DW_DETOK_SKIP_SPECIAL) return FAIL(DW_E_INVALID, "dw.detokenize: unknown flags %#x", flags);
    if (count > DW_ABI_DETOKENIZE_MAX_IDS)
        return FAIL(DW_E_LIMIT, "dw.detokenize: %d ids are more than one call takes (%d); detokenize fewer", count,
                    DW_ABI_DETOKENIZE_MAX_IDS);
    /* the tokenizer NUL-terminates: decode into a host buffer, copy the bytes that fit */
    static _Thread_local char text[DW_ABI_DETOKENIZE_MAX_TEXT];
    size_t len = 0;
    dw_error err;
    dw_status st = dw_tokenizer_decode(m->tokenizer, ids, (size_t)count,
                                       flags & DW_DETOK_SKIP_SPECIAL ? DW_DETOKENIZE_SKIP_SPECIAL : 0, text,
                                       sizeof text, &len, &err);
    if (st == DW_ERR_LIMIT) return FAIL(DW_E_LIMIT, "dw.detokenize: text longer than %zu bytes; detokenize fewer ids", sizeof text - 1);
    if (st != DW_OK) return FAIL(code_of(st), "dw.detokenize: %s", err.message);
    memcpy(out, text, len < (size_t)cap ? len : (size_t)cap);
    args[0].i32 = (int32_t)len;
    return NULL;
}

/* Shared by prefill and decode: validates the session and the logits buffer. */
static wasm_trap_t *logits_span(dw__abi_context *ctx, const char *fn, int32_t handle, uint32_t p, int32_t cap,
                                dw__abi_session **s, float **logits, int32_t *code) {
    *s = session_of(ctx, handle);
    *code = DW_E_OK;
    wasm_trap_t *trap = dw__abi_span(ctx, fn, "logits", p, cap, sizeof(float), 4, logits);
    if (trap) return trap;
    if (!*s) {
        *code = dw__abi_fail(ctx, DW_E_NOT_FOUND, "%s: bad session handle %d", fn, handle);
        return NULL;
    }
    int vocab = dw_model_get_config(ctx->models[(*s)->model].model)->vocab_size;
    if (cap < vocab) *code = dw__abi_fail(ctx, DW_E_LIMIT, "%s: logits buffer holds %d floats, the vocabulary needs %d", fn, cap, vocab);
    return NULL;
}

/* Whether the session would take these tokens (room in the context, ids in the vocabulary). */
static int prefill_acceptable(dw_session *session, const int32_t *ids, int32_t count) {
    if (count > dw_session_ctx(session) - dw_session_n_tokens(session)) return 0;
    int vocab = dw_model_get_config(dw_session_model(session))->vocab_size;
    for (int32_t i = 0; i < count; i++)
        if (ids[i] < 0 || ids[i] >= vocab) return 0;
    return 1;
}

/* dw_session_prefill, under the actor's time limit in chunks of DW_ABI_PREFILL_CHUNK tokens
 * with the limit checked between them. Like one call it changes nothing when it fails (tokens
 * the session would refuse go to one call, which fails before running anything; a chunk that
 * fails or runs out of time takes the session back to where it was): *timed_out set then. */
static dw_status prefill_bounded(dw__abi_context *ctx, dw_session *session, const int32_t *ids, int32_t count,
                                 float *logits, int *timed_out, dw_error *err) {
    if (ctx->deadline_s == 0 || count <= DW_ABI_PREFILL_CHUNK || !prefill_acceptable(session, ids, count))
        return dw_session_prefill(session, ids, count, logits, err);
    int start = dw_session_n_tokens(session);
    dw_status st = DW_OK;
    for (int32_t done = 0; done < count && st == DW_OK; done += DW_ABI_PREFILL_CHUNK) {
        if (done > 0 && dw__abi_out_of_time(ctx)) {
            *timed_out = 1;
            break;
        }
        int32_t n = count - done < DW_ABI_PREFILL_CHUNK ? count - done : DW_ABI_PREFILL_CHUNK;
        st = dw_session_prefill(session, ids + done, n, done + n == count ? logits : NULL, err);
    }
    if (st != DW_OK || *timed_out) dw_session_truncate(session, start, NULL);
    return st;
}

static wasm_trap_t *host_prefill(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    uint32_t pids = (uint32_t)args[1].i32;
    int32_t count = args[2].i32, code;
    dw__abi_session *s;
    float *logits;
    wasm_trap_t *trap = logits_span(ctx, "dw.prefill", args[0].i32, (uint32_t)args[3].i32, args[4].i32, &s, &logits, &code);
    if (trap) return trap;
    const int32_t *ids;
    if ((trap = dw__abi_span(ctx, "dw.prefill", "ids", pids, count, sizeof(int32_t), 4, &ids))) return trap;
    if (code != DW_E_OK) return args[0].i32 = code, NULL;
    if (count == 0) return FAIL(DW_E_INVALID, "dw.prefill: no tokens");
    dw_error err;
    double t0 = dw__now_ms();
    int timed_out = 0;
    dw_status st = prefill_bounded(ctx, s->session, ids, count, logits, &timed_out, &err);
    ctx->stats.prefill_ms += dw__now_ms() - t0;
    if (timed_out) return dw__abi_timeout_trap(ctx, "dw.prefill");
    if (st != DW_OK) return FAIL(code_of(st), "dw.prefill: %s", err.message);
    ctx->stats.prefill_calls++;
    ctx->stats.prefill_tokens += (uint64_t)count;
    args[0].i32 = DW_E_OK;
    return NULL;
}

static wasm_trap_t *host_decode(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    int32_t code;
    dw__abi_session *s;
    float *logits;
    wasm_trap_t *trap = logits_span(ctx, "dw.decode", args[0].i32, (uint32_t)args[2].i32, args[3].i32, &s, &logits, &code);
    if (trap) return trap;
    if (code != DW_E_OK) return args[0].i32 = code, NULL;
    dw_error err;
    double t0 = dw__now_ms();
    dw_status st = dw_session_decode(s->session, args[1].i32, logits, &err);
    ctx->stats.decode_ms += dw__now_ms() - t0;
    if (st != DW_OK) return FAIL(code_of(st), "dw.decode: %s", err.message);
    ctx->stats.decode_tokens++;
    args[0].i32 = DW_E_OK;
    return NULL;
}

/* The tokens of dw.decode_greedy (sampling NULL) and dw.decode_sample, chosen on the device: n
 * of them from args[1] into out, under a time limit in pieces with the limit checked between them
 * (as dw.prefill); a call that fails or runs out of time takes the session back to where it was. */
static wasm_trap_t *decode_on_device(dw__abi_context *ctx, wasmtime_val_raw_t *args, const char *fn, dw__abi_session *s,
                                     int32_t count, const dw_device_sampling *sampling, const double *u, int32_t *out) {
    dw_error err;
    double t0 = dw__now_ms();
    const int piece = ctx->deadline_s > 0 ? DW_ABI_GREEDY_CHUNK : count;
    const int start = dw_session_n_tokens(s->session);
    dw_status st = DW_OK;
    int32_t next = args[1].i32;
    int timed_out = 0;
    for (int32_t done = 0; done < count && st == DW_OK; done += piece) {
        if (done > 0 && dw__abi_out_of_time(ctx)) {
            timed_out = 1;
            break;
        }
        int32_t k = count - done < piece ? count - done : piece;
        st = sampling ? dw_session_decode_sample(s->session, next, k, sampling, u + done, out + done, &err)
                      : dw_session_decode_greedy(s->session, next, k, out + done, &err);
        if (st == DW_OK) next = out[done + k - 1];
    }
    ctx->stats.decode_ms += dw__now_ms() - t0;
    if (timed_out || (st != DW_OK && dw_session_n_tokens(s->session) != start)) dw_session_truncate(s->session, start, NULL);
    if (timed_out) return dw__abi_timeout_trap(ctx, fn);
    if (st != DW_OK) return FAIL(code_of(st), "%s: %s", fn, err.message);
    ctx->stats.decode_tokens += (uint64_t)count;
    args[0].i32 = DW_E_OK;
    return NULL;
}

static wasm_trap_t *host_decode_greedy(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    dw__abi_session *s = session_of(ctx, args[0].i32);
    int32_t count = args[2].i32;
    int32_t *out;
    wasm_trap_t *trap = dw__abi_span(ctx, "dw.decode_greedy", "out", (uint32_t)args[3].i32, count, sizeof(int32_t), 4, &out);
    if (trap) return trap;
    if (!s) return FAIL(DW_E_NOT_FOUND, "dw.decode_greedy: bad session handle %d", args[0].i32);
    if (count < 1) return FAIL(DW_E_INVALID, "dw.decode_greedy: %d tokens asked for", count);
    return decode_on_device(ctx, args, "dw.decode_greedy", s, count, NULL, NULL, out);
}

/* dw.decode_sample(session, id, n, params, u, out): dw_session_decode_sample with the guest's
 * settings (16 bytes, driftwood/pick.h) and its n uniform numbers (f64), as dw.decode_greedy. */
static wasm_trap_t *host_decode_sample(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    dw__abi_session *s = session_of(ctx, args[0].i32);
    int32_t count = args[2].i32;
    const dw_device_sampling *params;
    const double *u;
    int32_t *out;
    wasm_trap_t *trap;
    if ((trap = dw__abi_span(ctx, "dw.decode_sample", "params", (uint32_t)args[3].i32, 1, sizeof *params, 4, &params)) ||
        (trap = dw__abi_span(ctx, "dw.decode_sample", "u", (uint32_t)args[4].i32, count, sizeof(double), 8, &u)) ||
        (trap = dw__abi_span(ctx, "dw.decode_sample", "out", (uint32_t)args[5].i32, count, sizeof(int32_t), 4, &out)))
        return trap;
    if (!s) return FAIL(DW_E_NOT_FOUND, "dw.decode_sample: bad session handle %d", args[0].i32);
    if (count < 1) return FAIL(DW_E_INVALID, "dw.decode_sample: %d tokens asked for", count);
    const dw_device_sampling sampling = *params; /* checked once, then used as checked */
    for (int32_t i = 0; i < count; i++) {
        const char *why = dw_pick_check(&sampling, u[i]);
        if (why) return FAIL(DW_E_INVALID, "dw.decode_sample: %s (token %d)", why, i);
    }
    return decode_on_device(ctx, args, "dw.decode_sample", s, count, &sampling, u, out);
}

static wasm_trap_t *host_sample(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
    dw__abi_context *ctx = env;
    uint32_t plogits = (uint32_t)args[0].i32, pparams = (uint32_t)args[2].i32, pstate = (uint32_t)args[3].i32,
             phist = (uint32_t)args[4].i32;
    int32_t vocab = args[1].i32, n_hist = args[5].i32;
    const float *logits;
    const dw_sample_params *gp;
    uint8_t *state;
    const int32_t *hist;
    wasm_trap_t *trap;
    if (vocab <= 0) return dw__abi_trap("dw.sample", "vocabulary size %d", vocab);
    if (vocab > DW_ABI_SAMPLE_MAX_VOCAB)
        return FAIL(DW_E_LIMIT, "dw.sample: a vocabulary of %d is more than one call takes (%d)", vocab, DW_ABI_SAMPLE_MAX_VOCAB);
    if ((trap = dw__abi_span(ctx, "dw.sample", "logits", plogits, vocab, sizeof(float), 4, &logits)) ||
        (trap = dw__abi_span(ctx, "dw.sample", "params", pparams, 1, sizeof *gp, 8, &gp)) ||
        (trap = dw__abi_span(ctx, "dw.sample", "state", pstate, DW_SAMPLER_STATE_BYTES, 1, 1, &state)) ||
        (trap = dw__abi_span(ctx, "dw.sample", "history", phist, n_hist, sizeof(int32_t), 4, &hist)))
        return trap;
    dw_sampler_params p = {gp->temperature, gp->top_k, gp->top_p, gp->min_p, gp->repetition_penalty,
                           gp->repetition_last_n, gp->seed};
    dw_error err;
    /* one sampler (its scratch is vocabulary-sized) serves every call; the state comes from guest memory */
    uint8_t key[40];
    memcpy(key, gp, sizeof *gp);
    memcpy(key + sizeof *gp, &vocab, sizeof vocab);
    memset(key + sizeof *gp + sizeof vocab, 0, sizeof key - sizeof *gp - sizeof vocab);
    if (!ctx->sampler || ctx->sampler_vocab != vocab || !ctx->sampler_fresh_valid || memcmp(key, ctx->sampler_fresh_key, sizeof key)) {
        dw_sampler_free(ctx->sampler);
        ctx->sampler = NULL;
        ctx->sampler_fresh_valid = 0;
        if (dw_sampler_create(&p, vocab, &ctx->sampler, &err) != DW_OK) return FAIL(DW_E_INVALID, "dw.sample: %s", err.message);
        ctx->sampler_vocab = vocab;
        dw_sampler_save(ctx->sampler, ctx->sampler_fresh); /* a generator fresh from the seed */
        memcpy(ctx->sampler_fresh_key, key, sizeof key);
        ctx->sampler_fresh_valid = 1;
    }
    /* The record is this call's settings with the generator from guest memory (bytes 40..72 of
     * the layout in sampler.h); an all-zero guest state means "start from the seed". */
    static const uint8_t zero[DW_SAMPLER_STATE_BYTES];
    uint8_t record[DW_SAMPLER_STATE_SIZE];
    memcpy(record, ctx->sampler_fresh, sizeof record);
    if (memcmp(state, zero, sizeof zero)) memcpy(record + 40, state + 40, DW_SAMPLER_STATE_SIZE - 40);
    if (dw_sampler_load(ctx->sampler, record, &err) != DW_OK) return FAIL(DW_E_INVALID, "dw.sample: state: %s", err.message);
    int32_t token;
    if (dw_sampler_sample(ctx->sampler, logits, hist, n_hist, &token, &err) != DW_OK)
        return FAIL(DW_E_INVALID, "dw.sample: %s", err.message);
    dw_sampler_save(ctx->sampler, record);
    memcpy(state, record, sizeof record);
    args[0].i32 = token;
    return NULL;
}

_Static_assert(DW_SAMPLER_STATE_BYTES == DW_SAMPLER_STATE_SIZE, "guest sampler state size");
_Static_assert(sizeof(dw_sample_params) + sizeof(int32_t) <= 40, "dw.sample's cache key");
_Static_assert(sizeof(dw_model_info) == 18 * 4, "dw_model_info layout is shared with guests");
_Static_assert(sizeof(dw_sample_params) == 32, "dw_sample_params layout is shared with guests");
_Static_assert(sizeof(dw_device_sampling) == 16, "dw_device_sampling layout is shared with guests");

const dw__host_function dw__host_llm_functions[] = {
    {"model_open", "ii", "i", host_model_open},
    {"model_info", "ii", "i", host_model_info},
    {"session_create", "ii", "i", host_session_create},
    {"session_free", "i", "i", host_session_free},
    {"session_info", "ii", "i", host_session_info},
    {"session_truncate", "ii", "i", host_session_truncate},
    {"session_fork", "i", "i", host_session_fork},
    {"tokenize", "iiiiii", "i", host_tokenize},
    {"detokenize", "iiiiii", "i", host_detokenize},
    {"prefill", "iiiii", "i", host_prefill},
    {"decode", "iiii", "i", host_decode},
    {"decode_greedy", "iiii", "i", host_decode_greedy},
    {"decode_sample", "iiiiii", "i", host_decode_sample},
    {"sample", "iiiiii", "i", host_sample},
};
const size_t dw__host_llm_function_count = sizeof dw__host_llm_functions / sizeof dw__host_llm_functions[0];
