/* The paged KV pool of a batching model (batch_impl.h): fixed-size blocks with reference counts,
 * a free list (blocks that hold nothing reusable first, then those of the prefix cache, least
 * recently freed first), copy on write,
 * the prefix cache that lets sessions share the blocks of a common prompt, and eviction of idle
 * sessions to host memory. Everything here runs under the batcher's lock. */
#include <stdlib.h>
#include <string.h>

#include "engine/batch_impl.h"

#define MAP_EMPTY (-1)
#define MAP_DELETED (-2)

static size_t elem_size(const dw__kv_pool *p) { return dw_dtype_size(p->dtype); }

/* ---- blocks and the free list ------------------------------------------------------------- */

static void free_list_remove(dw__kv_pool *p, int32_t b) {
    dw__kv_block *k = &p->blocks[b];
    if (k->prev >= 0) p->blocks[k->prev].next = k->next;
    else p->free_head = k->next;
    if (k->next >= 0) p->blocks[k->next].prev = k->prev;
    else p->free_tail = k->prev;
    k->prev = k->next = -1;
    p->n_free--;
}

static void free_list_append(dw__kv_pool *p, int32_t b) {
    dw__kv_block *k = &p->blocks[b];
    k->prev = p->free_tail;
    k->next = -1;
    if (p->free_tail >= 0) p->blocks[p->free_tail].next = b;
    else p->free_head = b;
    p->free_tail = b;
    p->n_free++;
}

static void free_list_prepend(dw__kv_pool *p, int32_t b) {
    dw__kv_block *k = &p->blocks[b];
    k->prev = -1;
    k->next = p->free_head;
    if (p->free_head >= 0) p->blocks[p->free_head].prev = b;
    else p->free_tail = b;
    p->free_head = b;
    p->n_free++;
}

/* ---- the prefix cache ------------------------------------------------------------------- */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30, x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27, x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The hash of a block of tokens following a block of hash parent (0 at position 0). Never 0. */
static uint64_t chain_hash(uint64_t parent, const int32_t *ids, int n) {
    uint64_t h = mix64(parent ^ 0x9e3779b97f4a7c15ull);
    for (int i = 0; i < n; i++) h = mix64(h ^ (uint32_t)ids[i]);
    return h ? h : 1;
}

static int map_slot(const dw__kv_pool *p, uint64_t h) { return (int)(h & (uint64_t)(p->map_cap - 1)); }

static int32_t map_find(const dw__kv_pool *p, uint64_t h, uint64_t parent, const int32_t *ids) {
    for (int i = map_slot(p, h), probes = 0; probes < p->map_cap; i = (i + 1) & (p->map_cap - 1), probes++) {
        int32_t b = p->map[i];
        if (b == MAP_EMPTY) return -1;
        if (b >= 0 && p->blocks[b].hash == h && p->blocks[b].parent_hash == parent &&
            !memcmp(p->block_tokens_ids + (size_t)b * p->block_tokens, ids, sizeof(int32_t) * (size_t)p->block_tokens))
            return b;
    }
    return -1;
}

static void map_remove(dw__kv_pool *p, int32_t b) {
    uint64_t h = p->blocks[b].hash;
    if (!h) return;
    for (int i = map_slot(p, h), probes = 0; probes < p->map_cap; i = (i + 1) & (p->map_cap - 1), probes++) {
        if (p->map[i] == MAP_EMPTY) break;
        if (p->map[i] == b) {
            p->map[i] = MAP_DELETED;
            break;
        }
    }
    p->blocks[b].hash = p->blocks[b].parent_hash = 0;
}

static void map_insert(dw__kv_pool *p, int32_t b) {
    for (int i = map_slot(p, p->blocks[b].hash);; i = (i + 1) & (p->map_cap - 1))
        if (p->map[i] < 0) {
            p->map[i] = b;
            return;
        }
}

/* ---- the pool ------------------------------------------------------------------------------ */

