/* The CUDA backend's decode steps: each session's step (from embed to the LM head's logits, the
 * greedy argmax included) recorded once as a CUDA graph and replayed with the token id and
 * position read from the graph's device slot; the greedy chain (the argmax writes the next
 * step into that slot, so a replay needs no set-up kernel); and the timing of steps for the
 * stats. Graphs off (tuning.graphs 0): every step runs directly. */
#include "backend/cuda/cuda_context.h"

#include <string.h>

/* Whether the step at pos attends over a short length (its attention's shape differs). */
static int short_at(const dw__cuda_ctx *c, int pos) { return pos + 1 <= c->tuning.attn_short_keys; }

/* Waits for the queued work (a replay may still use it), then drops g's recording. */
static void drop_recording(dw__cuda_ctx *c, dw__cuda_graph *g) {
    dw__cuda_check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize before dropping a graph");
    g->next_pos = -1;
    if (g->exec) cudaGraphExecDestroy(g->exec);
    g->exec = NULL;
}

static dw__cuda_graph *find_graph(dw__cuda_ctx *c, const void *key, bool add) {
    for (auto &g : *c->graphs)
        if (g.key == key) return &g;
    if (!add) return NULL;
    dw__cuda_graph g;
    memset(&g, 0, sizeof g);
    g.key = key;
    c->graphs->push_back(g);
    return &c->graphs->back();
}

/* Issues a decode step's ops and queues them all. */
static void run_step(dw__cuda_ctx *c, void (*step)(void *), void *arg) {
    step(arg);
    dw__cuda_flush(c);
}

/* Records step into g (state 2) or marks it failed (state -1); the step has not run then. */
static void record_graph(dw__cuda_ctx *c, dw__cuda_graph *g, int pos, void (*step)(void *), void *arg) {
    g->state = -1;
    if (!g->slot) {
        cudaError_t e = cudaMalloc((void **)&g->slot, 2 * sizeof(int));
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            g->slot = NULL;
            return;
        }
    }
    dw_status saved_status = c->err_status;
    char saved[DW_ERROR_MESSAGE_MAX];
    memcpy(saved, c->err_message, sizeof saved);
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return;
    }
    c->cap_slot = g->slot;
    c->cap_ring = NULL;
    c->recording_failed = 0;
    run_step(c, step, arg);
    c->cap_slot = NULL;
    g->ring = c->cap_ring, g->ring_n = c->cap_ring_n;
    g->next_pos = -1;
    e = cudaStreamEndCapture(c->stream, &graph);
    cudaGraphExec_t exec = NULL;
    if (e == cudaSuccess && !c->recording_failed) e = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (e != cudaSuccess || c->recording_failed) {
        (void)cudaGetLastError();
        if (exec) cudaGraphExecDestroy(exec);
        c->err_status = saved_status; /* errors of the recording are not the step's: it runs directly next */
        memcpy(c->err_message, saved, sizeof saved);
        return;
    }
    g->exec = exec;
    g->state = 2;
    g->short_len = short_at(c, pos);
    c->stats.graph_records++;
}

/* Queues a replay of g's recording for the step at pos with the token id (from id_dev when set):
 * without the set_step kernel where the argmax of g's last replay wrote exactly that step into
 * the slot (its token at id_dev, the next position). */
static void replay(dw__cuda_ctx *c, dw__cuda_graph *g, int32_t id, const int32_t *id_dev, int pos) {
    const bool primed = id_dev && g->next_pos == pos && id_dev == g->ring + (pos - 1) % g->ring_n;
    if (!primed) dw__cuda_check(c, dwk::launch_set_step(g->slot, id, id_dev, pos, c->stream), "graph step kernel");
    else c->stats.primed_replays++;
    dw__cuda_check(c, cudaGraphLaunch(g->exec, c->stream), "cudaGraphLaunch");
    c->stats.graph_replays++;
    g->next_pos = g->ring ? pos + 1 : -1;
}

/* The timing events around a step: the start (unless a step queued earlier is still uncounted),
 * and the end once the step is queued. */
static bool time_step_start(dw__cuda_ctx *c) {
    const bool timed = !c->step_timed && c->ev_step[0];
    if (timed) dw__cuda_check(c, cudaEventRecord(c->ev_step[0], c->stream), "cudaEventRecord");
    return timed;
}

