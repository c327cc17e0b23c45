/* The CUDA backend's decode fusion: the one op held back to be fused with the next (the table of
 * fusions is in cuda_context.h), and its launch when the next op does not consume it. Callers
 * hold the context's lock. */
#include "backend/cuda/cuda_context.h"

void dw__cuda_run_matvec(dw__cuda_ctx *c, const dwk::mv_args &a) {
    dw__cuda_check(c, dwk::launch_matvec(a, c->n_sm, c->stream), "matvec kernel");
}

void dw__cuda_flush(dw__cuda_ctx *c) {
    dw__cuda_pending &p = c->pend;
    const dw__cuda_pending_kind kind = p.kind;
    p.kind = DW_PENDING_NONE;
    switch (kind) {
    case DW_PENDING_NONE: break;
    case DW_PENDING_NORM:
        dw__cuda_check(c, dwk::launch_rmsnorm(p.norm_out, p.norm_x, p.norm_w, 1, p.norm_dim, p.norm_eps, c->stream),
                       "rmsnorm kernel");
        break;
    case DW_PENDING_MATVEC: dw__cuda_run_matvec(c, p.mv); break;
    case DW_PENDING_ROPE:
    case DW_PENDING_ROPE_KV:
        dw__cuda_check(c, dwk::launch_rope_kv(p.rope, c->stream),
                       kind == DW_PENDING_ROPE ? "rope kernel" : "rope/kv_write kernel");
        break;
    }
}

void dw__cuda_drop_held(dw__cuda_ctx *c) { c->pend.kind = DW_PENDING_NONE; }

void dw__cuda_hold_norm(dw__cuda_ctx *c, float *out, const float *x, const float *w, int dim, float eps) {
    dw__cuda_pending &p = c->pend;
    p.kind = DW_PENDING_NORM;
    p.norm_out = out, p.norm_x = x, p.norm_w = w, p.norm_dim = dim, p.norm_eps = eps;
}

void dw__cuda_take_norm(dw__cuda_ctx *c, dwk::mv_args *a) {
    dw__cuda_pending &p = c->pend;
    if (p.kind == DW_PENDING_NORM && p.norm_out == a->x && p.norm_dim == a->K) {
        a->x = p.norm_x;
        a->norm_w = p.norm_w;
        a->eps = p.norm_eps;
        a->norm_out = p.norm_out;
        p.kind = DW_PENDING_NONE;
    } else {
        dw__cuda_flush(c);
    }
}

void dw__cuda_hold_matvec(dw__cuda_ctx *c, const dwk::mv_args &a) {
    c->pend.kind = DW_PENDING_MATVEC;
    c->pend.mv = a;
}

bool dw__cuda_fuse_add(dw__cuda_ctx *c, float *x, const float *y, size_t count) {
    dw__cuda_pending &p = c->pend;
    if (p.kind == DW_PENDING_MATVEC && p.mv.count == 1 && p.mv.out[0] == y && (size_t)p.mv.row_start[1] == count &&
        x != p.mv.x && x != p.mv.norm_out && x != y) {
        p.mv.res = x;
        dw__cuda_flush(c);
        return true;
    }
    return false;
}

bool dw__cuda_fuse_swiglu(dw__cuda_ctx *c, float *out, const float *gate, const float *up, size_t count) {
    dw__cuda_pending &p = c->pend;
    if (p.kind == DW_PENDING_MATVEC && p.mv.count == 2 && out == gate && p.mv.out[0] == gate && p.mv.out[1] == up &&
        p.mv.row_start[1] * 2 == p.mv.row_start[2] && (size_t)p.mv.row_start[1] == count) {
        p.mv.pair_swiglu = 1;
        dw__cuda_flush(c);
        return true;
    }
    return false;
}

void dw__cuda_hold_rope(dw__cuda_ctx *c, const dwk::ropekv_args &a, bool with_kv) {
    c->pend.kind = with_kv ? DW_PENDING_ROPE_KV : DW_PENDING_ROPE;
    c->pend.rope = a;
}

bool dw__cuda_take_rope(dw__cuda_ctx *c, const float *k, int pos0, int n, const dw_kv_view *kv,
                        dwk::ropekv_args *a) {
    dw__cuda_pending &p = c->pend;
    if (p.kind == DW_PENDING_ROPE && p.rope.k == k && p.rope.pos0 == pos0 && p.rope.n == n &&
        p.rope.n_kv == kv->n_kv_heads && p.rope.hd == kv->head_dim) {
        *a = p.rope;
        p.kind = DW_PENDING_NONE;
        return true;
    }
    dw__cuda_flush(c);
    return false;
}

const dwk::ropekv_args *dw__cuda_held_rope_kv(const dw__cuda_ctx *c, const float *q, const dw_kv_view *kv,
                                              const dw_attn_params *p) {
    const dwk::ropekv_args &pr = c->pend.rope;
    const bool match = c->pend.kind == DW_PENDING_ROPE_KV && p->n_tokens == 1 && pr.n == 1 && pr.pos0 == p->pos0 &&
                       pr.kc == kv->k && pr.vc == kv->v && pr.hd == p->head_dim && pr.n_kv == p->n_kv_heads &&
                       pr.capacity == kv->capacity && pr.kv_f32 == (kv->dtype == DW_DTYPE_F32) &&
                       pr.dslot == c->cap_slot && (!pr.rope || (pr.q == q && pr.n_heads == p->n_heads)) &&
                       p->head_dim % 2 == 0;
    return match ? &pr : NULL;
}
