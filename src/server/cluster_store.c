/* The cluster's store of actors (cluster_impl.h has the names): records in the dw_actors bucket,
 * each actor's log on the stream DW_LOG and its snapshots in chunks on DW_SNAP.
 *
 * The log of actor ID (subject dw.log.ID) holds, in order: "created" (its first record, written
 * only when the subject is empty), then for each activation a "claim" record, the "turn" records
 * of the turns completed (message and reply), and a "snap" record per snapshot (where its chunks
 * are, their size and SHA-256, the turns inside it). Every append after the first names the
 * sequence of the subject's last record it expects (JetStream's expected-last-subject-sequence):
 * a node appends its claim record on top of what it read, so once it has, any other node's
 * append fails — the fence that keeps a node that lost an actor from writing its state. A retry
 * of an append whose answer was lost carries the same message id and is recognised as a
 * duplicate, not refused. After a snapshot, the records before the last turn are purged (the
 * last turn stays: it answers a client's retry of it) with the previous snapshot's chunks.
 *
 * Why JetStream for snapshots and not a shared filesystem: every node already reaches the NATS
 * servers, the chunks are replicated like the log (a snapshot survives a server's loss) and no
 * file system must be mounted on every machine; the measured cost is in docs/PERFORMANCE.md
 * ("Cluster"). nats.c 3.4 (Debian 12) has no object store API, so chunking is written here:
 * a few dozen lines over plain publishes and direct gets. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/assert.h"
#include "core/clock.h"
#include "core/sha256.h"
#include "server/cluster_impl.h"

#define APPEND_RETRY_S 15.0 /* a server's loss: the stream elects a new leader in a few seconds */

/* ---- records ---------------------------------------------------------------------------- */
dw_status srv_cluster_record_put(srv_server *srv, const srv_actor *a, int create, dw_error *err) {
    char *text = srv_actor_record(a);
    uint64_t rev;
    natsStatus s = create ? kvStore_CreateString(&rev, srv->cluster->actors, a->id, text)
                          : kvStore_PutString(&rev, srv->cluster->actors, a->id, text);
    free(text);
    if (s != NATS_OK)
        return dw_error_set(err, DW_ERR_IO, "cluster: writing actor %s's record: %s", a->id, srv_cluster_error_text(s));
    return DW_OK;
}

char *srv_cluster_record_get(srv_server *srv, const char *id, size_t *len) {
    kvEntry *e = NULL;
    if (kvStore_Get(&e, srv->cluster->actors, id) != NATS_OK) return NULL;
    char *text = NULL;
    if (kvEntry_Operation(e) == kvOp_Put) {
        *len = (size_t)kvEntry_ValueLen(e);
        text = malloc(*len + 1);
        DW_ASSERT(text);
        memcpy(text, kvEntry_Value(e), *len);
        text[*len] = 0;
    }
    kvEntry_Destroy(e);
    return text;
}

/* ---- appends ------------------------------------------------------------------------------ */
typedef enum { APPEND_OK, APPEND_FENCED, APPEND_FAILED } append_result;

/* Publishes m on the stream expecting `expect` as its subject's last sequence (0: expecting no
 * message at all), retrying transient failures (a server lost, a leader being elected) with the
 * same message id. */
static append_result append(srv_server *srv, const srv_actor *a, natsMsg *m, uint64_t expect, const char *msg_id,
                            uint64_t *seq, dw_error *err) {
    srv_cluster *c = srv->cluster;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    if (expect) po.ExpectLastSubjectSeq = expect;
    else po.ExpectNoMessage = true;
    po.MsgId = msg_id;
    po.MaxWait = 4000;
    double deadline = dw__now_s() + APPEND_RETRY_S;
    for (;;) {
        jsPubAck *ack = NULL;
        jsErrCode code = 0;
        natsStatus s = js_PublishMsg(&ack, c->js, m, &po, &code);
        if (s == NATS_OK) {
            *seq = ack->Sequence;
            jsPubAck_Destroy(ack);
            return APPEND_OK;
        }
        if (srv_cluster_conflict(s, code)) return APPEND_FENCED;
        if (a && !srv_cluster_claim_current(srv, a)) { /* the lease lapsed while retrying */
            dw_error_set(err, DW_ERR_STATE, "cluster: this node's lease lapsed; actor %s is not written", a->id);
            return APPEND_FAILED;
        }
        if (dw__now_s() > deadline) {
            dw_error_set(err, DW_ERR_IO, "cluster: appending to %s: %s", natsMsg_GetSubject(m), srv_cluster_error_text(s));
            return APPEND_FAILED;
        }
        nats_Sleep(200);
    }
}

