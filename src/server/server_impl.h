/* The server's shared structures (private to src/server/): the server object, the directory of
 * actors, one turn (a message to an actor, run on a worker thread), and the byte stream between a
 * worker and the connection that streams its output. Who locks what:
 *   - srv->lock guards the directory (the list, each entry's busy/deleted/actor pointer and
 *     counters) and the per-key stream counts;
 *   - an actor entry with busy = 1 belongs to the one thread that set it (a turn, a hibernation,
 *     a deletion): only that thread touches its dw_actor, its log and its store folder. */
#ifndef DW_SERVER_IMPL_H
#define DW_SERVER_IMPL_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "driftwood/actor.h"
#include "driftwood/runtime.h"
#include "driftwood/server.h"

#define SRV_ID_MAX 40
#define SRV_NAME_MAX 64

typedef struct srv_server srv_server;
typedef struct srv_turn srv_turn;
typedef struct srv_request srv_request;

/* ---- the stream: bytes a worker produces and a connection sends (stream.c) ---------------- */
typedef struct srv_stream {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;
    size_t off, len, cap; /* unsent bytes are buf[off, len) */
    int done;             /* the producer wrote its last byte */
    int closed;           /* the consumer is gone (finished, or the client disconnected) */
    int refs;
} srv_stream;

srv_stream *srv_stream_new(void);
void srv_stream_write(srv_stream *s, const char *bytes, size_t len);
void srv_stream_finish(srv_stream *s);
/* Waits up to wait_s for bytes; returns how many were copied (0: none came in time), or -1
 * when the producer finished and everything was read. */
ssize_t srv_stream_read(srv_stream *s, char *out, size_t max, double wait_s);
void srv_stream_close(srv_stream *s); /* the consumer is gone; later writes are dropped */
void srv_stream_release(srv_stream *s);

/* ---- keys (keys.c) ---------------------------------------------------------------------- */
typedef struct srv_key {
    char *token;
    char owner[SRV_NAME_MAX]; /* what the store records: 16 hex digits of the token's SHA-256 */
    char name[SRV_NAME_MAX];  /* for logs and the page */
    int streams;              /* generation requests in flight (under srv->lock) */
} srv_key;

dw_status srv_keys_load(const char *path, srv_key **keys, int *n, dw_error *err);
/* The key whose token is `token` (an "Authorization: Bearer" value), or -1. */
int srv_keys_find(const srv_key *keys, int n, const char *token);
void srv_keys_free(srv_key *keys, int n);

/* ---- the turn log (turn_log.c) -------------------------------------------------------------
 * Per actor, an append-only file of the turns completed since its newest snapshot: each record
 * holds the turn's number, the message sent and the reply's text, with a checksum. */
typedef struct srv_log_record {
    uint64_t seq;
    const char *message;
    size_t message_len;
    const char *reply;
    size_t reply_len;
} srv_log_record;

/* Appends one record with one write() and, unless no_fsync, fdatasync()s it. */
dw_status srv_log_append(int fd, const srv_log_record *r, int no_fsync, dw_error *err);
/* Calls fn for each whole record in order; a torn or corrupt tail (a crash mid-append) ends
 * the scan and, with truncate_tail, is cut off. *last_seq gets the last whole record's seq (0). */
dw_status srv_log_scan(const char *path, int truncate_tail, int (*fn)(void *user, const srv_log_record *r), void *user,
                       uint64_t *last_seq, dw_error *err);

/* ---- actors (actors.c) -------------------------------------------------------------------- */
typedef struct srv_module {
    char name[SRV_NAME_MAX];
    dw_module *module;
    int chat_protocol;
} srv_module;

typedef struct srv_actor_settings {
    char model[SRV_NAME_MAX];
    char *system;          /* may be NULL */
    double temperature, top_p;
    long long seed;
    int max_tokens;
} srv_actor_settings;

