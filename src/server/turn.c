/* Turns: one message to one actor, run on a worker thread. The worker wakes the actor if it is
 * hibernated, sends the message, collects the reply from the actor's output (the chat actor's
 * frames: 'T' text, 'E' the end record, 'X' an error), appends the turn to the actor's log
 * (fsync'd) and only then lets the endpoint finish the response: a turn a client saw complete
 * is on disk. A turn that fails drops the actor's awake state, so the next wake rebuilds it
 * from the store (where that turn never happened). An ephemeral actor (the stateless OpenAI
 * endpoints) is made for its turn and freed after it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "core/clock.h"
#include "server/server_impl.h"

srv_turn *srv_turn_new(srv_server *srv) {
    srv_turn *t = calloc(1, sizeof *t);
    DW_ASSERT(t);
    t->srv = srv;
    t->refs = 1;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    snprintf(t->finish, sizeof t->finish, "stop");
    return t;
}

void srv_turn_release(srv_turn *t) {
    pthread_mutex_lock(&t->mu);
    int last = --t->refs == 0;
    pthread_mutex_unlock(&t->mu);
    if (!last) return;
    if (t->actor) srv_actor_put(t->srv, t->actor);
    if (t->endpoint_free) t->endpoint_free(t->endpoint);
    srv_stream_release(t->stream);
    free(t->settings.system);
    free(t->message);
    free(t->text);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
}

static void fail(srv_turn *t, int status, const char *code, const char *detail) {
    if (t->http_status) return;
    t->http_status = status;
    snprintf(t->error_code, sizeof t->error_code, "%.*s", (int)sizeof t->error_code - 1, code);
    snprintf(t->error, sizeof t->error, "%.*s", (int)sizeof t->error - 1, detail);
}

static void add_text(srv_turn *t, const char *bytes, size_t len) {
    if (!len) return;
    if (t->text_len + len + 1 > t->text_cap) {
        t->text_cap = (t->text_len + len + 1) * 2;
        t->text = realloc(t->text, t->text_cap);
        DW_ASSERT(t->text);
    }
    memcpy(t->text + t->text_len, bytes, len);
    t->text_len += len;
    t->text[t->text_len] = 0;
    if (!t->t_first) t->t_first = dw__now_s();
    if (t->on_delta) t->on_delta(t, bytes, len);
}

void srv_turn_output(void *user, const char *bytes, size_t len) {
    srv_turn *t = user ? *(srv_turn **)user : NULL;
    if (!t) return;
    const srv_module *m = t->actor ? t->actor->module : t->module;
    if (!m->chat_protocol) return add_text(t, bytes, len);
    if (len == 0) return;
    if (bytes[0] == 'T') return add_text(t, bytes + 1, len - 1);
    char rec[400];
    size_t n = len - 1 < sizeof rec - 1 ? len - 1 : sizeof rec - 1;
    memcpy(rec, bytes + 1, n);
    rec[n] = 0;
    if (bytes[0] == 'E') {
        char finish[16];
        if (sscanf(rec, "%15s %d %d %d %d", finish, &t->prompt_tokens, &t->cached_tokens, &t->completion_tokens,
                   &t->position) == 5)
            snprintf(t->finish, sizeof t->finish, "%s", finish);
    } else if (bytes[0] == 'X') {
        char *sp = strchr(rec, ' ');
        if (sp) *sp++ = 0;
        int status = !strcmp(rec, "context_length_exceeded") || !strcmp(rec, "invalid_request") ? 400 : 500;
        fail(t, status, rec, sp ? sp : "the actor failed");
    }
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
        if (srv_actor_wake(srv, a, &t->wake_ms, &err) != DW_OK) fail(t, 500, "wake_failed", err.message);
        actor = a->actor;
    } else {
        dw_actor_options o;
        const char *argv[16];
        char bufs[5][32];
        srv_actor_options(srv, NULL, &t->settings, &o, argv, bufs);
        o.output_user = &sink;
        if (dw_actor_create(srv->rt, t->module->module, &o, &actor, &err) != DW_OK)
            fail(t, 500, "actor_failed", err.message);
    }
    if (!t->http_status && t->on_start) t->on_start(t);
    if (!t->http_status) {
        if (a) a->sink = t;
        dw_actor_stats_reset(actor);
        dw_status st = dw_actor_send(actor, t->message, t->message_len, &err);
        if (a) a->sink = NULL;
        if (st != DW_OK) fail(t, st == DW_ERR_TRAP && strstr(err.message, "timeout") ? 504 : 500, "actor_failed", err.message);
        if (!t->t_first) t->t_first = dw__now_s();
        if (!(a ? a->module : t->module)->chat_protocol) { /* no end record: the engine's counts */
            dw_actor_stats s;
            dw_actor_stats_get(actor, &s);
            t->completion_tokens = (int)s.decode_tokens;
            t->prompt_tokens = (int)s.prefill_tokens;
        }
    }
    if (a && !t->http_status) { /* durable before anyone hears it completed */
        double l0 = dw__now_ms();
        srv_log_record r = {a->turns + 1, t->message, t->message_len, t->text ? t->text : "", t->text_len};
        if (srv_log_append(a->log_fd, &r, srv->o.no_fsync, &err) != DW_OK) fail(t, 500, "store_failed", err.message);
        else t->seq = a->turns + 1;
        t->log_ms = dw__now_ms() - l0;
    }
    if (a) {
        if (t->http_status) srv_actor_drop(srv, a);
        pthread_mutex_lock(&srv->lock);
        if (!t->http_status) {
            a->turns = t->seq;
            a->context_tokens = t->position;
            a->tokens_generated += (uint64_t)t->completion_tokens;
            size_t mem;
            if (a->actor) dw_actor_memory(a->actor, &mem), a->memory_bytes = mem;
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
