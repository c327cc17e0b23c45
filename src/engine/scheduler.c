/* The per-model scheduler of batching (engine.h, "Batching"; batch_impl.h): session calls of
 * paged sessions queue a request and wait; one thread takes whoever is waiting as soon as the
 * previous step ends (no window that would delay a lone session), gives each decoding session one
 * row and fills the rest of the step's token budget with chunks of prompts in arrival order, runs
 * the step, and wakes the callers whose requests are complete. Also the start and end of
 * batching and the life of paged sessions. */
#include <stdlib.h>
#include <string.h>
#include <sched.h>

#include "core/clock.h"
#include "engine/batch_impl.h"

#define DEFAULT_KV_MEMORY (1ull << 30)
#define DEFAULT_BLOCK_TOKENS 16
#define DEFAULT_STEP_TOKENS 256

/* ---- building a step -------------------------------------------------------------------------- */

static void finish(dw__batcher *b, dw__request *r, dw_status st, const dw_error *err) {
    r->finished = 1;
    r->status = st;
    if (st && err) r->err = *err;
    r->s->paged->busy--;
}

/* Whether a prompt chunk that would start the block of hash h at position p is already being
 * computed by an earlier item of this step (then it waits a step and takes that block shared). */
static int computing_same_block(const uint64_t *hashes, const int *positions, int count, uint64_t h, int p) {
    for (int i = 0; i < count; i++)
        if (hashes[i] == h && positions[i] == p) return 1;
    return 0;
}

/* Whether r wants one token this step (a decode), rather than a chunk of a prompt. */
static int decoding(const dw__request *r) { return r->chosen != NULL || r->n - r->done == 1; }

/* Picks the items of the next step under the lock; 0 when none is runnable. Decoding sessions
 * first, one row each, in arrival order; then prompt chunks in arrival order in the rows left, so
 * a long new prompt never holds back the sessions already generating. */
static int plan_step(dw__batcher *b) {
    int budget = b->cap_rows, count = 0, n_starting = 0;
    uint64_t starting_hash[64];
    int starting_pos[64];
    for (int pass = 0; pass < 2; pass++)
        for (dw__request *r = b->queue_head; r && budget > 0; r = r->next) {
            if (r->finished || decoding(r) != (pass == 0)) continue;
            dw_session *s = r->s;
            dw_error err = {0};
            dw_status st;
            if (s->paged->host_kv && (st = dw__kv_restore(b, s, &err))) {
                finish(b, r, st, &err);
                continue;
            }
            int chosen = r->chosen != NULL;
            if (!chosen && !r->all_logits && r->n - r->done > 1) {
                r->done += dw__kv_take_prefix(b, s, r->ids + r->done, r->n - r->done);
                uint64_t h = r->n - r->done > b->pool.block_tokens ? dw__kv_next_block_hash(b, s, r->ids + r->done) : 0;
                if (h && computing_same_block(starting_hash, starting_pos, n_starting, h, s->n_tokens)) continue;
                if (h && n_starting < 64) starting_hash[n_starting] = h, starting_pos[n_starting++] = s->n_tokens;
            }
            int take = chosen ? 1 : r->n - r->done;
            if (take > budget) take = budget;
            if ((st = dw__kv_reserve(b, s, take, &err))) {
                finish(b, r, st, &err);
                continue;
            }
            dw__step_item *it = &b->items[count++];
            it->r = r;
            it->ids = chosen ? &r->next_id : r->ids + r->done;
            it->n = take;
            it->logit_rows = chosen ? 1 : r->all_logits ? take : (r->done + take == r->n && r->logits) ? 1 : 0;
            budget -= take;
        }
    return count;
}

/* After a step, the sessions that were decoding in it usually come straight back with their next
 * token; their threads need some microseconds each to wake and call again (more in a virtual
 * machine, where waking a thread on an idle core goes through the host). Starting the next step
 * before they are back would split one batch into a full and a straggler step, so the scheduler
 * waits for them, but never longer than a quarter of the last step (at most 1 ms): a lone session
 * never waits for anyone, and a session that left delays the others by that much once. It waits
 * by polling with the lock released rather than sleeping: every arrival would otherwise wake it
 * only to sleep again, each wake-up as slow as the callers' own. It yields the core while it
 * polls, so on a small machine the callers it waits for still run. */
static void gather_returning(dw__batcher *b) {
    if (b->expect_back <= 0) return;
    double wait = b->last_step_s * 0.25;
    if (wait > 1e-3) wait = 1e-3;
    const double until = dw__now_s() + wait;
    pthread_mutex_unlock(&b->lock);
    while (!__atomic_load_n(&b->stop, __ATOMIC_ACQUIRE) && __atomic_load_n(&b->arrivals, __ATOMIC_ACQUIRE) < b->expect_back &&
           dw__now_s() < until)
        sched_yield();
    pthread_mutex_lock(&b->lock);
    b->expect_back = 0;
}

