/* The decoder-only transformer forward pass (Llama / Qwen2 / Mistral), written once against
 * the backend's ops (src/backend/backend.h). Prefill runs the prompt in batches of up to
 * max_batch tokens (every weight read once per batch); decode is the same path with n = 1.
 * Nothing here allocates: the session's buffers were sized at creation. */
#include "engine/engine_impl.h"

#include <math.h>

/* One transformer block over nb tokens at positions [pos0, pos0 + nb); x is updated in place. */
static void block(dw_session *s, int l, int pos0, int nb) {
    const dw_model *m = s->model;
    const dw_model_config *c = &m->cfg;
    const dw_backend_ops *ops = m->backend->ops;
    void *ctx = m->backend->ctx;
    const dw_layer_weights *L = &m->layers[l];
    int hidden = c->hidden_size;

    /* attention */
    ops->rmsnorm(ctx, s->xn, s->x, &L->attn_norm, nb, hidden, c->rms_norm_eps);
    const dw_cweight *bq = L->bq.data ? &L->bq : NULL, *bk = L->bk.data ? &L->bk : NULL,
                     *bv = L->bv.data ? &L->bv : NULL;
    if (ops->matmul_multi) {
        float *outs[3] = {s->q, s->k, s->v};
        const dw_cweight *ws[3] = {&L->wq, &L->wk, &L->wv};
        const dw_cweight *bs[3] = {bq, bk, bv};
        ops->matmul_multi(ctx, 3, outs, s->xn, nb, ws, bs);
    } else {
        ops->matmul(ctx, s->q, s->xn, nb, &L->wq, bq);
        ops->matmul(ctx, s->k, s->xn, nb, &L->wk, bk);
        ops->matmul(ctx, s->v, s->xn, nb, &L->wv, bv);
    }
    ops->rope(ctx, s->q, s->k, nb, c->n_heads, c->n_kv_heads, c->head_dim, pos0, m->inv_freq);
    ops->kv_write(ctx, &s->kv[l], s->k, s->v, pos0, nb);
    dw_attn_params ap = {
        .n_heads = c->n_heads,
        .n_kv_heads = c->n_kv_heads,
        .head_dim = c->head_dim,
        .pos0 = pos0,
        .n_tokens = nb,
        .window = c->sliding_window,
        .scale = 1.0f / sqrtf((float)c->head_dim),
    };
    ops->attention(ctx, s->att, s->q, &s->kv[l], &ap);
    ops->matmul(ctx, s->o, s->att, nb, &L->wo, L->bo.data ? &L->bo : NULL);
    ops->add(ctx, s->x, s->o, (size_t)nb * hidden);

    /* feed-forward (SwiGLU) */
    ops->rmsnorm(ctx, s->xn, s->x, &L->ffn_norm, nb, hidden, c->rms_norm_eps);
    const dw_cweight *bg = L->b_gate.data ? &L->b_gate : NULL, *bu = L->b_up.data ? &L->b_up : NULL;
    if (ops->matmul_multi) {
        float *outs[2] = {s->gate, s->up};
        const dw_cweight *ws[2] = {&L->w_gate, &L->w_up};
        const dw_cweight *bs[2] = {bg, bu};
        ops->matmul_multi(ctx, 2, outs, s->xn, nb, ws, bs);
    } else {
        ops->matmul(ctx, s->gate, s->xn, nb, &L->w_gate, bg);
        ops->matmul(ctx, s->up, s->xn, nb, &L->w_up, bu);
    }
    ops->swiglu(ctx, s->gate, s->gate, s->up, (size_t)nb * c->intermediate_size);
    ops->matmul(ctx, s->o, s->gate, nb, &L->w_down, L->b_down.data ? &L->b_down : NULL);
    ops->add(ctx, s->x, s->o, (size_t)nb * hidden);
}

/* One decode step through the LM head into s->logits, for ops->decode_step (which may record it
 * once per session and replay it, so it issues the same ops on the same buffers every time). */
typedef struct decode_step_arg {
    dw_session *s;
    int32_t id;
    int pos;
} decode_step_arg;

static void decode_step(void *arg) {
    decode_step_arg *a = arg;
    dw_session *s = a->s;
    const dw_model *m = s->model;
    const dw_model_config *c = &m->cfg;
    const dw_backend_ops *ops = m->backend->ops;
    void *ctx = m->backend->ctx;
    ops->embed(ctx, s->x, &m->embed, &a->id, 1);
    for (int l = 0; l < c->n_layers; l++) block(s, l, a->pos, 1);
    ops->rmsnorm(ctx, s->xn, s->x, &m->final_norm, 1, c->hidden_size, c->rms_norm_eps);
    ops->matmul(ctx, s->logits, s->xn, 1, &m->lm_head, NULL);
}

/* A greedy step: decode_step, then its token chosen on the device into s->greedy[pos % chunk]
 * (recorded with the step, under the key &s->greedy, apart from the session's sampled steps). */
