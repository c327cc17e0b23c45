/* Turns: one message to one actor (run by worker.c), as an object shared by the endpoint and the
 * worker (reference-counted), and the reply collected from the actor's output (the chat actor's
 * frames: 'T' text, 'E' the end record, 'X' an error). */
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
    srv_history_free(&t->fork);
    free(t->settings.system);
    free(t->message);
    free(t->text);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
}

void srv_turn_fail(srv_turn *t, int status, const char *code, const char *detail) {
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
        srv_turn_fail(t, status, rec, sp ? sp : "the actor failed");
    }
}
