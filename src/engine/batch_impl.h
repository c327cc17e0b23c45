/* Private layouts of batching (engine.h, "Batching"): the paged KV pool with its prefix cache,
 * the per-model scheduler and its requests, and what a paged session holds. Who owns what:
 *   kv_pool.c     blocks, reference counts, copy on write, the prefix cache, eviction to host
 *   batch_step.c  one batched forward pass over the rows of many sessions
 *   scheduler.c   the thread that gathers waiting requests into steps; the session calls' entry
 *   paged_session.c  a paged session's life, truncation, forks, KV export and import
 * Design: docs/DESIGN.md ("Batching"). */
#ifndef DW_ENGINE_BATCH_IMPL_H
#define DW_ENGINE_BATCH_IMPL_H

#include <pthread.h>
#include <semaphore.h>

#include "engine/engine_impl.h"

/* ---- the pool ---------------------------------------------------------------------------- */

/* A full block published in the prefix cache is known by the hash of its tokens chained with the
 * hash of the block before it (so equal hashes mean equal prefixes, checked against the tokens). */
typedef struct dw__kv_block {
    int32_t refs;        /* sessions holding it; 0: free (perhaps still cached) */
    int32_t prev, next;  /* the free list while refs == 0 (-1: none; kv_pool.c orders it) */
    uint64_t hash;       /* prefix hash when published, else 0 */
    uint64_t parent_hash;
} dw__kv_block;

typedef struct dw__kv_pool {
    int block_tokens, n_blocks;
    dw_dtype dtype;
    size_t plane_elems;  /* one block of one layer's K (or V): n_kv · block_tokens · head_dim */
    uint64_t block_bytes; /* one block, every layer, K and V */
    void *mem;           /* device: per layer K [n_blocks, plane], then V, then the next layer */
    dw_kv_pages *layers; /* [n_layers] */
    dw__kv_block *blocks;
    int32_t *block_tokens_ids; /* host [n_blocks, block_tokens]: the tokens of published blocks */
    int32_t free_head, free_tail;
    int n_free, n_used, peak_used;
    /* prefix cache: open addressing, hash -> block (-1 empty, -2 deleted) */
    int32_t *map;
    int map_cap;
} dw__kv_pool;

/* What a session made after batching started holds instead of a contiguous cache. */
typedef struct dw__paged {
    int32_t *table;      /* host [ctx / block_tokens + 1]: its blocks in position order */
    int n_blocks;        /* entries of table in use (-1 entries never appear below n_blocks) */
    /* evicted: the KV of positions [0, n_tokens) in host memory, HF layout per layer
     * [n_kv, n_tokens, head_dim] in the pool dtype, K then V; NULL when on the device */
    void *host_kv;
    uint64_t last_used;  /* the scheduler's step count when it last ran */
    int busy;            /* a request of it is queued or running (never evicted then) */
    struct dw_session *lru_prev, *lru_next; /* every paged session of the model */
} dw__paged;

/* ---- requests and the scheduler --------------------------------------------------------------- */

typedef struct dw__request {
    dw_session *s;
    const int32_t *ids;  /* tokens to run; when the device chooses, ids[0] then the chosen tokens */
    int n, done;         /* tokens to run, tokens already run */
    float *logits;       /* host: logits of the last token (or of all with all_logits), or NULL */
    int all_logits;
    /* Tokens chosen on the device, n of them (greedy, or sampled by the rule of driftwood/pick.h
     * with sampling and the uniform numbers u[0, n)), each fed to the next step; else NULL. */
    int32_t *chosen;
    const dw_device_sampling *sampling; /* NULL: greedy */
    const double *u;
    int32_t next_id;     /* chosen: the token the next step feeds */
    int finished;
    dw_status status;
    dw_error err;
    /* Posted once the request has left the queue (scheduler.c, drop_finished): its caller wakes
     * alone, without the batcher's lock, and may then free it. */
    sem_t ready;
    struct dw__request *wake[2]; /* the callers this one wakes once woken (a tree: drop_finished) */
    struct dw__request *next;
} dw__request;

/* One item of a step: `n` tokens of one session from request r. */
typedef struct dw__step_item {
    dw__request *r;
    const int32_t *ids;
    int n;
    int logit_rows;      /* 0: none, 1: its last row, n: all its rows */
    int logit_at;        /* index of its first logits row in the step's logits */
} dw__step_item;

