/* What lists show on a cluster, without a round trip per actor: local copies of the dw_actors
 * bucket (every actor's record) and of dw_claims (where each lives), kept current by KV watchers.
 * GET /v1/actors and GET /v1/cluster (the page polls both every second) read these; nothing that
 * decides — routing, claims, wakes — does: those read the buckets themselves. A copy lags the
 * store by the time a watcher takes to deliver an update (milliseconds). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "server/cluster_impl.h"

typedef struct view_watch {
    srv_cluster *c;
    kvWatcher *watcher;
    json_t *copy;    /* key -> parsed record (actors) or the claim's text (claims) */
    int records;
} view_watch;

static void *watch_main(void *arg) {
    view_watch *v = arg;
    for (;;) {
        kvEntry *e = NULL;
        natsStatus s = kvWatcher_Next(&e, v->watcher, 250);
        pthread_mutex_lock(&v->c->mu);
        int stopping = v->c->stopping;
        if (s == NATS_OK && e) {
            const char *key = kvEntry_Key(e);
            if (kvEntry_Operation(e) != kvOp_Put) json_object_del(v->copy, key);
            else {
                json_t *value = v->records ? json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL)
                                           : json_stringn(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e));
                if (value) json_object_set_new(v->copy, key, value);
            }
        }
        pthread_mutex_unlock(&v->c->mu);
        kvEntry_Destroy(e);
        if (stopping || s == NATS_ILLEGAL_STATE) break; /* kvWatcher_Stop */
        if (s != NATS_OK && s != NATS_TIMEOUT) nats_Sleep(100); /* the connection is back soon */
    }
    return NULL;
}

static dw_status watch(srv_cluster *c, kvStore *kv, int records, view_watch **out, dw_error *err) {
    view_watch *v = calloc(1, sizeof *v);
    DW_ASSERT(v);
    v->c = c, v->records = records, v->copy = json_object();
    natsStatus s = kvStore_WatchAll(&v->watcher, kv, NULL);
    pthread_t t;
    if (s != NATS_OK || pthread_create(&t, NULL, watch_main, v) != 0) {
        kvWatcher_Destroy(v->watcher);
        json_decref(v->copy);
        free(v);
        return dw_error_set(err, DW_ERR_IO, "cluster: watching a bucket: %s", nats_GetLastError(NULL) ?: natsStatus_GetText(s));
    }
    c->view_threads[c->n_views] = t;
    *out = v;
    return DW_OK;
}

dw_status srv_cluster_view_start(srv_server *srv, dw_error *err) {
    srv_cluster *c = srv->cluster;
    if (watch(c, c->actors, 1, &c->view[0], err) != DW_OK) return err->status;
    c->n_views = 1;
    if (watch(c, c->claims, 0, &c->view[1], err) != DW_OK) return err->status;
    c->n_views = 2;
    return DW_OK;
}

void srv_cluster_view_stop(srv_server *srv) {
    srv_cluster *c = srv->cluster;
    for (int i = 0; i < c->n_views; i++) kvWatcher_Stop(c->view[i]->watcher);
    for (int i = 0; i < c->n_views; i++) {
        pthread_join(c->view_threads[i], NULL);
        kvWatcher_Destroy(c->view[i]->watcher);
        json_decref(c->view[i]->copy);
        free(c->view[i]);
    }
    c->n_views = 0;
}

json_t *srv_cluster_view_records(srv_server *srv, const char *owner) {
    srv_cluster *c = srv->cluster;
    json_t *out = json_array(), *rec;
    const char *id;
    pthread_mutex_lock(&c->mu);
    if (c->n_views > 0)
        json_object_foreach(c->view[0]->copy, id, rec) {
            const char *o = json_string_value(json_object_get(rec, "owner"));
            if (o && !strcmp(o, owner)) json_array_append_new(out, json_deep_copy(rec));
        }
    pthread_mutex_unlock(&c->mu);
    return out;
}

void srv_cluster_view_claim(srv_server *srv, const char *id, char *value, size_t size) {
    srv_cluster *c = srv->cluster;
    value[0] = 0;
    pthread_mutex_lock(&c->mu);
    if (c->n_views > 1) snprintf(value, size, "%s", json_string_value(json_object_get(c->view[1]->copy, id)) ?: "");
    pthread_mutex_unlock(&c->mu);
}