dw_status dw__kv_pool_init(dw__kv_pool *p, const dw_model *m, const dw_batch_options *o, dw_error *err) {
    const dw_model_config *c = &m->cfg;
    memset(p, 0, sizeof *p);
    p->block_tokens = o->block_tokens;
    p->dtype = o->kv_f32 ? DW_DTYPE_F32 : DW_DTYPE_BF16;
    p->plane_elems = (size_t)c->n_kv_heads * (size_t)o->block_tokens * (size_t)c->head_dim;
    p->block_bytes = (uint64_t)c->n_layers * 2u * p->plane_elems * elem_size(p);
    uint64_t n = o->kv_memory / p->block_bytes;
    if (n < 2)
        return dw_error_set(err, DW_ERR_LIMIT, "a KV pool of %llu bytes holds fewer than 2 blocks of %llu bytes",
                            (unsigned long long)o->kv_memory, (unsigned long long)p->block_bytes);
    if (n > (1u << 30)) n = 1u << 30;
    p->n_blocks = (int)n;
    p->layers = calloc((size_t)c->n_layers, sizeof *p->layers);
    p->blocks = calloc((size_t)p->n_blocks, sizeof *p->blocks);
    p->block_tokens_ids = malloc(sizeof(int32_t) * (size_t)p->n_blocks * (size_t)p->block_tokens);
    for (p->map_cap = 16; p->map_cap < 2 * p->n_blocks; p->map_cap *= 2) {
    }
    p->map = malloc(sizeof(int32_t) * (size_t)p->map_cap);
    if (!p->layers || !p->blocks || !p->block_tokens_ids || !p->map) {
        dw__kv_pool_free(p, m);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "KV pool: out of host memory");
    }
    for (int i = 0; i < p->map_cap; i++) p->map[i] = MAP_EMPTY;
    const dw_backend *be = m->backend;
    dw_status st = be->ops->alloc(be->ctx, (size_t)p->n_blocks * p->block_bytes, &p->mem, err);
    if (st) {
        dw__kv_pool_free(p, m);
        return dw_error_prefix(err, "KV pool of %d blocks", (int)n);
    }
    size_t plane_bytes = p->plane_elems * elem_size(p) * (size_t)p->n_blocks;
    for (int l = 0; l < c->n_layers; l++)
        p->layers[l] = (dw_kv_pages){
            .k = (char *)p->mem + plane_bytes * 2 * (size_t)l,
            .v = (char *)p->mem + plane_bytes * (2 * (size_t)l + 1),
            .dtype = p->dtype,
            .n_kv_heads = c->n_kv_heads,
            .head_dim = c->head_dim,
            .block_tokens = p->block_tokens,
            .n_blocks = p->n_blocks,
        };
    p->free_head = p->free_tail = -1;
    for (int32_t i = 0; i < p->n_blocks; i++) {
        p->blocks[i].prev = p->blocks[i].next = -1;
        free_list_append(p, i);
    }
    return DW_OK;
}

void dw__kv_pool_free(dw__kv_pool *p, const dw_model *m) {
    if (p->mem) m->backend->ops->free(m->backend->ctx, p->mem);
    free(p->layers);
    free(p->blocks);
    free(p->block_tokens_ids);
    free(p->map);
    memset(p, 0, sizeof *p);
}

/* A block nobody holds goes back to the free list, where allocation takes from the head: one the
 * prefix cache knows goes to the tail (findable as long as possible, the least recently freed
 * reused first), any other to the head (reused at once, so the pool's touched memory stays as
 * small as the sessions need). */
static void block_unref(dw__kv_pool *p, int32_t b) {
    if (--p->blocks[b].refs == 0) {
        if (p->blocks[b].hash) free_list_append(p, b);
        else free_list_prepend(p, b);
        p->n_used--;
    }
}

static void block_ref(dw__kv_pool *p, int32_t b) {
    if (p->blocks[b].refs++ == 0) {
        free_list_remove(p, b);
        if (++p->n_used > p->peak_used) p->peak_used = p->n_used;
    }
}

/* The least recently used session that holds blocks and waits for nothing (NULL: none). */
static dw_session *eviction_victim(dw__batcher *b) {
    dw_session *best = NULL;
    for (dw_session *s = b->lru_head; s; s = s->paged->lru_next)
        if (!s->paged->busy && s->paged->n_blocks > 0 && (!best || s->paged->last_used < best->paged->last_used))
            best = s;
    return best;
}

/* A block for writing, refs = 1; evicts idle sessions while none is free. */
static dw_status block_alloc(dw__batcher *b, int32_t *out, dw_error *err) {
    dw__kv_pool *p = &b->pool;
    while (p->n_free == 0) {
        dw_session *victim = eviction_victim(b);
        if (!victim)
            return dw_error_set(err, DW_ERR_LIMIT,
                                "the KV pool is full: its %d blocks of %d tokens are held by sessions that are running "
                                "(raise --kv-memory or run fewer at once)",
                                p->n_blocks, p->block_tokens);
        dw_status st = dw__kv_evict(b, victim, err);
        if (st) return st;
    }
    int32_t blk = p->free_head;
    map_remove(p, blk);
    block_ref(p, blk);
    *out = blk;
    return DW_OK;
}

