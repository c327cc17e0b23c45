/* Sessions of a batching model (engine.h, "Batching"; batch_impl.h): their life in the pool, and
 * what the session calls other than running tokens do to their blocks — truncation, forks, and
 * the KV export and import of snapshots (the same HF layout as a contiguous session's). Each
 * takes the batcher's lock: the scheduler may be evicting or publishing blocks meanwhile. */
#include <stdlib.h>
#include <string.h>

#include "engine/batch_impl.h"


static dw_status paged_init(dw_session *s, dw_error *err) {
    dw__batcher *b = s->model->batcher;
    s->paged = calloc(1, sizeof *s->paged);
    if (!s->paged) return dw_error_set(err, DW_ERR_NO_MEMORY, "session: out of memory");
    s->paged->table = malloc(sizeof(int32_t) * ((size_t)s->ctx / (size_t)b->pool.block_tokens + 2));
    if (!s->paged->table) return dw_error_set(err, DW_ERR_NO_MEMORY, "session: out of memory");
    pthread_mutex_lock(&b->lock);
    s->paged->lru_next = b->lru_head;
    if (b->lru_head) b->lru_head->paged->lru_prev = s;
    b->lru_head = s;
    s->paged->last_used = b->step_no;
    pthread_mutex_unlock(&b->lock);
    return DW_OK;
}

void dw__paged_session_destroy(dw_session *s) {
    dw__batcher *b = s->model->batcher;
    dw__paged *pg = s->paged;
    if (!pg) {
        free(s->tokens);
        free(s);
        return;
    }
    if (pg->table && b) {
        pthread_mutex_lock(&b->lock);
        dw__kv_release_from(b, s, 0);
        if (pg->lru_prev) pg->lru_prev->paged->lru_next = pg->lru_next;
        else if (b->lru_head == s) b->lru_head = pg->lru_next;
        if (pg->lru_next) pg->lru_next->paged->lru_prev = pg->lru_prev;
        pthread_mutex_unlock(&b->lock);
    }
    free(pg->host_kv);
    free(pg->table);
    free(pg);
    free(s->tokens);
    free(s);
}

/* A session of a batching model: tokens on the host, KV in the pool's blocks, no buffers of its own. */
dw_status dw__paged_session_create(dw_model *model, const dw_session_options *o, dw_session **out, dw_error *err) {
    const dw__kv_pool *pool = &model->batcher->pool;
    if (o->kv_f32 && pool->dtype != DW_DTYPE_F32)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "session: an F32 KV cache was asked for, but the batching pool is %s",
                            dw_dtype_name(pool->dtype));
    dw_session *s = calloc(1, sizeof *s);
    if (!s) return dw_error_set(err, DW_ERR_NO_MEMORY, "session: out of memory");
    s->model = model;
    s->ctx = o->ctx;
    s->max_batch = o->max_batch;
    s->kv_dtype = pool->dtype;
    s->tokens = calloc((size_t)o->ctx, sizeof *s->tokens);
    dw_status st = s->tokens ? paged_init(s, err) : dw_error_set(err, DW_ERR_NO_MEMORY, "session: out of memory");
    if (st) {
        dw__paged_session_destroy(s);
        return st;
    }
    *out = s;
    return DW_OK;
}


dw_status dw__paged_truncate(dw_session *s, int n) {
    dw__batcher *b = s->model->batcher;
    pthread_mutex_lock(&b->lock);
    if (s->paged->host_kv) {
        /* the host copy keeps its layout for n_tokens; restoring fewer keeps the prefix */
        dw__paged *pg = s->paged;
        const dw_model_config *c = &s->model->cfg;
        size_t es = dw_dtype_size(b->pool.dtype), old_lb = (size_t)c->n_kv_heads * s->n_tokens * c->head_dim * es;
        size_t new_lb = (size_t)c->n_kv_heads * n * c->head_dim * es;
        char *src = pg->host_kv, *dst = malloc(new_lb * 2 * (size_t)c->n_layers + 1);
        if (!dst) {
            pthread_mutex_unlock(&b->lock);
            return DW_ERR_NO_MEMORY;
        }
        for (int plane = 0; plane < 2 * c->n_layers; plane++)
            for (int h = 0; h < c->n_kv_heads; h++)
                memcpy(dst + new_lb * plane + (size_t)h * n * c->head_dim * es,
                       src + old_lb * plane + (size_t)h * s->n_tokens * c->head_dim * es, (size_t)n * c->head_dim * es);
        free(src);
        pg->host_kv = dst;
    } else {
        dw__kv_release_from(b, s, n);
    }
    s->n_tokens = n;
    pthread_mutex_unlock(&b->lock);
    return DW_OK;
}