static void time_step_end(dw__cuda_ctx *c, bool timed) {
    if (!timed) return;
    dw__cuda_check(c, cudaEventRecord(c->ev_step[1], c->stream), "cudaEventRecord");
    c->step_timed = 1;
}

void dw__cuda_count_step_time(dw__cuda_ctx *c) {
    if (!c->step_timed) return;
    float ms = 0;
    if (cudaEventQuery(c->ev_step[1]) != cudaSuccess) { /* not done (another session queued since): skip */
        (void)cudaGetLastError();
        return;
    }
    if (cudaEventElapsedTime(&ms, c->ev_step[0], c->ev_step[1]) == cudaSuccess) {
        c->stats.gpu_step_ms += ms;
        c->stats.timed_steps++;
    } else {
        (void)cudaGetLastError();
    }
    c->step_timed = 0;
}

/* Queues the step between the two timing events. */
void dw__cuda_decode_step(void *ctx, const void *key, int32_t id, int pos, void (*step)(void *), void *arg) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    double t0 = dw__now_s();
    dw__cuda_locked l(c);
    dw__cuda_flush(c);
    dw__cuda_graph *g = c->graphs_on ? find_graph(c, key, true) : NULL;
    if (g && g->state == 2 && g->short_len != short_at(c, pos)) { /* the length left the recording's class */
        drop_recording(c, g);
        g->state = 0; /* one step directly (it sizes the scratch of the new shapes), then a recording */
    }
    if (g && g->state == 1) record_graph(c, g, pos, step, arg);
    const bool timed = time_step_start(c);
    if (g && g->state == 2) {
        replay(c, g, id, NULL, pos);
    } else {
        /* directly: the first step of a session (it sizes the scratch a recording needs), or no graphs */
        if (g && g->state == 0) g->state = 1;
        if (g) g->next_pos = -1; /* its argmax, if any, wrote the ring, not the slot */
        run_step(c, step, arg);
        c->stats.eager_steps++;
    }
    time_step_end(c, timed);
    c->stats.enqueue_s += dw__now_s() - t0;
}

/* A replay with the id read on the device; 0 without a recording for key. */
int dw__cuda_decode_step_from(void *ctx, const void *key, const int32_t *id_dev, int pos, void (*step)(void *),
                              void *arg) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    double t0 = dw__now_s();
    dw__cuda_locked l(c);
    dw__cuda_graph *g = c->graphs_on ? find_graph(c, key, false) : NULL;
    if (!g || g->state != 2 || g->short_len != short_at(c, pos)) return 0;
    dw__cuda_flush(c);
    const bool timed = time_step_start(c);
    replay(c, g, 0, id_dev, pos);
    time_step_end(c, timed);
    c->stats.enqueue_s += dw__now_s() - t0;
    return 1;
}

/* Inside a step being recorded, the argmax reads the position from the graph's slot when it
 * runs (and primes the next step there: replay); it follows the LM head within the graph, its
 * launch overlapping the end of that kernel. */
void dw__cuda_argmax(void *ctx, const float *x, int n, int32_t *ring, int ring_n, int pos) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    dw__cuda_flush(c);
    int *slot = c->cap_slot;
    dw__cuda_check(c,
                   dwk::launch_argmax(x, n, c->amax_v, c->amax_i, c->amax_counter, ring, ring_n, pos, slot,
                                      c->stream),
                   "argmax kernel");
    if (slot) c->cap_ring = ring, c->cap_ring_n = ring_n;
}

void dw__cuda_decode_forget(void *ctx, const void *key) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    for (size_t i = 0; i < c->graphs->size(); i++) {
        dw__cuda_graph &g = (*c->graphs)[i];
        if (g.key != key) continue;
        dw__cuda_flush(c);
        drop_recording(c, &g);
        if (g.slot) cudaFree(g.slot);
        c->graphs->erase(c->graphs->begin() + i);
        return;
    }
}

void dw__cuda_graphs_free(dw__cuda_ctx *c) {
    for (auto &g : *c->graphs) {
        if (g.exec) cudaGraphExecDestroy(g.exec);
        if (g.slot) cudaFree(g.slot);
    }
    delete c->graphs;
    c->graphs = NULL;
}
