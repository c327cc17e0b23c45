/* Inference sessions: one conversation's KV cache and position on a loaded model (model.h).
 * prefill() runs a batch of tokens (matrix products over the whole batch), decode() one token;
 * both write the f32 logits of the last position to a caller pointer. A session is used by one
 * thread at a time; different sessions of one model may run on different threads at once.
 *
 * KV cache: per layer, K and V in the Hugging Face past_key_values layout
 * [n_kv_heads, n_tokens, head_dim] (capacity = the context length), in the cache dtype:
 * BF16 by default (what an HF bf16 model stores; half the memory and bandwidth of F32),
 * or F32 on request. The keys are stored after RoPE, as HF stores them. */
#ifndef DRIFTWOOD_ENGINE_H
#define DRIFTWOOD_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/dtype.h"
#include "driftwood/error.h"
#include "driftwood/model.h"
#include "driftwood/pick.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dw_session dw_session;

/* A zeroed struct (or NULL) means the defaults. */
typedef struct dw_session_options {
    int ctx;            /* context length in tokens; 0 = min(4096, max_position_embeddings) */
    int kv_f32;         /* 1: keep the KV cache in F32 instead of BF16 */
    int max_batch;      /* tokens per prefill pass (activation buffers); 0 = 128 */
} dw_session_options;

/* Allocates the KV cache and activation buffers (nothing is allocated after this).
 * A context longer than max_position_embeddings is refused. */
dw_status dw_session_create(dw_model *model, const dw_session_options *opts, dw_session **out /* OUT */,
                            dw_error *err);
void dw_session_free(dw_session *s);

/* The bytes of KV cache a session made with opts (NULL: the defaults) would hold on model: its
 * context (0: the default) x layers x K,V x KV heads x head size x element size. */
uint64_t dw_session_kv_bytes(const dw_model *model, const dw_session_options *opts);

/* Appends n tokens (n >= 1) at the current position and writes the logits of the last one
 * ([vocab_size] f32) to logits (a host pointer; NULL skips the LM head). Fails with
 * DW_ERR_LIMIT, changing nothing, when the tokens do not fit the context, and with
 * DW_ERR_INVALID_ARGUMENT for an id outside the vocabulary. */
dw_status dw_session_prefill(dw_session *s, const int32_t *ids, int n, float *logits, dw_error *err);

/* Same, but writes the logits of every one of the n positions: logits is [n, vocab_size]. */
dw_status dw_session_prefill_all(dw_session *s, const int32_t *ids, int n, float *logits, dw_error *err);

/* One token: prefill of n = 1, on the decode path (matrix-vector products). Allocates nothing. */
dw_status dw_session_decode(dw_session *s, int32_t id, float *logits, dw_error *err);

/* Greedy decoding of n tokens (n >= 1) from id: feeds id, then each chosen token but the
 * last, each chosen as the first index of the largest logit (what a temperature-0 dw_sampler
 * picks). out[0..n) gets the chosen tokens; the session then holds n more tokens (id and
 * out[0..n-2]), and out[n-1] is the next one to feed. On CUDA the tokens are chosen on the device
 * and each step starts from the previous one's choice there, so the host waits once per 64
 * tokens rather than once per token. DW_ERR_LIMIT, changing nothing, when n tokens do not fit
 * the context; DW_ERR_INVALID_ARGUMENT for an id outside the vocabulary. */
dw_status dw_session_decode_greedy(dw_session *s, int32_t id, int n, int32_t *out, dw_error *err);

/* Sampled decoding of n tokens (n >= 1) from id, as dw_session_decode_greedy but each token drawn
 * by the device sampler's rule (driftwood/pick.h: temperature, top-k of at most 64, top-p) with
 * the uniform number u[i] in [0, 1) for out[i]; the caller draws them from its own generator, so
 * the draw is reproducible and belongs to the caller's state. In a batching session the tokens are
 * chosen on the device inside the batched step (no logits reach the host); without batching each
 * token's logits come to the host, which applies the same rule. DW_ERR_INVALID_ARGUMENT for
 * settings or numbers out of range (naming which); otherwise as dw_session_decode_greedy. */
dw_status dw_session_decode_sample(dw_session *s, int32_t id, int n, const dw_device_sampling *sampling, const double *u,
                                   int32_t *out, dw_error *err);

/* Forgets everything (position 0). */
void dw_session_reset(dw_session *s);
/* Keeps the first n tokens (n <= dw_session_n_tokens); the next token goes at position n. */
dw_status dw_session_truncate(dw_session *s, int n, dw_error *err);

