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
    int context_tokens;     /* tokens in the actor's session after its last turn */
    uint64_t tokens_generated;
    size_t memory_bytes, kv_bytes; /* while awake */
    double created_at, last_active_at; /* wall clock, seconds */
    double last_active;     /* monotonic, for the idle timer and LRU */
    srv_turn *sink;         /* the turn whose output the actor is producing */
    struct srv_actor *next;
} srv_actor;

/* Makes a new actor entry (stored, owned by owner) and writes its record to the store. */
dw_status srv_actor_new(srv_server *srv, const char *owner, const srv_module *module, const srv_actor_settings *st,
                        const char *kind, srv_actor **out, dw_error *err);
/* Finds an actor by id for owner (NULL when absent, deleted or someone else's); a reference is
 * taken: srv_actor_put it. */
srv_actor *srv_actor_get(srv_server *srv, const char *owner, const char *id);
void srv_actor_put(srv_server *srv, srv_actor *a);
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
 * recently used ones. */
void *srv_reaper_main(void *arg);

/* ---- waking (wake.c) -------------------------------------------------------------------------- */
/* (claimed) Brings a hibernated actor back: its newest snapshot, then the logged turns after it. */
dw_status srv_actor_wake(srv_server *srv, srv_actor *a, double *ms, dw_error *err);
#define SRV_DEFAULT_CTX 8192
int srv_model_ctx(srv_server *srv, const char *model_name);
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
};

/* A fresh id: prefix + 24 hex digits from the system's random source. */
void srv_new_id(const char *prefix, char *out, size_t size);
double srv_wall_now(void);

/* ---- HTTP (http.c: requests, routing; respond.c: responses) and the endpoints (api_*.c) ---- */
struct MHD_Connection;
typedef struct srv_request {
    srv_server *srv;
    struct MHD_Connection *con;
    const char *method, *url;
    char *body;
    size_t body_len, body_cap;
    int body_too_large;
    int key;               /* index into srv->keys, -1 without authentication */
    const char *owner;     /* the key's owner id, or "anonymous" */
    int responded;
} srv_request;

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

/* Shared parsing of the sampling fields of a request (temperature, top_p, seed, stop, the
 * token limit); 1 if it responded with an error. max_field names the limit's field(s). */
int srv_sampling_fields(srv_request *r, json_t *body, srv_msg_builder *m, const char *const *max_fields,
                        int default_max, int *max_tokens);

#endif