/* Records what a successful step did to its sessions and requests. */
static void complete_step(dw__batcher *b, int count) {
    for (int i = 0; i < count; i++) {
        dw__step_item *it = &b->items[i];
        dw__request *r = it->r;
        dw_session *s = r->s;
        memcpy(s->tokens + s->n_tokens, it->ids, sizeof(int32_t) * (size_t)it->n);
        const int bt = b->pool.block_tokens, full_before = s->n_tokens / bt;
        s->n_tokens += it->n;
        s->paged->last_used = b->step_no;
        if (s->n_tokens / bt > full_before) dw__kv_publish(b, s); /* only when a block filled up */
        if (r->chosen) r->chosen[r->done] = r->next_id = b->host_argmax[it->logit_at];
        if (r->chosen || r->n == 1) b->stats.decode_rows += (uint64_t)it->n;
        else b->stats.prefill_rows += (uint64_t)it->n;
        r->done += it->n;
        if (r->done == r->n) {
            finish(b, r, DW_OK, NULL);
            if (r->chosen || r->n == 1) b->expect_back++;
        }
    }
}

static void fail_step(dw__batcher *b, int count, dw_status st, const dw_error *err) {
    for (int i = 0; i < count; i++) finish(b, b->items[i].r, st, err);
}

/* Unlinks the finished requests and wakes their callers, each on its own semaphore: a caller
 * returns without taking the lock again, so the callers of a step wake in parallel rather than
 * one after another through the lock. The wake-ups themselves (a system call each, and often an
 * interrupt to another core, slow in a virtual machine) form a binary tree: this thread posts the
 * first caller, and each caller posts the two it was given (r->wake) before it returns
 * (dw__batch_run), so 64 callers are woken in 6 rounds on many cores instead of 64 posts one after
 * another here. The finished requests are chained in order through their (now free) next links,
 * and `parent` walks that chain taking two children each. A request is not touched after its post
 * (its caller may free it); the tree's links are all set before its root is posted. */
static void drop_finished(dw__batcher *b) {
    dw__request **link = &b->queue_head, *last = NULL;
    dw__request *root = NULL, *tail = NULL, *parent = NULL;
    int child = 0;
    while (*link) {
        dw__request *r = *link;
        if (!r->finished) {
            last = r, link = &r->next;
            continue;
        }
        *link = r->next;
        r->next = NULL;
        r->wake[0] = r->wake[1] = NULL;
        if (!root) {
            root = tail = parent = r;
            continue;
        }
        tail = tail->next = r;
        parent->wake[child] = r;
        if (++child == 2) child = 0, parent = parent->next;
    }
    b->queue_tail = last;
    if (root) sem_post(&root->ready);
}