typedef struct srv_actor {
    char id[SRV_ID_MAX];
    char owner[SRV_NAME_MAX];
    const srv_module *module;
    srv_actor_settings settings;
    char kind[16];          /* "actor" (native) or "response" (a Responses chain) */
    dw_actor *actor;        /* NULL while hibernated */
    int log_fd;             /* open while awake, -1 otherwise */
    int busy, deleted, refs; /* busy: 0 or SRV_BUSY_* */
    uint64_t turns;         /* completed (durable) turns */
    uint64_t snap_turns;    /* turns inside the newest snapshot (0: none) */
    int snap_context_tokens; /* its context then (a cluster checkpoints actors that grew much since) */
    int context_tokens;     /* tokens in the actor's session after its last turn */
    uint64_t tokens_generated;
    size_t memory_bytes, kv_bytes; /* while awake */
    size_t memory_bytes_last;      /* its linear memory when it was last awake (what a wake will need) */
    double created_at, last_active_at; /* wall clock, seconds */
    double last_active;     /* monotonic, for the idle timer and LRU */
    srv_turn *sink;         /* the turn whose output the actor is producing */
    /* the last completed turn, for a client's retry of it (a message sent again with its "turn") */
    char *last_message, *last_reply;
    size_t last_message_len, last_reply_len;
    /* cluster mode (cluster*.c): this node's claim on the actor (its revision in the claims
     * bucket; 0: none) and the sequence of the actor's last record in the log stream, which the
     * next append must find there (the fence: a node that lost the actor cannot append) */
    uint64_t claim_rev, log_last_seq;
    uint32_t claim_epoch;    /* the node's lease epoch the claim was taken in */
    size_t placed_kv_bytes;  /* placed here (claimed, not yet awake): the KV it will take */
    uint64_t last_turn_seq;  /* the log sequence of its last turn record (kept when purging) */
    char snap_object[SRV_ID_MAX + 48]; /* the subject of its newest snapshot's chunks ("": none) */
    struct srv_actor *next;
} srv_actor;

/* Makes a new actor entry (stored, owned by owner) and writes its record to the store. */
dw_status srv_actor_new(srv_server *srv, const char *owner, const srv_module *module, const srv_actor_settings *st,
                        const char *kind, srv_actor **out, dw_error *err);
/* Finds an actor by id for owner (NULL when absent, deleted or someone else's); a reference is
 * taken: srv_actor_put it. */
srv_actor *srv_actor_get(srv_server *srv, const char *owner, const char *id);
void srv_actor_put(srv_server *srv, srv_actor *a);
/* (cluster) 1 when the actor is awake or in use on this node under a current claim: its requests
 * run here without asking the store where it lives. */
int srv_actor_held_here(srv_server *srv, const char *id);
/* Claims the actor for one operation: a turn (SRV_BUSY_TURN) or upkeep (SRV_BUSY_UPKEEP: hibernating,
 * snapshotting, deleting). Upkeep is brief and invisible to clients, so a claim waits for it to
 * end; a claim that finds a turn running returns 0 (one message at a time per actor). */
enum { SRV_BUSY_TURN = 1, SRV_BUSY_UPKEEP = 2 };
int srv_actor_claim(srv_server *srv, srv_actor *a, int kind);
void srv_actor_release(srv_server *srv, srv_actor *a);
/* Files of the actor's store folder: leaf in it, and its snapshot taken after `turns` turns. */
void srv_actor_file(srv_server *srv, const srv_actor *a, const char *leaf, char *out, size_t size);
void srv_actor_snapshot_path(srv_server *srv, const srv_actor *a, uint64_t turns, char *out, size_t size);
/* (claimed) Snapshots the actor to the store and frees its memory and KV. */
dw_status srv_actor_hibernate(srv_server *srv, srv_actor *a, dw_error *err);
/* (claimed) Drops the awake state without saving (after a failed turn: the store is the truth). */
void srv_actor_drop(srv_server *srv, srv_actor *a);
/* (claimed) Removes the actor and its store folder. */
void srv_actor_delete(srv_server *srv, srv_actor *a);
/* (claimed, awake) Writes a snapshot now without freeing anything; *path gets its file. */
dw_status srv_actor_snapshot(srv_server *srv, srv_actor *a, char *path, size_t path_size, dw_error *err);
/* The actor's state as JSON (under srv->lock or with a reference). */
json_t *srv_actor_json(srv_server *srv, const srv_actor *a);
/* Reads every actor of the store (hibernated). */
dw_status srv_actors_load(srv_server *srv, dw_error *err);
/* The background thread: hibernates idle actors and, over the memory budget, the least
 * recently used ones; on a cluster it also snapshots (checkpoints) awake actors idle a second
 * whose context grew by SRV_CHECKPOINT_TOKENS since their snapshot, which bounds what a wake on
 * another node after a crash must replay. */