/* A record of a's log. Every record says where the actor stands after it (Dw-Turns, Dw-Context,
 * Dw-Generated), so its state can be read from the log's last record alone. */
static natsMsg *log_msg(srv_server *srv, const srv_actor *a, const char *type, const void *data, int len, uint64_t turns,
                        int context, uint64_t generated) {
    char subject[SRV_ID_MAX + 16], v[24];
    snprintf(subject, sizeof subject, "dw.log.%s", a->id);
    natsMsg *m = NULL;
    DW_ASSERT(natsMsg_Create(&m, subject, NULL, data, len) == NATS_OK);
    natsMsgHeader_Set(m, "Dw-Type", type);
    natsMsgHeader_Set(m, "Dw-Node", srv->cluster->node);
    snprintf(v, sizeof v, "%" PRIu64, a->claim_rev), natsMsgHeader_Set(m, "Dw-Rev", v);
    snprintf(v, sizeof v, "%" PRIu64, turns), natsMsgHeader_Set(m, "Dw-Turns", v);
    snprintf(v, sizeof v, "%d", context), natsMsgHeader_Set(m, "Dw-Context", v);
    snprintf(v, sizeof v, "%" PRIu64, generated), natsMsgHeader_Set(m, "Dw-Generated", v);
    return m;
}

dw_status srv_cluster_log_create(srv_server *srv, srv_actor *a, dw_error *err) {
    natsMsg *m = log_msg(srv, a, "created", NULL, 0, 0, 0, 0);
    char id[SRV_ID_MAX + 16];
    snprintf(id, sizeof id, "%s-created", a->id);
    append_result r = append(srv, NULL, m, 0, id, &a->log_last_seq, err);
    natsMsg_Destroy(m);
    if (r == APPEND_FENCED) return dw_error_set(err, DW_ERR_STATE, "cluster: actor %s has a log already", a->id);
    return r == APPEND_OK ? DW_OK : err->status;
}

/* The append of a record to a's log on top of a->log_last_seq, by this node's claim. */
static dw_status append_fenced(srv_server *srv, srv_actor *a, natsMsg *m, const char *msg_id, uint64_t *seq,
                               dw_error *err) {
    if (srv_cluster_keep(srv, a, err) != DW_OK) return err->status;
    append_result r = append(srv, a, m, a->log_last_seq, msg_id, seq, err);
    if (r == APPEND_FENCED) {
        srv_cluster_event(srv, "fenced", a->id, a->claim_rev);
        return dw_error_set(err, DW_ERR_STATE, "cluster: actor %s was taken over by another node", a->id);
    }
    if (r != APPEND_OK) return err->status;
    a->log_last_seq = *seq;
    return DW_OK;
}

dw_status srv_cluster_log_turn(srv_server *srv, srv_actor *a, const srv_log_record *r, int context, uint64_t generated,
                               dw_error *err) {
    size_t len = 8 + r->message_len + r->reply_len;
    if (len + 1024 > (size_t)srv->cluster->max_payload)
        return dw_error_set(err, DW_ERR_LIMIT, "cluster: turn %" PRIu64 " of actor %s is %zu bytes; the NATS servers take %d",
                            r->seq, a->id, len, srv->cluster->max_payload);
    char *buf = malloc(len);
    DW_ASSERT(buf);
    uint64_t ml = r->message_len;
    for (int i = 0; i < 8; i++) buf[i] = (char)(ml >> (8 * i));
    memcpy(buf + 8, r->message, r->message_len);
    memcpy(buf + 8 + r->message_len, r->reply, r->reply_len);
    natsMsg *m = log_msg(srv, a, "turn", buf, (int)len, r->seq, context, generated);
    free(buf);
    char turn[24], id[SRV_ID_MAX + 64];
    snprintf(turn, sizeof turn, "%" PRIu64, r->seq);
    natsMsgHeader_Set(m, "Dw-Turn", turn);
    snprintf(id, sizeof id, "%s-t%" PRIu64 "-c%" PRIu64, a->id, r->seq, a->claim_rev);
    uint64_t seq;
    dw_status st = append_fenced(srv, a, m, id, &seq, err);
    natsMsg_Destroy(m);
    if (st == DW_OK) a->last_turn_seq = seq;
    return st;
}

