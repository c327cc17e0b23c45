/* Sessions (engine.h): the KV cache, activation buffers and token history of one
 * conversation; input validation around the forward pass; KV export/import for snapshots. */
#include <stdlib.h>
#include <string.h>

#include "engine/batch_impl.h"

#define DEFAULT_CTX 4096
#define DEFAULT_BATCH 128

static dw_status alloc_f32(dw_session *s, float **out, size_t count, dw_error *err) {
    const dw_backend *c = s->model->backend;
    return c->ops->alloc(c->ctx, count * sizeof(float), (void **)out, err);
}

static int context_of(const dw_model_config *c, int ctx) {
    return ctx ? ctx : c->max_position_embeddings < DEFAULT_CTX ? c->max_position_embeddings : DEFAULT_CTX;
}

/* One layer's K (or V) cache: [n_kv_heads, ctx, head_dim] elements. */
static uint64_t kv_plane_bytes(const dw_model_config *c, int ctx, int kv_f32) {
    return (uint64_t)c->n_kv_heads * (uint64_t)ctx * (uint64_t)c->head_dim * (kv_f32 ? 4u : 2u);
}

uint64_t dw_session_kv_bytes(const dw_model *model, const dw_session_options *opts) {
    const dw_model_config *c = &model->cfg;
    int ctx = opts ? opts->ctx : 0, kv_f32 = opts ? opts->kv_f32 : 0;
    return kv_plane_bytes(c, context_of(c, ctx < 0 ? 0 : ctx), kv_f32) * 2 * (uint64_t)c->n_layers;
}

dw_status dw_session_create(dw_model *model, const dw_session_options *opts, dw_session **out, dw_error *err) {
    *out = NULL;
    const dw_model_config *c = &model->cfg;
    dw_session_options o = {0};
    if (opts) o = *opts;
    if (o.ctx < 0 || o.max_batch < 0)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "session: negative context or batch size");
    o.ctx = context_of(c, o.ctx);
    if (o.ctx > c->max_position_embeddings)
        return dw_error_set(err, DW_ERR_LIMIT, "%s: a context of %d tokens exceeds the model's max_position_embeddings (%d)",
                            model->dir, o.ctx, c->max_position_embeddings);
    if (o.max_batch == 0) o.max_batch = DEFAULT_BATCH;
    if (o.max_batch > o.ctx) o.max_batch = o.ctx;
    if (model->batcher) return dw__paged_session_create(model, &o, out, err);

    dw_session *s = calloc(1, sizeof *s);
    if (!s) return dw_error_set(err, DW_ERR_NO_MEMORY, "session: out of memory");
    s->model = model;
    s->ctx = o.ctx;
    s->max_batch = o.max_batch;
    s->kv_dtype = o.kv_f32 ? DW_DTYPE_F32 : DW_DTYPE_BF16;
    s->tokens = calloc((size_t)o.ctx, sizeof *s->tokens);
    s->kv = calloc((size_t)c->n_layers, sizeof *s->kv);
    dw_status st = DW_OK;
    if (!s->tokens || !s->kv) {
        st = dw_error_set(err, DW_ERR_NO_MEMORY, "session: out of memory");
        goto fail;
    }
    size_t per = (size_t)kv_plane_bytes(c, o.ctx, o.kv_f32);
    const dw_backend *cp = model->backend;
    if ((st = cp->ops->alloc(cp->ctx, per * 2 * c->n_layers, &s->kv_mem, err))) {
        dw_error_prefix(err, "KV cache for %d tokens", o.ctx);
        goto fail;
    }
    for (int l = 0; l < c->n_layers; l++) {
        s->kv[l] = (dw_kv_view){
            .k = (char *)s->kv_mem + per * 2 * l,
            .v = (char *)s->kv_mem + per * (2 * l + 1),
            .dtype = s->kv_dtype,
            .n_kv_heads = c->n_kv_heads,
            .capacity = o.ctx,
            .head_dim = c->head_dim,
        };
    }
    size_t B = (size_t)o.max_batch, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    if ((st = alloc_f32(s, &s->x, B * c->hidden_size, err)) || (st = alloc_f32(s, &s->xn, B * c->hidden_size, err)) ||
        (st = alloc_f32(s, &s->q, B * qd, err)) || (st = alloc_f32(s, &s->k, B * kvd, err)) ||
        (st = alloc_f32(s, &s->v, B * kvd, err)) || (st = alloc_f32(s, &s->att, B * qd, err)) ||
        (st = alloc_f32(s, &s->o, B * c->hidden_size, err)) || (st = alloc_f32(s, &s->gate, B * c->intermediate_size, err)) ||
        (st = alloc_f32(s, &s->up, B * c->intermediate_size, err)) || (st = alloc_f32(s, &s->logits, c->vocab_size, err)))
        goto fail;
    if (cp->ops->argmax && (st = cp->ops->alloc(cp->ctx, sizeof(int32_t) * DW__GREEDY_CHUNK, (void **)&s->greedy, err)))
        goto fail;
    if (cp->ops->sample_rows &&
        (st = cp->ops->alloc(cp->ctx, sizeof(dw_pick_row) + sizeof(int32_t), (void **)&s->pick, err)))
        goto fail;
    *out = s;
    return DW_OK;
