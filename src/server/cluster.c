/* The cluster's membership and claims (cluster_impl.h has the names in NATS): joining (the
 * connection, the buckets and streams, this node's entry), the lease that keeps the entry alive,
 * single activation through create-if-absent claims on dw_claims, placement of new actors, the
 * cluster's view for GET /v1/cluster, and the claim events every node logs.
 *
 * The lease. This node's entry in dw_nodes is refreshed every lease/4 with a revision-checked
 * update; the bucket's TTL (the lease) removes it when refreshes stop. A claim is live while its
 * node's entry carries the claim's incarnation. The node trusts its lease only until 0.8 lease
 * after it *sent* its last successful refresh: the store removes the entry no earlier than one
 * lease after it *stored* it (later), so this node stops committing before any other node can
 * take its actors over. Past that point it drops its awake actors, forgets its claims and
 * registers again under a new incarnation. Correctness does not rest on clocks alone: every
 * write of an actor's state is fenced in its log (cluster_store.c). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/assert.h"
#include "core/clock.h"
#include "server/cluster_impl.h"

#define NODE_BUCKET "dw_nodes"
#define CLAIM_BUCKET "dw_claims"
#define ACTOR_BUCKET "dw_actors"

const char *srv_cluster_node_name(const srv_server *srv) { return srv->cluster ? srv->cluster->node : NULL; }

const char *srv_cluster_error_text(natsStatus s) {
    const char *t = nats_GetLastError(NULL);
    return t && *t ? t : natsStatus_GetText(s);
}

int srv_cluster_conflict(natsStatus s, jsErrCode code) {
    if (code == JSStreamWrongLastSequenceErr) return 1;
    const char *t = s != NATS_OK ? nats_GetLastError(NULL) : NULL;
    return t && strstr(t, "wrong last sequence");
}

static void event_at(srv_server *srv, double t, const char *event, const char *actor, uint64_t rev) {
    fprintf(stderr, "cluster-event {\"t\":%.6f,\"node\":\"%s\",\"event\":\"%s\",\"actor\":\"%s\",\"rev\":%" PRIu64 "}\n",
            t, srv->cluster->node, event, actor, rev);
}

void srv_cluster_event(srv_server *srv, const char *event, const char *actor, uint64_t rev) {
    event_at(srv, srv_wall_now(), event, actor, rev);
}

void srv_cluster_claim_value(srv_cluster *c, char *out, size_t size) {
    pthread_mutex_lock(&c->mu);
    snprintf(out, size, "%s %s", c->node, c->inc);
    pthread_mutex_unlock(&c->mu);
}

int srv_cluster_claim_current(srv_server *srv, const srv_actor *a) {
    srv_cluster *c = srv->cluster;
    pthread_mutex_lock(&c->mu);
    int ok = a->claim_rev && a->claim_epoch == c->epoch && dw__now_s() < c->valid_until;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

int srv_cluster_lease_ok(srv_server *srv) {
    srv_cluster *c = srv->cluster;
    pthread_mutex_lock(&c->mu);
    int ok = dw__now_s() < c->valid_until;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static void new_incarnation(srv_cluster *c) {
    char id[SRV_ID_MAX];
    srv_new_id("", id, sizeof id);
    snprintf(c->inc, sizeof c->inc, "%.16s", id);
}

/* ---- this node's entry -------------------------------------------------------------------- */
static char *node_entry(srv_server *srv) {
    srv_cluster *c = srv->cluster;
    pthread_mutex_lock(&srv->lock);
    size_t resident = 0;
    int awake = 0;
    for (srv_actor *a = srv->actors; a; a = a->next) {
        resident += a->actor ? a->memory_bytes + a->kv_bytes : a->claim_rev ? a->placed_kv_bytes : 0;
        awake += a->actor != NULL;
    }
    size_t budget = srv->o.memory_budget;
    pthread_mutex_unlock(&srv->lock);
    pthread_mutex_lock(&c->mu);
    json_t *j = json_pack("{s:s, s:s, s:I, s:i, s:f}", "inc", c->inc, "url", c->url, "free_kv_bytes",
                          (json_int_t)(budget > resident ? budget - resident : 0), "awake", awake, "t", srv_wall_now());
    pthread_mutex_unlock(&c->mu);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return text;
}

