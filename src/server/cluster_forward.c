/* Requests between nodes: where a request runs (here, or on the node that holds its actor, or on
 * the node placement picks for a new one), forwarding it over NATS and relaying the answer, and
 * serving the requests other nodes forward here.
 *
 * The exchange. The forwarding node publishes on dw.node.NAME.http a message with the request
 * (headers Dw-Method, Dw-Url, Authorization; the body as data) and a fresh inbox as reply
 * subject. The serving node runs it through the same router as an HTTP request and answers on
 * the inbox: one message (headers Dw-Status, Content-Type, Dw-Node, Dw-End) for a small body,
 * or a first message of headers followed by data messages and an empty Dw-End one for large
 * bodies and server-sent events, with an empty message every second of silence while a stream
 * runs. Messages from one publisher to one subscriber keep their order in NATS. A forwarder that
 * hears nothing checks the serving node's lease each second and answers 502 once it is gone. */
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "core/clock.h"
#include "server/cluster_impl.h"

#define FWD_CHUNK (256u << 10)

typedef struct srv_forwarded {
    srv_server *srv;
    natsMsg *request;
    const char *reply;
} srv_forwarded;

/* ---- serving what other nodes forward ------------------------------------------------------- */
static void publish(srv_cluster *c, natsMsg *m) {
    natsConnection_PublishMsg(c->nc, m);
    natsMsg_Destroy(m);
}

static natsMsg *answer(srv_forwarded *f, const void *data, size_t len) {
    natsMsg *m = NULL;
    DW_ASSERT(natsMsg_Create(&m, f->reply, NULL, data, (int)len) == NATS_OK);
    return m;
}

static int fwd_respond(srv_request *r, unsigned status, const char *content_type, const void *bytes, size_t len) {
    srv_forwarded *f = r->fwd;
    srv_cluster *c = r->srv->cluster;
    char st[16];
    snprintf(st, sizeof st, "%u", status);
    natsMsg *m = answer(f, len <= FWD_CHUNK ? bytes : NULL, len <= FWD_CHUNK ? len : 0);
    natsMsgHeader_Set(m, "Dw-Status", st);
    natsMsgHeader_Set(m, "Content-Type", content_type);
    natsMsgHeader_Set(m, "Dw-Node", c->node);
    if (len <= FWD_CHUNK) natsMsgHeader_Set(m, "Dw-End", "1");
    publish(c, m);
    if (len > FWD_CHUNK) {
        for (size_t off = 0; off < len; off += FWD_CHUNK)
            publish(c, answer(f, (const char *)bytes + off, len - off < FWD_CHUNK ? len - off : FWD_CHUNK));
        natsMsg *end = answer(f, NULL, 0);
        natsMsgHeader_Set(end, "Dw-End", "1");
        publish(c, end);
    }
    natsConnection_Flush(c->nc);
    r->responded = 1;
    return MHD_YES;
}

static int fwd_stream(srv_request *r, srv_stream *stream, int key) {
    srv_forwarded *f = r->fwd;
    srv_cluster *c = r->srv->cluster;
    natsMsg *m = answer(f, NULL, 0);
    natsMsgHeader_Set(m, "Dw-Status", "200");
    natsMsgHeader_Set(m, "Content-Type", "text/event-stream");
    natsMsgHeader_Set(m, "Dw-Node", c->node);
    publish(c, m);
    char *buf = malloc(FWD_CHUNK);
    DW_ASSERT(buf);
    for (;;) {
        ssize_t n = srv_stream_read(stream, buf, FWD_CHUNK, 1.0);
        if (n < 0) break;
        publish(c, answer(f, buf, (size_t)n)); /* n == 0: the keep-alive */
        natsConnection_Flush(c->nc);
    }
    free(buf);
    natsMsg *end = answer(f, NULL, 0);
    natsMsgHeader_Set(end, "Dw-End", "1");
    publish(c, end);
    natsConnection_Flush(c->nc);
    srv_stream_close(stream);
    srv_stream_release(stream);
    srv_give_stream_slot(r->srv, key);
    r->responded = 1;
    return MHD_YES;
}

