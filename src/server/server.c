/* The server object: options and their defaults, the store, the workers that run turns, the
 * reaper that hibernates actors, the HTTP daemon (http.c); and the orderly stop, which lets the
 * turns in flight finish and hibernates every awake actor. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/assert.h"
#include "core/clock.h"
#include "driftwood/file.h"
#include "server/server_impl.h"

struct MHD_Daemon *srv_http_start(srv_server *srv, const struct sockaddr *addr, dw_error *err);
void srv_http_stop(struct MHD_Daemon *d);

struct dw_server {
    srv_server s;
};

static void defaults(dw_server_options *o) {
    if (!o->listen) o->listen = "127.0.0.1:8080";
    if (!o->backend) o->backend = "cpu";
    if (!o->store_dir) o->store_dir = "driftwood-store";
    if (o->idle_seconds <= 0) o->idle_seconds = 300;
    if (!o->max_body_bytes) o->max_body_bytes = 1 << 20;
    if (o->max_streams_per_key <= 0) o->max_streams_per_key = 8;
    if (o->max_tokens <= 0) o->max_tokens = 4096;
    if (o->default_max_tokens <= 0) o->default_max_tokens = 256;
    if (o->default_max_tokens > o->max_tokens) o->default_max_tokens = o->max_tokens;
    if (!o->actor_memory_limit) o->actor_memory_limit = (size_t)256 << 20;
    if (o->turn_timeout_seconds <= 0) o->turn_timeout_seconds = 300;
    if (!o->memory_budget) o->memory_budget = (size_t)2 << 30;
    if (o->workers <= 0) o->workers = 64;
    if (o->request_timeout_seconds <= 0) o->request_timeout_seconds = 30;
    if (o->max_connections <= 0) o->max_connections = 512;
}

static dw_status parse_listen(const char *listen, struct sockaddr_in *addr, dw_error *err) {
    const char *colon = strrchr(listen, ':');
    char host[64];
    if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "--listen %s: expected ADDR:PORT", listen);
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    if (*end || end == colon + 1 || port < 0 || port > 65535 || inet_pton(AF_INET, host, &addr->sin_addr) != 1)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "--listen %s: expected an IPv4 address and a port", listen);
    return DW_OK;
}

static void free_server(srv_server *srv) {
    for (srv_actor *a = srv->actors, *next; a; a = next) {
        next = a->next;
        srv_actor_entry_free(a);
    }
    srv_keys_free(srv->keys, srv->n_keys);
    free(srv->modules);
    free(srv->workers);
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->queue_cv);
    pthread_cond_destroy(&srv->reaper_cv);
    pthread_cond_destroy(&srv->upkeep_done_cv);
    free(srv);
}

static void stop_threads(srv_server *srv) {
    pthread_mutex_lock(&srv->lock);
    srv->stopping = 1;
    pthread_cond_broadcast(&srv->queue_cv);
    pthread_cond_broadcast(&srv->reaper_cv);
    pthread_mutex_unlock(&srv->lock);
    for (int i = 0; i < srv->n_workers; i++) pthread_join(srv->workers[i], NULL);
    if (srv->reaper) pthread_join(srv->reaper, NULL);
    srv->n_workers = 0;
    srv->reaper = 0;
}

dw_status dw_server_start(dw_runtime *rt, const dw_server_options *options, dw_server **out, dw_error *err) {
    *out = NULL;
    dw_server_options o = *options;
    defaults(&o);
    if (o.n_modules < 1) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "serve: no module to serve");
    if (!dw_runtime_model_name(rt, 0)) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "serve: no model registered");
    if (strcmp(o.backend, "cpu") && strcmp(o.backend, "cuda"))
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "--backend %s: expected cpu or cuda", o.backend);
    struct sockaddr_in addr;
    if (parse_listen(o.listen, &addr, err) != DW_OK) return err->status;
    dw_server *server = calloc(1, sizeof *server);
    DW_ASSERT(server);
    srv_server *srv = (srv_server *)server;
    srv->rt = rt;
    srv->o = o;
    snprintf(srv->backend, sizeof srv->backend, "%s", o.backend);
    snprintf(srv->store, sizeof srv->store, "%s", o.store_dir);
    srv->o.store_dir = srv->store, srv->o.backend = srv->backend;
    srv->started_at = dw__now_s();
    srv->started_wall = srv_wall_now();
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->queue_cv, NULL);
    pthread_cond_init(&srv->upkeep_done_cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&srv->reaper_cv, &ca);
    pthread_condattr_destroy(&ca);
    srv->modules = calloc((size_t)o.n_modules, sizeof *srv->modules);
    srv->n_modules = o.n_modules;
    for (int i = 0; i < o.n_modules; i++) {
        snprintf(srv->modules[i].name, sizeof srv->modules[i].name, "%s", o.modules[i].name);
        srv->modules[i].module = o.modules[i].module;
        srv->modules[i].chat_protocol = o.modules[i].chat_protocol;
    }
    srv->o.modules = NULL;
    /* the default model is loaded now, so that a bad model fails the start, not the first request */
    struct dw_model *model;
    struct dw_tokenizer *tok;
    if ((o.keys_file && srv_keys_load(o.keys_file, &srv->keys, &srv->n_keys, err) != DW_OK) ||
        dw_runtime_model(rt, dw_runtime_model_name(rt, 0), srv->backend, &model, &tok, NULL, err) != DW_OK ||
        (o.cluster && (srv_cluster_join(srv, err) != DW_OK || srv_fwd_listen(srv, err) != DW_OK)) ||
        srv_actors_load(srv, err) != DW_OK) {
        if (srv->cluster) srv_fwd_stop(srv);
        srv_cluster_leave(srv);
        free_server(srv);
        return err->status;
    }
    srv->workers = calloc((size_t)o.workers, sizeof *srv->workers);
    for (int i = 0; i < o.workers; i++, srv->n_workers++)
        if (pthread_create(&srv->workers[i], NULL, srv_worker_main, srv) != 0) break;
    if (srv->n_workers == 0 || pthread_create(&srv->reaper, NULL, srv_reaper_main, srv) != 0) {
        if (srv->cluster) srv_fwd_stop(srv);
        stop_threads(srv);
        srv_cluster_leave(srv);
        free_server(srv);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "serve: cannot start threads");
    }
    if (!(srv->daemon = srv_http_start(srv, (const struct sockaddr *)&addr, err))) {
        if (srv->cluster) srv_fwd_stop(srv);
        stop_threads(srv);
        srv_cluster_leave(srv);
        free_server(srv);
        return err->status;
    }
    if (srv->cluster) srv_cluster_set_url(srv);
    *out = server;
    return DW_OK;
}