/* ---- reading the log ----------------------------------------------------------------------- */
static natsStatus next_on_subject(srv_cluster *c, const char *stream, const char *subject, uint64_t from, natsMsg **m) {
    jsDirectGetMsgOptions o;
    jsDirectGetMsgOptions_Init(&o);
    o.Sequence = from;
    o.NextBySubject = subject;
    natsStatus s;
    for (int attempt = 0;; attempt++) { /* a server lost: retried while the stream recovers */
        s = js_DirectGetMsg(m, c->js, stream, NULL, &o);
        if (s == NATS_OK || s == NATS_NOT_FOUND || attempt >= 50) return s;
        nats_Sleep(200);
    }
}

void srv_log_records_free(srv_log_records *l) {
    for (int i = 0; i < l->n_held; i++) natsMsg_Destroy(l->held[i]);
    free(l->held);
    free(l->r);
    memset(l, 0, sizeof *l);
}

static const char *header(natsMsg *m, const char *key) {
    const char *v = NULL;
    return natsMsgHeader_Get(m, key, &v) == NATS_OK ? v : "";
}

/* A turn record's contents (pointing into m): [8-byte little-endian message length][message][reply].
 * 0 when m is not a turn record. */
static int turn_record(natsMsg *m, srv_log_record *r) {
    if (strcmp(header(m, "Dw-Type"), "turn") || natsMsg_GetDataLength(m) < 8) return 0;
    const char *d = natsMsg_GetData(m);
    uint64_t ml = 0;
    for (int i = 0; i < 8; i++) ml |= (uint64_t)(unsigned char)d[i] << (8 * i);
    size_t total = (size_t)natsMsg_GetDataLength(m) - 8;
    if (ml > total) ml = total;
    *r = (srv_log_record){strtoull(header(m, "Dw-Turn"), NULL, 10), d + 8, ml, d + 8 + ml, total - ml};
    return 1;
}

static dw_status fetch_snapshot(srv_server *srv, json_t *snap, const char *path, dw_error *err) {
    srv_cluster *c = srv->cluster;
    const char *subject = json_string_value(json_object_get(snap, "subject")), *want = json_string_value(json_object_get(snap, "sha256"));
    json_int_t bytes = json_integer_value(json_object_get(snap, "bytes")), first = json_integer_value(json_object_get(snap, "first_seq"));
    if (!subject || !want) return dw_error_set(err, DW_ERR_FORMAT, "cluster: a snapshot record without subject or digest");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return dw_error_set(err, DW_ERR_IO, "%s: %s", path, strerror(errno));
    dw__sha256_ctx h;
    dw__sha256_init(&h);
    json_int_t got = 0;
    uint64_t seq = first > 0 ? (uint64_t)first : 1;
    dw_status st = DW_OK;
    while (got < bytes && st == DW_OK) {
        natsMsg *m = NULL;
        natsStatus s = next_on_subject(c, CLUSTER_SNAP_STREAM, subject, seq, &m);
        if (s != NATS_OK) {
            st = dw_error_set(err, DW_ERR_IO, "cluster: snapshot %s: chunk at %lld: %s", subject, (long long)got, srv_cluster_error_text(s));
            break;
        }
        int n = natsMsg_GetDataLength(m);
        dw__sha256_update(&h, natsMsg_GetData(m), (size_t)n);
        if (write(fd, natsMsg_GetData(m), (size_t)n) != n) st = dw_error_set(err, DW_ERR_IO, "%s: %s", path, strerror(errno));
        got += n;
        seq = natsMsg_GetSequence(m) + 1;
        natsMsg_Destroy(m);
    }
    close(fd);
    if (st != DW_OK) return st;
    uint8_t d[DW_SHA256_DIGEST_SIZE];
    char hex[DW_SHA256_HEX_SIZE];
    dw__sha256_final(&h, d);
    dw__sha256_hex(d, hex);
    if (got != bytes || strcmp(hex, want))
        return dw_error_set(err, DW_ERR_FORMAT, "cluster: snapshot %s: %lld bytes with SHA-256 %.12s..., the record says %lld and %.12s...",
                            subject, (long long)got, hex, (long long)bytes, want);
    return DW_OK;
}

