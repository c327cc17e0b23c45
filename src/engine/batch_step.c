/* One batched step (batch_impl.h): the rows of many sessions — a decode token each, or a chunk of
 * a prompt — through the transformer in one pass that reads every weight once, over the paged KV
 * pool, with the backend's batch-invariant *_rows ops (backend.h), then the LM head for the rows
 * whose logits are wanted. Nothing here allocates: the buffers are sized when batching starts. */
#include <math.h>
#include <string.h>

#include "engine/batch_impl.h"

static dw_status alloc_f32(dw__batcher *b, float **out, size_t count, dw_error *err) {
    const dw_backend *be = b->model->backend;
    return be->ops->alloc(be->ctx, count * sizeof(float), (void **)out, err);
}

/* The step's metadata: pos, slot, table_at and the gather indices (cap_rows each), then the block
 * tables of up to cap_rows sequences of the longest context. */
static size_t meta_count(const dw__batcher *b) {
    const dw_model_config *c = &b->model->cfg;
    size_t max_blocks = (size_t)c->max_position_embeddings / (size_t)b->pool.block_tokens + 1;
    return 4 * (size_t)b->cap_rows + max_blocks * (size_t)b->cap_rows;
}

dw_status dw__batch_buffers_init(dw__batcher *b, dw_error *err) {
    const dw_model_config *c = &b->model->cfg;
    const dw_backend *be = b->model->backend;
    size_t R = (size_t)b->cap_rows, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    dw_status st;
    if ((st = alloc_f32(b, &b->x, R * c->hidden_size, err)) || (st = alloc_f32(b, &b->xn, R * c->hidden_size, err)) ||
        (st = alloc_f32(b, &b->q, R * qd, err)) || (st = alloc_f32(b, &b->k, R * kvd, err)) ||
        (st = alloc_f32(b, &b->v, R * kvd, err)) || (st = alloc_f32(b, &b->att, R * qd, err)) ||
        (st = alloc_f32(b, &b->o, R * c->hidden_size, err)) ||
        (st = alloc_f32(b, &b->gate, R * c->intermediate_size, err)) ||
        (st = alloc_f32(b, &b->up, R * c->intermediate_size, err)) ||
        (st = alloc_f32(b, &b->logits, R * c->vocab_size, err)))
        return dw_error_prefix(err, "batch buffers for %d tokens", b->cap_rows);
    b->meta_cap = meta_count(b);
    if ((st = be->ops->alloc(be->ctx, b->meta_cap * sizeof(int32_t), (void **)&b->meta, err)) ||
        (st = be->ops->alloc(be->ctx, R * sizeof(int32_t), (void **)&b->argmax, err)) ||
        (st = be->ops->alloc(be->ctx, R * sizeof(dw_pick_row), (void **)&b->pick, err)))
        return st;
    b->host_meta = malloc(b->meta_cap * sizeof(int32_t));
    b->host_ids = malloc(R * sizeof(int32_t));
    b->host_argmax = malloc(R * sizeof(int32_t));
    b->host_pick = malloc(R * sizeof(dw_pick_row));
    b->items = malloc(R * sizeof *b->items);
    if (!b->host_meta || !b->host_ids || !b->host_argmax || !b->host_pick || !b->items)
        return dw_error_set(err, DW_ERR_NO_MEMORY, "batch buffers: out of host memory");
    return DW_OK;
}

void dw__batch_buffers_free(dw__batcher *b) {
    const dw_backend *be = b->model->backend;
    void *bufs[] = {b->x, b->xn, b->q, b->k, b->v, b->att, b->o, b->gate, b->up, b->logits, b->meta, b->argmax, b->pick};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) be->ops->free(be->ctx, bufs[i]);
    free(b->host_meta);
    free(b->host_ids);
    free(b->host_argmax);
    free(b->host_pick);
    free(b->items);
}

/* One transformer block over the step's rows; b->x is updated in place. */
static void block(dw__batcher *b, int l, const dw_rows *rows) {
    const dw_model *m = b->model;
    const dw_model_config *c = &m->cfg;
    const dw_backend_ops *ops = m->backend->ops;
    void *ctx = m->backend->ctx;
    const dw_layer_weights *L = &m->layers[l];
    const int n = rows->n, hidden = c->hidden_size;
#define BIAS(w) ((w).data ? &(w) : NULL)

    ops->rmsnorm(ctx, b->xn, b->x, &L->attn_norm, n, hidden, c->rms_norm_eps);
    float *qkv[3] = {b->q, b->k, b->v};
    const dw_cweight *wqkv[3] = {&L->wq, &L->wk, &L->wv}, *bqkv[3] = {BIAS(L->bq), BIAS(L->bk), BIAS(L->bv)};
    ops->matmul_rows(ctx, 3, qkv, b->xn, n, wqkv, bqkv);
    ops->rope_rows(ctx, b->q, b->k, rows, c->n_heads, c->n_kv_heads, c->head_dim, m->inv_freq);
    ops->kv_write_rows(ctx, &b->pool.layers[l], b->k, b->v, rows);
    dw_attn_params ap = {
        .n_heads = c->n_heads,
        .n_kv_heads = c->n_kv_heads,
        .head_dim = c->head_dim,
        .window = c->sliding_window,
        .scale = 1.0f / sqrtf((float)c->head_dim),
    };
    ops->attention_rows(ctx, b->att, b->q, &b->pool.layers[l], rows, &ap);
    const dw_cweight *wo = &L->wo, *bo = BIAS(L->bo);
    ops->matmul_rows(ctx, 1, &b->o, b->att, n, &wo, &bo);
    ops->add(ctx, b->x, b->o, (size_t)n * hidden);

    ops->rmsnorm(ctx, b->xn, b->x, &L->ffn_norm, n, hidden, c->rms_norm_eps);
    float *gu[2] = {b->gate, b->up};
    const dw_cweight *wgu[2] = {&L->w_gate, &L->w_up}, *bgu[2] = {BIAS(L->b_gate), BIAS(L->b_up)};
    ops->matmul_rows(ctx, 2, gu, b->xn, n, wgu, bgu);
    ops->swiglu(ctx, b->gate, b->gate, b->up, (size_t)n * c->intermediate_size);
    const dw_cweight *wd = &L->w_down, *bd = BIAS(L->b_down);
    ops->matmul_rows(ctx, 1, &b->o, b->gate, n, &wd, &bd);
    ops->add(ctx, b->x, b->o, (size_t)n * hidden);
#undef BIAS
}

