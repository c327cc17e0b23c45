/* Writing responses and reading request bodies (server_impl.h), for the request handlers of
 * api_*.c and the router (http.c): JSON, OpenAI-shaped errors, server-sent events fed by a turn's
 * stream, the body as JSON with unknown fields refused, and the per-key stream slots. */
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "server/server_impl.h"

static int queue(srv_request *r, unsigned status, struct MHD_Response *resp) {
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    const char *node = r->served_by ? r->served_by : srv_cluster_node_name(r->srv);
    if (node) MHD_add_response_header(resp, "X-Driftwood-Node", node);
    int ret = MHD_queue_response(r->con, status, resp);
    MHD_destroy_response(resp);
    r->responded = 1;
    return ret;
}

int srv_respond_preflight(srv_request *r) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type");
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
    return queue(r, 204, resp);
}

int srv_respond_bytes(srv_request *r, unsigned status, const char *content_type, const void *bytes, size_t len) {
    if (r->answer) return r->answer(r, status, content_type, bytes, len);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)bytes, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(resp, "Content-Type", content_type);
    return queue(r, status, resp);
}

int srv_respond_json(srv_request *r, unsigned status, json_t *body) {
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (r->answer) {
        int ret = r->answer(r, status, "application/json", text, strlen(text));
        free(text);
        return ret;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", "application/json");
    return queue(r, status, resp);
}

int srv_respond_error(srv_request *r, unsigned status, const char *type, const char *code, const char *param,
                      const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:s, s:s, s:o, s:o}", "message", msg, "type", type, "param",
                          param ? json_string(param) : json_null(), "code", code ? json_string(code) : json_null());
    return srv_respond_json(r, status, json_pack("{s:o}", "error", e));
}

json_t *srv_request_json(srv_request *r) {
    json_error_t je;
    json_t *j = r->body_len ? json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (!j) {
        srv_respond_error(r, 400, "invalid_request_error", "invalid_json", NULL,
                          "We could not parse the JSON body of your request: %s",
                          r->body_len ? je.text : "the body is empty");
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        srv_respond_error(r, 400, "invalid_request_error", "invalid_json", NULL, "The request body must be a JSON object.");
        return NULL;
    }
    return j;
}

int srv_reject_unknown_fields(srv_request *r, json_t *body, const char *const *allowed) {
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v) {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++) ok = !strcmp(*a, k);
        if (!ok) {
            srv_respond_error(r, 400, "invalid_request_error", "unknown_parameter", k,
                              "Unrecognized request argument supplied: %s", k);
            return 1;
        }
    }
    return 0;
}

int srv_take_stream_slot(srv_request *r) {
    srv_server *srv = r->srv;
    if (r->key < 0) return 1;
    pthread_mutex_lock(&srv->lock);
    int ok = srv->keys[r->key].streams < srv->o.max_streams_per_key;
    if (ok) srv->keys[r->key].streams++, srv->streams_open++;
    pthread_mutex_unlock(&srv->lock);
    if (!ok)
        srv_respond_error(r, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
                          "This key already has %d requests generating; wait for one to finish.",
                          srv->o.max_streams_per_key);
    return ok;
}

void srv_give_stream_slot(srv_server *srv, int key) {
    if (key < 0) return;
    pthread_mutex_lock(&srv->lock);
    srv->keys[key].streams--, srv->streams_open--;
    pthread_mutex_unlock(&srv->lock);
}

int srv_respond_turn_error(srv_request *r, srv_turn *t) {
    const char *type = t->http_status == 400 ? "invalid_request_error" : "server_error";
    return srv_respond_error(r, (unsigned)t->http_status, type, t->error_code, NULL, "%s", t->error);
}

/* ---- server-sent events ------------------------------------------------------------------ */
typedef struct stream_ctx {
    srv_server *srv;
    srv_stream *stream;
    int key;
} stream_ctx;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_ctx *c = cls;
    ssize_t n = srv_stream_read(c->stream, buf, max, 1.0);
    if (n < 0) return MHD_CONTENT_READER_END_OF_STREAM;
    if (n == 0) { /* nothing for a second: a comment line keeps proxies open and shows a client gone */
        static const char keepalive[] = ": keep-alive\n\n";
        if (max < sizeof keepalive - 1) return 0;
        memcpy(buf, keepalive, sizeof keepalive - 1);
        return (ssize_t)(sizeof keepalive - 1);
    }
    return n;
}

/* Called when the response ends: finished, or the client went away mid-stream. Either way its
 * slot is free now; the turn itself runs to its end (and is logged) so the actor stays whole. */
static void stream_free(void *cls) {
    stream_ctx *c = cls;
    srv_stream_close(c->stream);
    srv_stream_release(c->stream);
    srv_give_stream_slot(c->srv, c->key);
    free(c);
}

int srv_respond_stream(srv_request *r, srv_turn *t) {
    srv_stream *stream = t->stream = srv_stream_new();
    t->stream->refs++; /* the turn's and the response's */
    srv_turn_submit(t);
    return srv_respond_sse(r, stream, r->key);
}

int srv_respond_sse(srv_request *r, srv_stream *stream, int key) {
    if (r->answer_sse) return r->answer_sse(r, stream, key);
    stream_ctx *c = calloc(1, sizeof *c);
    DW_ASSERT(c);
    c->srv = r->srv;
    c->key = key;
    c->stream = stream;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, c, stream_free);
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    return queue(r, 200, resp);
}