dw_status dw_session_fork(dw_session *parent, dw_session **child, dw_error *err) {
    *child = NULL;
    if (!parent->paged)
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "only sessions of a batching model can fork (start batching first)");
    dw_session_options o = {.ctx = parent->ctx, .max_batch = parent->max_batch, .kv_f32 = parent->kv_dtype == DW_DTYPE_F32};
    dw_session *c;
    dw_status st = dw__paged_session_create(parent->model, &o, &c, err);
    if (st) return st;
    dw__batcher *b = parent->model->batcher;
    pthread_mutex_lock(&b->lock);
    if (parent->paged->host_kv) st = dw__kv_restore(b, parent, err);
    if (!st) {
        for (int j = 0; j < parent->paged->n_blocks; j++) {
            int32_t blk = parent->paged->table[j];
            b->pool.blocks[blk].refs++; /* held by the parent, so never on the free list */
            c->paged->table[j] = blk;
        }
        c->paged->n_blocks = parent->paged->n_blocks;
        memcpy(c->tokens, parent->tokens, sizeof(int32_t) * (size_t)parent->n_tokens);
        c->n_tokens = parent->n_tokens;
        c->paged->last_used = parent->paged->last_used;
    }
    pthread_mutex_unlock(&b->lock);
    if (st) {
        dw__paged_session_destroy(c);
        return st;
    }
    *child = c;
    return DW_OK;
}

/* Layer's K and V of positions [0, n_tokens) as [n_kv, n_tokens, hd] in the pool dtype. */
static dw_status layer_out(dw__batcher *b, const dw_session *s, int layer, void *k, void *v, dw_error *err) {
    if (!s->paged->host_kv) return dw__kv_copy_layer(b, s, layer, k, v, s->n_tokens, 0, err);
    const dw_model_config *c = &s->model->cfg;
    size_t lb = (size_t)c->n_kv_heads * s->n_tokens * c->head_dim * dw_dtype_size(b->pool.dtype);
    memcpy(k, (char *)s->paged->host_kv + lb * 2 * layer, lb);
    memcpy(v, (char *)s->paged->host_kv + lb * (2 * layer + 1), lb);
    return DW_OK;
}

/* Converts count elements between dtypes (equal dtypes: a copy). */
static dw_status convert(dw_dtype from, const void *src, dw_dtype to, void *dst, size_t count, dw_error *err) {
    if (from == to) {
        memcpy(dst, src, count * dw_dtype_size(to));
        return DW_OK;
    }
    float *f = malloc(count * sizeof(float) + 1);
    if (!f) return dw_error_set(err, DW_ERR_NO_MEMORY, "KV conversion: out of memory");
    dw_convert_to_f32(from, src, f, count);
    dw_status st = dw_convert_from_f32(to, f, dst, count);
    free(f);
    return st ? dw_error_set(err, st, "KV conversion to %s failed", dw_dtype_name(to)) : DW_OK;
}

dw_status dw__paged_kv_export(const dw_session *s, int layer, dw_dtype dtype, void *k, void *v, dw_error *err) {
    dw__batcher *b = s->model->batcher;
    const dw_model_config *c = &s->model->cfg;
    size_t count = (size_t)c->n_kv_heads * s->n_tokens * c->head_dim, es = dw_dtype_size(b->pool.dtype);
    void *tk = dtype == b->pool.dtype ? k : malloc(count * es + 1), *tv = dtype == b->pool.dtype ? v : malloc(count * es + 1);
    dw_status st = tk && tv ? DW_OK : dw_error_set(err, DW_ERR_NO_MEMORY, "KV export: out of memory");
    pthread_mutex_lock(&b->lock);
    if (!st) st = layer_out(b, s, layer, tk, tv, err);
    pthread_mutex_unlock(&b->lock);
    if (!st && tk != k) st = convert(b->pool.dtype, tk, dtype, k, count, err);
    if (!st && tv != v) st = convert(b->pool.dtype, tv, dtype, v, count, err);
    if (tk != k) free(tk);
    if (tv != v) free(tv);
    return st;
}

dw_status dw__paged_import(dw_session *s, const int32_t *tokens, int n, dw_dtype dtype, const void *const *k,
                           const void *const *v, dw_error *err) {
    dw__batcher *b = s->model->batcher;
    const dw_model_config *c = &s->model->cfg;
    size_t count = (size_t)c->n_kv_heads * (size_t)n * c->head_dim, es = dw_dtype_size(b->pool.dtype);
    char *tk = malloc(count * es + 1), *tv = malloc(count * es + 1);
    dw_status st = tk && tv ? DW_OK : dw_error_set(err, DW_ERR_NO_MEMORY, "KV import: out of memory");
    pthread_mutex_lock(&b->lock);
    free(s->paged->host_kv);
    s->paged->host_kv = NULL;
    dw__kv_release_from(b, s, 0);
    s->n_tokens = 0;
    s->paged->busy++;
    if (!st && n) st = dw__kv_reserve(b, s, n, err);
    for (int l = 0; l < c->n_layers && !st && n; l++) {
        if (!(st = convert(dtype, k[l], b->pool.dtype, tk, count, err)) &&
            !(st = convert(dtype, v[l], b->pool.dtype, tv, count, err)))
            st = dw__kv_copy_layer(b, s, l, tk, tv, n, 1, err);
    }
    s->paged->busy--;
    if (st) {
        dw__kv_release_from(b, s, 0);
    } else {
        memcpy(s->tokens, tokens, sizeof(int32_t) * (size_t)n);
        s->n_tokens = n;
        dw__kv_publish(b, s);
    }
    pthread_mutex_unlock(&b->lock);
    free(tk);
    free(tv);
    return st;
}
