/* Waking an actor (server_impl.h): the options it runs with, the restore of its newest snapshot
 * (or a fresh actor when it has none), and the replay of the turns its log holds after that
 * snapshot, each checked against the reply that was logged. The store layout: actors.c. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "driftwood/model.h"
#include "driftwood/snapshot.h"
#include "server/server_impl.h"

void srv_actor_options(srv_server *srv, srv_actor *a, const srv_actor_settings *st, dw_actor_options *o,
                       const char **argv, char bufs[][32]) {
    int n = 0;
    argv[n++] = "actor";
    argv[n++] = "--model", argv[n++] = st->model;
    if (st->system) argv[n++] = "--system", argv[n++] = st->system;
    snprintf(bufs[0], 32, "%.9g", st->temperature), argv[n++] = "--temp", argv[n++] = bufs[0];
    snprintf(bufs[1], 32, "%.9g", st->top_p), argv[n++] = "--top-p", argv[n++] = bufs[1];
    snprintf(bufs[2], 32, "%lld", st->seed), argv[n++] = "--seed", argv[n++] = bufs[2];
    snprintf(bufs[3], 32, "%d", st->max_tokens), argv[n++] = "-n", argv[n++] = bufs[3];
    snprintf(bufs[4], 32, "%d", srv_model_ctx(srv, st->model)), argv[n++] = "--ctx", argv[n++] = bufs[4];
    *o = (dw_actor_options){
        .backend = srv->backend,
        .timeout_seconds = srv->o.turn_timeout_seconds,
        .memory_limit = srv->o.actor_memory_limit,
        .kv_memory_limit = srv->o.kv_memory_limit,
        .argc = n,
        .argv = argv,
        .output = srv_turn_output,
        .output_user = a ? (void *)&a->sink : NULL,
    };
}

typedef struct replay_state {
    srv_server *srv;
    srv_actor *a;
    uint64_t after;
    int replayed, mismatches;
} replay_state;

static int replay_one(void *user, const srv_log_record *r) {
    replay_state *rs = user;
    srv_actor_set_last_turn(rs->a, r->message, r->message_len, r->reply, r->reply_len);
    if (r->seq <= rs->after) return 0;
    srv_turn *t = srv_turn_new(rs->srv);
    t->module = rs->a->module; /* how to read the output (the turn holds no actor reference) */
    rs->a->sink = t;
    dw_error err;
    dw_status st = dw_actor_send(rs->a->actor, r->message, r->message_len, &err);
    rs->a->sink = NULL;
    int bad = st != DW_OK || t->http_status;
    if (!bad) {
        if (t->text_len != r->reply_len || memcmp(t->text, r->reply, r->reply_len)) rs->mismatches++;
        rs->a->context_tokens = t->position;
        rs->replayed++;
    } else
        fprintf(stderr, "driftwood serve: actor %s: replaying turn %" PRIu64 ": %s\n", rs->a->id, r->seq,
                st != DW_OK ? err.message : t->error);
    srv_turn_release(t);
    return bad;
}

/* On a cluster: this node's claim, the log fenced and read, the newest snapshot fetched from the
 * store (to a file in the local folder, removed after the restore), and the turns after it. */
static dw_status wake_from_cluster(srv_server *srv, srv_actor *a, const dw_actor_options *o, replay_state *rs,
                                   dw_error *err) {
    char holder[SRV_NAME_MAX], path[1200];
    if (srv_cluster_acquire(srv, a, holder, sizeof holder, err) != DW_OK) return err->status;
    snprintf(path, sizeof path, "%s/actors/wake-%s.dwa", srv->store, a->id);
    srv_log_records turns;
    int has_snap;
    dw_status st = srv_cluster_log_open(srv, a, path, &has_snap, &turns, err);
    if (st != DW_OK) return st;
    st = has_snap ? dw_actor_snapshot_restore(srv->rt, a->module->module, o, path, &a->actor, NULL, err)
                  : dw_actor_create(srv->rt, a->module->module, o, &a->actor, err);
    unlink(path);
    if (st != DW_OK) {
        srv_log_records_free(&turns);
        return dw_error_prefix(err, "waking actor %s", a->id);
    }
    rs->after = has_snap ? a->snap_turns : 0;
    for (int i = 0; i < turns.n && st == DW_OK; i++)
        if (replay_one(rs, &turns.r[i])) st = dw_error_set(err, DW_ERR_STATE, "actor %s: replaying turn %" PRIu64 " failed", a->id, turns.r[i].seq);
    srv_log_records_free(&turns);
    return st;
}

/* Room for one more awake actor under --memory-budget: the least recently used idle actors are
 * hibernated here, by the waking thread, until the awake ones and this one fit (the reaper alone,
 * one thread, fell behind many concurrent wakes). When every awake actor is in a turn, nothing
 * can be freed and the wake goes ahead: the budget is then exceeded until turns end. */