/* Registers (put) or refreshes (update on our revision) this node's entry. */
static int refresh(srv_server *srv, int fresh) {
    srv_cluster *c = srv->cluster;
    double t_send = dw__now_s();
    char *text = node_entry(srv);
    uint64_t rev = 0;
    natsStatus s = fresh ? kvStore_PutString(&rev, c->nodes, c->node, text)
                         : kvStore_UpdateString(&rev, c->nodes, c->node, text, c->node_rev);
    if (s != NATS_OK && !fresh) {
        /* an update whose answer was lost moved the revision: adopt it if the entry is still ours */
        kvEntry *e = NULL;
        char inc[sizeof c->inc];
        pthread_mutex_lock(&c->mu);
        snprintf(inc, sizeof inc, "%s", c->inc);
        pthread_mutex_unlock(&c->mu);
        if (kvStore_Get(&e, c->nodes, c->node) == NATS_OK && kvEntry_Operation(e) == kvOp_Put) {
            json_t *j = json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL);
            const char *ji = json_string_value(json_object_get(j, "inc"));
            if (ji && !strcmp(ji, inc)) s = kvStore_UpdateString(&rev, c->nodes, c->node, text, kvEntry_Revision(e));
            json_decref(j);
        }
        kvEntry_Destroy(e);
    }
    free(text);
    if (s != NATS_OK) return 0;
    pthread_mutex_lock(&c->mu);
    c->node_rev = rev;
    c->valid_until = t_send + 0.8 * c->lease_s;
    pthread_mutex_unlock(&c->mu);
    return 1;
}

/* The lease ran out: nothing this node holds may be written any more. Every claim it took is
 * void (the epoch moves on) and the node registers again under a new incarnation. Awake actors
 * stay in memory: the next write of each first claims it again and fences its log on top of this
 * node's own last record (srv_cluster_keep), which succeeds only if no other node took it. */
static void lease_lost(srv_server *srv) {
    srv_cluster *c = srv->cluster;
    /* the event carries the moment the lease ran out (when writes stopped), not when this thread,
     * perhaps starved of CPU, noticed */
    pthread_mutex_lock(&c->mu);
    double ended = srv_wall_now() - (dw__now_s() - c->valid_until);
    pthread_mutex_unlock(&c->mu);
    event_at(srv, ended, "lease-lost", "", c->node_rev);
    pthread_mutex_lock(&c->mu);
    new_incarnation(c);
    c->epoch++;
    pthread_mutex_unlock(&c->mu);
}

