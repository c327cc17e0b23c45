/* A fixed pool of persistent worker threads that runs one parallel loop at a time (the CPU
 * backend's "all cores", and any embedder's parallel loops). No allocation per call; the calling
 * thread works too. */
#ifndef DRIFTWOOD_THREADPOOL_H
#define DRIFTWOOD_THREADPOOL_H

#include "driftwood/error.h"

#ifdef __cplusplus
extern "C" {
#ifdef __cplusplus
}
#endif

#endif

typedef struct dw_threadpool dw_threadpool;

/* One unit of a parallel loop: task in [0, n_tasks); thread in [0, dw_threadpool_size())
 * names the thread running it (stable for the duration of one run, for per-thread scratch). */
typedef void (*dw_task_fn)(void *arg, int task, int thread);

/* Starts n_threads - 1 workers (the caller of dw_threadpool_run is the n-th).
 * n_threads <= 0 means "one per online CPU", overridable by the DW_THREADS environment variable. */
dw_status dw_threadpool_create(int n_threads, dw_threadpool **out, dw_error *err);

/* Stops and joins the workers. No run may be in progress. */
void dw_threadpool_destroy(dw_threadpool *pool);

/* Number of threads that execute tasks (workers + the caller). */
int dw_threadpool_size(const dw_threadpool *pool);

/* Runs fn(arg, task, thread) for every task in [0, n_tasks) and returns when all are done.
 * Tasks are handed out dynamically in increasing order. Thread-safe: concurrent callers
 * are serialized (one loop runs at a time). fn must not call dw_threadpool_run on the same pool. */
void dw_threadpool_run(dw_threadpool *pool, int n_tasks, dw_task_fn fn, void *arg);

/* The same, but the tasks are cut into one contiguous range per thread and each thread runs its
 * own range in increasing order, so that each reads one linear stream over memory laid out in task
 * order (the decode matrix-vector products: hardware and software prefetch run ahead undisturbed).
 * A thread that has finished its range takes tasks one at a time from the end of the range with
 * the most left — so a thread that is late to start (a shared machine) delays nothing. */
void dw_threadpool_run_ranges(dw_threadpool *pool, int n_tasks, dw_task_fn fn, void *arg);

/* The process-wide pool used by the CPU backend, created on first use (sized as for
 * n_threads <= 0 above). Never destroyed. Returns NULL only if thread creation failed. */
dw_threadpool *dw_threadpool_global(void);

#ifdef __cplusplus
}
#endif

#endif
