/* A session's cache and history in and out of a snapshot container (kv_session.h). */
#include "snapshot/kv_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driftwood/model.h"
#include "snapshot/fingerprint.h"

#define KEY(buf, prefix, name) (snprintf(buf, sizeof buf, "%s%s", prefix, name), buf)

void dw__kv_export_free(dw__kv_export *ex) {
    for (int i = 0; i < ex->n_layers; i++) {
        if (ex->k) free(ex->k[i]);
        if (ex->v) free(ex->v[i]);
    }
    free(ex->k), free(ex->v), free(ex->text), free(ex->tokens);
    memset(ex, 0, sizeof *ex);
}

static dw_status meta(dw__snapfile_writer *w, const char *prefix, const char *name, const char *value, dw_error *err) {
    char key[128];
    return dw__snapfile_meta(w, KEY(key, prefix, name), value, err);
}
static dw_status meta_long(dw__snapfile_writer *w, const char *prefix, const char *name, long long v, dw_error *err) {
    char key[128];
    return dw__snapfile_meta_long(w, KEY(key, prefix, name), v, err);
}

static void rope_json(const dw_model_config *c, char *out, size_t cap) {
    if (!c->rope_llama3) snprintf(out, cap, "null");
    else
        snprintf(out, cap,
                 "{\"rope_type\": \"llama3\", \"factor\": %g, \"low_freq_factor\": %g, \"high_freq_factor\": %g, "
                 "\"original_max_position_embeddings\": %d}",
                 c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_original_max_position);
}

dw_status dw__kv_session_export(const dw_session *s, const dw_tokenizer *tok, const char *prefix,
                                dw__snapfile_writer *w, dw__kv_export *ex, dw_error *err) {
    memset(ex, 0, sizeof *ex);
    const dw_model *model = dw_session_model(s);
    const dw_model_config *c = dw_model_get_config(model);
    int n = dw_session_n_tokens(s);
    dw_dtype dtype = dw_session_kv_dtype(s);
    size_t per_layer = (size_t)c->n_kv_heads * (size_t)n * (size_t)c->head_dim * dw_dtype_size(dtype);
    dw_fingerprint fp;
    dw_status st = dw_model_fingerprint(model, tok, &fp, err);
    if (st != DW_OK) return st;

    ex->n_layers = c->n_layers;
    ex->k = calloc((size_t)c->n_layers, sizeof *ex->k);
    ex->v = calloc((size_t)c->n_layers, sizeof *ex->v);
    ex->tokens = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    if (!ex->k || !ex->v || !ex->tokens) return dw_error_set(err, DW_ERR_NO_MEMORY, "snapshot: out of memory");
    memcpy(ex->tokens, dw_session_tokens(s), sizeof(int32_t) * (size_t)n);

    /* the history as text, special tokens written out, for rebuilding on another model */
    size_t len = 0;
    st = dw_tokenizer_decode(tok, ex->tokens, (size_t)n, 0, NULL, 0, &len, err);
    if (st != DW_OK && st != DW_ERR_LIMIT) return st; /* LIMIT: the size query (decoders' growth is bounded at load) */
    if (!(ex->text = malloc(len + 1))) return dw_error_set(err, DW_ERR_NO_MEMORY, "snapshot: out of memory");
    if ((st = dw_tokenizer_decode(tok, ex->tokens, (size_t)n, 0, ex->text, len + 1, &len, err)) != DW_OK) return st;

    char key[128];
    int64_t shape_tokens[1] = {n}, shape_text[1] = {(int64_t)len};
    int64_t shape_kv[4] = {1, c->n_kv_heads, n, c->head_dim};
    if ((st = dw__snapfile_add(w, KEY(key, prefix, "tokens"), DW_DTYPE_I32, 1, shape_tokens, ex->tokens,
                               sizeof(int32_t) * (size_t)n, err)) ||
        (st = dw__snapfile_add(w, KEY(key, prefix, "text"), DW_DTYPE_U8, 1, shape_text, ex->text, len, err)))
        return st;
    for (int l = 0; l < c->n_layers; l++) {
        if (!(ex->k[l] = malloc(per_layer ? per_layer : 1)) || !(ex->v[l] = malloc(per_layer ? per_layer : 1)))
            return dw_error_set(err, DW_ERR_NO_MEMORY, "snapshot: out of memory for the KV cache copy");
        if (n && (st = dw_session_kv_export(s, l, dtype, ex->k[l], ex->v[l], err))) return st;
        char name[160];
        snprintf(name, sizeof name, "%spast_key_values.%d.key", prefix, l);
        if ((st = dw__snapfile_add(w, name, dtype, 4, shape_kv, ex->k[l], per_layer, err))) return st;
        snprintf(name, sizeof name, "%spast_key_values.%d.value", prefix, l);
        if ((st = dw__snapfile_add(w, name, dtype, 4, shape_kv, ex->v[l], per_layer, err))) return st;
    }
    char rope[256], theta[32];
    rope_json(c, rope, sizeof rope);
    snprintf(theta, sizeof theta, "%g", c->rope_theta);
    if ((st = meta(w, prefix, "architecture", fp.architecture, err)) || (st = meta(w, prefix, "config_hash", fp.config_hash, err)) ||
        (st = meta(w, prefix, "weights_hash", fp.weights_hash, err)) ||
        (st = meta(w, prefix, "tokenizer_hash", fp.tokenizer_hash, err)) ||
        (st = meta_long(w, prefix, "n_layers", c->n_layers, err)) || (st = meta_long(w, prefix, "n_kv_heads", c->n_kv_heads, err)) ||
        (st = meta_long(w, prefix, "head_dim", c->head_dim, err)) || (st = meta_long(w, prefix, "n_tokens", n, err)) ||
        (st = meta_long(w, prefix, "ctx", dw_session_ctx(s), err)) || (st = meta(w, prefix, "dtype", dw_dtype_name(dtype), err)) ||
        (st = meta(w, prefix, "rope_theta", theta, err)) || (st = meta(w, prefix, "rope_scaling", rope, err)))
        return st;
    return DW_OK;
}