#define SRV_CHECKPOINT_TOKENS 1024
void *srv_reaper_main(void *arg);

/* (actor_record.c) Remembers the turn just completed (or replayed) as the actor's last one. */
void srv_actor_set_last_turn(srv_actor *a, const char *message, size_t message_len, const char *reply, size_t reply_len);
/* Makes an actor entry from its record (actor.json's text); NULL with err set when the record is
 * malformed or names a module or model not served here. */
srv_actor *srv_actor_from_record(srv_server *srv, const char *id, const char *text, size_t len, dw_error *err);
/* The record's text (malloc'd JSON). */
char *srv_actor_record(const srv_actor *a);
/* Links a new entry into the directory (a reference is taken for the caller when take_ref). */
void srv_actor_link(srv_server *srv, srv_actor *a, int take_ref);
/* actor_record.c: a zeroed entry (no log open) and its release. */
srv_actor *srv_actor_entry_new(void);
void srv_actor_entry_free(srv_actor *a);

/* An actor's completed turns 1..upto, copied (history.c): what a Responses conversation forked at
 * an older response replays. A conversation ("response" kind) keeps every turn in its log for
 * this (its log is as long as its context, which bounds it); a native actor keeps only the turns
 * since its snapshot. */
typedef struct srv_history {
    srv_log_record *r;
    int n;
} srv_history;
dw_status srv_actor_history(srv_server *srv, const srv_actor *a, uint64_t upto, srv_history *out, dw_error *err);
void srv_history_free(srv_history *h);

/* ---- waking (wake.c) -------------------------------------------------------------------------- */
/* (claimed) Brings a hibernated actor back: its newest snapshot, then the logged turns after it. */
dw_status srv_actor_wake(srv_server *srv, srv_actor *a, double *ms, dw_error *err);
/* (claimed, awake, no turn yet) Makes another actor's turns its own: each message is sent, its
 * reply checked against the logged one, and the turn logged as this actor's (a fork). */
dw_status srv_actor_adopt(srv_server *srv, srv_actor *a, const srv_history *h, dw_error *err);
#define SRV_DEFAULT_CTX 8192
/* (actor_record.c) The context of an actor's session on this model, and the KV bytes its one
 * session holds at full capacity. */
int srv_model_ctx(srv_server *srv, const char *model_name);
size_t srv_actor_kv_bytes(srv_server *srv, const char *model_name);
/* The WASI arguments and options an actor of these settings runs with. */
void srv_actor_options(srv_server *srv, srv_actor *a, const srv_actor_settings *st, dw_actor_options *o,
                       const char **argv, char bufs[][32]);

/* ---- turns (turn.c; run by worker.c) ---------------------------------------------------------------------- */
struct srv_turn {
    srv_server *srv;
    srv_actor *actor;              /* claimed by the submitter; NULL: an ephemeral actor */
    const srv_module *module;      /* for an ephemeral actor */
    srv_actor_settings settings;   /* for an ephemeral actor */
    char *message;
    size_t message_len;
    /* the reply */
    char *text;
    size_t text_len, text_cap;
    char finish[16];
    int prompt_tokens, cached_tokens, completion_tokens, position;
    int http_status;               /* 0: fine; else the error's HTTP status */
    char error_code[48], error[DW_ERROR_MESSAGE_MAX + 64];
    uint64_t seq;                  /* the turn's number in its actor (stored actors) */
    uint64_t expect_turn;          /* the client's "turn": the number it must get (0: any) */
    srv_history fork;              /* turns a new actor adopts before this one (a forked conversation) */
    int replayed;                  /* answered from the log: it had completed before */
    double t_start, t_first, t_end, wake_ms, log_ms;
    /* streaming: the endpoint formats each piece into the stream (on the worker thread) */
    srv_stream *stream;
    void (*on_start)(srv_turn *t);
    void (*on_delta)(srv_turn *t, const char *text, size_t len);
    void (*on_end)(srv_turn *t);
    void *endpoint;                /* the endpoint's own state */
    void (*endpoint_free)(void *endpoint);
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int finished, refs;
    srv_turn *next;                /* the workers' queue */
};

