/* One session's part of a snapshot, shared by KV files and actor snapshots: its tensors and
 * metadata under a name prefix ("" in a KV file, "session.3." in an actor snapshot). */
#ifndef DW_SNAPSHOT_KV_SESSION_H
#define DW_SNAPSHOT_KV_SESSION_H

#include "driftwood/engine.h"
#include "driftwood/tokenizer.h"
#include "snapshot/snapshot_file.h"

/* Host copies of the cache that the writer references until the file is written. */
typedef struct dw__kv_export {
    void **k, **v; /* per layer */
    int n_layers;
    char *text;
    int32_t *tokens;
} dw__kv_export;

/* Adds prefix+"tokens", prefix+"text", prefix+"past_key_values.{i}.key/value" and the
 * metadata (prefix+"architecture", ...) of session s to w. ex holds the buffers. */
dw_status dw__kv_session_export(const dw_session *s, const dw_tokenizer *tok, const char *prefix,
                                dw__snapfile_writer *w, dw__kv_export *ex, dw_error *err);
void dw__kv_export_free(dw__kv_export *ex);

/* Whether the state stored under prefix was made by s's model with tok (equal fingerprints:
 * *same = 1). A missing fingerprint is a format error. */
dw_status dw__kv_session_same_model(const dw_session *s, const dw_tokenizer *tok, const dw_safetensors *st,
                                    const char *prefix, int *same /* OUT */, dw_error *err);

/* Puts the state stored under prefix into s: the cache imported when same_model (from
 * dw__kv_session_same_model), else rebuilt from the text with tok. On failure s is unchanged. */
dw_status dw__kv_session_restore(dw_session *s, const dw_tokenizer *tok, const dw_safetensors *st, const char *prefix,
                                 int same_model, dw_error *err);

/* Both of the above: imported when the fingerprints match, else rebuilt from the text with tok
 * (*rebuilt = 1). On failure s is unchanged. */
dw_status dw__kv_session_import(dw_session *s, const dw_tokenizer *tok, const dw_safetensors *st, const char *prefix,
                                int *rebuilt, dw_error *err);

#endif
