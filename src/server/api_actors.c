/* The native actor endpoints and the server's counters:
 *   POST   /v1/actors                 create {module?, model?, system?, temperature?, top_p?, seed?, max_tokens?}
 *   GET    /v1/actors                 the key's actors
 *   GET    /v1/actors/ID              its state: awake or hibernated, turns, tokens, memory, model
 *   POST   /v1/actors/ID/messages     {content, stream?, max_tokens?, temperature?, top_p?, seed?, stop?, turn?}
 *                                     turn: the number this turn must get; sent again after it completed
 *                                     (a retry), the logged reply is returned ("replayed": true)
 *   POST   /v1/actors/ID/snapshot     writes its snapshot to the store now (it stays awake)
 *   POST   /v1/actors/ID/hibernate    snapshots and frees it now
 *   DELETE /v1/actors/ID
 *   GET    /v1/stats                  counters for the page and for measurements
 *   GET    /v1/cluster                the nodes and where the key's actors live (cluster mode)
 * Another key's actor answers 404, exactly as one that does not exist. */
#include <inttypes.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/clock.h"
#include "server/server_impl.h"

static int not_found(srv_request *r, const char *id) {
    return srv_respond_error(r, 404, "invalid_request_error", "actor_not_found", NULL, "No actor with id '%s'.", id);
}

static int busy(srv_request *r) {
    return srv_respond_error(r, 409, "invalid_request_error", "actor_busy", NULL, "The actor is handling another request.");
}

static int create(srv_request *r) {
    static const char *const fields[] = {"module", "model", "system", "temperature", "top_p", "seed", "max_tokens", NULL};
    srv_server *srv = r->srv;
    json_t *b = r->body_len ? srv_request_json(r) : json_object();
    if (!b) return MHD_YES;
    if (srv_reject_unknown_fields(r, b, fields)) return json_decref(b), MHD_YES;
    const char *module = NULL, *model = NULL, *system = NULL;
    double temp = 0, top_p = 1;
    json_int_t seed = 0;
    int max_tokens = srv->o.default_max_tokens;
    json_error_t je;
    if (json_unpack_ex(b, &je, 0, "{s?:s, s?:s, s?:s, s?:F, s?:F, s?:I, s?:i}", "module", &module, "model", &model,
                       "system", &system, "temperature", &temp, "top_p", &top_p, "seed", &seed, "max_tokens",
                       &max_tokens)) {
        int ret = srv_respond_error(r, 400, "invalid_request_error", "invalid_value", NULL, "%s", je.text);
        json_decref(b);
        return ret;
    }
    const srv_module *m = &srv->modules[0];
    if (module) {
        m = NULL;
        for (int i = 0; i < srv->n_modules; i++)
            if (!strcmp(srv->modules[i].name, module)) m = &srv->modules[i];
    }
    if (!model) model = dw_runtime_model_name(srv->rt, 0);
    int ret;
    if (!m) ret = srv_respond_error(r, 404, "invalid_request_error", "module_not_found", "module", "No module '%s' is served.", module);
    else if (!dw_runtime_model_dir(srv->rt, model))
        ret = srv_respond_error(r, 404, "invalid_request_error", "model_not_found", "model", "The model `%s` does not exist.", model);
    else if (!(temp >= 0 && temp <= 2) || !(top_p > 0 && top_p <= 1) || max_tokens < 1 || max_tokens > srv->o.max_tokens)
        ret = srv_respond_error(r, 400, "invalid_request_error", "invalid_value", NULL,
                                "temperature must be in [0, 2], top_p in (0, 1], max_tokens in [1, %d].", srv->o.max_tokens);
    else {
        srv_actor_settings st = {.system = (char *)system, .temperature = temp, .top_p = top_p, .seed = seed,
                                 .max_tokens = max_tokens};
        snprintf(st.model, sizeof st.model, "%s", model);
        srv_actor *a;
        dw_error err;
        if (srv_actor_new(srv, r->owner, m, &st, "actor", &a, &err) != DW_OK)
            ret = srv_respond_error(r, 500, "server_error", "store_failed", NULL, "%s", err.message);
        else {
            pthread_mutex_lock(&srv->lock);
            json_t *j = srv_actor_json(srv, a);
            pthread_mutex_unlock(&srv->lock);
            ret = srv_respond_json(r, 201, j);
            srv_actor_put(srv, a);
        }
    }
    json_decref(b);
    return ret;
}

