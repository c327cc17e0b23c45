/* The thread pool behind the CPU kernels: every task of a loop runs exactly once on a valid
 * thread index, loop after loop, with callers on several threads at once, in both ways of
 * handing out tasks (dynamically, and by per-thread ranges with taking from others' ends). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "driftwood/threadpool.h"
#include "test.h"

typedef struct {
    atomic_int *hits;
    int n_threads;
    atomic_int bad_thread;
    atomic_long sum;
    int spin; /* busy work per task, so that workers get to join the loop */
} count_job;

static void count_task(void *arg, int task, int thread) {
    count_job *j = arg;
    for (volatile int spin = 0; spin < j->spin; spin++) {
    }
    atomic_fetch_add(&j->hits[task], 1);
    atomic_fetch_add(&j->sum, task);
    if (thread < 0 || thread >= j->n_threads) atomic_store(&j->bad_thread, 1);
}

static void runs_every_task_exactly_once(int *dw_test_failed_, int ranged) {
    dw_error err = {0};
    static const int sizes[] = {1, 2, 3, 8};
    static const int tasks[] = {1, 2, 7, 64, 1000};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        dw_threadpool *pool;
        CHECK_OK(dw_threadpool_create(sizes[si], &pool, &err));
        CHECK(dw_threadpool_size(pool) == sizes[si]);
        for (size_t ti = 0; ti < sizeof tasks / sizeof tasks[0]; ti++) {
            int n = tasks[ti];
            count_job j = {.hits = calloc((size_t)n, sizeof(atomic_int)), .n_threads = sizes[si]};
            j.spin = ti % 2 ? 3000 : 0;
            (ranged ? dw_threadpool_run_ranges : dw_threadpool_run)(pool, n, count_task, &j);
            for (int t = 0; t < n; t++)
                CHECK_MSG(atomic_load(&j.hits[t]) == 1, "pool %d, %d tasks%s: task %d ran %d times", sizes[si], n,
                          ranged ? " (ranges)" : "", t, atomic_load(&j.hits[t]));
            CHECK(!atomic_load(&j.bad_thread));
            free(j.hits);
        }
        dw_threadpool_destroy(pool);
    }
}

TEST(threadpool_runs_every_task_exactly_once) { runs_every_task_exactly_once(dw_test_failed_, 0); }

TEST(threadpool_run_ranges_runs_every_task_exactly_once) { runs_every_task_exactly_once(dw_test_failed_, 1); }

TEST(threadpool_survives_many_short_loops) {
    /* loops of a few tiny tasks back to back: the join/close protocol under constant races */
    dw_error err = {0};
    dw_threadpool *pool;
    CHECK_OK(dw_threadpool_create(3, &pool, &err));
    atomic_int hits[4];
    long expected = 0;
    count_job j = {.hits = hits, .n_threads = 3};
    for (int loop = 0; loop < 20000; loop++) {
        int n = 2 + loop % 3;
        j.spin = loop % 2 ? 0 : 2000; /* every other loop long enough for the workers to join */
        for (int t = 0; t < 4; t++) atomic_store(&hits[t], 0);
        /* both ways of handing out tasks, alternating every two loops */
        (loop % 4 < 2 ? dw_threadpool_run : dw_threadpool_run_ranges)(pool, n, count_task, &j);
        for (int t = 0; t < n; t++) CHECK_MSG(atomic_load(&hits[t]) == 1, "loop %d task %d", loop, t);
        expected += (long)n * (n - 1) / 2;
    }
    CHECK(atomic_load(&j.sum) == expected);
    CHECK(!atomic_load(&j.bad_thread));
    dw_threadpool_destroy(pool);
}

typedef struct {
    dw_threadpool *pool;
    int loops;
    int ok;
} caller_arg;

static void *caller_main(void *p) {
    caller_arg *c = p;
    atomic_int hits[50];
    c->ok = 1;
    for (int loop = 0; loop < c->loops; loop++) {
        for (int t = 0; t < 50; t++) atomic_store(&hits[t], 0);
        count_job j = {.hits = hits, .n_threads = dw_threadpool_size(c->pool)};
        dw_threadpool_run(c->pool, 50, count_task, &j);
        for (int t = 0; t < 50; t++) c->ok &= atomic_load(&hits[t]) == 1;
        c->ok &= !atomic_load(&j.bad_thread);
    }
    return NULL;
}

TEST(threadpool_serializes_concurrent_callers) {
    dw_error err = {0};
    dw_threadpool *pool;
    CHECK_OK(dw_threadpool_create(2, &pool, &err));
    pthread_t th[4];
    caller_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (caller_arg){pool, 500, 0};
        pthread_create(&th[i], NULL, caller_main, &args[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) CHECK_MSG(args[i].ok, "caller %d saw a task run twice or not at all", i);
    dw_threadpool_destroy(pool);
    CHECK(dw_threadpool_global() != NULL);
    CHECK(dw_threadpool_global() == dw_threadpool_global());
}
