/* The actors the server keeps: the directory, each actor's store folder, and the life cycle
 * created → awake ⇄ hibernated → deleted.
 *
 * Store layout (--store DIR): DIR/actors/ID/
 *   actor.json          who owns it, its module, settings, and counters as of its last hibernation
 *   snap-NNN.dwa        the newest whole-actor snapshot (memory + KV, driftwood/snapshot.h), taken
 *                       after turn NNN (16 digits); written atomically, older ones then removed
 *   turns.log           the turns completed after it (turn_log.c), fsync'd before acknowledgement
 * Waking restores snap-NNN (or creates the actor fresh when there is none) and replays the log
 * records after NNN; hibernating saves snap-TURNS, removes the older snapshot, empties the log
 * and frees the actor. A crash at any point leaves a consistent pair: replay skips records at or
 * below the snapshot's turn number. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/assert.h"
#include "core/clock.h"
#include "driftwood/file.h"
#include "driftwood/model.h"
#include "driftwood/snapshot.h"
#include "server/server_impl.h"



static void actor_dir(srv_server *srv, const srv_actor *a, char *out, size_t size) {
    snprintf(out, size, "%s/actors/%s", srv->store, a->id);
}

void srv_actor_file(srv_server *srv, const srv_actor *a, const char *leaf, char *out, size_t size) {
    snprintf(out, size, "%s/actors/%s/%s", srv->store, a->id, leaf);
}

void srv_actor_snapshot_path(srv_server *srv, const srv_actor *a, uint64_t turns, char *out, size_t size) {
    char leaf[40];
    snprintf(leaf, sizeof leaf, "snap-%016" PRIu64 ".dwa", turns);
    srv_actor_file(srv, a, leaf, out, size);
}


/* actor.json: written at creation and at each hibernation (atomically); on a cluster, the record
 * in the dw_actors bucket. */
static dw_status write_record(srv_server *srv, const srv_actor *a, dw_error *err) {
    if (srv->cluster) return srv_cluster_record_put(srv, a, 0, err);
    char *text = srv_actor_record(a);
    char path[1200];
    srv_actor_file(srv, a, "actor.json", path, sizeof path);
    dw_status s = dw_file_write_atomic(path, text, strlen(text), err);
    free(text);
    return s;
}



void srv_actor_link(srv_server *srv, srv_actor *a, int take_ref) {
    pthread_mutex_lock(&srv->lock);
    a->next = srv->actors, srv->actors = a, srv->n_actors++;
    if (take_ref) a->refs++;
    pthread_mutex_unlock(&srv->lock);
}


dw_status srv_actor_new(srv_server *srv, const char *owner, const srv_module *module, const srv_actor_settings *st,
                        const char *kind, srv_actor **out, dw_error *err) {
    srv_actor *a = srv_actor_entry_new();
    srv_new_id(!strcmp(kind, "response") ? "conv_" : "act_", a->id, sizeof a->id);
    snprintf(a->owner, sizeof a->owner, "%s", owner);
    snprintf(a->kind, sizeof a->kind, "%s", kind);
    a->module = module;
    a->settings = *st;
    a->settings.system = st->system ? strdup(st->system) : NULL;
    a->created_at = a->last_active_at = srv_wall_now();
    a->last_active = dw__now_s();
    if (srv->cluster) { /* placed here: the record, the log's first record, this node's claim */
        char holder[SRV_NAME_MAX];
        if (srv_cluster_record_put(srv, a, 1, err) != DW_OK || srv_cluster_log_create(srv, a, err) != DW_OK ||
            srv_cluster_acquire(srv, a, holder, sizeof holder, err) != DW_OK) {
            srv_actor_entry_free(a);
            return err->status;
        }
        a->placed_kv_bytes = srv_actor_kv_bytes(srv, a->settings.model);
        srv_actor_link(srv, a, 1);
        srv_cluster_placed(srv);
        *out = a;
        return DW_OK;
    }
    char dir[1100];
    actor_dir(srv, a, dir, sizeof dir);
    if (mkdir(dir, 0700) != 0) {
        dw_status s = dw_error_set(err, DW_ERR_IO, "store: %s: %s", dir, strerror(errno));
        srv_actor_entry_free(a);
        return s;
    }
    if (write_record(srv, a, err) != DW_OK) {
        rmdir(dir);
        srv_actor_entry_free(a);
        return err->status;
    }
    srv_actor_link(srv, a, 1); /* the caller's reference */
    *out = a;
    return DW_OK;
}