fail:
    dw_session_free(s);
    return st;
}

void dw_session_free(dw_session *s) {
    if (!s) return;
    if (s->paged) {
        dw__paged_session_destroy(s);
        return;
    }
    const dw_backend *c = s->model->backend;
    if (c->ops->decode_forget) c->ops->decode_forget(c->ctx, s), c->ops->decode_forget(c->ctx, &s->greedy);
    void *bufs[] = {s->kv_mem, s->x, s->xn, s->q, s->k, s->v, s->att, s->o, s->gate, s->up, s->logits, s->logits_all, s->greedy,
                    s->pick};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) c->ops->free(c->ctx, bufs[i]);
    free(s->tokens);
    free(s->kv);
    free(s);
}

static dw_status check_tokens(dw_session *s, const int32_t *ids, int n, dw_error *err) {
    if (n < 1 || !ids) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "no tokens to run");
    if (n > s->ctx - s->n_tokens)
        return dw_error_set(err, DW_ERR_LIMIT,
                            "%d tokens do not fit the context: it holds %d tokens and %d are used (raise --ctx)", n,
                            s->ctx, s->n_tokens);
    int vocab = s->model->cfg.vocab_size;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "token id %d at index %d is outside the vocabulary [0, %d)",
                                ids[i], i, vocab);
    return DW_OK;
}

dw_status dw_session_prefill(dw_session *s, const int32_t *ids, int n, float *logits, dw_error *err) {
    dw_status st = check_tokens(s, ids, n, err);
    if (st) return st;
    if (s->paged) return dw__batch_run(s, ids, n, logits, 0, NULL, NULL, NULL, err);
    return dw__forward(s, ids, n, logits, 0, err);
}

dw_status dw_session_prefill_all(dw_session *s, const int32_t *ids, int n, float *logits, dw_error *err) {
    dw_status st = check_tokens(s, ids, n, err);
    if (st) return st;
    if (s->paged) return dw__batch_run(s, ids, n, logits, 1, NULL, NULL, NULL, err);
    if (!s->logits_all && (st = alloc_f32(s, &s->logits_all, (size_t)s->max_batch * s->model->cfg.vocab_size, err)))
        return st;
    return dw__forward(s, ids, n, logits, 1, err);
}

dw_status dw_session_decode(dw_session *s, int32_t id, float *logits, dw_error *err) {
    dw_status st = check_tokens(s, &id, 1, err);
    if (st) return st;
    if (s->paged) return dw__batch_run(s, &id, 1, logits, 0, NULL, NULL, NULL, err);
    return dw__forward(s, &id, 1, logits, 0, err);
}