static const char *header(natsMsg *m, const char *key) {
    const char *v = NULL;
    return natsMsgHeader_Get(m, key, &v) == NATS_OK ? v : NULL;
}

static void *serve_forwarded(void *arg) {
    srv_forwarded *f = arg;
    srv_server *srv = f->srv;
    srv_request r = {.srv = srv, .key = -1, .owner = "anonymous", .fwd = f, .answer = fwd_respond, .answer_sse = fwd_stream};
    r.method = header(f->request, "Dw-Method");
    r.url = header(f->request, "Dw-Url");
    r.authorization = header(f->request, "Authorization");
    r.body_len = (size_t)natsMsg_GetDataLength(f->request);
    r.body = malloc(r.body_len + 1);
    DW_ASSERT(r.body);
    memcpy(r.body, natsMsg_GetData(f->request), r.body_len);
    r.body[r.body_len] = 0;
    r.body_too_large = r.body_len > srv->o.max_body_bytes;
    if (!r.method || !r.url) srv_respond_error(&r, 400, "invalid_request_error", "bad_forward", NULL, "A forwarded request without method or URL.");
    else srv_route(&r);
    if (!r.responded) srv_respond_error(&r, 500, "server_error", "no_response", NULL, "The request was not answered.");
    free(r.body);
    natsMsg_Destroy(f->request);
    srv_cluster *c = srv->cluster;
    pthread_mutex_lock(&c->mu);
    c->forwarded_in_flight--;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    free(f);
    return NULL;
}

static void on_forwarded(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure) {
    srv_server *srv = closure;
    srv_cluster *c = srv->cluster;
    srv_forwarded *f = calloc(1, sizeof *f);
    DW_ASSERT(f);
    f->srv = srv, f->request = msg, f->reply = natsMsg_GetReply(msg);
    pthread_mutex_lock(&c->mu);
    int ok = f->reply && !c->stopping && c->forwarded_in_flight < srv->o.max_connections;
    if (ok) c->forwarded_in_flight++;
    pthread_mutex_unlock(&c->mu);
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (ok && pthread_create(&t, &at, serve_forwarded, f) == 0) {
        pthread_attr_destroy(&at);
        return;
    }
    pthread_attr_destroy(&at);
    if (ok) {
        pthread_mutex_lock(&c->mu);
        c->forwarded_in_flight--;
        pthread_mutex_unlock(&c->mu);
    }
    if (f->reply) { /* refused: too many at once, or stopping */
        srv_request r = {.srv = srv, .key = -1, .fwd = f, .answer = fwd_respond, .answer_sse = fwd_stream};
        srv_respond_error(&r, 503, "server_error", "node_busy", NULL, "Node %s is stopping or has too many requests.", c->node);
    }
    natsMsg_Destroy(msg);
    free(f);
    (void)nc, (void)sub;
}

static int route_elsewhere(srv_request *r);

dw_status srv_fwd_listen(srv_server *srv, dw_error *err) {
    srv->route_elsewhere = route_elsewhere;
    srv_cluster *c = srv->cluster;
    char subject[SRV_NAME_MAX + 24];
    snprintf(subject, sizeof subject, "dw.node.%s.http", c->node);
    natsStatus s = natsConnection_Subscribe(&c->requests, c->nc, subject, on_forwarded, srv);
    if (s == NATS_OK) s = natsConnection_Flush(c->nc);
    return s == NATS_OK ? DW_OK : dw_error_set(err, DW_ERR_IO, "cluster: subscribing to %s: %s", subject, srv_cluster_error_text(s));
}