static srv_actor *find(srv_server *srv, const char *id) {
    srv_actor *a = srv->actors;
    while (a && (strcmp(a->id, id) || a->deleted)) a = a->next;
    return a;
}

static void unlink_entry(srv_server *srv, srv_actor *a) { /* under srv->lock */
    a->deleted = 1;
    for (srv_actor **p = &srv->actors; *p; p = &(*p)->next)
        if (*p == a) {
            *p = a->next, srv->n_actors--;
            break;
        }
}

/* On a cluster, the local entry of an actor that is awake here (or in use) is the truth and is
 * returned without asking the store. Any other entry is a cache: the record is read again (another
 * node may have deleted the actor or run turns on it), and so is the log's last record (turns logged
 * since the last snapshot, by a node that died before hibernating it, say). */
static srv_actor *cluster_get(srv_server *srv, const char *id) {
    pthread_mutex_lock(&srv->lock);
    srv_actor *a = find(srv, id);
    if (a && (a->actor || a->busy)) {
        a->refs++;
        pthread_mutex_unlock(&srv->lock);
        return a;
    }
    pthread_mutex_unlock(&srv->lock);
    size_t len;
    dw_error err;
    char *text = srv_cluster_record_get(srv, id, &len);
    srv_actor *fresh = text ? srv_actor_from_record(srv, id, text, len, &err) : NULL;
    free(text);
    uint64_t turns, generated;
    int context;
    if (fresh && srv_cluster_log_tail(srv, id, &turns, &context, &generated) == DW_OK && turns >= fresh->turns)
        fresh->turns = turns, fresh->context_tokens = context, fresh->tokens_generated = generated;
    pthread_mutex_lock(&srv->lock);
    if ((a = find(srv, id)) && !a->actor && !a->busy) {
        if (!fresh) unlink_entry(srv, a), a = NULL; /* deleted */
        else /* the store's counters; the claim this node holds stays */
            a->turns = fresh->turns, a->context_tokens = fresh->context_tokens,
            a->tokens_generated = fresh->tokens_generated, a->snap_turns = fresh->snap_turns;
    }
    if (!a && fresh) /* first seen here: linked under the same lock as the look-up */
        a = fresh, fresh = NULL, a->next = srv->actors, srv->actors = a, srv->n_actors++;
    if (a) a->refs++;
    pthread_mutex_unlock(&srv->lock);
    if (fresh) srv_actor_entry_free(fresh);
    return a;
}

int srv_actor_held_here(srv_server *srv, const char *id) {
    pthread_mutex_lock(&srv->lock);
    srv_actor *a = find(srv, id);
    int here = a && (a->actor || a->busy) && a->claim_rev;
    if (here) a->refs++;
    pthread_mutex_unlock(&srv->lock);
    if (!here) return 0;
    here = srv_cluster_claim_current(srv, a);
    srv_actor_put(srv, a);
    return here;
}

srv_actor *srv_actor_get(srv_server *srv, const char *owner, const char *id) {
    srv_actor *a;
    if (srv->cluster) a = cluster_get(srv, id);
    else {
        pthread_mutex_lock(&srv->lock);
        if ((a = find(srv, id))) a->refs++;
        pthread_mutex_unlock(&srv->lock);
    }
    if (a && strcmp(a->owner, owner)) { /* someone else's: as if absent */
        srv_actor_put(srv, a);
        a = NULL;
    }
    return a;
}