int dw_server_port(const dw_server *server) { return server->s.port; }

void dw_server_stop(dw_server *server) {
    if (!server) return;
    srv_server *srv = &server->s;
    srv_http_stop(srv->daemon); /* waits for the connections, hence for the turns they wait on */
    if (srv->cluster) srv_fwd_stop(srv); /* and for the requests other nodes forwarded */
    stop_threads(srv);          /* the workers finish the queue first */
    for (srv_actor *a = srv->actors; a; a = a->next) {
        dw_error err;
        if ((a->actor || a->claim_rev) && srv_actor_hibernate(srv, a, &err) != DW_OK)
            fprintf(stderr, "driftwood serve: hibernating actor %s: %s\n", a->id, err.message);
    }
    srv_cluster_leave(srv);
    free_server(srv);
}

dw_status dw_server_store_bench(const char *cluster, const char *dir, size_t bytes, dw_store_bench *out, dw_error *err) {
    memset(out, 0, sizeof *out);
    srv_server *srv = calloc(1, sizeof *srv);
    DW_ASSERT(srv);
    char node[SRV_NAME_MAX];
    snprintf(node, sizeof node, "bench-%d", (int)getpid());
    srv->o.cluster = cluster, srv->o.node = node, srv->o.lease_ms = 3000; /* no listen: no requests */
    snprintf(srv->store, sizeof srv->store, "%s", dir);
    pthread_mutex_init(&srv->lock, NULL);
    dw_status st = srv_cluster_join(srv, err);
    if (st == DW_OK) st = srv_cluster_store_bench(srv, bytes, &out->jetstream_put_mbs, &out->jetstream_get_mbs, err);
    srv_cluster_leave(srv);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
    if (st != DW_OK) return st;
    /* the alternative: a file in a folder every node would mount (written atomically, read back) */
    char path[1200];
    snprintf(path, sizeof path, "%s/bench-store-dir.tmp", dir);
    char *data = malloc(bytes), *back = NULL;
    DW_ASSERT(data);
    uint64_t x = 0x243f6a8885a308d3ull ^ (uint64_t)(dw__now_s() * 1e6);
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(data + i, &x, 8);
    }
    size_t len;
    double t0 = dw__now_s();
    st = dw_file_write_atomic(path, data, bytes, err);
    double t1 = dw__now_s();
    if (st == DW_OK) st = dw_file_read_all(path, bytes + 1, &back, &len, err);
    double t2 = dw__now_s();
    if (st == DW_OK && (len != bytes || memcmp(back, data, bytes)))
        st = dw_error_set(err, DW_ERR_IO, "%s: read back differs from what was written", path);
    unlink(path);
    free(data);
    free(back);
    out->dir_put_mbs = (double)bytes / 1e6 / (t1 - t0);
    out->dir_get_mbs = (double)bytes / 1e6 / (t2 - t1);
    return st;
}
