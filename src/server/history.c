/* An actor's completed turns, read back from its log and copied (server_impl.h: srv_history):
 * from the local turn log (turn_log.c's format) or the cluster's (cluster_store.c). */
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "server/server_impl.h"

void srv_history_free(srv_history *h) {
    for (int i = 0; i < h->n; i++) free((void *)h->r[i].message), free((void *)h->r[i].reply);
    free(h->r);
    memset(h, 0, sizeof *h);
}

typedef struct collect {
    srv_history *h;
    uint64_t upto;
} collect;

static int keep(void *user, const srv_log_record *r) {
    collect *c = user;
    if (r->seq > c->upto) return 0;
    srv_history *h = c->h;
    h->r = realloc(h->r, (size_t)(h->n + 1) * sizeof *h->r);
    DW_ASSERT(h->r);
    char *m = malloc(r->message_len + 1), *p = malloc(r->reply_len + 1);
    DW_ASSERT(m && p);
    memcpy(m, r->message, r->message_len), m[r->message_len] = 0;
    memcpy(p, r->reply, r->reply_len), p[r->reply_len] = 0;
    h->r[h->n++] = (srv_log_record){r->seq, m, r->message_len, p, r->reply_len};
    return 0;
}

dw_status srv_actor_history(srv_server *srv, const srv_actor *a, uint64_t upto, srv_history *out, dw_error *err) {
    memset(out, 0, sizeof *out);
    dw_status st;
    collect c = {out, upto};
    if (srv->cluster) {
        srv_log_records turns;
        if ((st = srv_cluster_log_turns(srv, a->id, &turns, err)) == DW_OK)
            for (int i = 0; i < turns.n; i++) keep(&c, &turns.r[i]);
        srv_log_records_free(&turns);
    } else {
        char path[1200];
        srv_actor_file(srv, a, "turns.log", path, sizeof path);
        uint64_t last;
        st = srv_log_scan(path, 0, keep, &c, &last, err);
    }
    /* every turn 1..upto, in order: else the log no longer holds them */
    for (int i = 0; st == DW_OK && i < out->n; i++)
        if (out->r[i].seq != (uint64_t)i + 1) out->n = -1;
    if (st == DW_OK && out->n != (int)upto) {
        if (out->n < 0) out->n = 0;
        srv_history_free(out);
        return dw_error_set(err, DW_ERR_NOT_FOUND, "actor %s: its log does not hold turns 1 to %llu", a->id,
                            (unsigned long long)upto);
    }
    if (st != DW_OK) srv_history_free(out);
    return st;
}