void srv_actor_put(srv_server *srv, srv_actor *a) {
    pthread_mutex_lock(&srv->lock);
    int last = --a->refs == 0 && a->deleted;
    pthread_mutex_unlock(&srv->lock);
    if (last) srv_actor_entry_free(a);
}

int srv_actor_claim(srv_server *srv, srv_actor *a, int kind) {
    pthread_mutex_lock(&srv->lock);
    while (a->busy == SRV_BUSY_UPKEEP && !a->deleted) pthread_cond_wait(&srv->upkeep_done_cv, &srv->lock);
    int ok = !a->busy && !a->deleted;
    if (ok) a->busy = kind, a->refs++;
    pthread_mutex_unlock(&srv->lock);
    return ok;
}

void srv_actor_release(srv_server *srv, srv_actor *a) {
    pthread_mutex_lock(&srv->lock);
    if (a->busy == SRV_BUSY_UPKEEP) pthread_cond_broadcast(&srv->upkeep_done_cv);
    a->busy = 0;
    int last = --a->refs == 0 && a->deleted;
    pthread_mutex_unlock(&srv->lock);
    if (last) srv_actor_entry_free(a);
    pthread_cond_signal(&srv->reaper_cv);
}

static void free_awake(srv_server *srv, srv_actor *a) {
    if (a->log_fd >= 0) close(a->log_fd), a->log_fd = -1;
    dw_actor_free(a->actor);
    pthread_mutex_lock(&srv->lock);
    a->actor = NULL;
    a->memory_bytes = a->kv_bytes = 0;
    pthread_mutex_unlock(&srv->lock);
}

dw_status srv_actor_snapshot(srv_server *srv, srv_actor *a, char *path, size_t path_size, dw_error *err) {
    srv_actor_snapshot_path(srv, a, a->turns, path, path_size);
    if (a->snap_turns == a->turns && a->turns) return DW_OK; /* nothing happened since the last one */
    if (srv->cluster) { /* the local folder is a cache; the store is the cluster's */
        char dir[1100];
        actor_dir(srv, a, dir, sizeof dir);
        mkdir(dir, 0700);
    }
    if (dw_actor_snapshot_save(a->actor, path, NULL, err) != DW_OK) return err->status;
    if (srv->cluster && srv_cluster_snapshot_put(srv, a, path, err) != DW_OK) {
        unlink(path);
        return err->status;
    }
    if (a->snap_turns && a->snap_turns != a->turns) {
        char old[1200];
        srv_actor_snapshot_path(srv, a, a->snap_turns, old, sizeof old);
        unlink(old);
    }
    a->snap_turns = a->turns;
    a->snap_context_tokens = a->context_tokens;
    /* every logged turn is inside the snapshot now */
    if (a->log_fd >= 0 && strcmp(a->kind, "response") && /* a conversation keeps every turn (forks) */
        (ftruncate(a->log_fd, 0) != 0 || fdatasync(a->log_fd) != 0))
        return dw_error_set(err, DW_ERR_IO, "actor %s: emptying its turn log: %s", a->id, strerror(errno));
    return write_record(srv, a, err);
}

dw_status srv_actor_hibernate(srv_server *srv, srv_actor *a, dw_error *err) {
    if (!a->actor) { /* on a cluster it may hold a claim still (placed here, never woken) */
        if (srv->cluster) srv_cluster_release(srv, a);
        return DW_OK;
    }
    double t0 = dw__now_ms();
    char path[1200];
    if (srv_actor_snapshot(srv, a, path, sizeof path, err) != DW_OK) {
        if (srv->cluster && err->status == DW_ERR_STATE) srv_actor_drop(srv, a); /* taken over: not ours to keep */
        return err->status;
    }
    free_awake(srv, a);
    if (srv->cluster) srv_cluster_release(srv, a);
    pthread_mutex_lock(&srv->lock);
    srv->hibernations++;
    srv->hibernate_ms_total += dw__now_ms() - t0;
    pthread_mutex_unlock(&srv->lock);
    return DW_OK;
}