static void *lease_main(void *arg) {
    srv_server *srv = arg;
    srv_cluster *c = srv->cluster;
    int lost = 0;
    pthread_mutex_lock(&c->mu);
    while (!c->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        long ns = (long)(c->lease_s / 4 * 1e9);
        until.tv_sec += ns / 1000000000L, until.tv_nsec += ns % 1000000000L;
        if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&c->cv, &c->mu, &until);
        if (c->stopping) break;
        int expired = dw__now_s() >= c->valid_until;
        pthread_mutex_unlock(&c->mu);
        if (expired && !lost) lease_lost(srv), lost = 1;
        if (refresh(srv, lost)) lost = 0;
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ---- joining ----------------------------------------------------------------------------- */
static dw_status nats_fail(dw_error *err, natsStatus s, const char *what) {
    return dw_error_set(err, DW_ERR_IO, "cluster: %s: %s", what, srv_cluster_error_text(s));
}

/* Buckets and streams are made by whichever node comes first; nodes starting together race, and
 * a stream just made has no leader for a moment: each step is retried for up to STARTUP_S. */
#define STARTUP_S 20.0

static dw_status make_bucket(srv_cluster *c, kvStore **kv, const char *name, int64_t ttl_ns, dw_error *err) {
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = name;
    cfg.History = 1;
    cfg.TTL = ttl_ns;
    cfg.Replicas = c->replicas;
    for (double deadline = dw__now_s() + STARTUP_S;; nats_Sleep(250)) {
        natsStatus s = js_CreateKeyValue(kv, c->js, &cfg);
        if (s == NATS_OK) return DW_OK;
        dw_error_set(err, DW_ERR_IO, "cluster: making bucket %s: %s", name, srv_cluster_error_text(s));
        if (js_KeyValue(kv, c->js, name) == NATS_OK) return DW_OK; /* made by another node meanwhile */
        if (dw__now_s() > deadline) return err->status;
    }
}

static dw_status make_stream(srv_cluster *c, const char *name, const char *subject, dw_error *err) {
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    const char *subjects[1] = {subject};
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Replicas = c->replicas;
    cfg.AllowDirect = true;
    cfg.Duplicates = (int64_t)120 * 1000000000; /* retries of an append are recognised this long */
    for (double deadline = dw__now_s() + STARTUP_S;; nats_Sleep(250)) {
        jsStreamInfo *si = NULL;
        jsErrCode code = 0;
        natsStatus s = js_AddStream(&si, c->js, &cfg, NULL, &code);
        jsStreamInfo_Destroy(si);
        if (s == NATS_OK || code == JSStreamNameExistErr) return DW_OK; /* or made by another node */
        if (dw__now_s() > deadline) return nats_fail(err, s, name);
    }
}

/* The --cluster list as it may be shown: a password in a URL (nats://user:password@host) is not. */
static void redacted(const char *urls, char *out, size_t size) {
    size_t n = 0;
    for (const char *p = urls; *p && n + 1 < size;) {
        const char *at = strchr(p, '@'), *comma = strchr(p, ','), *scheme = strstr(p, "://");
        const char *colon = scheme ? strchr(scheme + 3, ':') : NULL;
        if (at && (!comma || at < comma) && colon && colon < at) { /* user:password@ */
            n += (size_t)snprintf(out + n, size - n, "%.*s:***", (int)(colon - p), p);
            p = at;
            continue;
        }
        out[n++] = *p++;
    }
    out[n < size ? n : size - 1] = 0;
}

dw_status srv_cluster_join(srv_server *srv, dw_error *err) {
    const dw_server_options *o = &srv->o;
    if (!o->node || !*o->node || strlen(o->node) >= SRV_NAME_MAX || strpbrk(o->node, " .*>\t\n"))
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "--node: a name of 1-63 characters without spaces or . * > is required with --cluster");
    srv_cluster *c = calloc(1, sizeof *c);
    DW_ASSERT(c);
    snprintf(c->node, sizeof c->node, "%s", o->node);
    c->lease_s = (o->lease_ms > 0 ? o->lease_ms : 3000) / 1000.0;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    new_incarnation(c);
    srv->cluster = c;
    /* the servers: "nats://h:p,nats://h:p,..." */
    char *urls = strdup(o->cluster);
    const char *list[16];
    int n = 0;
    for (char *save, *u = strtok_r(urls, ",", &save); u && n < 16; u = strtok_r(NULL, ",", &save)) list[n++] = u;
    natsOptions *no = NULL;
    natsStatus s = natsOptions_Create(&no);
    if (s == NATS_OK) s = natsOptions_SetServers(no, list, n);
    if (s == NATS_OK) s = natsOptions_SetName(no, c->node);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(no, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(no, 100);
    if (s == NATS_OK) s = natsOptions_SetTimeout(no, 2000);
    if (s == NATS_OK) s = natsConnection_Connect(&c->nc, no);
    natsOptions_Destroy(no);
    free(urls);
    if (s != NATS_OK) {
        char shown[512];
        redacted(o->cluster, shown, sizeof shown);
        dw_status st = nats_fail(err, s, shown);
        srv_cluster_leave(srv);
        return st;
    }
    c->replicas = n >= 3 ? 3 : 1;
    c->max_payload = (int)natsConnection_GetMaxPayload(c->nc);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    dw_status st = DW_OK;
    if ((s = natsConnection_JetStream(&c->js, c->nc, &jo)) != NATS_OK) st = nats_fail(err, s, "JetStream");
    if (st == DW_OK) st = make_bucket(c, &c->nodes, NODE_BUCKET, (int64_t)(c->lease_s * 1e9), err); /* TTL in ns */
    if (st == DW_OK) st = make_bucket(c, &c->claims, CLAIM_BUCKET, 0, err);
    if (st == DW_OK) st = make_bucket(c, &c->actors, ACTOR_BUCKET, 0, err);
    if (st == DW_OK) st = make_stream(c, CLUSTER_LOG_STREAM, "dw.log.>", err);
    if (st == DW_OK) st = make_stream(c, CLUSTER_SNAP_STREAM, "dw.snap.>", err);
    if (st == DW_OK) st = srv_cluster_view_start(srv, err);
    for (double deadline = dw__now_s() + STARTUP_S; st == DW_OK && !refresh(srv, 1); nats_Sleep(250))
        if (dw__now_s() > deadline)
            st = dw_error_set(err, DW_ERR_IO, "cluster: registering node %s: %s", c->node, srv_cluster_error_text(NATS_ERR));
    if (st == DW_OK && pthread_create(&c->lease_thread, NULL, lease_main, srv) != 0)
        st = dw_error_set(err, DW_ERR_NO_MEMORY, "cluster: cannot start the lease thread");
    if (st != DW_OK) srv_cluster_leave(srv);
    return st;
}

void srv_cluster_set_url(srv_server *srv) {
    srv_cluster *c = srv->cluster;
    const char *colon = strrchr(srv->o.listen, ':');
    pthread_mutex_lock(&c->mu);
    snprintf(c->url, sizeof c->url, "http://%.*s:%d", colon ? (int)(colon - srv->o.listen) : 0, srv->o.listen, srv->port);
    pthread_mutex_unlock(&c->mu);
    refresh(srv, 0);
}

void srv_cluster_leave(srv_server *srv) {
    srv_cluster *c = srv->cluster;
    if (!c) return; /* (the server stopped the forwarded requests first: srv_fwd_stop) */
    pthread_mutex_lock(&c->mu);
    c->stopping = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (c->lease_thread) pthread_join(c->lease_thread, NULL);
    srv_cluster_view_stop(srv);
    if (c->nodes && c->node_rev && natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED)
        kvStore_Delete(c->nodes, c->node); /* others see it gone now, not a lease later */
    kvStore_Destroy(c->actors);
    kvStore_Destroy(c->claims);
    kvStore_Destroy(c->nodes);
    jsCtx_Destroy(c->js);
    if (c->nc) natsConnection_Close(c->nc), natsConnection_Destroy(c->nc);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
    srv->cluster = NULL;
}

/* ---- claims ------------------------------------------------------------------------------- */
int srv_cluster_node_live(srv_cluster *c, const char *node, const char *inc) {
    kvEntry *e = NULL;
    if (kvStore_Get(&e, c->nodes, node) != NATS_OK) return 0;
    json_t *j = kvEntry_Operation(e) == kvOp_Put ? json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL) : NULL;
    const char *ji = j ? json_string_value(json_object_get(j, "inc")) : NULL;
    int live = ji && !strcmp(ji, inc);
    json_decref(j);
    kvEntry_Destroy(e);
    return live;
}

