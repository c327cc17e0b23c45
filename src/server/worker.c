/* The workers that run turns: the queue of submitted turns, and one turn's run — wake the actor
 * (or make an ephemeral one for the stateless OpenAI endpoints), send the message, append the
 * completed turn to the actor's log (fsync'd) before the endpoint may finish its response, and
 * drop the actor's awake state when the turn failed (the next wake rebuilds it from the store,
 * where that turn never happened). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "server/server_impl.h"

/* A message sent with the number its turn must get ("turn"): the retry of the actor's last
 * turn (the same message) is answered with that turn's logged reply, not run again; any other
 * number than the next one is a conflict. */
static void answer_retry(srv_turn *t, srv_actor *a) {
    if (t->expect_turn == a->turns + 1) return;
    if (t->expect_turn == a->turns && a->last_message && a->last_message_len == t->message_len &&
        !memcmp(a->last_message, t->message, t->message_len)) {
        t->replayed = 1;
        t->seq = a->turns;
        t->text = malloc(a->last_reply_len + 1);
        memcpy(t->text, a->last_reply, a->last_reply_len + 1);
        t->text_len = a->last_reply_len, t->text_cap = a->last_reply_len + 1;
        t->position = a->context_tokens;
        return;
    }
    char why[160];
    snprintf(why, sizeof why, "The actor has completed %" PRIu64 " turns; turn %" PRIu64 " is not the next one (or a retry of the last).",
             a->turns, t->expect_turn);
    srv_turn_fail(t, 409, "turn_conflict", why);
}

/* Runs on a worker. */
static void run(srv_turn *t) {
    srv_server *srv = t->srv;
    dw_error err = {0};
    t->t_start = dw__now_s();
    srv_actor *a = t->actor;
    dw_actor *actor = NULL;
    srv_turn *sink = t;
    if (a) {
        if (srv_actor_wake(srv, a, &t->wake_ms, &err) != DW_OK)
            srv_turn_fail(t, err.status == DW_ERR_STATE ? 503 : 500, err.status == DW_ERR_STATE ? "actor_elsewhere" : "wake_failed",
                          err.message);
        actor = a->actor;
        if (!t->http_status && t->fork.n && srv_actor_adopt(srv, a, &t->fork, &err) != DW_OK)
            srv_turn_fail(t, 500, "fork_failed", err.message);
        if (!t->http_status && t->expect_turn) answer_retry(t, a);
    } else {
        dw_actor_options o;
        const char *argv[16];
        char bufs[5][32];
        srv_actor_options(srv, NULL, &t->settings, &o, argv, bufs);
        o.output_user = &sink;
        if (dw_actor_create(srv->rt, t->module->module, &o, &actor, &err) != DW_OK)
            srv_turn_fail(t, 500, "actor_failed", err.message);
    }
    if (!t->http_status && t->on_start) t->on_start(t);
    if (t->replayed && t->on_delta) t->on_delta(t, t->text, t->text_len);
    if (!t->http_status && !t->replayed) {
        if (a) a->sink = t;
        dw_actor_stats_reset(actor);
        dw_status st = dw_actor_send(actor, t->message, t->message_len, &err);
        if (a) a->sink = NULL;
        if (st != DW_OK) srv_turn_fail(t, st == DW_ERR_TRAP && strstr(err.message, "timeout") ? 504 : 500, "actor_failed", err.message);
        if (!t->t_first) t->t_first = dw__now_s();
        if (!(a ? a->module : t->module)->chat_protocol) { /* no end record: the engine's counts */
            dw_actor_stats s;
            dw_actor_stats_get(actor, &s);
            t->completion_tokens = (int)s.decode_tokens;
            t->prompt_tokens = (int)s.prefill_tokens;
        }
    }
    if (a && !t->http_status && !t->replayed) { /* durable before anyone hears it completed */
        double l0 = dw__now_ms();
        srv_log_record r = {a->turns + 1, t->message, t->message_len, t->text ? t->text : "", t->text_len};
        dw_status st = srv->cluster ? srv_cluster_log_turn(srv, a, &r, t->position, a->tokens_generated + (uint64_t)t->completion_tokens, &err)
                                    : srv_log_append(a->log_fd, &r, srv->o.no_fsync, &err);
        if (st != DW_OK)
            srv_turn_fail(t, st == DW_ERR_STATE ? 503 : 500, st == DW_ERR_STATE ? "actor_moved" : "store_failed", err.message);
        else {
            t->seq = a->turns + 1;
            srv_actor_set_last_turn(a, r.message, r.message_len, r.reply, r.reply_len);
        }
        t->log_ms = dw__now_ms() - l0;
    }
    if (a) {
        if (t->http_status && strcmp(t->error_code, "turn_conflict")) srv_actor_drop(srv, a);
        pthread_mutex_lock(&srv->lock);
        if (!t->http_status && !t->replayed) {
            a->turns = t->seq;
            a->context_tokens = t->position;
            a->tokens_generated += (uint64_t)t->completion_tokens;
            size_t mem;
            if (a->actor) dw_actor_memory(a->actor, &mem), a->memory_bytes = a->memory_bytes_last = mem;
        }
        a->last_active = dw__now_s();
        a->last_active_at = srv_wall_now();
        pthread_mutex_unlock(&srv->lock);
        srv_actor_release(srv, a); /* the claim the submitter took */
    } else if (actor)
        dw_actor_free(actor);
    t->t_end = dw__now_s();
    pthread_mutex_lock(&srv->lock);
    if (t->http_status) srv->turns_failed++;
    else srv->turns_done++, srv->turns_logged += t->seq != 0, srv->tokens_generated += (uint64_t)t->completion_tokens,
         srv->log_ms_total += t->log_ms;
    srv->turns_running--;
    pthread_mutex_unlock(&srv->lock);
    if (t->on_end) t->on_end(t);
    if (t->stream) srv_stream_finish(t->stream);
    pthread_mutex_lock(&t->mu);
    t->finished = 1;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

void srv_turn_submit(srv_turn *t) {
    srv_server *srv = t->srv;
    pthread_mutex_lock(&t->mu);
    t->refs++;
    pthread_mutex_unlock(&t->mu);
    pthread_mutex_lock(&srv->lock);
    t->next = NULL;
    if (srv->queue_tail) srv->queue_tail->next = t;
    else srv->queue_head = t;
    srv->queue_tail = t;
    srv->turns_running++;
    pthread_cond_signal(&srv->queue_cv);
    pthread_mutex_unlock(&srv->lock);
}

void srv_turn_wait(srv_turn *t) {
    pthread_mutex_lock(&t->mu);
    while (!t->finished) pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
}

void srv_run_and_wait(srv_turn *t) {
    srv_turn_submit(t);
    srv_turn_wait(t);
}

void *srv_worker_main(void *arg) {
    srv_server *srv = arg;
    pthread_mutex_lock(&srv->lock);
    for (;;) {
        while (!srv->queue_head && !srv->stopping) pthread_cond_wait(&srv->queue_cv, &srv->lock);
        if (!srv->queue_head) break; /* stopping, and nothing left to run */
        srv_turn *t = srv->queue_head;
        srv->queue_head = t->next;
        if (!srv->queue_head) srv->queue_tail = NULL;
        pthread_mutex_unlock(&srv->lock);
        run(t);
        srv_turn_release(t);
        pthread_mutex_lock(&srv->lock);
    }
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}