dw_status srv_cluster_log_open(srv_server *srv, srv_actor *a, const char *snap_path, int *has_snap,
                               srv_log_records *turns, dw_error *err) {
    srv_cluster *c = srv->cluster;
    char subject[SRV_ID_MAX + 16];
    snprintf(subject, sizeof subject, "dw.log.%s", a->id);
    memset(turns, 0, sizeof *turns);
    *has_snap = 0;
    json_t *snap = NULL;
    for (int attempt = 0; attempt < 10; attempt++) {
        srv_log_records_free(turns);
        json_decref(snap), snap = NULL;
        /* read the whole subject (after a snapshot's purge: its last turn onward) */
        uint64_t seq = 1, last = 0, last_turn = 0, stand_turns = 0, stand_generated = 0;
        int cap = 0, stand_context = 0;
        for (;;) {
            natsMsg *m = NULL;
            natsStatus s = next_on_subject(c, CLUSTER_LOG_STREAM, subject, seq, &m);
            if (s == NATS_NOT_FOUND) break;
            if (s != NATS_OK) {
                srv_log_records_free(turns);
                return dw_error_set(err, DW_ERR_IO, "cluster: reading actor %s's log: %s", a->id, srv_cluster_error_text(s));
            }
            last = natsMsg_GetSequence(m);
            seq = last + 1;
            const char *type = header(m, "Dw-Type");
            stand_turns = strtoull(header(m, "Dw-Turns"), NULL, 10);
            stand_context = atoi(header(m, "Dw-Context"));
            stand_generated = strtoull(header(m, "Dw-Generated"), NULL, 10);
            srv_log_record rec;
            if (turn_record(m, &rec)) {
                if (turns->n == cap) {
                    cap = cap ? cap * 2 : 8;
                    turns->r = realloc(turns->r, (size_t)cap * sizeof *turns->r);
                    turns->held = realloc(turns->held, (size_t)cap * sizeof *turns->held);
                }
                turns->r[turns->n++] = rec;
                turns->held[turns->n_held++] = m;
                last_turn = last;
                continue;
            }
            if (!strcmp(type, "snap")) {
                json_decref(snap);
                snap = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
            }
            natsMsg_Destroy(m);
        }
        if (!last) return dw_error_set(err, DW_ERR_NOT_FOUND, "cluster: actor %s has no log", a->id);
        /* the fence: our claim record on top of exactly what we read */
        natsMsg *m = log_msg(srv, a, "claim", NULL, 0, stand_turns, stand_context, stand_generated);
        char id[SRV_ID_MAX + 48];
        snprintf(id, sizeof id, "%s-c%" PRIu64 "-at%" PRIu64, a->id, a->claim_rev, last);
        a->log_last_seq = last;
        uint64_t fence;
        dw_status st = append_fenced(srv, a, m, id, &fence, err);
        natsMsg_Destroy(m);
        if (st == DW_OK) {
            a->last_turn_seq = last_turn;
            a->turns = stand_turns, a->tokens_generated = stand_generated;
            break;
        }
        if (st != DW_ERR_STATE || !srv_cluster_lease_ok(srv)) {
            srv_log_records_free(turns);
            json_decref(snap);
            return st;
        }
        /* someone appended after our read (a node that had not yet noticed it lost the actor): read again */
        srv_cluster_acquire(srv, a, (char[SRV_NAME_MAX]){0}, SRV_NAME_MAX, err);
        if (!a->claim_rev) break;
    }
    if (!a->log_last_seq || !a->claim_rev) {
        srv_log_records_free(turns);
        json_decref(snap);
        return dw_error_set(err, DW_ERR_STATE, "cluster: actor %s: its log keeps moving under this node's claim", a->id);
    }
    a->snap_object[0] = 0;
    a->snap_turns = 0;
    a->snap_context_tokens = 0;
    dw_status st = DW_OK;
    if (snap) {
        snprintf(a->snap_object, sizeof a->snap_object, "%s", json_string_value(json_object_get(snap, "subject")) ?: "");
        a->snap_turns = (uint64_t)json_integer_value(json_object_get(snap, "turns"));
        a->context_tokens = a->snap_context_tokens = (int)json_integer_value(json_object_get(snap, "context_tokens"));
        a->tokens_generated = (uint64_t)json_integer_value(json_object_get(snap, "tokens_generated"));
        if (a->snap_turns > a->turns) a->turns = a->snap_turns;
        st = fetch_snapshot(srv, snap, snap_path, err);
        *has_snap = st == DW_OK;
        json_decref(snap);
    }
    for (int i = 0; i < turns->n; i++)
        if (turns->r[i].seq > a->turns) a->turns = turns->r[i].seq;
    if (st != DW_OK) srv_log_records_free(turns);
    return st;
}

