/* The thread pool behind the CPU kernels (interface and contract in threadpool.h).
 * Workers spin briefly, then sleep on a condition variable, waiting for the next loop.
 *
 * A loop only waits for the workers that joined it. On a shared machine a worker may not be
 * scheduled for milliseconds; if the caller had to wait for every worker to acknowledge every
 * loop, each of the ~80 loops of a decoded token could stall that long. So a worker joins a loop
 * (atomically, while it is open) before touching it, the caller closes the loop once all its
 * tasks are handed out, and then waits only for the joined workers to finish theirs. A worker
 * that wakes up after the close skips that loop.
 *
 * In a loop run by ranges, each thread's next task and end are one atomic word (next in the low
 * 32 bits, end in the high 32): the owner takes from the front, others from the back, both by
 * compare-and-swap, so every task runs exactly once whoever takes it. */
#include "driftwood/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* How long a worker or the caller polls before sleeping (iterations of CPU_RELAX). */
#ifndef SPIN_ITERATIONS
#define SPIN_ITERATIONS 1000
#endif

#define MAX_THREADS 256

/* The loop state word: generation in the high 32 bits, bit 31 = closed, bits 0..30 = number of
 * workers that joined and have not finished. */
#define STATE_CLOSED (1ull << 31)
#define STATE_ACTIVE_MASK (STATE_CLOSED - 1)
#define STATE_GEN(s) ((uint32_t)((s) >> 32))

/* One thread's range of tasks in a loop run by ranges, on a cache line of its own. */
typedef struct {
    _Atomic uint64_t next_end;
    char pad[64 - sizeof(uint64_t)];
} task_range;

struct dw_threadpool {
    int n_threads;
    pthread_t *workers; /* n_threads - 1 */
    pthread_mutex_t run_lock; /* held by the caller for the whole loop */
    pthread_mutex_t lock;     /* guards the sleeping/waking below */
    pthread_cond_t start_cv;
    pthread_cond_t done_cv;
    _Atomic uint64_t state;
    atomic_int next_task;
    atomic_int stop;
    dw_task_fn fn;
    void *arg;
    int n_tasks;
    int ranged; /* this loop is run by ranges (dw_threadpool_run_ranges) */
    task_range ranges[MAX_THREADS];
};

typedef struct {
    dw_threadpool *pool;
    int index;
} worker_start;

/* The front task of range r (its owner), or -1 when it is empty. */
static int take_front(task_range *r) {
    uint64_t s = atomic_load_explicit(&r->next_end, memory_order_relaxed);
    while ((uint32_t)s < (uint32_t)(s >> 32))
        if (atomic_compare_exchange_weak(&r->next_end, &s, s + 1)) return (int)(uint32_t)s;
    return -1;
}

/* The back task of range r (another thread), or -1 when it is empty. */
static int take_back(task_range *r) {
    uint64_t s = atomic_load_explicit(&r->next_end, memory_order_relaxed);
    while ((uint32_t)s < (uint32_t)(s >> 32))
        if (atomic_compare_exchange_weak(&r->next_end, &s, s - (1ull << 32))) return (int)(s >> 32) - 1;
    return -1;
}

static void run_ranges(dw_threadpool *pool, int thread) {
    for (int t; (t = take_front(&pool->ranges[thread])) >= 0;) pool->fn(pool->arg, t, thread);
    for (;;) { /* help: the range with the most tasks left */
        int best = -1;
        uint32_t most = 0;
        for (int i = 0; i < pool->n_threads; i++) {
            uint64_t s = atomic_load_explicit(&pool->ranges[i].next_end, memory_order_relaxed);
            uint32_t left = (uint32_t)(s >> 32) > (uint32_t)s ? (uint32_t)(s >> 32) - (uint32_t)s : 0;
            if (left > most) most = left, best = i;
        }
        if (best < 0) return;
        int t = take_back(&pool->ranges[best]);
        if (t >= 0) pool->fn(pool->arg, t, thread);
    }
}

static void run_tasks(dw_threadpool *pool, int thread) {
    if (pool->ranged) {
        run_ranges(pool, thread);
        return;
    }
    for (;;) {
        int t = atomic_fetch_add_explicit(&pool->next_task, 1, memory_order_relaxed);
        if (t >= pool->n_tasks) break;
        pool->fn(pool->arg, t, thread);
    }
}

/* Joins loop `gen` if it is still open; returns whether it did. */
static int try_join(dw_threadpool *pool, uint32_t gen) {
    uint64_t s = atomic_load(&pool->state);
    while (STATE_GEN(s) == gen && !(s & STATE_CLOSED))
        if (atomic_compare_exchange_weak(&pool->state, &s, s + 1)) return 1;
    return 0;
}

static void *worker_main(void *p) {
    worker_start start = *(worker_start *)p;
    free(p);
    dw_threadpool *pool = start.pool;
    uint32_t seen = STATE_GEN(atomic_load(&pool->state));
    for (;;) {
        for (int i = 0; i < SPIN_ITERATIONS && STATE_GEN(atomic_load(&pool->state)) == seen &&
                        !atomic_load(&pool->stop);
             i++)
            CPU_RELAX();
        if (STATE_GEN(atomic_load(&pool->state)) == seen && !atomic_load(&pool->stop)) {
            pthread_mutex_lock(&pool->lock);
            while (STATE_GEN(atomic_load(&pool->state)) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->start_cv, &pool->lock);
            pthread_mutex_unlock(&pool->lock);
        }
        if (atomic_load(&pool->stop)) break;
        seen = STATE_GEN(atomic_load(&pool->state));
        if (!try_join(pool, seen)) continue; /* closed already: its tasks are done */
        run_tasks(pool, start.index);
        uint64_t after = atomic_fetch_sub(&pool->state, 1) - 1;
        if ((after & STATE_CLOSED) && (after & STATE_ACTIVE_MASK) == 0) {
            pthread_mutex_lock(&pool->lock);
            pthread_cond_signal(&pool->done_cv);
            pthread_mutex_unlock(&pool->lock);
        }
    }
    return NULL;
}

