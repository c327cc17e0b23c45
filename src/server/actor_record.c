/* An actor's entry as a record and back: the JSON the store keeps for it (actor.json in a local
 * store, its value in the dw_actors bucket on a cluster), a fresh entry, the last turn it
 * remembers for a client's retry, and the context and KV bytes an actor of a model gets. */
#include <stdlib.h>
#include <string.h>

#include "core/assert.h"
#include "core/clock.h"
#include "driftwood/model.h"
#include "server/server_impl.h"

srv_actor *srv_actor_entry_new(void) {
    srv_actor *a = calloc(1, sizeof *a);
    DW_ASSERT(a);
    a->log_fd = -1;
    return a;
}

void srv_actor_entry_free(srv_actor *a) {
    free(a->settings.system);
    free(a->last_message);
    free(a->last_reply);
    free(a);
}

void srv_actor_set_last_turn(srv_actor *a, const char *message, size_t message_len, const char *reply, size_t reply_len) {
    free(a->last_message);
    free(a->last_reply);
    a->last_message = malloc(message_len + 1);
    a->last_reply = malloc(reply_len + 1);
    DW_ASSERT(a->last_message && a->last_reply);
    memcpy(a->last_message, message, message_len), a->last_message[message_len] = 0;
    memcpy(a->last_reply, reply, reply_len), a->last_reply[reply_len] = 0;
    a->last_message_len = message_len, a->last_reply_len = reply_len;
}

char *srv_actor_record(const srv_actor *a) {
    json_t *st = json_pack("{s:s, s:f, s:f, s:I, s:i}", "model", a->settings.model, "temperature",
                           a->settings.temperature, "top_p", a->settings.top_p, "seed", (json_int_t)a->settings.seed,
                           "max_tokens", a->settings.max_tokens);
    if (a->settings.system) json_object_set_new(st, "system", json_string(a->settings.system));
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:f, s:o, s:I, s:i, s:I}", "id", a->id, "owner", a->owner, "module",
                          a->module->name, "kind", a->kind, "created_at", a->created_at, "settings", st, "turns",
                          (json_int_t)a->turns, "context_tokens", a->context_tokens, "tokens_generated",
                          (json_int_t)a->tokens_generated);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return text;
}

srv_actor *srv_actor_from_record(srv_server *srv, const char *id, const char *text, size_t len, dw_error *err) {
    if (strlen(id) >= SRV_ID_MAX) {
        dw_error_set(err, DW_ERR_FORMAT, "store: '%.64s...' is not an actor id", id);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    const char *jid = NULL, *owner = NULL, *module = NULL, *kind = "actor", *model = NULL, *system = NULL;
    json_t *st = NULL;
    double created = 0, temp = 0, top_p = 1;
    json_int_t seed = 0, turns = 0, gen = 0;
    int max_tokens = 256, ctx_tokens = 0;
    if (!j || json_unpack_ex(j, &je, 0, "{s:s, s:s, s:s, s?:s, s?:F, s:o, s?:I, s?:i, s?:I}", "id", &jid, "owner", &owner,
                             "module", &module, "kind", &kind, "created_at", &created, "settings", &st, "turns",
                             &turns, "context_tokens", &ctx_tokens, "tokens_generated", &gen) ||
        json_unpack_ex(st, &je, 0, "{s:s, s?:s, s?:F, s?:F, s?:I, s?:i}", "model", &model, "system", &system,
                       "temperature", &temp, "top_p", &top_p, "seed", &seed, "max_tokens", &max_tokens) ||
        strcmp(jid, id)) {
        json_decref(j);
        dw_error_set(err, DW_ERR_FORMAT, "actor %s: not an actor record (%s)", id, je.text);
        return NULL;
    }
    const srv_module *m = NULL;
    for (int i = 0; i < srv->n_modules; i++)
        if (!strcmp(srv->modules[i].name, module)) m = &srv->modules[i];
    if (!m || !dw_runtime_model_dir(srv->rt, model)) {
        dw_error_set(err, DW_ERR_NOT_FOUND, "actor %s: module '%s' or model '%s' is not served now", id, module, model);
        json_decref(j);
        return NULL;
    }
    srv_actor *a = srv_actor_entry_new();
    snprintf(a->id, sizeof a->id, "%.*s", SRV_ID_MAX - 1, id);
    snprintf(a->owner, sizeof a->owner, "%s", owner);
    snprintf(a->kind, sizeof a->kind, "%s", kind);
    a->module = m;
    snprintf(a->settings.model, sizeof a->settings.model, "%s", model);
    a->settings.system = system ? strdup(system) : NULL;
    a->settings.temperature = temp, a->settings.top_p = top_p, a->settings.seed = seed, a->settings.max_tokens = max_tokens;
    a->created_at = a->last_active_at = created;
    a->last_active = dw__now_s();
    a->turns = (uint64_t)turns, a->context_tokens = ctx_tokens, a->tokens_generated = (uint64_t)gen;
    a->snap_turns = (uint64_t)turns; /* what a record says was snapshotted; a wake reads the truth */
    json_decref(j);
    return a;
}

/* The context of an actor's session on this model: --ctx, else the model's own capped at
 * SRV_DEFAULT_CTX (a long-context model's full window would make every actor's KV gigabytes). */
int srv_model_ctx(srv_server *srv, const char *model_name) {
    struct dw_model *model;
    struct dw_tokenizer *tok;
    dw_error err;
    if (dw_runtime_model(srv->rt, model_name, srv->backend, &model, &tok, NULL, &err) != DW_OK) return srv->o.ctx;
    int max = dw_model_get_config(model)->max_position_embeddings;
    int want = srv->o.ctx ? srv->o.ctx : SRV_DEFAULT_CTX;
    return want < max ? want : max;
}

/* KV bytes an actor on this model holds while awake (its one session at full capacity). */
size_t srv_actor_kv_bytes(srv_server *srv, const char *model_name) {
    struct dw_model *model;
    struct dw_tokenizer *tok;
    dw_error err;
    if (dw_runtime_model(srv->rt, model_name, srv->backend, &model, &tok, NULL, &err) != DW_OK) return 0;
    const dw_model_config *c = dw_model_get_config(model);
    const dw_model_use_options *uo = dw_runtime_model_options(srv->rt, model_name);
    size_t ctx = (size_t)srv_model_ctx(srv, model_name);
    return ctx * (size_t)c->n_layers * 2 * (size_t)c->n_kv_heads * (size_t)c->head_dim * (uo && uo->kv_f32 ? 4 : 2);
}