/* Which ways of choosing tokens the step's requests ask for (DW_CHOOSE_* bits); for sampled ones,
 * their settings and this token's uniform number go up to b->pick (the other rows marked "not
 * sampled") before the step is queued, while the device is idle. */
static dw_status prepare_choices(dw__batcher *b, const dw__step_item *items, int n_items, int g, int *chooses,
                                 dw_error *err) {
    *chooses = 0;
    for (int i = 0; i < n_items; i++) {
        const dw__request *r = items[i].r;
        if (r->chosen) *chooses |= r->sampling ? DW_CHOOSE_SAMPLED : DW_CHOOSE_GREEDY;
    }
    if (!(*chooses & DW_CHOOSE_SAMPLED)) return DW_OK;
    memset(b->host_pick, 0, sizeof(dw_pick_row) * (size_t)g); /* temperature 0: not sampled */
    for (int i = 0; i < n_items; i++) {
        const dw__request *r = items[i].r;
        if (r->chosen && r->sampling) b->host_pick[items[i].logit_at] = (dw_pick_row){.u = r->u[r->done], .s = *r->sampling};
    }
    const dw_backend *be = b->model->backend;
    return be->ops->upload(be->ctx, b->pick, b->host_pick, sizeof(dw_pick_row) * (size_t)g, err);
}

dw_status dw__batch_step(dw__batcher *b, dw__step_item *items, int n_items, dw_error *err) {
    const dw_model *m = b->model;
    const dw_model_config *c = &m->cfg;
    const dw_backend_ops *ops = m->backend->ops;
    void *ctx = m->backend->ctx;
    const int bt = b->pool.block_tokens, R = b->cap_rows;
    int32_t *pos = b->host_meta, *slot = pos + R, *table_at = slot + R, *gidx = table_at + R, *tables = gidx + R;
    int n = 0, g = 0, t = 0, max_pos = 0, chooses = 0;

    for (int i = 0; i < n_items; i++) {
        dw__step_item *it = &items[i];
        const dw_session *s = it->r->s;
        const int blocks = (s->n_tokens + it->n + bt - 1) / bt;
        memcpy(tables + t, s->paged->table, sizeof(int32_t) * (size_t)blocks);
        it->logit_at = g;
        for (int j = 0; j < it->n; j++, n++) {
            int p = s->n_tokens + j;
            pos[n] = p;
            slot[n] = s->paged->table[p / bt] * bt + p % bt;
            table_at[n] = t;
            b->host_ids[n] = it->ids[j];
            if (p > max_pos) max_pos = p;
            if (j >= it->n - it->logit_rows) gidx[g++] = n;
        }
        t += blocks;
    }
    /* The arrays travel in one upload: [pos | slot | table_at | gidx] of cap_rows each, then tables. */
    int32_t *dev = b->meta;
    dw_status st = ops->upload(ctx, dev, b->host_meta, sizeof(int32_t) * (4 * (size_t)R + (size_t)t), err);
    if (st || (g > 0 && (st = prepare_choices(b, items, n_items, g, &chooses, err)))) return st;
    dw_rows rows = {.n = n, .pos = dev, .slot = dev + R, .table_at = dev + 2 * R, .tables = dev + 4 * R, .max_pos = max_pos};

    ops->embed(ctx, b->x, &m->embed, b->host_ids, n);
    for (int l = 0; l < c->n_layers; l++) block(b, l, &rows);

    if (g > 0) {
        const dw_cweight *head = &m->lm_head;
        ops->gather_rows(ctx, b->o, b->x, dev + 3 * R, g, c->hidden_size);
        ops->rmsnorm(ctx, b->xn, b->o, &m->final_norm, g, c->hidden_size, c->rms_norm_eps);
        ops->matmul_rows(ctx, 1, &b->logits, b->xn, g, &head, &(const dw_cweight *){NULL});
        if (chooses & DW_CHOOSE_GREEDY) ops->argmax_rows(ctx, b->logits, g, c->vocab_size, b->argmax);
        if (chooses & DW_CHOOSE_SAMPLED) ops->sample_rows(ctx, b->logits, g, c->vocab_size, b->pick, b->argmax);
        if (chooses && (st = ops->download(ctx, b->host_argmax, b->argmax, sizeof(int32_t) * (size_t)g, err))) return st;
        const size_t row_bytes = sizeof(float) * (size_t)c->vocab_size;
        for (int i = 0; i < n_items; i++) {
            const dw__step_item *it = &items[i];
            const dw__request *r = it->r;
            if (!it->logit_rows || !r->logits) continue;
            /* all_logits: the rows of this chunk go after those of the chunks before it */
            float *dst = r->all_logits ? r->logits + (size_t)r->done * c->vocab_size : r->logits;
            st = ops->download(ctx, dst, b->logits + (size_t)it->logit_at * c->vocab_size,
                               row_bytes * (size_t)it->logit_rows, err);
            if (st) return st;
        }
    }
    return ops->synchronize(ctx, err);
}
