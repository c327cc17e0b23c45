/* HTTP on libmicrohttpd: one thread per connection (MHD_USE_THREAD_PER_CONNECTION), so a
 * request handler may block while its turn runs on a worker, and a streaming response's reader
 * waits for the worker's next bytes; a connection silent for --request-timeout is closed by the
 * library (slow clients cost their own thread only). This file reads requests (body size limit,
 * the bearer key) and routes them to the handlers of api_*.c; respond.c writes the responses. */
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "server/server_impl.h"

/* ---- routing ------------------------------------------------------------------------------ */
int srv_route(srv_request *r) {
    const char *u = r->url, *m = r->method;
    int get = !strcmp(m, "GET"), post = !strcmp(m, "POST");
    if (get && (!strcmp(u, "/") || !strcmp(u, "/index.html"))) {
        size_t len;
        const unsigned char *page = srv_page(&len);
        return srv_respond_bytes(r, 200, "text/html; charset=utf-8", page, len);
    }
    if (get && !strcmp(u, "/healthz")) return srv_respond_bytes(r, 200, "text/plain", "ok\n", 3);
    if (!strcmp(m, "OPTIONS")) return srv_respond_preflight(r);
    /* everything else needs a key when the server has keys */
    if (r->srv->n_keys) {
        const char *auth = r->authorization;
        if (auth && !strncasecmp(auth, "Bearer ", 7)) r->key = srv_keys_find(r->srv->keys, r->srv->n_keys, auth + 7);
        if (r->key < 0)
            return srv_respond_error(r, 401, "invalid_request_error", "invalid_api_key", NULL,
                                     auth ? "Incorrect API key provided." : "You didn't provide an API key.");
        r->owner = r->srv->keys[r->key].owner;
    }
    if (r->body_too_large)
        return srv_respond_error(r, 413, "invalid_request_error", "request_too_large", NULL,
                                 "The request body is larger than %zu bytes.", r->srv->o.max_body_bytes);
    if (r->srv->route_elsewhere) { /* on a cluster: the node holding the actor answers */
        int routed = r->srv->route_elsewhere(r);
        if (routed >= 0) return routed;
    }
    static const struct {
        const char *path;
        int post; /* the method it takes: POST (1) or GET (0) */
        int (*fn)(srv_request *r);
    } fixed[] = {
        {"/v1/models", 0, srv_api_models},
        {"/v1/chat/completions", 1, srv_api_chat_completions},
        {"/v1/completions", 1, srv_api_completions},
        {"/v1/responses", 1, srv_api_responses},
        {"/v1/stats", 0, srv_api_stats},
        {"/v1/cluster", 0, srv_api_cluster},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        int model_id = i == 0 && !strncmp(u, "/v1/models/", 11); /* GET /v1/models/{id} */
        if (strcmp(u, fixed[i].path) && !model_id) continue;
        if (fixed[i].post ? !post : !get)
            return srv_respond_error(r, 405, "invalid_request_error", "method_not_allowed", NULL,
                                     "Method %s is not allowed for %s.", m, u);
        return fixed[i].fn(r);
    }
    if (!strcmp(u, "/v1/actors")) return srv_api_actors(r, "");
    if (!strncmp(u, "/v1/actors/", 11)) return srv_api_actors(r, u + 11);
    return srv_respond_error(r, 404, "invalid_request_error", "not_found", NULL, "Unknown request URL: %s %s", m, u);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    srv_server *srv = cls;
    srv_request *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        DW_ASSERT(r);
        r->srv = srv, r->con = con, r->method = method, r->url = url, r->key = -1, r->owner = "anonymous";
        r->authorization = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Authorization");
        *con_cls = r;
        /* a declared length over the limit is refused before a byte of the body is read */
        const char *cl = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > srv->o.max_body_bytes) {
            r->body_too_large = 1;
            return (enum MHD_Result)srv_respond_error(r, 413, "invalid_request_error", "request_too_large", NULL,
                                                      "The request body is larger than %zu bytes.",
                                                      srv->o.max_body_bytes);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->body_too_large && r->body_len + *upload_size > srv->o.max_body_bytes) {
            r->body_too_large = 1;
            free(r->body);
            r->body = NULL, r->body_len = r->body_cap = 0;
        }
        if (!r->body_too_large && !r->responded) {
            if (r->body_len + *upload_size + 1 > r->body_cap) {
                r->body_cap = (r->body_len + *upload_size + 1) * 2;
                r->body = realloc(r->body, r->body_cap);
                DW_ASSERT(r->body);
            }
            memcpy(r->body + r->body_len, upload_data, *upload_size);
            r->body_len += *upload_size;
            r->body[r->body_len] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->responded) return MHD_YES;
    return (enum MHD_Result)srv_route(r);
}

static void on_completed(void *cls, struct MHD_Connection *con, void **con_cls, enum MHD_RequestTerminationCode toe) {
    srv_request *r = *con_cls;
    if (!r) return;
    free(r->body);
    free(r);
    *con_cls = NULL;
}

struct MHD_Daemon *srv_http_start(srv_server *srv, const struct sockaddr *addr, dw_error *err) {
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, addr, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)srv->o.request_timeout_seconds, MHD_OPTION_CONNECTION_LIMIT, (unsigned)srv->o.max_connections,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_END);
    if (!d) {
        dw_error_set(err, DW_ERR_IO, "cannot listen on %s (taken, or not an address of this machine?)", srv->o.listen);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : 0;
    return d;
}

void srv_http_stop(struct MHD_Daemon *d) {
    if (d) MHD_stop_daemon(d);
}
