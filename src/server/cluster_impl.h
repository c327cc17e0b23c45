/* The cluster's private state, shared by cluster.c (membership, leases, claims), cluster_store.c
 * (records, logs, snapshots in JetStream) and cluster_forward.c (requests between nodes).
 *
 * Names in NATS (docs/CLUSTER.md has the whole design):
 *   KV dw_nodes    node name -> {"inc", "url", "free_kv_bytes", "awake"}; the bucket's TTL is the
 *                  lease: a node that stops refreshing its entry disappears from it
 *   KV dw_claims   actor id -> "NODE INCARNATION" of the node it lives on ("" once released); a
 *                  claim whose node (with that incarnation) is not in dw_nodes is stale
 *   KV dw_actors   actor id -> its record (owner, module, settings, counters)
 *   stream DW_LOG  subject dw.log.ID: the actor's log (created, claim, turn, snap records); every
 *                  append but the first names the subject's last sequence it expects (the fence)
 *   stream DW_SNAP subject dw.snap.ID.TURNS-TOKEN: one snapshot in chunks
 *   dw.node.NAME.http  requests forwarded to node NAME */
#ifndef DW_SERVER_CLUSTER_IMPL_H
#define DW_SERVER_CLUSTER_IMPL_H

#include <nats/nats.h>

#include "server/server_impl.h"

#define CLUSTER_LOG_STREAM "DW_LOG"
#define CLUSTER_SNAP_STREAM "DW_SNAP"

struct srv_cluster {
    char node[SRV_NAME_MAX];
    char url[96];            /* this node's HTTP address, for the page */
    natsConnection *nc;
    jsCtx *js;
    kvStore *actors, *claims, *nodes;
    int replicas;
    double lease_s;
    int max_payload;
    pthread_t lease_thread;
    natsSubscription *requests;
    pthread_mutex_t mu;      /* guards what follows */
    pthread_cond_t cv;
    char inc[20];            /* incarnation: new at each start and after a lost lease */
    uint32_t epoch;          /* counts lost leases: a claim taken in an older epoch is void */
    uint64_t node_rev;       /* our entry's revision in dw_nodes */
    double valid_until;      /* monotonic: the lease surely holds until then */
    int stopping, forwarded_in_flight;
    struct view_watch *view[2];   /* cluster_view.c: copies of dw_actors and dw_claims */
    pthread_t view_threads[2];
    int n_views;
};

/* cluster_view.c: the watchers that keep the copies. */
dw_status srv_cluster_view_start(srv_server *srv, dw_error *err);
void srv_cluster_view_stop(srv_server *srv);
/* The claim's value ("NODE INC" or "") of actor id, as the copy has it. */
void srv_cluster_view_claim(srv_server *srv, const char *id, char *value, size_t size);

/* "wrong last sequence" and the like: the store refused a conditional write. */
int srv_cluster_conflict(natsStatus s, jsErrCode code);
/* Text of the last NATS error of this thread. */
const char *srv_cluster_error_text(natsStatus s);
/* This node's claim value ("NODE INC") into out. */
void srv_cluster_claim_value(srv_cluster *c, char *out, size_t size);
/* 1 when `node` is registered with incarnation `inc` (the claim it made is live). */
int srv_cluster_node_live(srv_cluster *c, const char *node, const char *inc);

#endif