/* The checks shared by the calls that decode n tokens from id, choosing them on the device. */
static dw_status check_decode_n(dw_session *s, int32_t id, int n, const int32_t *out, const char *what, dw_error *err) {
    if (n < 1 || !out) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "%s: no tokens asked for", what);
    dw_status st = check_tokens(s, &id, 1, err);
    if (!st && n > s->ctx - s->n_tokens)
        st = dw_error_set(err, DW_ERR_LIMIT, "%d tokens do not fit the context: it holds %d tokens and %d are used (raise --ctx)",
                          n, s->ctx, s->n_tokens);
    return st;
}

dw_status dw_session_decode_greedy(dw_session *s, int32_t id, int n, int32_t *out, dw_error *err) {
    dw_status st = check_decode_n(s, id, n, out, "greedy decoding", err);
    if (!st && s->paged) return dw__batch_run(s, &id, n, NULL, 0, out, NULL, NULL, err);
    if (!st && !s->greedy)
        st = dw_error_set(err, DW_ERR_UNSUPPORTED, "backend '%s' cannot choose tokens itself", s->model->backend->ops->name);
    return st ? st : dw__forward_greedy(s, id, n, out, err);
}

dw_status dw_session_decode_sample(dw_session *s, int32_t id, int n, const dw_device_sampling *sampling, const double *u,
                                   int32_t *out, dw_error *err) {
    dw_status st = check_decode_n(s, id, n, out, "sampled decoding", err);
    if (st) return st;
    if (!sampling || !u) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "sampled decoding: no settings or numbers");
    for (int i = 0; i < n; i++) {
        const char *why = dw_pick_check(sampling, u[i]);
        if (why) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "sampled decoding: %s (token %d)", why, i);
    }
    if (s->paged) return dw__batch_run(s, &id, n, NULL, 0, out, sampling, u, err);
    /* Without batching: each token's decode step, then the device's sample_rows on its logits
     * (the settings go up before the step is queued, the token comes back alone). */
    const dw_backend *be = s->model->backend;
    if (!s->pick) return dw_error_set(err, DW_ERR_UNSUPPORTED, "backend '%s' cannot sample tokens itself", be->ops->name);
    int32_t *token = (int32_t *)(s->pick + 1);
    const int start = s->n_tokens;
    for (int i = 0; i < n && !st; i++, id = out[i - 1]) {
        const dw_pick_row row = {.u = u[i], .s = *sampling};
        if ((st = be->ops->upload(be->ctx, s->pick, &row, sizeof row, err))) break;
        dw__forward_decode_queued(s, id);
        be->ops->sample_rows(be->ctx, s->logits, 1, s->model->cfg.vocab_size, s->pick, token);
        st = be->ops->download(be->ctx, &out[i], token, sizeof(int32_t), err);
    }
    if (st) s->n_tokens = start; /* as one call: nothing changes when it fails */
    return st;
}

void dw_session_reset(dw_session *s) {
    if (s->paged) dw__paged_truncate(s, 0);
    s->n_tokens = 0;
}

dw_status dw_session_truncate(dw_session *s, int n, dw_error *err) {
    if (n < 0 || n > s->n_tokens)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "cannot truncate a session of %d tokens to %d", s->n_tokens, n);
    if (s->paged && dw__paged_truncate(s, n)) return dw_error_set(err, DW_ERR_NO_MEMORY, "truncate: out of memory");
    s->n_tokens = n;
    return DW_OK;
}

dw_model *dw_session_model(const dw_session *s) { return s->model; }
int dw_session_n_tokens(const dw_session *s) { return s->n_tokens; }
int dw_session_ctx(const dw_session *s) { return s->ctx; }
const int32_t *dw_session_tokens(const dw_session *s) { return s->tokens; }
dw_dtype dw_session_kv_dtype(const dw_session *s) { return s->kv_dtype; }

/* Copies [n, hd] rows of each head between the device cache and a host [n_kv, n, hd] array,
 * converting between the cache dtype and `dtype` through a per-head host buffer when they differ. */