static void make_room(srv_server *srv, const srv_actor *waking, size_t need) {
    for (;;) {
        pthread_mutex_lock(&srv->lock);
        size_t resident = 0;
        srv_actor *lru = NULL;
        for (srv_actor *x = srv->actors; x; x = x->next) {
            resident += x->memory_bytes + x->kv_bytes;
            if (x != waking && x->actor && !x->busy && (!lru || x->last_active < lru->last_active)) lru = x;
        }
        if (resident + need <= srv->o.memory_budget || !lru) {
            pthread_mutex_unlock(&srv->lock);
            return;
        }
        lru->busy = SRV_BUSY_UPKEEP, lru->refs++;
        pthread_mutex_unlock(&srv->lock);
        dw_error err;
        if (srv_actor_hibernate(srv, lru, &err) != DW_OK) {
            fprintf(stderr, "driftwood serve: hibernating actor %s for room: %s\n", lru->id, err.message);
            srv_actor_release(srv, lru);
            return;
        }
        srv_actor_release(srv, lru);
    }
}

dw_status srv_actor_wake(srv_server *srv, srv_actor *a, double *ms, dw_error *err) {
    double t0 = dw__now_ms();
    if (ms) *ms = 0;
    if (a->actor && srv->cluster && srv_cluster_keep(srv, a, err) != DW_OK) srv_actor_drop(srv, a); /* taken over */
    if (a->actor) return DW_OK;
    make_room(srv, a, srv_actor_kv_bytes(srv, a->settings.model) + a->memory_bytes_last);
    dw_actor_options o;
    const char *argv[16];
    char bufs[5][32];
    srv_actor_options(srv, a, &a->settings, &o, argv, bufs);
    dw_status st;
    replay_state rs = {srv, a, 0, 0, 0};
    if (srv->cluster) {
        st = wake_from_cluster(srv, a, &o, &rs, err);
    } else {
        if (a->snap_turns) {
            char path[1200];
            srv_actor_snapshot_path(srv, a, a->snap_turns, path, sizeof path);
            st = dw_actor_snapshot_restore(srv->rt, a->module->module, &o, path, &a->actor, NULL, err);
        } else
            st = dw_actor_create(srv->rt, a->module->module, &o, &a->actor, err);
        if (st != DW_OK) return dw_error_prefix(err, "waking actor %s", a->id);
        char log_path[1200];
        srv_actor_file(srv, a, "turns.log", log_path, sizeof log_path);
        rs.after = a->snap_turns;
        uint64_t last;
        st = srv_log_scan(log_path, 1, replay_one, &rs, &last, err);
        if (st == DW_OK && last > a->turns) a->turns = last;
        if (st == DW_OK && (a->log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0)
            st = dw_error_set(err, DW_ERR_IO, "%s: %s", log_path, strerror(errno));
    }
    if (st != DW_OK) {
        dw_actor_free(a->actor);
        a->actor = NULL;
        return st;
    }
    size_t mem, kv = srv_actor_kv_bytes(srv, a->settings.model);
    dw_actor_memory(a->actor, &mem);
    double dt = dw__now_ms() - t0;
    pthread_mutex_lock(&srv->lock);
    a->memory_bytes = a->memory_bytes_last = mem;
    a->kv_bytes = kv;
    srv->wakes++;
    srv->wake_ms_total += dt;
    srv->replayed_turns += (uint64_t)rs.replayed;
    srv->replay_mismatches += (uint64_t)rs.mismatches;
    pthread_mutex_unlock(&srv->lock);
    if (rs.mismatches)
        fprintf(stderr, "driftwood serve: actor %s: %d replayed turn(s) differ from the logged replies\n", a->id,
                rs.mismatches);
    pthread_cond_signal(&srv->reaper_cv); /* the memory budget may be exceeded now */
    if (ms) *ms = dt;
    return DW_OK;
}

dw_status srv_actor_adopt(srv_server *srv, srv_actor *a, const srv_history *h, dw_error *err) {
    replay_state rs = {srv, a, 0, 0, 0};
    for (int i = 0; i < h->n; i++) {
        const srv_log_record *r = &h->r[i];
        if (r->seq != a->turns + 1) return dw_error_set(err, DW_ERR_STATE, "actor %s: adopting turn %" PRIu64 " after %" PRIu64,
                                                         a->id, r->seq, a->turns);
        if (replay_one(&rs, r)) return dw_error_set(err, DW_ERR_STATE, "actor %s: replaying adopted turn %" PRIu64 " failed", a->id, r->seq);
        if (rs.mismatches) /* the same messages into the same state must give the same bits */
            return dw_error_set(err, DW_ERR_STATE, "actor %s: adopted turn %" PRIu64 " gave another reply than logged", a->id, r->seq);
        dw_status st = srv->cluster ? srv_cluster_log_turn(srv, a, r, a->context_tokens, a->tokens_generated, err)
                                    : srv_log_append(a->log_fd, r, srv->o.no_fsync, err);
        if (st != DW_OK) return st;
        pthread_mutex_lock(&srv->lock);
        a->turns = r->seq;
        pthread_mutex_unlock(&srv->lock);
    }
    return DW_OK;
}