static void *scheduler_main(void *arg) {
    dw__batcher *b = arg;
    pthread_mutex_lock(&b->lock);
    while (!b->stop) {
        gather_returning(b);
        int count = b->queue_head ? plan_step(b) : 0;
        drop_finished(b); /* requests failed while planning leave before their callers can return */
        if (count == 0) {
            if (!b->queue_head && !b->stop) pthread_cond_wait(&b->wake, &b->lock);
            continue;
        }
        b->step_no++;
        pthread_mutex_unlock(&b->lock);

        dw_error err = {0};
        double t0 = dw__now_s();
        dw_status st = dw__batch_step(b, b->items, count, &err);
        double dt = dw__now_s() - t0;

        pthread_mutex_lock(&b->lock);
        b->expect_back = 0;
        if (st) fail_step(b, count, st, &err);
        else complete_step(b, count);
        int rows = 0;
        for (int i = 0; i < count; i++) rows += b->items[i].n;
        b->stats.steps++;
        b->stats.rows += (uint64_t)rows;
        if ((uint64_t)rows > b->stats.max_rows) b->stats.max_rows = (uint64_t)rows;
        b->stats.busy_s += dt;
        b->last_step_s = dt;
        __atomic_store_n(&b->arrivals, 0, __ATOMIC_RELEASE); /* counted from here: complete_step set expect_back */
        drop_finished(b);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* ---- the session calls ---------------------------------------------------------------------- */

dw_status dw__batch_run(dw_session *s, const int32_t *ids, int n, float *logits, int all_logits, int32_t *chosen,
                        const dw_device_sampling *sampling, const double *u, dw_error *err) {
    dw__batcher *b = s->model->batcher;
    dw__request r = {.s = s, .ids = ids, .n = n, .logits = logits, .all_logits = all_logits, .chosen = chosen,
                     .sampling = sampling, .u = u};
    if (chosen) r.next_id = ids[0];
    if (sem_init(&r.ready, 0, 0)) return dw_error_set(err, DW_ERR_NO_MEMORY, "batching: cannot make a semaphore");
    pthread_mutex_lock(&b->lock);
    s->paged->busy++;
    if (b->queue_tail) b->queue_tail->next = &r;
    else b->queue_head = &r;
    b->queue_tail = &r;
    __atomic_add_fetch(&b->arrivals, 1, __ATOMIC_RELEASE); /* read unlocked by gather_returning */
    pthread_cond_signal(&b->wake);
    pthread_mutex_unlock(&b->lock);
    while (sem_wait(&r.ready)) { /* EINTR: a signal; the post is still to come */
    }
    for (int i = 0; i < 2; i++) /* this caller's part of the wake-up tree (drop_finished) */
        if (r.wake[i]) sem_post(&r.wake[i]->ready);
    sem_destroy(&r.ready);
    if (r.status && err) *err = r.err;
    return r.status;
}

/* ---- starting and stopping ----------------------------------------------------------------- */

dw_status dw_model_batching_start(dw_model *m, const dw_batch_options *opts, dw_error *err) {
    const dw_backend_ops *ops = m->backend->ops;
    if (m->batcher) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "batching is already on for %s", m->dir);
    if (!ops->matmul_rows || !ops->rope_rows || !ops->kv_write_rows || !ops->attention_rows || !ops->gather_rows ||
        !ops->argmax_rows || !ops->sample_rows || !ops->copy)
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "backend '%s' cannot run batched steps", ops->name);
    dw_batch_options o = {0};
    if (opts) o = *opts;
    if (!o.kv_memory) o.kv_memory = DEFAULT_KV_MEMORY;
    if (!o.block_tokens) o.block_tokens = DEFAULT_BLOCK_TOKENS;
    if (!o.step_tokens) o.step_tokens = DEFAULT_STEP_TOKENS;
    if (o.block_tokens < 1 || o.block_tokens > 1024 || o.step_tokens < 1 || o.step_tokens > 65536)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "batching: block_tokens must lie in [1, 1024] and step_tokens in [1, 65536]");

    dw__batcher *b = calloc(1, sizeof *b);
    if (!b) return dw_error_set(err, DW_ERR_NO_MEMORY, "batching: out of memory");
    b->model = m;
    b->opts = o;
    b->cap_rows = o.step_tokens;
    dw_status st = dw__kv_pool_init(&b->pool, m, &o, err);
    if (!st) st = dw__batch_buffers_init(b, err);
    if (st) {
        dw__batch_buffers_free(b);
        dw__kv_pool_free(&b->pool, m);
        free(b);
        return st;
    }
    b->stats.block_bytes = b->pool.block_bytes;
    b->stats.blocks_total = (uint64_t)b->pool.n_blocks;
    /* adaptive: the callers of a step come back together and each holds the lock for a moment to
     * queue its next request; a short spin beats sleeping and waking in turn */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&b->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_cond_init(&b->wake, NULL);
    if (pthread_create(&b->thread, NULL, scheduler_main, b)) {
        dw__batch_buffers_free(b);
        dw__kv_pool_free(&b->pool, m);
        free(b);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "batching: cannot start the scheduler thread");
    }
    m->batcher = b;
    return DW_OK;
}

int dw_model_batching(const dw_model *m) { return m->batcher != NULL; }

void dw__batcher_free(dw_model *m) {
    dw__batcher *b = m->batcher;
    if (!b) return;
    pthread_mutex_lock(&b->lock);
    __atomic_store_n(&b->stop, 1, __ATOMIC_RELEASE); /* read unlocked by gather_returning */
    pthread_cond_signal(&b->wake);
    pthread_mutex_unlock(&b->lock);
    pthread_join(b->thread, NULL);
    dw__batch_buffers_free(b);
    dw__kv_pool_free(&b->pool, m);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->wake);
    free(b);
    m->batcher = NULL;
}

void dw_model_batch_stats(const dw_model *m, dw_batch_stats *out) {
    memset(out, 0, sizeof *out);
    dw__batcher *b = m->batcher;
    if (!b) return;
    pthread_mutex_lock(&b->lock);
    *out = b->stats;
    out->blocks_used = (uint64_t)b->pool.n_used;
    out->blocks_peak = (uint64_t)b->pool.peak_used;
    pthread_mutex_unlock(&b->lock);
}

void dw_model_batch_reset_peak(dw_model *m) {
    dw__batcher *b = m->batcher;
    if (!b) return;
    pthread_mutex_lock(&b->lock);
    b->pool.peak_used = b->pool.n_used;
    pthread_mutex_unlock(&b->lock);
}