static dw_status copy_kv(const dw_session *s, int layer, dw_dtype dtype, void *host_k, void *host_v, int n, int to_device,
                         dw_error *err) {
    const dw_kv_view *kv = &s->kv[layer];
    const dw_backend *c = s->model->backend;
    size_t row_elems = (size_t)n * kv->head_dim;
    size_t cache_es = dw_dtype_size(kv->dtype), host_es = dw_dtype_size(dtype);
    void *tmp = NULL;
    float *f32 = NULL;
    if (dtype != kv->dtype) {
        tmp = malloc(row_elems * cache_es);
        f32 = malloc(row_elems * sizeof(float));
        if (!tmp || !f32) {
            free(tmp), free(f32);
            return dw_error_set(err, DW_ERR_NO_MEMORY, "KV copy: out of memory");
        }
    }
    dw_status st = DW_OK;
    for (int which = 0; which < 2 && !st; which++) {
        char *dev = which ? kv->v : kv->k;
        char *host = which ? host_v : host_k;
        for (int h = 0; h < kv->n_kv_heads && !st; h++) {
            char *d = dev + (size_t)h * kv->capacity * kv->head_dim * cache_es;
            char *hp = host + (size_t)h * row_elems * host_es;
            if (!tmp) {
                st = to_device ? c->ops->upload(c->ctx, d, hp, row_elems * cache_es, err)
                               : c->ops->download(c->ctx, hp, d, row_elems * cache_es, err);
            } else if (to_device) {
                dw_convert_to_f32(dtype, hp, f32, row_elems);
                if (!(st = dw_convert_from_f32(kv->dtype, f32, tmp, row_elems)))
                    st = c->ops->upload(c->ctx, d, tmp, row_elems * cache_es, err);
            } else {
                if (!(st = c->ops->download(c->ctx, tmp, d, row_elems * cache_es, err))) {
                    dw_convert_to_f32(kv->dtype, tmp, f32, row_elems);
                    st = dw_convert_from_f32(dtype, f32, hp, row_elems);
                }
            }
        }
    }
    free(tmp);
    free(f32);
    return st;
}

static dw_status check_kv_args(const dw_session *s, int layer, dw_dtype dtype, dw_error *err) {
    if (layer < 0 || layer >= s->model->cfg.n_layers)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "layer %d outside [0, %d)", layer, s->model->cfg.n_layers);
    if (dtype != DW_DTYPE_BF16 && dtype != DW_DTYPE_F32)
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "KV dtype %s is not supported (BF16, F32)", dw_dtype_name(dtype));
    return DW_OK;
}

dw_status dw_session_kv_export(const dw_session *s, int layer, dw_dtype dtype, void *k, void *v, dw_error *err) {
    dw_status st = check_kv_args(s, layer, dtype, err);
    if (st) return st;
    if (s->n_tokens == 0) return DW_OK;
    if (s->paged) return dw__paged_kv_export(s, layer, dtype, k, v, err);
    return copy_kv(s, layer, dtype, k, v, s->n_tokens, 0, err);
}

dw_status dw_session_import(dw_session *s, const int32_t *tokens, int n, dw_dtype dtype, const void *const *k,
                            const void *const *v, dw_error *err) {
    if (n < 0 || n > s->ctx)
        return dw_error_set(err, DW_ERR_LIMIT, "a state of %d tokens does not fit the context of %d tokens", n, s->ctx);
    int vocab = s->model->cfg.vocab_size;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= vocab)
            return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "token id %d at index %d is outside the vocabulary", tokens[i], i);
    dw_status st;
    if ((st = check_kv_args(s, 0, dtype, err))) return st;
    if (s->paged) return dw__paged_import(s, tokens, n, dtype, k, v, err);
    for (int l = 0; l < s->model->cfg.n_layers; l++) {
        if ((st = check_kv_args(s, l, dtype, err))) return st;
        if (n && (st = copy_kv(s, l, dtype, (void *)k[l], (void *)v[l], n, 1, err))) {
            s->n_tokens = 0; /* partially overwritten: the old state is gone */
            return st;
        }
    }
    memcpy(s->tokens, tokens, (size_t)n * sizeof *tokens);
    s->n_tokens = n;
    return DW_OK;
}
