/* Snapshots: a session's KV cache as a file (the Hugging Face past_key_values layout, so Python
 * safetensors + transformers can use it), and whole actors (memory, globals, sessions).
 *
 * KV file (safetensors; metadata values are strings):
 *   metadata  format = "driftwood-kv", format_version = "1", creator, checksum (see
 *             src/snapshot/snapshot_file.h), architecture, config_hash, weights_hash,
 *             tokenizer_hash, n_layers, n_kv_heads, head_dim, n_tokens, dtype ("BF16"/"F32"),
 *             rope_theta, rope_scaling (JSON, "null" when none), ctx
 *   tensors   tokens                          I32   [n_tokens]
 *             text                            U8    [bytes]  the history as text (special tokens
 *                                                            written out), for a model swap
 *             past_key_values.{i}.key         dtype [1, n_kv_heads, n_tokens, head_dim]
 *             past_key_values.{i}.value       dtype [1, n_kv_heads, n_tokens, head_dim]
 *   optional  logits                          F32   [vocab]  the last position's logits
 *             sampler                         U8    [72]     a dw_sampler state (sampler.h)
 *   (with both, a generation continues exactly where it stopped)
 *   Keys are stored after RoPE, as transformers' cache stores them. KV bytes per token are
 *   exactly n_layers · 2 · n_kv_heads · head_dim · sizeof(dtype).
 *
 * Actor snapshot (same container, format = "driftwood-actor"):
 *   metadata  module_sha256, memory_bytes, chunk_bytes (4096),
 *             globals  JSON [{"name", "type": "i32|i64|f32|f64", "bits": "<decimal bit pattern>"}]
 *             models   JSON ["name", ...]          (in handle order: handle = index + 1)
 *             sessions JSON [{"slot", "generation", "model"}]
 *             and, per session, the KV file's metadata under "session.{slot}."
 *   tensors   memory.chunks  U8  [n, 4096]  the memory's non-zero 4 KiB chunks
 *             memory.index   U32 [n]        which chunk each one is
 *             session.{slot}.tokens / .text / .past_key_values.{i}.key / .value  (as in a KV file) */
#ifndef DRIFTWOOD_SNAPSHOT_H
#define DRIFTWOOD_SNAPSHOT_H

#include <stdint.h>

#include "driftwood/sampler.h"

#include "driftwood/actor.h"
#include "driftwood/engine.h"
#include "driftwood/error.h"
#include "driftwood/model.h"
#include "driftwood/safetensors.h"
#include "driftwood/tokenizer.h"

/* What a KV cache is valid for: two models with equal fingerprints compute the same function
 * on the same token ids. Each hash is 64 lowercase hex digits of SHA-256. */
typedef struct dw_fingerprint {
    char architecture[40];
    char config_hash[65];    /* dw_model_config_hash */
    char weights_hash[65];   /* over the weight files, in name order */
    char tokenizer_hash[65]; /* of tokenizer.json */
} dw_fingerprint;

/* The fingerprint of model with tokenizer tok (the model's own: dw_model_tokenizer). The
 * weights hash reads every *.safetensors file of the model once and is then cached on disk
 * ($DW_CACHE/fingerprints, keyed by the files' paths, sizes and modification times). */
dw_status dw_model_fingerprint(const dw_model *model, const dw_tokenizer *tok, dw_fingerprint *out /* OUT */,
                               dw_error *err);

/* Opens a snapshot file (a KV file or an actor snapshot) for reading after verifying its
 * checksum; *kind is set to "driftwood-kv" or "driftwood-actor". Close with
 * dw_safetensors_close. */
dw_status dw_snapshot_open(const char *path, dw_safetensors **out /* OUT */, const char **kind /* OUT */,
                           dw_error *err);

typedef struct dw_kv_report {
    int n_tokens;        /* tokens now in the session */
    int rebuilt;         /* 1: the file was made by another model; the cache was rebuilt */
    double ms;           /* wall time of the save or restore */
    uint64_t file_bytes; /* size of the file */
} dw_kv_report;

/* What a generation needs besides the cache to go on exactly: the logits of the last position
 * and the sampler's state. Any member may be NULL / 0. */
typedef struct dw_kv_extras {
    float *logits;           /* [n_logits]: saved from / restored into */
    int n_logits;
    uint8_t *sampler_state;  /* [DW_SAMPLER_STATE_SIZE] */
    int has_logits, has_sampler_state; /* after dw_kv_load: whether the file had them */
} dw_kv_extras;

/* Writes the session's cache and token history to path (atomically). tok is the session's
 * model's tokenizer. extras and report may be NULL. */
dw_status dw_kv_save(const dw_session *s, const dw_tokenizer *tok, const char *path, const dw_kv_extras *extras,
                     dw_kv_report *report, dw_error *err);

/* Replaces the session's state with the file's. Same model (equal fingerprints): the cache is
 * imported (converted when the dtypes differ) and the session continues bit-identically.
 * Another model: the history's text is re-tokenized with tok and prefilled (report->rebuilt).
 * A corrupted, truncated or foreign file is refused and the session is left unchanged. */
dw_status dw_kv_load(dw_session *s, const dw_tokenizer *tok, const char *path, dw_kv_extras *extras,
                     dw_kv_report *report, dw_error *err);

typedef struct dw_actor_snapshot_report {
    double ms;                 /* wall time of the save or restore */
    uint64_t file_bytes;
    uint64_t memory_bytes;     /* the actor's memory size */
    uint64_t memory_saved;     /* bytes of it written (non-zero chunks; save only) */
    int sessions;
    int rebuilt_sessions;      /* restore onto another model: sessions re-prefilled from their text */
} dw_actor_snapshot_report;

/* Saves the actor (memory, exported mutable globals, models it opened, sessions) to path,
 * atomically. Only between messages. A module with mutable globals it does not export is
 * refused (its state cannot be captured). report may be NULL. */
dw_status dw_actor_snapshot_save(dw_actor *actor, const char *path, dw_actor_snapshot_report *report, dw_error *err);

/* Makes a new actor from module, with options, in the state saved at path: the module must be
 * the one the snapshot was taken from (same SHA-256). Models are opened by name from the
 * runtime; a session whose model has changed is rebuilt from its text (report->rebuilt_sessions).
 * A corrupted, truncated or foreign file is refused with one line naming the problem. */
dw_status dw_actor_snapshot_restore(dw_runtime *rt, dw_module *module, const dw_actor_options *options, const char *path,
                                    dw_actor **out, dw_actor_snapshot_report *report, dw_error *err);

#endif