static int default_thread_count(void) {
    const char *env = getenv("DW_THREADS");
    if (env && *env) {
        int n = atoi(env);
        if (n > 0) return n < MAX_THREADS ? n : MAX_THREADS;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    return n < MAX_THREADS ? (int)n : MAX_THREADS;
}

dw_status dw_threadpool_create(int n_threads, dw_threadpool **out, dw_error *err) {
    *out = NULL;
    if (n_threads <= 0) n_threads = default_thread_count();
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    dw_threadpool *pool = calloc(1, sizeof *pool);
    if (!pool) return dw_error_set(err, DW_ERR_NO_MEMORY, "thread pool: out of memory");
    pool->n_threads = n_threads;
    atomic_store(&pool->state, STATE_CLOSED); /* generation 0, closed: nothing to join */
    pthread_mutex_init(&pool->run_lock, NULL);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->start_cv, NULL);
    pthread_cond_init(&pool->done_cv, NULL);
    pool->workers = calloc((size_t)n_threads, sizeof *pool->workers);
    if (!pool->workers) {
        free(pool);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "thread pool: out of memory");
    }
    for (int i = 1; i < n_threads; i++) {
        worker_start *ws = malloc(sizeof *ws);
        int rc = ws ? 0 : -1;
        if (ws) {
            *ws = (worker_start){pool, i};
            rc = pthread_create(&pool->workers[i - 1], NULL, worker_main, ws);
            if (rc) free(ws);
        }
        if (rc) {
            pool->n_threads = i; /* join the ones that started */
            dw_threadpool_destroy(pool);
            return dw_error_set(err, DW_ERR_NO_MEMORY, "thread pool: could not start worker %d of %d", i,
                                n_threads);
        }
    }
    *out = pool;
    return DW_OK;
}

void dw_threadpool_destroy(dw_threadpool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->lock);
    atomic_store(&pool->stop, 1);
    pthread_cond_broadcast(&pool->start_cv);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->workers[i - 1], NULL);
    pthread_mutex_destroy(&pool->run_lock);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->start_cv);
    pthread_cond_destroy(&pool->done_cv);
    free(pool->workers);
    free(pool);
}

int dw_threadpool_size(const dw_threadpool *pool) { return pool->n_threads; }

static void run_loop(dw_threadpool *pool, int n_tasks, dw_task_fn fn, void *arg, int ranged) {
    if (n_tasks <= 0) return;
    pthread_mutex_lock(&pool->run_lock);
    if (pool->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(arg, t, 0);
        pthread_mutex_unlock(&pool->run_lock);
        return;
    }
    /* The previous loop is closed with no worker in it, so nobody reads these now. */
    pool->fn = fn;
    pool->arg = arg;
    pool->n_tasks = n_tasks;
    pool->ranged = ranged;
    atomic_store(&pool->next_task, 0);
    if (ranged) /* thread i gets tasks [n_tasks * i / n, n_tasks * (i + 1) / n) */
        for (int i = 0; i < pool->n_threads; i++) {
            uint64_t lo = (uint64_t)n_tasks * i / pool->n_threads, hi = (uint64_t)n_tasks * (i + 1) / pool->n_threads;
            atomic_store_explicit(&pool->ranges[i].next_end, lo | hi << 32, memory_order_relaxed);
        }
    uint32_t gen = STATE_GEN(atomic_load(&pool->state)) + 1;
    pthread_mutex_lock(&pool->lock);
    atomic_store(&pool->state, (uint64_t)gen << 32); /* open, nobody joined */
    pthread_cond_broadcast(&pool->start_cv);
    pthread_mutex_unlock(&pool->lock);

    run_tasks(pool, 0);

    /* every task is handed out: close the loop, then wait for the workers inside it */
    uint64_t s = atomic_fetch_or(&pool->state, STATE_CLOSED) | STATE_CLOSED;
    for (int i = 0; i < SPIN_ITERATIONS && (s & STATE_ACTIVE_MASK); i++) {
        CPU_RELAX();
        s = atomic_load(&pool->state);
    }
    if (s & STATE_ACTIVE_MASK) {
        pthread_mutex_lock(&pool->lock);
        while (atomic_load(&pool->state) & STATE_ACTIVE_MASK) pthread_cond_wait(&pool->done_cv, &pool->lock);
        pthread_mutex_unlock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->run_lock);
}

void dw_threadpool_run(dw_threadpool *pool, int n_tasks, dw_task_fn fn, void *arg) {
    run_loop(pool, n_tasks, fn, arg, 0);
}

void dw_threadpool_run_ranges(dw_threadpool *pool, int n_tasks, dw_task_fn fn, void *arg) {
    run_loop(pool, n_tasks, fn, arg, 1);
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static dw_threadpool *global_pool;

static void create_global(void) {
    dw_error err;
    if (dw_threadpool_create(0, &global_pool, &err) != DW_OK) global_pool = NULL;
}

dw_threadpool *dw_threadpool_global(void) {
    pthread_once(&global_once, create_global);
    return global_pool;
}