dw_status srv_cluster_log_turns(srv_server *srv, const char *id, srv_log_records *turns, dw_error *err) {
    char subject[SRV_ID_MAX + 16];
    snprintf(subject, sizeof subject, "dw.log.%s", id);
    memset(turns, 0, sizeof *turns);
    for (uint64_t seq = 1;;) {
        natsMsg *m = NULL;
        natsStatus s = next_on_subject(srv->cluster, CLUSTER_LOG_STREAM, subject, seq, &m);
        if (s == NATS_NOT_FOUND) return DW_OK;
        if (s != NATS_OK) {
            srv_log_records_free(turns);
            return dw_error_set(err, DW_ERR_IO, "cluster: reading actor %s's log: %s", id, srv_cluster_error_text(s));
        }
        seq = natsMsg_GetSequence(m) + 1;
        srv_log_record rec;
        if (!turn_record(m, &rec)) {
            natsMsg_Destroy(m);
            continue;
        }
        turns->r = realloc(turns->r, (size_t)(turns->n + 1) * sizeof *turns->r);
        turns->held = realloc(turns->held, (size_t)(turns->n_held + 1) * sizeof *turns->held);
        DW_ASSERT(turns->r && turns->held);
        turns->r[turns->n++] = rec;
        turns->held[turns->n_held++] = m;
    }
}

dw_status srv_cluster_log_tail(srv_server *srv, const char *id, uint64_t *turns, int *context, uint64_t *generated) {
    char subject[SRV_ID_MAX + 16];
    snprintf(subject, sizeof subject, "dw.log.%s", id);
    jsDirectGetMsgOptions o;
    jsDirectGetMsgOptions_Init(&o);
    o.LastBySubject = subject;
    natsMsg *m = NULL;
    if (js_DirectGetMsg(&m, srv->cluster->js, CLUSTER_LOG_STREAM, NULL, &o) != NATS_OK)
        return DW_ERR_NOT_FOUND;
    *turns = strtoull(header(m, "Dw-Turns"), NULL, 10);
    *context = atoi(header(m, "Dw-Context"));
    *generated = strtoull(header(m, "Dw-Generated"), NULL, 10);
    natsMsg_Destroy(m);
    return DW_OK;
}

/* (awake here, its claim void after this node's lease lapsed) Takes the claim again and fences
 * the log on top of the last record this node wrote: if nobody appended since, the awake state
 * is still the actor's and goes on; if someone did, the append is refused (DW_ERR_STATE). */
static dw_status revalidate(srv_server *srv, srv_actor *a, dw_error *err) {
    char holder[SRV_NAME_MAX];
    if (srv_cluster_acquire(srv, a, holder, sizeof holder, err) != DW_OK) return err->status;
    natsMsg *m = log_msg(srv, a, "claim", NULL, 0, a->turns, a->context_tokens, a->tokens_generated);
    char id[SRV_ID_MAX + 48];
    snprintf(id, sizeof id, "%s-c%" PRIu64 "-at%" PRIu64, a->id, a->claim_rev, a->log_last_seq);
    uint64_t seq;
    append_result r = append(srv, a, m, a->log_last_seq, id, &seq, err);
    natsMsg_Destroy(m);
    if (r == APPEND_FENCED) {
        srv_cluster_event(srv, "fenced", a->id, a->claim_rev);
        return dw_error_set(err, DW_ERR_STATE, "cluster: actor %s was taken over by another node", a->id);
    }
    if (r != APPEND_OK) return err->status;
    a->log_last_seq = seq;
    return DW_OK;
}