srv_turn *srv_turn_new(srv_server *srv);
void srv_turn_release(srv_turn *t);
/* Marks the turn failed with an HTTP status and an error (the first failure stays). */
void srv_turn_fail(srv_turn *t, int status, const char *code, const char *detail);
/* The output callback of every actor the server runs (user is the srv_actor or the turn). */
void srv_turn_output(void *user, const char *bytes, size_t len);
/* worker.c: queues the turn for a worker (a reference goes with it); waits for it to end. */
void srv_turn_submit(srv_turn *t);
void srv_turn_wait(srv_turn *t);
void *srv_worker_main(void *arg);

/* ---- the chat actor's control messages (protocol.c) --------------------------------------- */
typedef struct srv_msg_builder {
    char *head, *body;
    size_t head_len, head_cap, body_len, body_cap;
} srv_msg_builder;
void srv_msg_init(srv_msg_builder *b);
void srv_msg_set(srv_msg_builder *b, const char *key, const char *value);
/* An item that carries text: "system", "user", "assistant", "raw" or "stop". */
void srv_msg_text(srv_msg_builder *b, const char *key, const char *text, size_t len);
/* The whole message (malloc'd); frees the builder. */
char *srv_msg_finish(srv_msg_builder *b, size_t *len);

/* ---- the server -------------------------------------------------------------------------- */
struct srv_server {
    dw_runtime *rt;
    dw_server_options o;
    char backend[16];
    char store[1024];
    srv_module *modules;
    int n_modules;
    srv_key *keys;
    int n_keys;
    struct MHD_Daemon *daemon;
    int port;
    pthread_mutex_t lock;
    srv_actor *actors;             /* the directory (a list; lookups are rare next to a turn) */
    int n_actors;
    /* workers */
    pthread_t *workers;
    int n_workers;
    srv_turn *queue_head, *queue_tail;
    pthread_cond_t queue_cv;
    int stopping;
    pthread_t reaper;
    pthread_cond_t reaper_cv;
    pthread_cond_t upkeep_done_cv; /* an actor's upkeep claim was released */
    /* counters for /v1/stats (under lock) */
    uint64_t tokens_generated, turns_done, turns_logged, turns_failed, wakes, hibernations, replayed_turns, replay_mismatches;
    double wake_ms_total, log_ms_total, hibernate_ms_total;
    int streams_open, turns_running;
    double started_at, started_wall;
    struct srv_cluster *cluster;   /* NULL: a single node with a local store */
    /* on a cluster: runs a request on the node it belongs to and returns the result of answering
     * it, or returns -1 when it runs here (cluster_forward.c) */
    int (*route_elsewhere)(srv_request *r);
};

/* (ids.c) A fresh id: prefix + 24 hex digits from the system's random source. */
void srv_new_id(const char *prefix, char *out, size_t size);
double srv_wall_now(void);

/* ---- HTTP (http.c: requests, routing; respond.c: responses) and the endpoints (api_*.c) ---- */
struct MHD_Connection;
struct srv_request {
    srv_server *srv;
    struct MHD_Connection *con;
    const char *method, *url;
    char *body;
    size_t body_len, body_cap;
    int body_too_large;
    int key;               /* index into srv->keys, -1 without authentication */
    const char *owner;     /* the key's owner id, or "anonymous" */
    const char *authorization; /* the Authorization header, or NULL */
    struct srv_forwarded *fwd; /* it came from another node (cluster_forward.c) */
    /* how to answer a request that did not come over HTTP (NULL: libmicrohttpd's connection) */
    int (*answer)(srv_request *r, unsigned status, const char *content_type, const void *bytes, size_t len);
    int (*answer_sse)(srv_request *r, srv_stream *stream, int key);
    const char *served_by; /* the node that served it, when another one did (X-Driftwood-Node) */
    char served_by_buf[SRV_NAME_MAX];
    int responded;
};

/* Routes a request to its handler (http.c); for requests from HTTP and from other nodes. */
int srv_route(srv_request *r);
/* Streams server-sent events from `stream` (its reference is taken over) as the response;
 * key: the stream slot to give back at its end (-1: none). */