/* The claim on `id`: its entry (NULL: none) and holder's node and incarnation ("" when free). */
static kvEntry *read_claim(srv_cluster *c, const char *id, char *node, size_t node_size, char *inc, size_t inc_size) {
    kvEntry *e = NULL;
    node[0] = inc[0] = 0;
    if (kvStore_Get(&e, c->claims, id) != NATS_OK) return NULL;
    if (kvEntry_Operation(e) == kvOp_Put && kvEntry_ValueLen(e) > 0) {
        char v[SRV_NAME_MAX + 32];
        snprintf(v, sizeof v, "%.*s", kvEntry_ValueLen(e), (const char *)kvEntry_Value(e));
        char *sp = strchr(v, ' ');
        if (sp) {
            *sp = 0;
            snprintf(node, node_size, "%s", v);
            snprintf(inc, inc_size, "%s", sp + 1);
        }
    }
    return e;
}

int srv_cluster_holder(srv_server *srv, const char *id, char *node, size_t size) {
    srv_cluster *c = srv->cluster;
    char inc[32], mine[SRV_NAME_MAX + 32], held[SRV_NAME_MAX + 32];
    kvEntry *e = read_claim(c, id, node, size, inc, sizeof inc);
    kvEntry_Destroy(e);
    if (!node[0]) return 0;
    srv_cluster_claim_value(c, mine, sizeof mine);
    snprintf(held, sizeof held, "%s %s", node, inc);
    if (!strcmp(held, mine)) return 0;
    return srv_cluster_node_live(c, node, inc);
}