static int list(srv_request *r) {
    srv_server *srv = r->srv;
    json_t *data = json_array();
    if (srv->cluster) { /* every node's actors: the records (a local copy), and where each lives */
        json_t *records = srv_cluster_view_records(srv, r->owner), *rec, *where = json_object(), *e;
        json_t *view = srv_cluster_json(srv, r->owner); /* the node of each, with one look at the nodes */
        size_t i;
        json_array_foreach(json_object_get(view, "actors"), i, e)
            json_object_set(where, json_string_value(json_object_get(e, "id")), json_object_get(e, "node"));
        json_decref(view);
        json_array_foreach(records, i, rec) {
            const char *id = json_string_value(json_object_get(rec, "id"));
            char *text = json_dumps(rec, JSON_COMPACT);
            dw_error err;
            srv_actor *fresh = id ? srv_actor_from_record(srv, id, text, strlen(text), &err) : NULL;
            free(text);
            if (!fresh) continue;
            pthread_mutex_lock(&srv->lock);
            srv_actor *here = srv->actors;
            while (here && (strcmp(here->id, id) || here->deleted)) here = here->next;
            json_t *j = srv_actor_json(srv, here && here->actor ? here : fresh); /* awake here: its own state */
            pthread_mutex_unlock(&srv->lock);
            json_t *node = json_object_get(where, id);
            json_object_set_new(j, "node", node ? json_incref(node) : json_null());
            json_array_append_new(data, j);
            srv_actor_entry_free(fresh);
        }
        json_decref(records);
        json_decref(where);
        return srv_respond_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
    }
    pthread_mutex_lock(&srv->lock);
    for (srv_actor *a = srv->actors; a; a = a->next)
        if (!strcmp(a->owner, r->owner)) json_array_append_new(data, srv_actor_json(srv, a));
    pthread_mutex_unlock(&srv->lock);
    return srv_respond_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

static json_t *turn_json(srv_turn *t, srv_actor *a) {
    return json_pack("{s:s, s:s, s:I, s:s%, s:s, s:{s:i, s:i, s:i, s:i}, s:f, s:f, s:f, s:b}", "object", "actor.turn",
                     "actor", a->id, "turn", (json_int_t)t->seq, "output", t->text ? t->text : "", t->text_len,
                     "finish_reason", t->finish, "usage", "prompt_tokens", t->prompt_tokens, "cached_tokens",
                     t->cached_tokens, "completion_tokens", t->completion_tokens, "context_tokens", t->position,
                     "wake_ms", t->wake_ms, "durable_ms", t->log_ms, "ttft_ms",
                     t->t_first > 0 ? (t->t_first - t->t_start) * 1e3 : 0.0, "replayed", t->replayed);
}

static void msg_delta(srv_turn *t, const char *text, size_t len) {
    json_t *j = json_pack("{s:s, s:s%}", "type", "delta", "text", text, len);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    srv_stream_write(t->stream, "data: ", 6);
    srv_stream_write(t->stream, s, strlen(s));
    srv_stream_write(t->stream, "\n\n", 2);
    free(s);
}

static void msg_end(srv_turn *t) {
    json_t *j;
    if (t->http_status)
        j = json_pack("{s:s, s:{s:s, s:s, s:s}}", "type", "error", "error", "message", t->error, "type", "server_error",
                      "code", t->error_code);
    else {
        j = turn_json(t, t->actor);
        json_object_set_new(j, "type", json_string("done"));
    }
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    srv_stream_write(t->stream, "data: ", 6);
    srv_stream_write(t->stream, s, strlen(s));
    srv_stream_write(t->stream, "\n\ndata: [DONE]\n\n", 16);
    free(s);
}

static int message(srv_request *r, srv_actor *a) {
    static const char *const fields[] = {"content", "stream", "max_tokens", "temperature", "top_p", "seed", "stop", "turn", NULL};
    static const char *const max_fields[] = {"max_tokens", NULL};
    srv_server *srv = r->srv;
    json_t *b = srv_request_json(r);
    if (!b) return MHD_YES;
    json_t *content = json_object_get(b, "content"), *stream = json_object_get(b, "stream"), *turn = json_object_get(b, "turn");
    srv_msg_builder m;
    srv_msg_init(&m);
    int max_tokens;
    char *msg = NULL;
    size_t msg_len = 0;
    int failed = srv_reject_unknown_fields(r, b, fields);
    if (!failed && !json_is_string(content))
        failed = 1, srv_respond_error(r, 400, "invalid_request_error", "invalid_value", "content", "content must be a string.");
    if (!failed && turn && !(json_is_integer(turn) && json_integer_value(turn) >= 1))
        failed = 1, srv_respond_error(r, 400, "invalid_request_error", "invalid_value", "turn", "turn must be an integer >= 1.");
    uint64_t expect_turn = turn ? (uint64_t)json_integer_value(turn) : 0;
    if (!failed && a->module->chat_protocol) {
        failed = srv_sampling_fields(r, b, &m, max_fields, a->settings.max_tokens, &max_tokens);
        if (!failed) {
            srv_msg_text(&m, "user", json_string_value(content), json_string_length(content));
            srv_msg_set(&m, "generate", "chat");
        }
    }
    msg = srv_msg_finish(&m, &msg_len);
    if (!failed && !a->module->chat_protocol) { /* other modules get the content's bytes as they are */
        free(msg);
        msg_len = json_string_length(content);
        msg = malloc(msg_len + 1);
        memcpy(msg, json_string_value(content), msg_len + 1);
    }
    int want_stream = json_is_true(stream);
    json_decref(b);
    if (failed) return free(msg), MHD_YES;
    if (!srv_actor_claim(srv, a, SRV_BUSY_TURN)) return free(msg), busy(r);
    if (!srv_take_stream_slot(r)) return srv_actor_release(srv, a), free(msg), MHD_YES;
    srv_turn *t = srv_turn_new(srv);
    t->actor = a;
    pthread_mutex_lock(&srv->lock);
    a->refs++; /* the turn's reference */
    pthread_mutex_unlock(&srv->lock);
    t->message = msg, t->message_len = msg_len;
    t->expect_turn = expect_turn;
    int ret;
    if (want_stream) {
        t->on_delta = msg_delta, t->on_end = msg_end;
        ret = srv_respond_stream(r, t);
    } else {
        srv_run_and_wait(t);
        srv_give_stream_slot(srv, r->key);
        ret = t->http_status ? srv_respond_turn_error(r, t) : srv_respond_json(r, 200, turn_json(t, a));
    }
    srv_turn_release(t);
    return ret;
}

static int state(srv_request *r, srv_actor *a) {
    pthread_mutex_lock(&r->srv->lock);
    json_t *j = srv_actor_json(r->srv, a);
    pthread_mutex_unlock(&r->srv->lock);
    return srv_respond_json(r, 200, j);
}

static int snapshot_or_hibernate(srv_request *r, srv_actor *a, int hibernate) {
    srv_server *srv = r->srv;
    if (!srv_actor_claim(srv, a, SRV_BUSY_UPKEEP)) return busy(r);
    dw_error err;
    char path[1200] = "";
    double t0 = dw__now_ms(), wake_ms = 0;
    dw_status st = DW_OK;
    if (hibernate) st = srv_actor_hibernate(srv, a, &err);
    else if ((st = srv_actor_wake(srv, a, &wake_ms, &err)) == DW_OK)
        st = srv_actor_snapshot(srv, a, path, sizeof path, &err);
    double ms = dw__now_ms() - t0;
    srv_actor_release(srv, a);
    if (st != DW_OK) return srv_respond_error(r, 500, "server_error", "store_failed", NULL, "%s", err.message);
    if (hibernate) return state(r, a);
    struct stat sb;
    json_int_t bytes = stat(path, &sb) == 0 ? (json_int_t)sb.st_size : 0;
    return srv_respond_json(r, 200, json_pack("{s:s, s:s, s:I, s:I, s:f, s:f}", "object", "actor.snapshot", "actor",
                                              a->id, "turns", (json_int_t)a->turns, "bytes", bytes, "ms", ms,
                                              "wake_ms", wake_ms));
}

static int delete_actor(srv_request *r, srv_actor *a) {
    if (!srv_actor_claim(r->srv, a, SRV_BUSY_UPKEEP)) return busy(r);
    srv_actor_delete(r->srv, a);
    srv_actor_release(r->srv, a);
    return srv_respond_json(r, 200, json_pack("{s:s, s:s, s:b}", "id", a->id, "object", "actor.deleted", "deleted", 1));
}

int srv_api_actors(srv_request *r, const char *rest) {
    int get = !strcmp(r->method, "GET"), post = !strcmp(r->method, "POST"), del = !strcmp(r->method, "DELETE");
    if (!*rest) {
        if (post) return create(r);
        if (get) return list(r);
        return srv_respond_error(r, 405, "invalid_request_error", "method_not_allowed", NULL, "Use GET or POST.");
    }
    char id[SRV_ID_MAX];
    const char *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    if (n == 0 || n >= sizeof id) return not_found(r, rest);
    memcpy(id, rest, n);
    id[n] = 0;
    const char *action = slash ? slash + 1 : "";
    srv_actor *a = srv_actor_get(r->srv, r->owner, id);
    if (!a) return not_found(r, id);
    int ret;
    if (!*action && get) ret = state(r, a);
    else if (!*action && del) ret = delete_actor(r, a);
    else if (!strcmp(action, "messages") && post) ret = message(r, a);
    else if (!strcmp(action, "snapshot") && post) ret = snapshot_or_hibernate(r, a, 0);
    else if (!strcmp(action, "hibernate") && post) ret = snapshot_or_hibernate(r, a, 1);
    else ret = srv_respond_error(r, 404, "invalid_request_error", "not_found", NULL, "Unknown request URL: %s %s", r->method, r->url);
    srv_actor_put(r->srv, a);
    return ret;
}

int srv_api_stats(srv_request *r) {
    srv_server *srv = r->srv;
    pthread_mutex_lock(&srv->lock);
    int awake = 0, total = 0, mine = 0;
    size_t resident = 0;
    for (srv_actor *a = srv->actors; a; a = a->next) {
        total++, awake += a->actor != NULL, resident += a->memory_bytes + a->kv_bytes;
        mine += !strcmp(a->owner, r->owner);
    }
    json_t *j = json_pack(
        "{s:f, s:I, s:I, s:I, s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:I}", "uptime_s",
        dw__now_s() - srv->started_at, "tokens_generated", (json_int_t)srv->tokens_generated, "turns_done",
        (json_int_t)srv->turns_done, "turns_failed", (json_int_t)srv->turns_failed, "actors", total, "actors_mine", mine,
        "awake", awake, "turns_running", srv->turns_running, "streams_open", srv->streams_open, "wakes",
        (json_int_t)srv->wakes, "hibernations", (json_int_t)srv->hibernations, "replayed_turns",
        (json_int_t)srv->replayed_turns, "replay_mismatches", (json_int_t)srv->replay_mismatches, "resident_bytes",
        (json_int_t)resident, "wake_ms_avg", srv->wakes ? srv->wake_ms_total / (double)srv->wakes : 0.0,
        "durable_ms_avg", srv->turns_logged ? srv->log_ms_total / (double)srv->turns_logged : 0.0, "hibernate_ms_avg",
        srv->hibernations ? srv->hibernate_ms_total / (double)srv->hibernations : 0.0, "memory_budget",
        (json_int_t)srv->o.memory_budget, "max_tokens", (json_int_t)srv->o.max_tokens);
    pthread_mutex_unlock(&srv->lock);
    /* the default model's batched steps: with tokens_generated, whether the steps ran full and
     * busy while clients were served (a load generator reads them before and after a run) */
    struct dw_model *model;
    struct dw_tokenizer *tok;
    dw_error err = {0};
    if (dw_runtime_model(srv->rt, dw_runtime_model_name(srv->rt, 0), srv->backend, &model, &tok, NULL, &err) == DW_OK &&
        dw_model_batching(model)) {
        dw_batch_stats b;
        dw_model_batch_stats(model, &b);
        json_object_set_new(j, "batch",
                            json_pack("{s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:I}", "steps", (json_int_t)b.steps,
                                      "rows", (json_int_t)b.rows, "decode_rows", (json_int_t)b.decode_rows,
                                      "prefill_rows", (json_int_t)b.prefill_rows, "max_rows", (json_int_t)b.max_rows,
                                      "busy_s", b.busy_s, "blocks_used", (json_int_t)b.blocks_used, "blocks_total",
                                      (json_int_t)b.blocks_total, "evictions", (json_int_t)b.evictions, "restores",
                                      (json_int_t)b.restores));
    }
    return srv_respond_json(r, 200, j);
}

int srv_api_cluster(srv_request *r) {
    srv_server *srv = r->srv;
    if (!srv->cluster)
        return srv_respond_json(r, 200, json_pack("{s:n, s:[], s:[]}", "node", "nodes", "actors"));
    json_t *j = srv_cluster_json(srv, r->owner); /* only the key's actors: the records say whose */
    return srv_respond_json(r, 200, j);
}