static void decode_step_greedy(void *arg) {
    decode_step(arg);
    const decode_step_arg *a = arg;
    const dw_model *m = a->s->model;
    m->backend->ops->argmax(m->backend->ctx, a->s->logits, m->cfg.vocab_size, a->s->greedy, DW__GREEDY_CHUNK, a->pos);
}

void dw__forward_decode_queued(dw_session *s, int32_t id) {
    const dw_backend_ops *ops = s->model->backend->ops;
    decode_step_arg a = {.s = s, .id = id, .pos = s->n_tokens};
    if (ops->decode_step) ops->decode_step(s->model->backend->ctx, s, a.id, a.pos, decode_step, &a);
    else decode_step(&a);
    s->tokens[a.pos] = a.id;
    s->n_tokens++;
}

dw_status dw__forward(dw_session *s, const int32_t *ids, int n, float *logits, int all_logits, dw_error *err) {
    const dw_model *m = s->model;
    const dw_model_config *c = &m->cfg;
    const dw_backend_ops *ops = m->backend->ops;
    void *ctx = m->backend->ctx;
    int hidden = c->hidden_size, vocab = c->vocab_size;
    dw_status st;

    if (ops->decode_step && n == 1 && logits && !all_logits) {
        dw__forward_decode_queued(s, ids[0]);
        if ((st = ops->download(ctx, logits, s->logits, sizeof(float) * (size_t)vocab, err))) return st;
        return ops->synchronize(ctx, err);
    }

    for (int done = 0; done < n;) {
        int nb = n - done < s->max_batch ? n - done : s->max_batch;
        int pos0 = s->n_tokens;
        ops->embed(ctx, s->x, &m->embed, ids + done, nb);
        for (int l = 0; l < c->n_layers; l++) block(s, l, pos0, nb);
        for (int i = 0; i < nb; i++) s->tokens[pos0 + i] = ids[done + i];
        s->n_tokens += nb;
        done += nb;

        if (!logits) continue;
        if (all_logits) {
            ops->rmsnorm(ctx, s->xn, s->x, &m->final_norm, nb, hidden, c->rms_norm_eps);
            ops->matmul(ctx, s->logits_all, s->xn, nb, &m->lm_head, NULL);
            st = ops->download(ctx, logits + (size_t)(done - nb) * vocab, s->logits_all,
                               sizeof(float) * (size_t)nb * vocab, err);
            if (st) return st;
        } else if (done == n) {
            const float *last = s->x + (size_t)(nb - 1) * hidden;
            ops->rmsnorm(ctx, s->xn, last, &m->final_norm, 1, hidden, c->rms_norm_eps);
            ops->matmul(ctx, s->logits, s->xn, 1, &m->lm_head, NULL);
            if ((st = ops->download(ctx, logits, s->logits, sizeof(float) * (size_t)vocab, err))) return st;
        }
    }
    return ops->synchronize(ctx, err);
}

/* Chunks of steps up to a position that is a multiple of DW__GREEDY_CHUNK (so that their tokens
 * lie in order in s->greedy, at pos % DW__GREEDY_CHUNK): each step's token is the argmax the
 * device wrote for the step before (decode_step_from), or, where the backend cannot chain (the
 * first step of a chunk, a step not yet recorded, the CPU), one the host read back. The chosen
 * tokens come back in one download per chunk. */
dw_status dw__forward_greedy(dw_session *s, int32_t id, int n, int32_t *out, dw_error *err) {
    const dw_model *m = s->model;
    const dw_backend_ops *ops = m->backend->ops;
    void *ctx = m->backend->ctx;
    const void *key = &s->greedy;
    dw_status st;
    int32_t tok = id;
    for (int done = 0; done < n;) {
        const int pos0 = s->n_tokens, at0 = pos0 % DW__GREEDY_CHUNK;
        const int cnt = n - done < DW__GREEDY_CHUNK - at0 ? n - done : DW__GREEDY_CHUNK - at0;
        const int32_t first = tok;
        for (int j = 0; j < cnt; j++) {
            decode_step_arg a = {.s = s, .id = tok, .pos = s->n_tokens};
            const int32_t *before = s->greedy + at0 + j - 1; /* the token of the step before */
            int queued = j > 0 && ops->decode_step_from &&
                         ops->decode_step_from(ctx, key, before, a.pos, decode_step_greedy, &a);
            if (!queued) {
                if (j > 0 && (st = ops->download(ctx, &a.id, before, sizeof a.id, err))) return st;
                if (ops->decode_step) ops->decode_step(ctx, key, a.id, a.pos, decode_step_greedy, &a);
                else decode_step_greedy(&a);
            }
            s->n_tokens++;
        }
        if ((st = ops->download(ctx, out + done, s->greedy + at0, sizeof(int32_t) * (size_t)cnt, err))) return st;
        s->tokens[pos0] = first;
        for (int j = 1; j < cnt; j++) s->tokens[pos0 + j] = out[done + j - 1];
        tok = out[done + cnt - 1];
        done += cnt;
    }
    return ops->synchronize(ctx, err);
}