void srv_fwd_stop(srv_server *srv) {
    srv_cluster *c = srv->cluster;
    pthread_mutex_lock(&c->mu);
    natsSubscription *sub = c->requests;
    c->requests = NULL;
    pthread_mutex_unlock(&c->mu);
    if (sub) natsSubscription_Unsubscribe(sub), natsSubscription_Destroy(sub);
    srv->route_elsewhere = NULL;
    pthread_mutex_lock(&c->mu); /* forwarded requests still running hold the connection */
    while (c->forwarded_in_flight) pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

/* ---- forwarding ---------------------------------------------------------------------------- */
static int node_registered(srv_cluster *c, const char *node) {
    kvEntry *e = NULL;
    int ok = kvStore_Get(&e, c->nodes, node) == NATS_OK && kvEntry_Operation(e) == kvOp_Put;
    kvEntry_Destroy(e);
    return ok;
}

/* The next message of the answer; NULL when the serving node went away (its lease is gone). */
static natsMsg *next_answer(srv_cluster *c, natsSubscription *sub, const char *node, double limit_s) {
    double t0 = dw__now_s();
    for (;;) {
        natsMsg *m = NULL;
        natsStatus s = natsSubscription_NextMsg(&m, sub, 1000);
        if (s == NATS_OK) return m;
        if (s != NATS_TIMEOUT || !node_registered(c, node) || dw__now_s() - t0 > limit_s) return NULL;
    }
}

typedef struct relay {
    srv_cluster *c;
    natsSubscription *sub;
    srv_stream *stream;
    char node[SRV_NAME_MAX];
    double limit_s;
} relay;

static void *relay_stream(void *arg) {
    relay *rl = arg;
    for (;;) {
        natsMsg *m = next_answer(rl->c, rl->sub, rl->node, rl->limit_s);
        if (!m) {
            static const char gone[] = "data: {\"type\":\"error\",\"error\":{\"type\":\"server_error\",\"code\":\"node_lost\","
                                       "\"message\":\"The node running this turn went away; it did not complete.\"}}\n\n";
            srv_stream_write(rl->stream, gone, sizeof gone - 1);
            break;
        }
        int end = header(m, "Dw-End") != NULL;
        if (natsMsg_GetDataLength(m)) srv_stream_write(rl->stream, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
        natsMsg_Destroy(m);
        if (end) break;
    }
    srv_stream_finish(rl->stream);
    srv_stream_release(rl->stream);
    natsSubscription_Unsubscribe(rl->sub);
    natsSubscription_Destroy(rl->sub);
    free(rl);
    return NULL;
}

/* Forwards once; *gone = 1 (and nothing answered) when no node listens on the subject. */
static int forward_once(srv_request *r, const char *node, int *gone) {
    srv_server *srv = r->srv;
    srv_cluster *c = srv->cluster;
    *gone = 0;
    natsInbox *inbox = NULL;
    natsSubscription *sub = NULL;
    natsMsg *m = NULL;
    char subject[SRV_NAME_MAX + 24];
    snprintf(subject, sizeof subject, "dw.node.%s.http", node);
    natsStatus s = natsInbox_Create(&inbox);
    if (s == NATS_OK) s = natsConnection_SubscribeSync(&sub, c->nc, (const char *)inbox);
    if (s == NATS_OK) s = natsMsg_Create(&m, subject, (const char *)inbox, r->body, (int)r->body_len);
    if (s == NATS_OK) {
        natsMsgHeader_Set(m, "Dw-Method", r->method);
        natsMsgHeader_Set(m, "Dw-Url", r->url);
        if (r->authorization) natsMsgHeader_Set(m, "Authorization", r->authorization);
        natsMsgHeader_Set(m, "Dw-From", c->node);
        s = natsConnection_PublishMsg(c->nc, m);
    }
    natsMsg_Destroy(m);
    natsInbox_Destroy(inbox);
    if (s != NATS_OK) {
        natsSubscription_Destroy(sub);
        return srv_respond_error(r, 502, "server_error", "forward_failed", NULL, "Forwarding to node %s: %s", node,
                                 srv_cluster_error_text(s));
    }
    double limit = srv->o.turn_timeout_seconds + 30;
    natsMsg *first = next_answer(c, sub, node, limit);
    if (!first || natsMsg_IsNoResponders(first)) {
        natsMsg_Destroy(first);
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
        *gone = 1;
        return MHD_YES;
    }
    unsigned status = (unsigned)strtoul(header(first, "Dw-Status") ?: "502", NULL, 10);
    const char *ctype = header(first, "Content-Type") ?: "application/octet-stream";
    snprintf(r->served_by_buf, sizeof r->served_by_buf, "%s", header(first, "Dw-Node") ?: node);
    r->served_by = r->served_by_buf;
    if (!header(first, "Dw-End") && !strcmp(ctype, "text/event-stream")) {
        relay *rl = calloc(1, sizeof *rl);
        DW_ASSERT(rl);
        rl->c = c, rl->sub = sub, rl->limit_s = limit, rl->stream = srv_stream_new();
        rl->stream->refs++; /* the relay's and the response's */
        snprintf(rl->node, sizeof rl->node, "%s", node);
        natsMsg_Destroy(first);
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        srv_stream *stream = rl->stream;
        if (pthread_create(&t, &at, relay_stream, rl) != 0) {
            srv_stream_finish(stream), srv_stream_release(stream);
            natsSubscription_Destroy(sub);
            free(rl);
        }
        pthread_attr_destroy(&at);
        return srv_respond_sse(r, stream, -1);
    }
    /* a body: in the first message, or in the ones that follow it */
    char *body = NULL;
    size_t len = 0, cap = 0;
    int ended = header(first, "Dw-End") != NULL;
    natsMsg *part = first;
    while (part) {
        size_t n = (size_t)natsMsg_GetDataLength(part);
        if (len + n > cap) cap = (len + n) * 2, body = realloc(body, cap + 1);
        if (n) memcpy(body + len, natsMsg_GetData(part), n), len += n;
        ended = ended || header(part, "Dw-End");
        natsMsg_Destroy(part);
        part = ended ? NULL : next_answer(c, sub, node, limit);
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    int ret = ended ? srv_respond_bytes(r, status, ctype, body ? body : "", len)
                    : srv_respond_error(r, 502, "server_error", "node_lost", NULL,
                                        "Node %s went away before it answered; the request did not complete.", node);
    free(body);
    return ret;
}

/* The actor a request is about: from the URL, or a Responses request's previous_response_id.
 * *creates: it makes a new actor (placement decides its node). */
static int request_actor(srv_request *r, char *id, size_t size, int *creates) {
    *creates = 0;
    id[0] = 0;
    const char *u = r->url;
    if (!strncmp(u, "/v1/actors/", 11)) {
        const char *rest = u + 11, *slash = strchr(rest, '/');
        size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
        if (n == 0 || n >= size) return 0;
        memcpy(id, rest, n), id[n] = 0;
        return 1;
    }
    if (strcmp(r->method, "POST")) return 0;
    if (!strcmp(u, "/v1/actors")) return *creates = 1, 0;
    if (strcmp(u, "/v1/responses")) return 0;
    json_t *b = r->body_len ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
    json_t *prev = json_object_get(b, "previous_response_id");
    uint64_t turn;
    int found = json_is_string(prev) && !srv_response_actor_id(json_string_value(prev), id, size, &turn);
    if (b && !found && (!prev || json_is_null(prev))) *creates = 1;
    json_decref(b);
    return found;
}

/* srv->route_elsewhere. */
static int route_elsewhere(srv_request *r) {
    srv_server *srv = r->srv;
    srv_cluster *c = srv->cluster;
    if (!c || r->fwd) return -1;
    char id[SRV_ID_MAX], node[SRV_NAME_MAX];
    int creates;
    if (!request_actor(r, id, sizeof id, &creates)) {
        if (!creates) return -1;
        srv_cluster_place(srv, node, sizeof node);
        if (!strcmp(node, c->node)) return -1;
        int gone, ret = forward_once(r, node, &gone);
        return gone ? -1 : ret; /* the chosen node just went away: here then */
    }
    if (srv_actor_held_here(srv, id)) return -1; /* the common case, with no look-up in the store */
    /* the holder's lease runs out within a lease when it is gone: then the actor wakes here */
    double deadline = dw__now_s() + 2 * c->lease_s + 2;
    while (srv_cluster_holder(srv, id, node, sizeof node)) {
        int gone, ret = forward_once(r, node, &gone);
        if (!gone) return ret;
        if (dw__now_s() > deadline)
            return srv_respond_error(r, 503, "server_error", "node_unavailable", NULL,
                                     "Actor %s is held by node %s, which does not answer; retry.", id, node);
        nats_Sleep(100);
    }
    return -1;
}