static const char *get(const dw_safetensors *st, const char *prefix, const char *name) {
    char key[128];
    return dw_safetensors_metadata(st, KEY(key, prefix, name));
}

/* Another model: re-tokenize the history's text with this model's tokenizer and prefill it. */
static dw_status rebuild(dw_session *s, const dw_tokenizer *tok, const dw_safetensors *st, const char *prefix,
                         dw_error *err) {
    const dw_tensor_info *text;
    char key[128];
    int64_t any[1] = {-1};
    dw_status rc = dw__snapfile_tensor(st, KEY(key, prefix, "text"), DW_DTYPE_U8, 1, any, &text, err);
    if (rc != DW_OK) return rc;
    size_t n = 0;
    rc = dw_tokenizer_encode(tok, text->data, text->nbytes, DW_TOKENIZE_PARSE_SPECIAL, NULL, 0, &n, err);
    if (rc != DW_OK && !(rc == DW_ERR_LIMIT && n > 0)) return rc; /* LIMIT with 0 ids: the tokenizer failed */
    if (n > (size_t)dw_session_ctx(s))
        return dw_error_set(err, DW_ERR_LIMIT, "snapshot %s: the history is %zu tokens for this model, the context holds %d",
                            dw_safetensors_path(st), n, dw_session_ctx(s));
    int32_t *ids = malloc(sizeof(int32_t) * (n ? n : 1));
    if (!ids) return dw_error_set(err, DW_ERR_NO_MEMORY, "snapshot: out of memory");
    if ((rc = dw_tokenizer_encode(tok, text->data, text->nbytes, DW_TOKENIZE_PARSE_SPECIAL, ids, n, &n, err)) == DW_OK) {
        dw_session_reset(s);
        for (size_t i = 0; i < n && rc == DW_OK; i += 512) {
            int chunk = (int)(n - i < 512 ? n - i : 512);
            rc = dw_session_prefill(s, ids + i, chunk, NULL, err);
        }
        if (rc != DW_OK) dw_session_reset(s);
    }
    free(ids);
    return rc;
}