void srv_actor_drop(srv_server *srv, srv_actor *a) {
    if (a->actor) free_awake(srv, a);
    if (srv->cluster && a->claim_rev) { /* the store is the truth; any node may wake it from there */
        srv_cluster_event(srv, "drop", a->id, a->claim_rev);
        srv_cluster_release(srv, a);
    }
}

void srv_actor_delete(srv_server *srv, srv_actor *a) {
    if (a->actor) free_awake(srv, a);
    if (srv->cluster) srv_cluster_forget(srv, a->id), srv_cluster_release(srv, a);
    char dir[1100];
    actor_dir(srv, a, dir, sizeof dir);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char p[1400];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
        rmdir(dir);
    }
    pthread_mutex_lock(&srv->lock);
    unlink_entry(srv, a);
    pthread_mutex_unlock(&srv->lock);
}

json_t *srv_actor_json(srv_server *srv, const srv_actor *a) {
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:I, s:i, s:I, s:I, s:I, s:f, s:f}", "id", a->id, "object",
                          "actor", "module", a->module->name, "model", a->settings.model, "state",
                          a->actor ? "awake" : "hibernated", "busy", a->busy, "turns", (json_int_t)a->turns,
                          "context_tokens", a->context_tokens, "tokens_generated", (json_int_t)a->tokens_generated,
                          "memory_bytes", (json_int_t)a->memory_bytes, "kv_bytes", (json_int_t)a->kv_bytes,
                          "created_at", a->created_at, "last_active_at", a->last_active_at);
    json_object_set_new(j, "kind", json_string(a->kind));
    return j;
}

/* ---- loading the store at start ------------------------------------------------------------ */

static dw_status load_one(srv_server *srv, const char *id, dw_error *err) {
    char path[1400];
    if (strlen(id) >= SRV_ID_MAX) return dw_error_set(err, DW_ERR_FORMAT, "store: '%.64s...' is not an actor id", id);
    snprintf(path, sizeof path, "%s/actors/%s/actor.json", srv->store, id);
    char *text;
    size_t len;
    if (dw_file_read_all(path, 1 << 20, &text, &len, err) != DW_OK) return err->status;
    srv_actor *a = srv_actor_from_record(srv, id, text, len, err);
    free(text);
    if (!a) return dw_error_prefix(err, "%s", path);
    a->snap_turns = 0;
    /* the newest snapshot; older ones and unfinished temporary files are left-overs of a crash */
    char dir[1100];
    actor_dir(srv, a, dir, sizeof dir);
    DIR *d = opendir(dir);
    uint64_t newest = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        unsigned long long n;
        char tail[8];
        if (sscanf(e->d_name, "snap-%16llu.dw%1s", &n, tail) == 2 && !strcmp(tail, "a") && strlen(e->d_name) == 25 &&
            n > newest)
            newest = n;
    }
    if (d) rewinddir(d);
    while (d && (e = readdir(d))) {
        char keep[40];
        snprintf(keep, sizeof keep, "snap-%016" PRIu64 ".dwa", newest);
        if (e->d_name[0] == '.' || !strcmp(e->d_name, keep) || !strcmp(e->d_name, "actor.json") ||
            !strcmp(e->d_name, "turns.log"))
            continue;
        char p[1400];
        snprintf(p, sizeof p, "%.1100s/%.255s", dir, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    a->snap_turns = newest;
    if (newest > a->turns) a->turns = newest;
    char log_path[1200];
    srv_actor_file(srv, a, "turns.log", log_path, sizeof log_path);
    uint64_t last;
    if (srv_log_scan(log_path, 1, NULL, NULL, &last, err) != DW_OK) {
        srv_actor_entry_free(a);
        return err->status;
    }
    if (last > a->turns) a->turns = last;
    srv_actor_link(srv, a, 0);
    return DW_OK;
}

dw_status srv_actors_load(srv_server *srv, dw_error *err) {
    char dir[1100];
    if (srv->cluster) { /* the actors are in the cluster's store; the local folder is a cache */
        if (mkdir(srv->store, 0700) != 0 && errno != EEXIST)
            return dw_error_set(err, DW_ERR_IO, "--store %s: %s", srv->store, strerror(errno));
        snprintf(dir, sizeof dir, "%s/actors", srv->store);
        mkdir(dir, 0700);
        return DW_OK;
    }
    snprintf(dir, sizeof dir, "%s/actors", srv->store);
    if (mkdir(srv->store, 0700) != 0 && errno != EEXIST)
        return dw_error_set(err, DW_ERR_IO, "--store %s: %s", srv->store, strerror(errno));
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) return dw_error_set(err, DW_ERR_IO, "%s: %s", dir, strerror(errno));
    DIR *d = opendir(dir);
    if (!d) return dw_error_set(err, DW_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        dw_error le;
        if (load_one(srv, e->d_name, &le) != DW_OK)
            fprintf(stderr, "driftwood serve: store: skipping actor %s: %s\n", e->d_name, le.message);
    }
    closedir(d);
    return DW_OK;
}