typedef struct dw__batcher {
    dw_model *model;
    dw_batch_options opts;
    dw__kv_pool pool;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the scheduler's: a request arrived, or stop */
    pthread_t thread;
    int stop;
    dw__request *queue_head, *queue_tail; /* waiting or running, in arrival order */
    dw_session *lru_head;                 /* paged sessions (any order; last_used decides) */
    dw_batch_stats stats;
    uint64_t step_no;
    /* Callers that were in the last step and will likely come back with their next token: the
     * next step waits briefly for them (scheduler.c, gather_returning). */
    int expect_back, arrivals;
    double last_step_s;
    /* the step's buffers (device), sized for opts.step_tokens rows */
    int cap_rows;
    float *x, *xn, *q, *k, *v, *att, *o, *gate, *up, *logits;
    int32_t *meta;       /* device: pos, slot, table_at, gather idx, then the tables */
    int32_t *argmax;     /* device [cap_rows]: the tokens chosen for the logits rows */
    dw_pick_row *pick;   /* device [cap_rows]: the sampled logits rows' settings */
    dw_pick_row *host_pick;
    int32_t *host_meta;  /* host staging of meta */
    size_t meta_cap;     /* int32s */
    int32_t *host_ids;   /* host [cap_rows]: the tokens of the step */
    int32_t *host_argmax;
    dw__step_item *items;
} dw__batcher;

/* kv_pool.c. All under the batcher's lock, on its thread or the session owner's. */
dw_status dw__kv_pool_init(dw__kv_pool *p, const dw_model *m, const dw_batch_options *o, dw_error *err);
void dw__kv_pool_free(dw__kv_pool *p, const dw_model *m);
/* Takes blocks of the prefix cache for the prompt ids[0, n) that s continues at a block boundary:
 * the longest run of published blocks holding exactly those tokens after s's own, but never the
 * block of the last token (its logits must be computed). Appends them to s (tokens and position
 * too) and returns how many tokens they cover (0: none). */
int dw__kv_take_prefix(dw__batcher *b, dw_session *s, const int32_t *ids, int n);
/* The prefix hash the block starting at s's position would have with tokens ids[0, block_tokens),
 * or 0 when s's position is not at a block boundary after published blocks. */
uint64_t dw__kv_next_block_hash(const dw__batcher *b, const dw_session *s, const int32_t *ids);
/* Makes positions [s->n_tokens, s->n_tokens + n) of s writable: copies a shared or published last
 * block on write and allocates blocks, evicting idle sessions while the pool is full. DW_ERR_LIMIT
 * when even that leaves too few blocks. */
dw_status dw__kv_reserve(dw__batcher *b, dw_session *s, int n, dw_error *err);
/* Publishes the blocks of s that became full below position s->n_tokens. */
void dw__kv_publish(dw__batcher *b, dw_session *s);
/* Drops the blocks of s beyond position n (all of them for 0). */
void dw__kv_release_from(dw__batcher *b, dw_session *s, int n);
/* Moves the KV of s to host memory and frees its blocks / brings it back. */
dw_status dw__kv_evict(dw__batcher *b, dw_session *s, dw_error *err);
dw_status dw__kv_restore(dw__batcher *b, dw_session *s, dw_error *err);
/* Copies [n_kv, n, head_dim] of one layer between the pool (through s's table) and host memory in
 * the pool dtype (to_device 0: out of the pool). */
dw_status dw__kv_copy_layer(dw__batcher *b, const dw_session *s, int layer, void *host_k, void *host_v, int n,
                            int to_device, dw_error *err);

/* batch_step.c: runs one step over items (their sessions' blocks reserved); writes logits and
 * the tokens chosen on the device where the requests ask. */
dw_status dw__batch_step(dw__batcher *b, dw__step_item *items, int n_items, dw_error *err);
dw_status dw__batch_buffers_init(dw__batcher *b, dw_error *err);
void dw__batch_buffers_free(dw__batcher *b);

/* scheduler.c: the entry of the session calls of a paged session: queues a request and waits. */
dw_status dw__batch_run(dw_session *s, const int32_t *ids, int n, float *logits, int all_logits, int32_t *chosen,
                        const dw_device_sampling *sampling, const double *u, dw_error *err);
void dw__batcher_free(dw_model *m);

/* paged_session.c: the session calls of engine.h on a paged session (session.c dispatches). */
/* A paged session (opts already checked and defaulted by dw_session_create) and its end. */
dw_status dw__paged_session_create(dw_model *model, const dw_session_options *opts, dw_session **out, dw_error *err);
void dw__paged_session_destroy(dw_session *s);
dw_status dw__paged_truncate(dw_session *s, int n);
dw_status dw__paged_kv_export(const dw_session *s, int layer, dw_dtype dtype, void *k, void *v, dw_error *err);
dw_status dw__paged_import(dw_session *s, const int32_t *tokens, int n, dw_dtype dtype, const void *const *k,
                           const void *const *v, dw_error *err);

#endif