dw_model *dw_session_model(const dw_session *s);
int dw_session_n_tokens(const dw_session *s);   /* tokens in the cache = the next position */
int dw_session_ctx(const dw_session *s);        /* capacity */
const int32_t *dw_session_tokens(const dw_session *s); /* the n_tokens ids, in order */
dw_dtype dw_session_kv_dtype(const dw_session *s);

/* Copies layer's cached keys and values for positions [0, n_tokens) out of the device in the
 * HF layout [n_kv_heads, n_tokens, head_dim] as dtype (BF16 or F32; converted if it differs
 * from the cache dtype). k and v are host buffers of n_kv_heads·n_tokens·head_dim elements. */
dw_status dw_session_kv_export(const dw_session *s, int layer, dw_dtype dtype, void *k, void *v, dw_error *err);

/* Replaces the session's state: tokens (n of them) and, for every layer, keys and values in the
 * HF layout [n_kv_heads, n, head_dim] of dtype (BF16 or F32): k[layer], v[layer]. Afterwards the
 * session continues exactly as the one that exported them (same dtype: bit-identical). */
dw_status dw_session_import(dw_session *s, const int32_t *tokens, int n, dw_dtype dtype,
                            const void *const *k, const void *const *v, dw_error *err);

/* ---- Batching: many sessions of one model in shared steps -------------------------------------
 * Once batching is on for a model, every session created on it afterwards keeps its KV cache in
 * fixed-size blocks of one pool (paged KV), and prefill / decode / greedy calls from any number of
 * threads are collected by the model's scheduler into batched steps that read each weight once for
 * every waiting session (a prompt is run in chunks mixed into the decode steps). The calls keep
 * their meaning and their blocking behaviour; logits still land where the caller points.
 *
 * Batch invariance: a session's logits and tokens are bit-identical whoever else runs in the same
 * steps, and however its prompt was chunked (they may differ in the last bits from a session made
 * before batching was on, which runs the single-session kernels).
 *
 * Blocks are reference-counted and copy-on-write: full blocks of a prompt are published under
 * their token prefix, so sessions whose prompts start alike share those blocks and compute them
 * once; dw_session_fork makes a child that shares its parent's blocks. When the pool is full, the
 * least recently used idle session's blocks move to host memory and come back, bit-identical,
 * when it runs again. */
typedef struct dw_batch_options {
    uint64_t kv_memory; /* bytes of KV pool on the device; 0 = 1 GiB */
    int block_tokens;   /* tokens per block; 0 = 16 */
    int step_tokens;    /* most tokens in one step (decode tokens + prompt chunks); 0 = 256 */
    int kv_f32;         /* 1: F32 KV blocks instead of BF16 */
} dw_batch_options;

/* Starts the model's scheduler and allocates the pool. Sessions that exist already keep running
 * alone. DW_ERR_UNSUPPORTED when the backend has no batched ops. */
dw_status dw_model_batching_start(dw_model *model, const dw_batch_options *opts, dw_error *err);
int dw_model_batching(const dw_model *model); /* 1 when started */

typedef struct dw_batch_stats {
    uint64_t steps, rows, decode_rows, prefill_rows; /* steps run; tokens in them */
    uint64_t max_rows;                   /* the most tokens one step ran */
    uint64_t block_bytes;                /* KV bytes of one block (every layer, K and V) */
    uint64_t blocks_total, blocks_used;  /* the pool; blocks held by sessions now */
    uint64_t blocks_peak;                /* the most blocks held at once */
    uint64_t shared_hits;                /* blocks a session took from the prefix cache */
    uint64_t prefix_tokens_reused;       /* prompt tokens not computed thanks to them */
    uint64_t cow_copies;                 /* blocks copied on write */
    uint64_t evictions, restores;        /* sessions moved to host memory and back */
    double busy_s;                       /* time spent running steps */
} dw_batch_stats;
void dw_model_batch_stats(const dw_model *model, dw_batch_stats *out /* OUT */);
/* Starts blocks_peak again from the blocks held now (to measure one phase). */
void dw_model_batch_reset_peak(dw_model *model);

/* A new session that continues exactly as parent would from its current position (same tokens,
 * same KV, shared blocks copied only when one of them writes). Batching sessions only. */
dw_status dw_session_fork(dw_session *parent, dw_session **child /* OUT */, dw_error *err);

#ifdef __cplusplus
}
#endif

#endif