dw_status srv_cluster_keep(srv_server *srv, srv_actor *a, dw_error *err) {
    double deadline = dw__now_s() + APPEND_RETRY_S;
    while (!srv_cluster_claim_current(srv, a)) {
        if (srv_cluster_lease_ok(srv)) return revalidate(srv, a, err);
        if (dw__now_s() > deadline)
            return dw_error_set(err, DW_ERR_STATE, "cluster: this node's lease has lapsed; actor %s is not written", a->id);
        nats_Sleep(100); /* the lease comes back once the servers elect a leader again */
    }
    return DW_OK;
}

/* ---- snapshots ------------------------------------------------------------------------------ */
static void purge(srv_cluster *c, const char *stream, const char *subject, uint64_t below) {
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Purge.Subject = subject;
    o.Stream.Purge.Sequence = below;
    jsErrCode code;
    js_PurgeStream(c->js, stream, &o, &code); /* left-overs only cost space; the next purge takes them */
}

/* Publishes the file's bytes in chunks on `subject`; its size, digest and first chunk's sequence. */
static dw_status put_chunks(srv_cluster *c, const char *path, const char *subject, json_int_t *bytes, uint64_t *first,
                            char hex[DW_SHA256_HEX_SIZE], dw_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dw_error_set(err, DW_ERR_IO, "%s: %s", path, strerror(errno));
    size_t chunk = (size_t)c->max_payload - 4096;
    if (chunk > (4u << 20)) chunk = 4u << 20;
    char *buf = malloc(chunk);
    DW_ASSERT(buf);
    dw__sha256_ctx h;
    dw__sha256_init(&h);
    *bytes = 0, *first = 0;
    dw_status st = DW_OK;
    for (;;) {
        ssize_t n = read(fd, buf, chunk);
        if (n < 0) {
            st = dw_error_set(err, DW_ERR_IO, "%s: %s", path, strerror(errno));
            break;
        }
        if (n == 0) break;
        dw__sha256_update(&h, buf, (size_t)n);
        jsPubAck *ack = NULL;
        jsErrCode code = 0;
        natsStatus s = NATS_ERR;
        double deadline = dw__now_s() + APPEND_RETRY_S;
        for (int attempt = 0; s != NATS_OK && (attempt == 0 || dw__now_s() < deadline); attempt++) {
            if (attempt) nats_Sleep(250);
            /* a chunk stored twice by a retry would be read twice: the message id makes the retry a duplicate */
            jsPubOptions po;
            jsPubOptions_Init(&po);
            char id[SRV_ID_MAX + 80];
            snprintf(id, sizeof id, "%s-%lld", subject, (long long)*bytes);
            po.MsgId = id;
            s = js_Publish(&ack, c->js, subject, buf, (int)n, &po, &code);
        }
        if (s != NATS_OK) {
            st = dw_error_set(err, DW_ERR_IO, "cluster: storing snapshot %s: %s", subject, srv_cluster_error_text(s));
            break;
        }
        if (!*first) *first = ack->Sequence;
        jsPubAck_Destroy(ack);
        *bytes += n;
    }
    free(buf);
    close(fd);
    uint8_t d[DW_SHA256_DIGEST_SIZE];
    dw__sha256_final(&h, d);
    dw__sha256_hex(d, hex);
    return st;
}

