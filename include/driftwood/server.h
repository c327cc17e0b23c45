/* The HTTP server (`driftwood serve`): actors over HTTP/1.1 with server-sent events, an
 * OpenAI-compatible API (models, chat completions, completions, responses), native actor
 * endpoints, API keys and limits, hibernation of idle actors to a store with a durable log of
 * turns, and a page at / to watch them. docs/DESIGN.md ("The server layer") says how. */
#ifndef DRIFTWOOD_SERVER_H
#define DRIFTWOOD_SERVER_H

#include <stddef.h>

#include "driftwood/error.h"
#include "driftwood/runtime.h"

typedef struct dw_server dw_server;

/* A module clients may create actors from. chat_protocol: it speaks the chat actor's control
 * messages (examples/chat/actor.c); the OpenAI endpoints need such a module. Others get each
 * message's bytes as they are and their dw_emit output is the reply. */
typedef struct dw_server_module {
    const char *name;
    dw_module *module; /* owned by the caller; outlives the server */
    int chat_protocol;
} dw_server_module;

/* Zero means the default named in each comment. */
typedef struct dw_server_options {
    const char *listen;             /* "ADDR:PORT" (IPv4); NULL: 127.0.0.1:8080; port 0: any free port */
    const char *backend;            /* "cpu" (NULL) or "cuda" */
    const char *store_dir;          /* NULL: ./driftwood-store */
    const char *keys_file;          /* lines "TOKEN [NAME]"; NULL: no authentication */
    const dw_server_module *modules; /* modules[0] serves the OpenAI endpoints */
    int n_modules;
    double idle_seconds;            /* an actor idle this long is hibernated: 300 */
    size_t max_body_bytes;          /* a larger request body is refused (413): 1 MiB */
    int max_streams_per_key;        /* generation requests in flight per key (429 beyond): 8 */
    int max_tokens;                 /* most tokens one request may generate: 4096 */
    int default_max_tokens;         /* when a request names none: 256 */
    size_t actor_memory_limit;      /* each actor's linear memory: 256 MiB */
    size_t kv_memory_limit;         /* each actor's KV caches: the runtime's default */
    double turn_timeout_seconds;    /* one turn of one actor: 300 */
    size_t memory_budget;           /* memory + KV of the awake actors; the least recently used
                                     * idle ones are hibernated beyond it: 2 GiB */
    int ctx;                        /* context of each actor's session: the model's, at most 8192 */
    int workers;                    /* threads that run turns (actors in flight at once): 64 */
    int request_timeout_seconds;    /* a connection silent this long is closed: 30 */
    int max_connections;            /* 512 */
    int no_fsync;                   /* 1: turns are logged without fsync (not durable; benchmarks) */
    /* A cluster of nodes on NATS JetStream (docs/CLUSTER.md): the store is the cluster's, any
     * node answers for any actor, and an actor lives on one node at a time. */
    const char *cluster;            /* "nats://HOST:PORT[,...]"; NULL: a single node, a local store */
    const char *node;               /* this node's name, unique in the cluster (required with cluster) */
    int lease_ms;                   /* a node silent this long loses its actors to the others: 3000 */
} dw_server_options;

/* Starts serving in background threads; rt must have the models registered and outlive the
 * server. Fails (with the reason) when the address is taken, the store unusable, the keys
 * file malformed. */
dw_status dw_server_start(dw_runtime *rt, const dw_server_options *options, dw_server **out, dw_error *err);

/* The port it listens on (the one chosen when options asked for port 0). */
int dw_server_port(const dw_server *server);

/* Stops accepting, waits for the turns in flight, hibernates every awake actor to the store and
 * frees the server. */
void dw_server_stop(dw_server *server);

/* The cluster store's throughput (`driftwood bench store`): `bytes` of fresh random data put as
 * one snapshot into the JetStream store at `cluster` and read back, and the same through a
 * plain file in `dir` (written atomically and fsync'd, then read), in MB/s. */
typedef struct dw_store_bench {
    double jetstream_put_mbs, jetstream_get_mbs, dir_put_mbs, dir_get_mbs;
} dw_store_bench;
dw_status dw_server_store_bench(const char *cluster, const char *dir, size_t bytes, dw_store_bench *out, dw_error *err);

#endif