dw_status srv_cluster_acquire(srv_server *srv, srv_actor *a, char *holder, size_t size, dw_error *err) {
    srv_cluster *c = srv->cluster;
    if (!srv_cluster_lease_ok(srv)) return dw_error_set(err, DW_ERR_STATE, "cluster: this node's lease has lapsed");
    char mine[SRV_NAME_MAX + 32];
    srv_cluster_claim_value(c, mine, sizeof mine);
    for (int attempt = 0; attempt < 40; attempt++) {
        char node[SRV_NAME_MAX], inc[32], held[SRV_NAME_MAX + 32];
        kvEntry *e = read_claim(c, a->id, node, sizeof node, inc, sizeof inc);
        uint64_t last = e ? kvEntry_Revision(e) : 0;
        kvEntry_Destroy(e);
        snprintf(held, sizeof held, "%s %s", node, inc);
        if (node[0] && !strcmp(held, mine)) {
            a->claim_rev = last;
            a->claim_epoch = c->epoch;
            return DW_OK;
        }
        if (node[0] && srv_cluster_node_live(c, node, inc)) {
            snprintf(holder, size, "%s", node);
            return dw_error_set(err, DW_ERR_STATE, "actor %s lives on node %s", a->id, node);
        }
        uint64_t rev = 0;
        natsStatus s = e ? kvStore_UpdateString(&rev, c->claims, a->id, mine, last)
                         : kvStore_CreateString(&rev, c->claims, a->id, mine);
        if (s == NATS_OK) {
            a->claim_rev = rev;
            a->claim_epoch = c->epoch;
            srv_cluster_event(srv, "claim", a->id, rev);
            return DW_OK;
        }
        nats_Sleep(attempt < 5 ? 5 : 100); /* another node moved first, or the store is electing */
    }
    return dw_error_set(err, DW_ERR_IO, "cluster: claiming actor %s: %s", a->id, srv_cluster_error_text(NATS_ERR));
}

void srv_cluster_release(srv_server *srv, srv_actor *a) {
    if (!a->claim_rev) return;
    uint64_t rev;
    kvStore_UpdateString(&rev, srv->cluster->claims, a->id, "", a->claim_rev); /* fails: taken over already */
    srv_cluster_event(srv, "release", a->id, a->claim_rev);
    a->claim_rev = 0;
}

/* ---- placement and the view ----------------------------------------------------------------- */
typedef struct node_view {
    char name[SRV_NAME_MAX];
    json_t *entry;
} node_view;