/* ---- the reaper ------------------------------------------------------------------------------ */
void *srv_reaper_main(void *arg) {
    srv_server *srv = arg;
    struct timespec until;
    pthread_mutex_lock(&srv->lock);
    while (!srv->stopping) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += 250 * 1000000L;
        if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&srv->reaper_cv, &srv->lock, &until);
        if (srv->stopping) break;
        double now = dw__now_s();
        size_t resident = 0;
        srv_actor *claimed[64];
        int n = 0;
        for (srv_actor *a = srv->actors; a; a = a->next) resident += a->memory_bytes + a->kv_bytes;
        for (srv_actor *a = srv->actors; a && n < 64; a = a->next)
            if ((a->actor || a->claim_rev) && !a->busy && now - a->last_active >= srv->o.idle_seconds) {
                a->busy = SRV_BUSY_UPKEEP, a->refs++, claimed[n++] = a;
                resident -= a->memory_bytes + a->kv_bytes;
            }
        int n_idle = n;
        for (srv_actor *a = srv->actors; srv->cluster && a && n < 64; a = a->next)
            if (a->actor && !a->busy && now - a->last_active >= 1.0 &&
                a->context_tokens - a->snap_context_tokens >= SRV_CHECKPOINT_TOKENS)
                a->busy = SRV_BUSY_UPKEEP, a->refs++, claimed[n++] = a;
        int n_hibernate_end = n; /* [n_idle, n_hibernate_end): checkpoints, not hibernations */
        while (resident > srv->o.memory_budget && n < 64) { /* least recently used first */
            srv_actor *lru = NULL;
            for (srv_actor *a = srv->actors; a; a = a->next)
                if (a->actor && !a->busy && (!lru || a->last_active < lru->last_active)) lru = a;
            if (!lru) break;
            lru->busy = SRV_BUSY_UPKEEP, lru->refs++, claimed[n++] = lru;
            resident -= lru->memory_bytes + lru->kv_bytes;
        }
        pthread_mutex_unlock(&srv->lock);
        for (int i = 0; i < n; i++) {
            dw_error err;
            char path[1200];
            int checkpoint = i >= n_idle && i < n_hibernate_end && claimed[i]->actor;
            if (checkpoint ? srv_actor_snapshot(srv, claimed[i], path, sizeof path, &err) != DW_OK
                           : srv_actor_hibernate(srv, claimed[i], &err) != DW_OK)
                fprintf(stderr, "driftwood serve: %s actor %s: %s\n", checkpoint ? "checkpointing" : "hibernating",
                        claimed[i]->id, err.message);
            srv_actor_release(srv, claimed[i]);
        }
        pthread_mutex_lock(&srv->lock);
    }
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}