dw_status srv_cluster_snapshot_put(srv_server *srv, srv_actor *a, const char *path, dw_error *err) {
    srv_cluster *c = srv->cluster;
    if (!srv_cluster_lease_ok(srv))
        return dw_error_set(err, DW_ERR_STATE, "cluster: this node's lease has lapsed; actor %s is not written", a->id);
    char subject[sizeof a->snap_object], token[SRV_ID_MAX], hex[DW_SHA256_HEX_SIZE];
    srv_new_id("", token, sizeof token);
    snprintf(subject, sizeof subject, "dw.snap.%s.%" PRIu64 "-%.12s", a->id, a->turns, token);
    json_int_t bytes;
    uint64_t first;
    dw_status st = put_chunks(c, path, subject, &bytes, &first, hex, err);
    if (st != DW_OK) {
        purge(c, CLUSTER_SNAP_STREAM, subject, 0);
        return st;
    }
    json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:s, s:i, s:I}", "subject", subject, "bytes", bytes, "first_seq",
                          (json_int_t)first, "turns", (json_int_t)a->turns, "sha256", hex, "context_tokens",
                          a->context_tokens, "tokens_generated", (json_int_t)a->tokens_generated);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    natsMsg *m = log_msg(srv, a, "snap", text, (int)strlen(text), a->turns, a->context_tokens, a->tokens_generated);
    free(text);
    char id[SRV_ID_MAX + 64];
    snprintf(id, sizeof id, "%s-s%.12s", a->id, token);
    uint64_t seq;
    st = append_fenced(srv, a, m, id, &seq, err);
    natsMsg_Destroy(m);
    if (st != DW_OK) {
        purge(c, CLUSTER_SNAP_STREAM, subject, 0);
        return st;
    }
    /* what the new snapshot makes unnecessary: older records (the last turn stays) and chunks */
    char log_subject[SRV_ID_MAX + 16];
    snprintf(log_subject, sizeof log_subject, "dw.log.%s", a->id);
    if (strcmp(a->kind, "response")) /* a conversation keeps every turn (it may be forked at any of them) */
        purge(c, CLUSTER_LOG_STREAM, log_subject, a->last_turn_seq && a->last_turn_seq < seq ? a->last_turn_seq : seq);
    if (a->snap_object[0]) purge(c, CLUSTER_SNAP_STREAM, a->snap_object, 0);
    snprintf(a->snap_object, sizeof a->snap_object, "%s", subject);
    return DW_OK; /* the caller writes the record with the new counters */
}

void srv_cluster_forget(srv_server *srv, const char *id) {
    srv_cluster *c = srv->cluster;
    char subject[SRV_ID_MAX + 16];
    snprintf(subject, sizeof subject, "dw.log.%s", id);
    purge(c, CLUSTER_LOG_STREAM, subject, 0);
    snprintf(subject, sizeof subject, "dw.snap.%s.>", id);
    purge(c, CLUSTER_SNAP_STREAM, subject, 0);
    kvStore_Purge(c->actors, id, NULL);
    kvStore_Purge(c->claims, id, NULL);
}

/* ---- the store's throughput ---------------------------------------------------------------- */
dw_status srv_cluster_store_bench(srv_server *srv, size_t bytes, double *put_mbs, double *get_mbs, dw_error *err) {
    srv_cluster *c = srv->cluster;
    char in[1200], out[1200], token[SRV_ID_MAX], subject[SRV_ID_MAX + 32];
    snprintf(in, sizeof in, "%s/bench-store-in.tmp", srv->store);
    snprintf(out, sizeof out, "%s/bench-store-out.tmp", srv->store);
    srv_new_id("", token, sizeof token);
    snprintf(subject, sizeof subject, "dw.snap.bench.%.12s", token);
    int fd = open(in, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return dw_error_set(err, DW_ERR_IO, "%s: %s", in, strerror(errno));
    uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)(dw__now_s() * 1e6); /* fresh random bytes: nothing compresses */
    char *buf = malloc(1 << 20);
    DW_ASSERT(buf);
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < (1u << 20) ? bytes - done : (1u << 20);
        for (size_t i = 0; i + 8 <= n; i += 8) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            memcpy(buf + i, &x, 8);
        }
        if (write(fd, buf, n) != (ssize_t)n) break;
        done += n;
    }
    free(buf);
    close(fd);
    json_int_t stored;
    uint64_t first;
    char hex[DW_SHA256_HEX_SIZE];
    double t0 = dw__now_s();
    dw_status st = put_chunks(c, in, subject, &stored, &first, hex, err);
    double t1 = dw__now_s();
    if (st == DW_OK) {
        json_t *snap = json_pack("{s:s, s:I, s:I, s:s}", "subject", subject, "bytes", stored, "first_seq", (json_int_t)first,
                                 "sha256", hex);
        st = fetch_snapshot(srv, snap, out, err);
        json_decref(snap);
    }
    double t2 = dw__now_s();
    purge(c, CLUSTER_SNAP_STREAM, subject, 0);
    unlink(in), unlink(out);
    *put_mbs = (double)bytes / 1e6 / (t1 - t0);
    *get_mbs = (double)bytes / 1e6 / (t2 - t1);
    return st;
}
