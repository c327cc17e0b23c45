/* The byte stream between a worker running a turn and the connection sending it as server-sent
 * events: the worker writes formatted events, the connection's thread reads them (waiting with a
 * time limit, so that it can send a keep-alive comment and notice a client that went away). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/assert.h"
#include "server/server_impl.h"

srv_stream *srv_stream_new(void) {
    srv_stream *s = calloc(1, sizeof *s);
    DW_ASSERT(s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    s->refs = 1;
    return s;
}

void srv_stream_write(srv_stream *s, const char *bytes, size_t len) {
    pthread_mutex_lock(&s->mu);
    if (!s->closed && len) {
        if (s->off == s->len) s->off = s->len = 0;
        if (s->len + len > s->cap) {
            size_t cap = (s->len + len) * 2 + 256;
            s->buf = realloc(s->buf, cap);
            DW_ASSERT(s->buf);
            s->cap = cap;
        }
        memcpy(s->buf + s->len, bytes, len);
        s->len += len;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
}

void srv_stream_finish(srv_stream *s) {
    pthread_mutex_lock(&s->mu);
    s->done = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

ssize_t srv_stream_read(srv_stream *s, char *out, size_t max, double wait_s) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)wait_s;
    until.tv_nsec += (long)((wait_s - (double)(time_t)wait_s) * 1e9);
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&s->mu);
    while (s->off == s->len && !s->done)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT) break;
    ssize_t n;
    if (s->off < s->len) {
        size_t take = s->len - s->off < max ? s->len - s->off : max;
        memcpy(out, s->buf + s->off, take);
        s->off += take;
        n = (ssize_t)take;
    } else n = s->done ? -1 : 0;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void srv_stream_close(srv_stream *s) {
    pthread_mutex_lock(&s->mu);
    s->closed = 1;
    pthread_mutex_unlock(&s->mu);
}

void srv_stream_release(srv_stream *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    int last = --s->refs == 0;
    pthread_mutex_unlock(&s->mu);
    if (!last) return;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->buf);
    free(s);
}