static int list_nodes(srv_cluster *c, node_view **out) {
    kvKeysList keys = {0};
    *out = NULL;
    if (kvStore_Keys(&keys, c->nodes, NULL) != NATS_OK) return 0;
    node_view *v = calloc((size_t)keys.Count + 1, sizeof *v);
    int n = 0;
    for (int i = 0; i < keys.Count; i++) {
        kvEntry *e = NULL;
        if (kvStore_Get(&e, c->nodes, keys.Keys[i]) != NATS_OK) continue;
        json_t *j = json_loadb(kvEntry_Value(e), (size_t)kvEntry_ValueLen(e), 0, NULL);
        kvEntry_Destroy(e);
        if (!json_is_object(j)) {
            json_decref(j);
            continue;
        }
        snprintf(v[n].name, sizeof v[n].name, "%s", keys.Keys[i]);
        v[n++].entry = j;
    }
    kvKeysList_Destroy(&keys);
    *out = v;
    return n;
}

static void free_nodes(node_view *v, int n) {
    for (int i = 0; i < n; i++) json_decref(v[i].entry);
    free(v);
}

void srv_cluster_placed(srv_server *srv) {
    srv_cluster *c = srv->cluster;
    pthread_mutex_lock(&c->mu);
    pthread_cond_signal(&c->cv); /* the lease thread refreshes the entry now */
    pthread_mutex_unlock(&c->mu);
}

void srv_cluster_place(srv_server *srv, char *node, size_t size) {
    srv_cluster *c = srv->cluster;
    node_view *v;
    int n = list_nodes(c, &v);
    snprintf(node, size, "%s", c->node);
    json_int_t best = -1;
    for (int i = 0; i < n; i++) { /* ties: this node, then the first name */
        json_int_t f = json_integer_value(json_object_get(v[i].entry, "free_kv_bytes"));
        if (f > best || (f == best && !strcmp(v[i].name, c->node))) best = f, snprintf(node, size, "%s", v[i].name);
    }
    free_nodes(v, n);
}

/* Whether the claim value "NODE INC" names a node in v with that incarnation; its name into node. */
static int live_in(const node_view *v, int n, const char *claim, char *node, size_t size) {
    char held[SRV_NAME_MAX + 32];
    snprintf(held, sizeof held, "%s", claim);
    char *sp = strchr(held, ' ');
    if (!sp) return 0;
    *sp = 0;
    for (int k = 0; k < n; k++)
        if (!strcmp(v[k].name, held) && !strcmp(json_string_value(json_object_get(v[k].entry, "inc")) ?: "", sp + 1)) {
            snprintf(node, size, "%.*s", (int)size - 1, held);
            return 1;
        }
    return 0;
}

json_t *srv_cluster_json(srv_server *srv, const char *owner) {
    srv_cluster *c = srv->cluster;
    node_view *v;
    int n = list_nodes(c, &v);
    json_t *nodes = json_array(), *actors = json_array();
    for (int i = 0; i < n; i++) {
        json_t *e = json_pack("{s:s, s:O, s:O, s:O, s:b}", "name", v[i].name, "url", json_object_get(v[i].entry, "url"),
                              "free_kv_bytes", json_object_get(v[i].entry, "free_kv_bytes"), "awake",
                              json_object_get(v[i].entry, "awake"), "live", 1);
        json_array_append_new(nodes, e);
    }
    json_t *records = srv_cluster_view_records(srv, owner), *rec;
    size_t i;
    json_array_foreach(records, i, rec) {
        const char *id = json_string_value(json_object_get(rec, "id"));
        char claim[SRV_NAME_MAX + 32], node[SRV_NAME_MAX];
        if (!id) continue;
        srv_cluster_view_claim(srv, id, claim, sizeof claim);
        int live = live_in(v, n, claim, node, sizeof node);
        json_array_append_new(actors, json_pack("{s:s, s:o}", "id", id, "node", live ? json_string(node) : json_null()));
    }
    json_decref(records);
    free_nodes(v, n);
    return json_pack("{s:s, s:o, s:o}", "node", c->node, "nodes", nodes, "actors", actors);
}