int srv_respond_sse(srv_request *r, srv_stream *stream, int key);

/* Responses. Each returns the MHD result of queueing. */
int srv_respond_json(srv_request *r, unsigned status, json_t *body /* stolen */);
int srv_respond_error(srv_request *r, unsigned status, const char *type, const char *code, const char *param,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Streams the turn's output as server-sent events; the turn is submitted here. */
int srv_respond_stream(srv_request *r, srv_turn *t);
int srv_respond_bytes(srv_request *r, unsigned status, const char *content_type, const void *bytes, size_t len);
/* 204 to a CORS preflight (OPTIONS): the headers and methods the API takes. */
int srv_respond_preflight(srv_request *r);

/* Parses the body as a JSON object (a 400 is queued and NULL returned when it is not). */
json_t *srv_request_json(srv_request *r);
/* 400 "Unrecognized request argument supplied: X" when body has a field outside allowed
 * (a NULL-terminated list); returns 1 if it responded. */
int srv_reject_unknown_fields(srv_request *r, json_t *body, const char *const *allowed);
/* Takes a stream slot of the request's key (429 queued and 0 returned when none is free). */
int srv_take_stream_slot(srv_request *r);
void srv_give_stream_slot(srv_server *srv, int key);

/* Runs a turn to its end on a worker and waits (non-streaming requests). */
void srv_run_and_wait(srv_turn *t);
/* Maps a failed turn to an OpenAI-shaped error response. */
int srv_respond_turn_error(srv_request *r, srv_turn *t);

int srv_api_models(srv_request *r);
int srv_api_chat_completions(srv_request *r);
int srv_api_completions(srv_request *r);
int srv_api_responses(srv_request *r);
int srv_api_actors(srv_request *r, const char *rest);
int srv_api_stats(srv_request *r);
/* The page at / (page.c). */
const unsigned char *srv_page(size_t *len);

/* The actor of a Responses id "resp_<conversation>_<turn>" and the turn; -1 when malformed. */
int srv_response_actor_id(const char *response_id, char *actor_id, size_t size, uint64_t *turn);
int srv_api_cluster(srv_request *r);

/* Shared parsing of the sampling fields of a request (temperature, top_p, seed, stop, the
 * token limit); 1 if it responded with an error. max_field names the limit's field(s). */
int srv_sampling_fields(srv_request *r, json_t *body, srv_msg_builder *m, const char *const *max_fields,
                        int default_max, int *max_tokens);

/* ---- the cluster (cluster.c: membership, leases, claims; cluster_store.c: the actors' records,
 * logs and snapshots in JetStream; cluster_forward.c: requests to the node that holds an actor).
 * docs/CLUSTER.md says what it promises and when. ---------------------------------------------- */
typedef struct srv_cluster srv_cluster;
/* Connects to --cluster, makes the buckets and streams (once per cluster), registers this node
 * and starts its lease and its request subscription. */
dw_status srv_cluster_join(srv_server *srv, dw_error *err);
/* Stops the lease and the subscription, removes this node, closes the connection. */
void srv_cluster_leave(srv_server *srv);
const char *srv_cluster_node_name(const srv_server *srv);
/* 1 while this node's lease is surely valid (checked before every write of an actor's state). */
int srv_cluster_lease_ok(srv_server *srv);
/* 1 while a's claim was taken under this node's current lease. */
int srv_cluster_claim_current(srv_server *srv, const srv_actor *a);
/* One line "cluster-event {json}" on stderr: claim, release, fenced, lease-lost, drop. */
void srv_cluster_event(srv_server *srv, const char *event, const char *actor, uint64_t rev);

/* Claims: the node holding `id` when it is another live node (1, node name in `node`), else 0. */
int srv_cluster_holder(srv_server *srv, const char *id, char *node, size_t size);
/* Takes the actor for this node (create-if-absent, or over a claim whose node is gone).
 * DW_OK and a->claim_rev set; DW_ERR_STATE with the holder's name in `holder` when another live
 * node has it; another status on a store failure. */
dw_status srv_cluster_acquire(srv_server *srv, srv_actor *a, char *holder, size_t size, dw_error *err);
/* Gives the claim up (only if it is still this node's revision). */
void srv_cluster_release(srv_server *srv, srv_actor *a);
/* The node with the most free KV memory among the live ones (placement of new actors); a node
 * counts the KV of the actors placed on it and not yet awake, and publishes its entry again
 * right after a placement (srv_cluster_placed), so a burst of creations spreads. */
void srv_cluster_place(srv_server *srv, char *node, size_t size);
void srv_cluster_placed(srv_server *srv);
/* {"node", "nodes": [...], "actors": [{"id", "node"}...]} for GET /v1/cluster: owner's actors. */
json_t *srv_cluster_json(srv_server *srv, const char *owner);
/* The records of owner's actors in the whole cluster (a local copy, cluster_view.c). */
json_t *srv_cluster_view_records(srv_server *srv, const char *owner);

/* The store (cluster_store.c). Records: one KV entry per actor. */
dw_status srv_cluster_record_put(srv_server *srv, const srv_actor *a, int create, dw_error *err);
/* The record of `id` (malloc'd text), NULL when there is none. */
char *srv_cluster_record_get(srv_server *srv, const char *id, size_t *len);
/* The actor's log: its first record, written when it is created. */
dw_status srv_cluster_log_create(srv_server *srv, srv_actor *a, dw_error *err);
/* Turn records read from the log (they point into messages this holds). */
typedef struct srv_log_records {
    srv_log_record *r;
    int n;
    void **held;
    int n_held;
} srv_log_records;
void srv_log_records_free(srv_log_records *l);
/* (cluster_store.c) Every turn record of an actor's log in the cluster. */
dw_status srv_cluster_log_turns(srv_server *srv, const char *id, srv_log_records *turns, dw_error *err);
/* (claimed) Fences the log for this node's claim and reads what a wake needs: the newest
 * snapshot, fetched to snap_path (*has_snap = 0 when none; a->snap_turns and the counters set
 * from it), and every turn record still in the log (older ones included: the replay skips those
 * inside the snapshot, and the last one answers a retry of it). */
dw_status srv_cluster_log_open(srv_server *srv, srv_actor *a, const char *snap_path, int *has_snap,
                               srv_log_records *turns, dw_error *err);
/* (claimed) Appends a completed turn (context and generated: where the actor stands after it);
 * DW_ERR_STATE when the actor was taken over (fenced). */
dw_status srv_cluster_log_turn(srv_server *srv, srv_actor *a, const srv_log_record *r, int context, uint64_t generated,
                               dw_error *err);
/* Where the actor stands by the last record of its log: turns, context, tokens generated. */
dw_status srv_cluster_log_tail(srv_server *srv, const char *id, uint64_t *turns, int *context, uint64_t *generated);
/* (awake here) Makes sure this node may still write the actor: after a lapsed lease (the NATS
 * servers electing a leader, say) it waits for the lease to return, claims the actor again and
 * fences its log on top of its own last record; DW_ERR_STATE when another node took it meanwhile. */
dw_status srv_cluster_keep(srv_server *srv, srv_actor *a, dw_error *err);
/* (claimed) Stores the snapshot file taken after a->turns turns, records it in the log, and drops
 * the records and the snapshot it makes unnecessary. */
dw_status srv_cluster_snapshot_put(srv_server *srv, srv_actor *a, const char *path, dw_error *err);
/* Removes the actor's record, log and snapshots. */
void srv_cluster_forget(srv_server *srv, const char *id);
/* Snapshot store throughput (driftwood bench store): put then get `bytes` of random data as one
 * object; MB/s of each. */
dw_status srv_cluster_store_bench(srv_server *srv, size_t bytes, double *put_mbs, double *get_mbs, dw_error *err);

/* Forwarding (cluster_forward.c). Subscribes this node to the requests other nodes forward to it
 * and sets srv->route_elsewhere (which sends a request for an actor held by another node there);
 * srv_fwd_stop ends that and waits for the forwarded requests running here. */
dw_status srv_fwd_listen(srv_server *srv, dw_error *err);
void srv_fwd_stop(srv_server *srv);
/* This node's HTTP address in its entry (known once HTTP listens). */
void srv_cluster_set_url(srv_server *srv);

#endif