dw_status dw__kv_session_same_model(const dw_session *s, const dw_tokenizer *tok, const dw_safetensors *st,
                                    const char *prefix, int *same, dw_error *err) {
    *same = 0;
    dw_fingerprint mine;
    dw_status rc = dw_model_fingerprint(dw_session_model(s), tok, &mine, err);
    if (rc != DW_OK) return rc;
    const char *arch = get(st, prefix, "architecture"), *ch = get(st, prefix, "config_hash"),
               *wh = get(st, prefix, "weights_hash"), *th = get(st, prefix, "tokenizer_hash");
    if (!arch || !ch || !wh || !th)
        return dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: the model fingerprint is missing", dw_safetensors_path(st));
    dw_fingerprint theirs;
    memset(&theirs, 0, sizeof theirs);
    snprintf(theirs.architecture, sizeof theirs.architecture, "%s", arch);
    snprintf(theirs.config_hash, sizeof theirs.config_hash, "%s", ch);
    snprintf(theirs.weights_hash, sizeof theirs.weights_hash, "%s", wh);
    snprintf(theirs.tokenizer_hash, sizeof theirs.tokenizer_hash, "%s", th);
    *same = dw__fingerprint_equal(&mine, &theirs);
    return DW_OK;
}

/* The same model: the cache and the token history go in as they are. */
static dw_status import_cache(dw_session *s, const dw_safetensors *st, const char *prefix, dw_error *err) {
    const dw_model_config *c = dw_model_get_config(dw_session_model(s));
    dw_status rc;
    char key[128];
    long long n;
    if ((rc = dw__snapfile_meta_get_long(st, KEY(key, prefix, "n_tokens"), 0, 1 << 30, &n, err))) return rc;
    if (n > dw_session_ctx(s))
        return dw_error_set(err, DW_ERR_LIMIT, "snapshot %s: holds %lld tokens, the session's context is %d",
                            dw_safetensors_path(st), n, dw_session_ctx(s));
    dw_dtype dtype;
    const char *dname = get(st, prefix, "dtype");
    if (!dname || dw_dtype_parse(dname, &dtype) != DW_OK || (dtype != DW_DTYPE_BF16 && dtype != DW_DTYPE_F32))
        return dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: KV dtype must be BF16 or F32", dw_safetensors_path(st));
    const dw_tensor_info *tokens;
    int64_t shape_tokens[1] = {n};
    if ((rc = dw__snapfile_tensor(st, KEY(key, prefix, "tokens"), DW_DTYPE_I32, 1, shape_tokens, &tokens, err))) return rc;
    const void **k = calloc((size_t)c->n_layers, sizeof *k), **v = calloc((size_t)c->n_layers, sizeof *v);
    if (!k || !v) {
        free(k), free(v);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "snapshot: out of memory");
    }
    int64_t shape_kv[4] = {1, c->n_kv_heads, n, c->head_dim};
    for (int l = 0; l < c->n_layers && rc == DW_OK; l++) {
        const dw_tensor_info *tk, *tv;
        char name[160];
        snprintf(name, sizeof name, "%spast_key_values.%d.key", prefix, l);
        if ((rc = dw__snapfile_tensor(st, name, dtype, 4, shape_kv, &tk, err))) break;
        snprintf(name, sizeof name, "%spast_key_values.%d.value", prefix, l);
        if ((rc = dw__snapfile_tensor(st, name, dtype, 4, shape_kv, &tv, err))) break;
        k[l] = tk->data, v[l] = tv->data;
    }
    /* the file's tensors lie wherever its header put them: the ids are copied to be read as int32 */
    int32_t *ids = rc == DW_OK ? malloc(sizeof(int32_t) * (size_t)(n ? n : 1)) : NULL;
    if (rc == DW_OK && !ids) rc = dw_error_set(err, DW_ERR_NO_MEMORY, "snapshot: out of memory");
    if (rc == DW_OK) {
        memcpy(ids, tokens->data, sizeof(int32_t) * (size_t)n);
        rc = dw_session_import(s, ids, (int)n, dtype, (const void *const *)k, (const void *const *)v, err);
    }
    free(ids), free(k), free(v);
    return rc;
}

dw_status dw__kv_session_restore(dw_session *s, const dw_tokenizer *tok, const dw_safetensors *st, const char *prefix,
                                 int same_model, dw_error *err) {
    return same_model ? import_cache(s, st, prefix, err) : rebuild(s, tok, st, prefix, err);
}

dw_status dw__kv_session_import(dw_session *s, const dw_tokenizer *tok, const dw_safetensors *st, const char *prefix,
                                int *rebuilt, dw_error *err) {
    int same;
    *rebuilt = 0;
    dw_status rc = dw__kv_session_same_model(s, tok, st, prefix, &same, err);
    if (rc != DW_OK) return rc;
    *rebuilt = !same;
    return dw__kv_session_restore(s, tok, st, prefix, same, err);
}