/* ---- sessions' blocks ---------------------------------------------------------------------- */

uint64_t dw__kv_next_block_hash(const dw__batcher *b, const dw_session *s, const int32_t *ids) {
    const dw__kv_pool *p = &b->pool;
    if (s->n_tokens % p->block_tokens) return 0;
    uint64_t parent = 0;
    if (s->n_tokens > 0) {
        parent = p->blocks[s->paged->table[s->paged->n_blocks - 1]].hash;
        if (!parent) return 0;
    }
    return chain_hash(parent, ids, p->block_tokens);
}

int dw__kv_take_prefix(dw__batcher *b, dw_session *s, const int32_t *ids, int n) {
    dw__kv_pool *p = &b->pool;
    const int bt = p->block_tokens;
    int taken = 0;
    if (s->paged->host_kv) return 0;
    while (taken + bt <= n - 1 && s->n_tokens + bt <= s->ctx) {
        uint64_t parent = s->n_tokens ? p->blocks[s->paged->table[s->paged->n_blocks - 1]].hash : 0;
        if (s->n_tokens % bt || (s->n_tokens && !parent)) break;
        uint64_t h = chain_hash(parent, ids + taken, bt);
        int32_t blk = map_find(p, h, parent, ids + taken);
        if (blk < 0) break;
        block_ref(p, blk);
        s->paged->table[s->paged->n_blocks++] = blk;
        memcpy(s->tokens + s->n_tokens, ids + taken, sizeof(int32_t) * (size_t)bt);
        s->n_tokens += bt;
        taken += bt;
        b->stats.shared_hits++;
    }
    b->stats.prefix_tokens_reused += (uint64_t)taken;
    return taken;
}

/* Gives s its own copy of its last block (shared, or published and about to be written). */
static dw_status copy_on_write(dw__batcher *b, dw_session *s, dw_error *err) {
    dw__kv_pool *p = &b->pool;
    int32_t *slot = &s->paged->table[s->paged->n_blocks - 1];
    dw__kv_block *old = &p->blocks[*slot];
    if (old->refs == 1) { /* ours alone: leave the cache, write in place */
        map_remove(p, *slot);
        return DW_OK;
    }
    int32_t fresh;
    dw_status st = block_alloc(b, &fresh, err);
    if (st) return st;
    const dw_backend *be = s->model->backend;
    size_t plane_bytes = p->plane_elems * elem_size(p);
    for (int l = 0; l < s->model->cfg.n_layers; l++) {
        const dw_kv_pages *kv = &p->layers[l];
        be->ops->copy(be->ctx, (char *)kv->k + plane_bytes * (size_t)fresh, (char *)kv->k + plane_bytes * (size_t)*slot,
                      plane_bytes);
        be->ops->copy(be->ctx, (char *)kv->v + plane_bytes * (size_t)fresh, (char *)kv->v + plane_bytes * (size_t)*slot,
                      plane_bytes);
    }
    block_unref(p, *slot);
    *slot = fresh;
    b->stats.cow_copies++;
    return DW_OK;
}

dw_status dw__kv_reserve(dw__batcher *b, dw_session *s, int n, dw_error *err) {
    dw__kv_pool *p = &b->pool;
    const int bt = p->block_tokens;
    dw_status st;
    if (s->n_tokens % bt) {
        const dw__kv_block *last = &p->blocks[s->paged->table[s->paged->n_blocks - 1]];
        if ((last->refs > 1 || last->hash) && (st = copy_on_write(b, s, err))) return st;
    }
    int need = (s->n_tokens + n + bt - 1) / bt;
    while (s->paged->n_blocks < need) {
        int32_t blk;
        if ((st = block_alloc(b, &blk, err))) return st;
        s->paged->table[s->paged->n_blocks++] = blk;
    }
    return DW_OK;
}

void dw__kv_publish(dw__batcher *b, dw_session *s) {
    dw__kv_pool *p = &b->pool;
    const int bt = p->block_tokens;
    uint64_t parent = 0;
    for (int j = 0; j < s->n_tokens / bt; j++) {
        int32_t blk = s->paged->table[j];
        dw__kv_block *k = &p->blocks[blk];
        if (k->hash) {
            parent = k->hash;
            continue;
        }
        if (j > 0 && !parent) return; /* the chain is broken before this block */
        uint64_t h = chain_hash(parent, s->tokens + (size_t)j * bt, bt);
        if (map_find(p, h, parent, s->tokens + (size_t)j * bt) >= 0) { /* another copy is the cached one: */
            parent = h; /* the blocks after it still chain to that prefix */
            continue;
        }
        k->hash = h;
        k->parent_hash = parent;
        memcpy(p->block_tokens_ids + (size_t)blk * bt, s->tokens + (size_t)j * bt, sizeof(int32_t) * (size_t)bt);
        map_insert(p, blk);
        parent = h;
    }
}

void dw__kv_release_from(dw__batcher *b, dw_session *s, int n) {
    dw__kv_pool *p = &b->pool;
    int keep = (n + p->block_tokens - 1) / p->block_tokens;
    while (s->paged->n_blocks > keep) block_unref(p, s->paged->table[--s->paged->n_blocks]);
}

/* ---- moving a session's KV in and out of the pool ----------------------------------------- */

dw_status dw__kv_copy_layer(dw__batcher *b, const dw_session *s, int layer, void *host_k, void *host_v, int n,
                            int to_device, dw_error *err) {
    const dw__kv_pool *p = &b->pool;
    const dw_kv_pages *kv = &p->layers[layer];
    const dw_backend *be = s->model->backend;
    const size_t es = elem_size(p), hd = (size_t)kv->head_dim, bt = (size_t)p->block_tokens;
    const size_t plane_bytes = p->plane_elems * es;
    char *plane = malloc(plane_bytes);
    if (!plane) return dw_error_set(err, DW_ERR_NO_MEMORY, "KV copy: out of memory");
    dw_status st = DW_OK;
    /* One transfer per block and plane; the host side is [n_kv, n, hd]. */
    for (int which = 0; which < 2 && !st; which++) {
        char *dev = which ? kv->v : kv->k;
        char *host = which ? host_v : host_k;
        for (int j = 0; j * (int)bt < n && !st; j++) {
            size_t cnt = (size_t)n - (size_t)j * bt < bt ? (size_t)n - (size_t)j * bt : bt;
            char *blk = dev + plane_bytes * (size_t)s->paged->table[j];
            if (to_device && cnt < bt) memset(plane, 0, plane_bytes); /* entries past n are never read */
            if (!to_device && (st = be->ops->download(be->ctx, plane, blk, plane_bytes, err))) break;
            for (int h = 0; h < kv->n_kv_heads; h++) {
                char *hp = host + ((size_t)h * (size_t)n + (size_t)j * bt) * hd * es;
                char *pp = plane + (size_t)h * bt * hd * es;
                if (to_device) memcpy(pp, hp, cnt * hd * es);
                else memcpy(hp, pp, cnt * hd * es);
            }
            if (to_device) st = be->ops->upload(be->ctx, blk, plane, plane_bytes, err);
        }
    }
    free(plane);
    return st;
}

static size_t host_layer_bytes(const dw__batcher *b, const dw_session *s) {
    const dw_model_config *c = &s->model->cfg;
    return (size_t)c->n_kv_heads * (size_t)s->n_tokens * (size_t)c->head_dim * elem_size(&b->pool);
}

dw_status dw__kv_evict(dw__batcher *b, dw_session *s, dw_error *err) {
    const int n_layers = s->model->cfg.n_layers;
    size_t lb = host_layer_bytes(b, s);
    char *host = malloc(lb * 2 * (size_t)n_layers + 1);
    if (!host) return dw_error_set(err, DW_ERR_NO_MEMORY, "evicting a session's KV to host memory: out of memory");
    for (int l = 0; l < n_layers; l++) {
        dw_status st = dw__kv_copy_layer(b, s, l, host + lb * 2 * l, host + lb * (2 * l + 1), s->n_tokens, 0, err);
        if (st) {
            free(host);
            return st;
        }
    }
    dw__kv_release_from(b, s, 0);
    s->paged->host_kv = host;
    b->stats.evictions++;
    return DW_OK;
}

dw_status dw__kv_restore(dw__batcher *b, dw_session *s, dw_error *err) {
    const int n_layers = s->model->cfg.n_layers;
    const int n = s->n_tokens;
    s->paged->busy++; /* never chosen as its own victim */
    s->n_tokens = 0;
    dw_status st = dw__kv_reserve(b, s, n, err);
    s->n_tokens = n;
    size_t lb = host_layer_bytes(b, s);
    char *host = s->paged->host_kv;
    for (int l = 0; l < n_layers && !st; l++)
        st = dw__kv_copy_layer(b, s, l, host + lb * 2 * l, host + lb * (2 * l + 1), n, 1, err);
    s->paged->busy--;
    if (st) {
        dw__kv_release_from(b, s, 0);
        return st;
    }
    free(host);
    s->paged->host_kv = NULL;
    b->stats.restores++;
    return DW_OK;
}
