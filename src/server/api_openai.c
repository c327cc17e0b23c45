/* The OpenAI-compatible endpoints: GET /v1/models, POST /v1/chat/completions, /v1/completions
 * (stateless: each request runs on an ephemeral actor made for it) and /v1/responses (stateful:
 * a chain of responses linked by previous_response_id is one stored actor, so continuing it
 * prefills only the new input). Shapes follow OpenAI's API reference: objects, streamed chunks
 * and events, usage counts, and errors as {"error": {message, type, param, code}}. */
#include <inttypes.h>
#include <math.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/assert.h"
#include "server/server_impl.h"

enum { CHAT, COMPLETION, RESPONSE };

typedef struct oai {
    int kind;
    char id[96], model[SRV_NAME_MAX], prev[96], msg_id[64];
    long long created;
    int include_usage, max_output, seq;
    double temperature, top_p;
} oai;

static void sse(srv_stream *s, const char *event, json_t *data) {
    char *text = json_dumps(data, JSON_COMPACT);
    json_decref(data);
    size_t cap = strlen(text) + (event ? strlen(event) : 0) + 32;
    char *buf = malloc(cap);
    int n = event ? snprintf(buf, cap, "event: %s\ndata: %s\n\n", event, text) : snprintf(buf, cap, "data: %s\n\n", text);
    srv_stream_write(s, buf, (size_t)n);
    free(buf);
    free(text);
}

static void sse_done(srv_stream *s) { srv_stream_write(s, "data: [DONE]\n\n", 14); }

static json_t *error_obj(srv_turn *t) {
    return json_pack("{s:s, s:s, s:n, s:s}", "message", t->error, "type",
                     t->http_status == 400 ? "invalid_request_error" : "server_error", "param", "code", t->error_code);
}

static json_t *usage_chat(srv_turn *t) {
    return json_pack("{s:i, s:i, s:i, s:{s:i}, s:{s:i}}", "prompt_tokens", t->prompt_tokens, "completion_tokens",
                     t->completion_tokens, "total_tokens", t->prompt_tokens + t->completion_tokens,
                     "prompt_tokens_details", "cached_tokens", t->cached_tokens, "completion_tokens_details",
                     "reasoning_tokens", 0);
}

/* ---- request fields shared by the endpoints ------------------------------------------------ */
static int bad(srv_request *r, const char *param, const char *msg) {
    srv_respond_error(r, 400, "invalid_request_error", "invalid_value", param, "%s", msg);
    return 1;
}

int srv_sampling_fields(srv_request *r, json_t *body, srv_msg_builder *m, const char *const *max_fields,
                        int default_max, int *max_tokens) {
    char v[40];
    json_t *x;
    if ((x = json_object_get(body, "temperature")) && !json_is_null(x)) {
        double d = json_number_value(x);
        if (!json_is_number(x) || !(d >= 0 && d <= 2)) return bad(r, "temperature", "temperature must be a number from 0 to 2.");
        snprintf(v, sizeof v, "%.9g", d), srv_msg_set(m, "temp", v);
    }
    if ((x = json_object_get(body, "top_p")) && !json_is_null(x)) {
        double d = json_number_value(x);
        if (!json_is_number(x) || !(d > 0 && d <= 1)) return bad(r, "top_p", "top_p must be a number in (0, 1].");
        snprintf(v, sizeof v, "%.9g", d), srv_msg_set(m, "top_p", v);
    }
    if ((x = json_object_get(body, "seed")) && !json_is_null(x)) {
        if (!json_is_integer(x)) return bad(r, "seed", "seed must be an integer.");
        snprintf(v, sizeof v, "%" PRIu64, (uint64_t)json_integer_value(x)), srv_msg_set(m, "seed", v);
    }
    if ((x = json_object_get(body, "stop")) && !json_is_null(x)) {
        if (json_is_string(x)) srv_msg_text(m, "stop", json_string_value(x), json_string_length(x));
        else if (json_is_array(x) && json_array_size(x) <= 4) {
            size_t i;
            json_t *s;
            json_array_foreach(x, i, s) {
                if (!json_is_string(s)) return bad(r, "stop", "stop must be a string or an array of up to 4 strings.");
                srv_msg_text(m, "stop", json_string_value(s), json_string_length(s));
            }
        } else return bad(r, "stop", "stop must be a string or an array of up to 4 strings.");
    }
    *max_tokens = default_max;
    for (const char *const *f = max_fields; *f; f++)
        if ((x = json_object_get(body, *f)) && !json_is_null(x)) {
            json_int_t n = json_integer_value(x);
            if (!json_is_integer(x) || n < 1) return bad(r, *f, "The token limit must be a positive integer.");
            if (n > r->srv->o.max_tokens) {
                char msg[160];
                snprintf(msg, sizeof msg, "%s is %lld; this server generates at most %d tokens per request.", *f,
                         (long long)n, r->srv->o.max_tokens);
                return bad(r, *f, msg);
            }
            *max_tokens = (int)n;
        }
    snprintf(v, sizeof v, "%d", *max_tokens), srv_msg_set(m, "max", v);
    return 0;
}

/* Fields OpenAI defines that change nothing here at their neutral values; others are refused. */
static int neutral_fields(srv_request *r, json_t *b) {
    json_t *x;
    if ((x = json_object_get(b, "n")) && !json_is_null(x) && json_integer_value(x) != 1)
        return bad(r, "n", "Only n = 1 is supported.");
    static const char *const zero[] = {"frequency_penalty", "presence_penalty"};
    for (int i = 0; i < 2; i++)
        if ((x = json_object_get(b, zero[i])) && !json_is_null(x) && json_number_value(x) != 0)
            return bad(r, zero[i], "Only 0 is supported.");
    if ((x = json_object_get(b, "logprobs")) && !json_is_null(x) && !json_is_false(x))
        return bad(r, "logprobs", "logprobs are not supported.");
    if ((x = json_object_get(b, "echo")) && json_is_true(x)) return bad(r, "echo", "echo is not supported.");
    if ((x = json_object_get(b, "response_format")) && !json_is_null(x)) {
        const char *t = json_string_value(json_object_get(x, "type"));
        if (!t || strcmp(t, "text")) return bad(r, "response_format", "Only the text response format is supported.");
    }
    return 0;
}

static int check_model(srv_request *r, json_t *b, const char **model) {
    json_t *m = json_object_get(b, "model");
    if (!json_is_string(m)) {
        srv_respond_error(r, 400, "invalid_request_error", "missing_required_parameter", "model",
                          "You must provide a model parameter.");
        return 1;
    }
    *model = json_string_value(m);
    if (!dw_runtime_model_dir(r->srv->rt, *model)) {
        srv_respond_error(r, 404, "invalid_request_error", "model_not_found", "model",
                          "The model `%s` does not exist or you do not have access to it.", *model);
        return 1;
    }
    if (!r->srv->modules[0].chat_protocol) {
        srv_respond_error(r, 400, "invalid_request_error", "unsupported", NULL,
                          "The first served module does not speak the chat protocol.");
        return 1;
    }
    return 0;
}

static int stream_fields(srv_request *r, json_t *b, int *stream, int *include_usage) {
    json_t *x = json_object_get(b, "stream");
    if (x && !json_is_null(x) && !json_is_boolean(x)) return bad(r, "stream", "stream must be a boolean.");
    *stream = json_is_true(x);
    *include_usage = 0;
    json_t *so = json_object_get(b, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return bad(r, "stream_options", "stream_options must be an object.");
        if (!*stream) return bad(r, "stream_options", "stream_options is only allowed when stream is true.");
        *include_usage = json_is_true(json_object_get(so, "include_usage"));
    }
    return 0;
}

/* Text content: a string, or an array of parts {"type": "text"|"input_text"|"output_text", "text"}. */
static int content_text(json_t *c, char **out, size_t *len) {
    if (json_is_string(c)) {
        *len = json_string_length(c);
        *out = malloc(*len + 1);
        memcpy(*out, json_string_value(c), *len + 1);
        return 0;
    }
    if (!json_is_array(c)) return -1;
    size_t cap = 64, n = 0, i;
    char *buf = malloc(cap);
    json_t *part;
    json_array_foreach(c, i, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        json_t *text = json_object_get(part, "text");
        if (!type || !json_is_string(text) || (strcmp(type, "text") && strcmp(type, "input_text") && strcmp(type, "output_text"))) {
            free(buf);
            return -1;
        }
        size_t l = json_string_length(text);
        if (n + l + 1 > cap) buf = realloc(buf, cap = (n + l + 1) * 2);
        memcpy(buf + n, json_string_value(text), l);
        n += l;
    }
    buf[n] = 0;
    *out = buf, *len = n;
    return 0;
}

/* Appends messages [{role, content}] to m. */
static int add_messages(srv_request *r, json_t *msgs, srv_msg_builder *m, const char *param) {
    size_t i;
    json_t *msg;
    json_array_foreach(msgs, i, msg) {
        const char *role = json_string_value(json_object_get(msg, "role"));
        const char *type = json_string_value(json_object_get(msg, "type"));
        char *text;
        size_t len;
        if (!json_is_object(msg) || !role || (type && strcmp(type, "message")))
            return bad(r, param, "Each message must be an object with a role and a content.");
        const char *key = !strcmp(role, "user") ? "user" : !strcmp(role, "assistant") ? "assistant"
                        : !strcmp(role, "system") || !strcmp(role, "developer") ? "system" : NULL;
        if (!key) return bad(r, param, "Roles other than system, developer, user and assistant are not supported.");
        if (content_text(json_object_get(msg, "content"), &text, &len))
            return bad(r, param, "A message's content must be a string or an array of text parts.");
        srv_msg_text(m, key, text, len);
        free(text);
    }
    return 0;
}

static srv_turn *ephemeral_turn(srv_request *r, const char *model, oai *e) {
    srv_turn *t = srv_turn_new(r->srv);
    t->module = &r->srv->modules[0];
    snprintf(t->settings.model, sizeof t->settings.model, "%s", model);
    t->settings.temperature = 1.0, t->settings.top_p = 1.0, t->settings.max_tokens = r->srv->o.default_max_tokens;
    t->endpoint = e, t->endpoint_free = free;
    return t;
}

/* What differs between the stateless endpoints (chat and text completions). */
typedef struct stateless_kind {
    int kind;
    const char *id_prefix;
    void (*on_start)(srv_turn *t); /* streaming (on_start may be NULL) */
    void (*on_delta)(srv_turn *t, const char *text, size_t len);
    void (*on_end)(srv_turn *t);
    json_t *(*whole)(srv_turn *t); /* the response body of a finished turn, not streamed */
} stateless_kind;

/* Runs the message m on an ephemeral actor and answers: streamed (server-sent events) or whole.
 * Takes b (model points into it) and m. */
static int run_stateless(srv_request *r, json_t *b, srv_msg_builder *m, const stateless_kind *k, const char *model,
                         int include_usage, int stream) {
    oai *e = calloc(1, sizeof *e);
    DW_ASSERT(e);
    e->kind = k->kind, e->created = (long long)time(NULL), e->include_usage = include_usage;
    srv_new_id(k->id_prefix, e->id, sizeof e->id);
    snprintf(e->model, sizeof e->model, "%s", model);
    json_decref(b);
    srv_turn *t = ephemeral_turn(r, e->model, e);
    t->message = srv_msg_finish(m, &t->message_len);
    if (!srv_take_stream_slot(r)) return srv_turn_release(t), MHD_YES;
    int ret;
    if (stream) {
        t->on_start = k->on_start, t->on_delta = k->on_delta, t->on_end = k->on_end;
        ret = srv_respond_stream(r, t);
    } else {
        srv_run_and_wait(t);
        srv_give_stream_slot(r->srv, r->key);
        ret = t->http_status ? srv_respond_turn_error(r, t) : srv_respond_json(r, 200, k->whole(t));
    }
    srv_turn_release(t);
    return ret;
}

/* ---- GET /v1/models ------------------------------------------------------------------------ */
int srv_api_models(srv_request *r) {
    json_t *data = json_array();
    const char *name, *want = !strncmp(r->url, "/v1/models/", 11) ? r->url + 11 : NULL;
    for (int i = 0; (name = dw_runtime_model_name(r->srv->rt, i)); i++) {
        json_t *m = json_pack("{s:s, s:s, s:I, s:s}", "id", name, "object", "model", "created",
                              (json_int_t)r->srv->started_wall, "owned_by", "driftwood");
        if (want && !strcmp(want, name)) {
            json_decref(data);
            return srv_respond_json(r, 200, m);
        }
        json_array_append_new(data, m);
    }
    if (want) {
        json_decref(data);
        return srv_respond_error(r, 404, "invalid_request_error", "model_not_found", "model",
                                 "The model `%s` does not exist or you do not have access to it.", want);
    }
    return srv_respond_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* ---- POST /v1/chat/completions ----------------------------------------------------------- */
static json_t *chat_chunk(oai *e, json_t *delta, const char *finish) {
    json_t *choice = json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "delta", delta, "logprobs", "finish_reason",
                               finish ? json_string(finish) : json_null());
    return json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", e->id, "object", "chat.completion.chunk", "created",
                     (json_int_t)e->created, "model", e->model, "choices", choice);
}

static void chat_start(srv_turn *t) {
    oai *e = t->endpoint;
    sse(t->stream, NULL, chat_chunk(e, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL));
}

static void chat_delta(srv_turn *t, const char *text, size_t len) {
    oai *e = t->endpoint;
    sse(t->stream, NULL, chat_chunk(e, json_pack("{s:s%}", "content", text, len), NULL));
}

/* The end of a streamed chat or text completion: the error, or the last chunk (made only then)
 * and, when asked for, a chunk of `object` with the usage and no choices; then [DONE]. */
static void stream_end(srv_turn *t, json_t *(*last_chunk)(srv_turn *t), const char *object) {
    oai *e = t->endpoint;
    if (t->http_status) sse(t->stream, NULL, json_pack("{s:o}", "error", error_obj(t)));
    else {
        sse(t->stream, NULL, last_chunk(t));
        if (e->include_usage)
            sse(t->stream, NULL,
                json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", e->id, "object", object, "created",
                          (json_int_t)e->created, "model", e->model, "choices", "usage", usage_chat(t)));
    }
    sse_done(t->stream);
}

static json_t *chat_last_chunk(srv_turn *t) { return chat_chunk(t->endpoint, json_object(), t->finish); }
static void chat_end(srv_turn *t) { stream_end(t, chat_last_chunk, "chat.completion.chunk"); }

static json_t *chat_whole(srv_turn *t) {
    oai *e = t->endpoint;
    json_t *choice = json_pack("{s:i, s:{s:s, s:s%, s:n}, s:n, s:s}", "index", 0, "message", "role", "assistant",
                               "content", t->text ? t->text : "", t->text_len, "refusal", "logprobs", "finish_reason",
                               t->finish);
    return json_pack("{s:s, s:s, s:I, s:s, s:[o], s:o}", "id", e->id, "object", "chat.completion", "created",
                     (json_int_t)e->created, "model", e->model, "choices", choice, "usage", usage_chat(t));
}

int srv_api_chat_completions(srv_request *r) {
    static const char *const fields[] = {"model", "messages", "stream", "stream_options", "temperature", "top_p",
                                         "max_tokens", "max_completion_tokens", "stop", "seed", "n", "user", "store",
                                         "metadata", "frequency_penalty", "presence_penalty", "logprobs",
                                         "response_format", NULL};
    static const char *const max_fields[] = {"max_tokens", "max_completion_tokens", NULL};
    json_t *b = srv_request_json(r);
    if (!b) return MHD_YES;
    const char *model;
    int stream, include_usage, max_tokens;
    json_t *msgs = json_object_get(b, "messages");
    srv_msg_builder m;
    srv_msg_init(&m);
    if (srv_reject_unknown_fields(r, b, fields) || check_model(r, b, &model) || neutral_fields(r, b) ||
        stream_fields(r, b, &stream, &include_usage) ||
        ((!json_is_array(msgs) || !json_array_size(msgs)) && bad(r, "messages", "messages must be a non-empty array.")) ||
        add_messages(r, msgs, &m, "messages") ||
        srv_sampling_fields(r, b, &m, max_fields, r->srv->o.default_max_tokens, &max_tokens)) {
        free(srv_msg_finish(&m, &(size_t){0}));
        json_decref(b);
        return MHD_YES;
    }
    srv_msg_set(&m, "generate", "chat");
    static const stateless_kind chat = {CHAT, "chatcmpl-", chat_start, chat_delta, chat_end, chat_whole};
    return run_stateless(r, b, &m, &chat, model, include_usage, stream);
}

/* ---- POST /v1/completions ------------------------------------------------------------------ */
static json_t *completion_obj(oai *e, const char *text, size_t len, const char *finish) {
    json_t *choice = json_pack("{s:s%, s:i, s:n, s:o}", "text", text, len, "index", 0, "logprobs", "finish_reason",
                               finish ? json_string(finish) : json_null());
    return json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", e->id, "object", "text_completion", "created",
                     (json_int_t)e->created, "model", e->model, "choices", choice);
}

static void completion_delta(srv_turn *t, const char *text, size_t len) {
    sse(t->stream, NULL, completion_obj(t->endpoint, text, len, NULL));
}

static json_t *completion_last_chunk(srv_turn *t) { return completion_obj(t->endpoint, "", 0, t->finish); }
static void completion_end(srv_turn *t) { stream_end(t, completion_last_chunk, "text_completion"); }

static json_t *completion_whole(srv_turn *t) {
    json_t *o = completion_obj(t->endpoint, t->text ? t->text : "", t->text_len, t->finish);
    json_object_set_new(o, "usage", usage_chat(t));
    return o;
}

int srv_api_completions(srv_request *r) {
    static const char *const fields[] = {"model", "prompt", "stream", "stream_options", "temperature", "top_p",
                                         "max_tokens", "stop", "seed", "n", "user", "echo", "logprobs",
                                         "frequency_penalty", "presence_penalty", "suffix", NULL};
    static const char *const max_fields[] = {"max_tokens", NULL};
    json_t *b = srv_request_json(r);
    if (!b) return MHD_YES;
    const char *model;
    int stream, include_usage, max_tokens;
    json_t *prompt = json_object_get(b, "prompt");
    if (json_is_array(prompt) && json_array_size(prompt) == 1) prompt = json_array_get(prompt, 0);
    srv_msg_builder m;
    srv_msg_init(&m);
    if (srv_reject_unknown_fields(r, b, fields) || check_model(r, b, &model) || neutral_fields(r, b) ||
        stream_fields(r, b, &stream, &include_usage) ||
        (!json_is_string(prompt) && bad(r, "prompt", "prompt must be a string (or an array of one string).")) ||
        (json_object_get(b, "suffix") && !json_is_null(json_object_get(b, "suffix")) &&
         bad(r, "suffix", "suffix is not supported.")) ||
        srv_sampling_fields(r, b, &m, max_fields, 16 < r->srv->o.max_tokens ? 16 : r->srv->o.max_tokens, &max_tokens)) {
        free(srv_msg_finish(&m, &(size_t){0}));
        json_decref(b);
        return MHD_YES;
    }
    srv_msg_text(&m, "raw", json_string_value(prompt), json_string_length(prompt));
    srv_msg_set(&m, "generate", "raw");
    static const stateless_kind completion = {COMPLETION, "cmpl-", NULL, completion_delta, completion_end,
                                              completion_whole};
    return run_stateless(r, b, &m, &completion, model, include_usage, stream);
}

/* ---- POST /v1/responses ------------------------------------------------------------------- */
/* A response id names its conversation (the actor) and its turn: resp_<24 hex>_<turn>. */
int srv_response_actor_id(const char *id, char *actor_id, size_t size, uint64_t *turn) {
    char hex[32];
    unsigned long long n;
    int used = 0;
    if (sscanf(id, "resp_%24[0-9a-f]_%llu%n", hex, &n, &used) != 2 || id[used] || strlen(hex) != 24) return -1;
    snprintf(actor_id, size, "conv_%s", hex);
    *turn = n;
    return 0;
}

static json_t *message_item(oai *e, srv_turn *t, const char *status) {
    json_t *content = json_array();
    if (t) json_array_append_new(content, json_pack("{s:s, s:s%, s:[]}", "type", "output_text", "text",
                                                    t->text ? t->text : "", t->text_len, "annotations"));
    return json_pack("{s:s, s:s, s:s, s:s, s:o}", "type", "message", "id", e->msg_id, "status", status, "role",
                     "assistant", "content", content);
}

static json_t *response_obj(oai *e, srv_turn *t, const char *status) {
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:[], s:o, s:n, s:o, s:f, s:f, s:b, s:s, s:[], s:{s:{s:s}}, "
                          "s:s, s:n, s:n, s:{}, s:b}",
                          "id", e->id, "object", "response", "created_at", (json_int_t)e->created, "status", status,
                          "model", e->model, "output", "previous_response_id", e->prev[0] ? json_string(e->prev) : json_null(),
                          "instructions", "max_output_tokens", json_integer(e->max_output), "temperature", e->temperature,
                          "top_p", e->top_p, "parallel_tool_calls", 0, "tool_choice", "none", "tools", "text", "format",
                          "type", "text", "truncation", "disabled", "error", "incomplete_details", "metadata", "store", 1);
    if (t && !t->http_status && strcmp(status, "in_progress")) {
        json_array_append_new(json_object_get(o, "output"), message_item(e, t, "completed"));
        json_object_set_new(o, "usage",
                            json_pack("{s:i, s:{s:i}, s:i, s:{s:i}, s:i}", "input_tokens", t->prompt_tokens,
                                      "input_tokens_details", "cached_tokens", t->cached_tokens, "output_tokens",
                                      t->completion_tokens, "output_tokens_details", "reasoning_tokens", 0,
                                      "total_tokens", t->prompt_tokens + t->completion_tokens));
        if (!strcmp(status, "incomplete"))
            json_object_set_new(o, "incomplete_details", json_pack("{s:s}", "reason", "max_output_tokens"));
    } else json_object_set_new(o, "usage", json_null());
    return o;
}

static void event(srv_turn *t, const char *type, json_t *data) {
    oai *e = t->endpoint;
    json_object_set_new(data, "type", json_string(type));
    json_object_set_new(data, "sequence_number", json_integer(e->seq++));
    sse(t->stream, type, data);
}

static json_t *text_part(srv_turn *t) {
    return json_pack("{s:s, s:s%, s:[]}", "type", "output_text", "text", t && t->text ? t->text : "", t ? t->text_len : 0,
                     "annotations");
}

static void response_start(srv_turn *t) {
    oai *e = t->endpoint;
    event(t, "response.created", json_pack("{s:o}", "response", response_obj(e, NULL, "in_progress")));
    event(t, "response.in_progress", json_pack("{s:o}", "response", response_obj(e, NULL, "in_progress")));
    event(t, "response.output_item.added", json_pack("{s:i, s:o}", "output_index", 0, "item", message_item(e, NULL, "in_progress")));
    event(t, "response.content_part.added",
          json_pack("{s:s, s:i, s:i, s:o}", "item_id", e->msg_id, "output_index", 0, "content_index", 0, "part", text_part(NULL)));
}

static void response_delta(srv_turn *t, const char *text, size_t len) {
    oai *e = t->endpoint;
    event(t, "response.output_text.delta", json_pack("{s:s, s:i, s:i, s:s%, s:[]}", "item_id", e->msg_id, "output_index",
                                                     0, "content_index", 0, "delta", text, len, "logprobs"));
}

static const char *response_status(srv_turn *t) { return !strcmp(t->finish, "length") ? "incomplete" : "completed"; }

static void response_end(srv_turn *t) {
    oai *e = t->endpoint;
    if (t->http_status) {
        json_t *resp = response_obj(e, t, "failed");
        json_object_set_new(resp, "error", json_pack("{s:s, s:s}", "code", t->error_code, "message", t->error));
        event(t, "response.failed", json_pack("{s:o}", "response", resp));
        return;
    }
    event(t, "response.output_text.done", json_pack("{s:s, s:i, s:i, s:s%, s:[]}", "item_id", e->msg_id, "output_index", 0,
                                                     "content_index", 0, "text", t->text ? t->text : "", t->text_len,
                                                     "logprobs"));
    event(t, "response.content_part.done",
          json_pack("{s:s, s:i, s:i, s:o}", "item_id", e->msg_id, "output_index", 0, "content_index", 0, "part", text_part(t)));
    event(t, "response.output_item.done", json_pack("{s:i, s:o}", "output_index", 0, "item", message_item(e, t, "completed")));
    const char *status = response_status(t);
    event(t, !strcmp(status, "completed") ? "response.completed" : "response.incomplete",
          json_pack("{s:o}", "response", response_obj(e, t, status)));
}

int srv_api_responses(srv_request *r) {
    static const char *const fields[] = {"model", "input", "instructions", "previous_response_id", "max_output_tokens",
                                         "temperature", "top_p", "stream", "store", "metadata", "user", "text",
                                         "truncation", "parallel_tool_calls", "tools", "tool_choice", NULL};
    static const char *const max_fields[] = {"max_output_tokens", NULL};
    srv_server *srv = r->srv;
    json_t *b = srv_request_json(r);
    if (!b) return MHD_YES;
    const char *model;
    int stream, include_usage, max_tokens;
    json_t *input = json_object_get(b, "input"), *instr = json_object_get(b, "instructions"),
           *prev = json_object_get(b, "previous_response_id"), *tools = json_object_get(b, "tools");
    srv_msg_builder m;
    srv_msg_init(&m);
    int failed = srv_reject_unknown_fields(r, b, fields) || check_model(r, b, &model) ||
                 stream_fields(r, b, &stream, &include_usage) ||
                 (tools && !json_is_null(tools) && json_array_size(tools) && bad(r, "tools", "Tools are not supported.")) ||
                 (instr && !json_is_null(instr) && !json_is_string(instr) && bad(r, "instructions", "instructions must be a string.")) ||
                 (prev && !json_is_null(prev) && !json_is_string(prev) &&
                  bad(r, "previous_response_id", "previous_response_id must be a string."));
    if (!failed && json_is_string(instr)) srv_msg_text(&m, "system", json_string_value(instr), json_string_length(instr));
    if (!failed) {
        if (json_is_string(input)) srv_msg_text(&m, "user", json_string_value(input), json_string_length(input));
        else if (json_is_array(input) && json_array_size(input)) failed = add_messages(r, input, &m, "input");
        else failed = bad(r, "input", "input must be a string or a non-empty array of messages.");
    }
    if (!failed) failed = srv_sampling_fields(r, b, &m, max_fields, srv->o.default_max_tokens, &max_tokens);
    if (failed) {
        free(srv_msg_finish(&m, &(size_t){0}));
        json_decref(b);
        return MHD_YES;
    }
    srv_msg_set(&m, "generate", "chat");
    oai *e = calloc(1, sizeof *e);
    e->kind = RESPONSE, e->created = (long long)time(NULL), e->max_output = max_tokens;
    json_t *x;
    e->temperature = (x = json_object_get(b, "temperature")) && json_is_number(x) ? json_number_value(x) : 1.0;
    e->top_p = (x = json_object_get(b, "top_p")) && json_is_number(x) ? json_number_value(x) : 1.0;
    snprintf(e->model, sizeof e->model, "%s", model);
    srv_new_id("msg_", e->msg_id, sizeof e->msg_id);
    srv_actor *a = NULL;
    int ret = MHD_YES;
    uint64_t expect_turn = 0;
    srv_history fork_from = {0};
    size_t msg_len;
    char *msg = srv_msg_finish(&m, &msg_len);
    if (json_is_string(prev)) {
        char actor_id[SRV_ID_MAX];
        uint64_t turn;
        snprintf(e->prev, sizeof e->prev, "%s", json_string_value(prev));
        if (srv_response_actor_id(e->prev, actor_id, sizeof actor_id, &turn) || !(a = srv_actor_get(srv, r->owner, actor_id))) {
            ret = srv_respond_error(r, 404, "invalid_request_error", "previous_response_not_found", "previous_response_id",
                                    "Previous response with id '%s' not found.", e->prev);
            goto out;
        }
        if (strcmp(a->settings.model, model)) {
            ret = srv_respond_error(r, 400, "invalid_request_error", "invalid_value", "model",
                                    "This conversation runs on model `%s`.", a->settings.model);
            goto out;
        }
        if (!srv_actor_claim(srv, a, SRV_BUSY_TURN)) {
            ret = srv_respond_error(r, 409, "invalid_request_error", "conversation_busy", "previous_response_id",
                                    "A response in this conversation is still being generated.");
            goto out;
        }
        /* the latest continues. An older one forks: a new conversation adopts the turns up to it
         * (replayed, bit-identical) and continues from there. The same input as the turn that
         * followed the one named, when that turn is the latest, is a retry instead (the worker
         * answers it from the log). */
        if (turn > a->turns || turn == 0) {
            srv_actor_release(srv, a);
            ret = srv_respond_error(r, 404, "invalid_request_error", "previous_response_not_found", "previous_response_id",
                                    "Previous response with id '%s' not found.", e->prev);
            goto out;
        }
        expect_turn = turn + 1;
        if (turn < a->turns) {
            dw_error err;
            srv_history h;
            if (srv_actor_history(srv, a, turn + 1, &h, &err) != DW_OK) {
                srv_actor_release(srv, a);
                ret = srv_respond_error(r, 400, "invalid_request_error", "invalid_value", "previous_response_id",
                                        "Response '%s' can no longer be continued: %s", e->prev, err.message);
                goto out;
            }
            const srv_log_record *next = &h.r[turn];
            int retry = turn + 1 == a->turns && next->message_len == msg_len && !memcmp(next->message, msg, msg_len);
            srv_actor *fork = NULL;
            if (!retry && srv_actor_new(srv, r->owner, a->module, &a->settings, "response", &fork, &err) != DW_OK) {
                srv_history_free(&h);
                srv_actor_release(srv, a);
                ret = srv_respond_error(r, 500, "server_error", "store_failed", NULL, "%s", err.message);
                goto out;
            }
            if (!retry) {
                h.n = (int)turn; /* the turns it adopts; the one after is not its */
                fork_from = h;
                srv_actor_release(srv, a), srv_actor_put(srv, a);
                a = fork;
                DW_ASSERT(srv_actor_claim(srv, a, SRV_BUSY_TURN));
            } else srv_history_free(&h);
        }
    } else {
        srv_actor_settings st = {.temperature = 1.0, .top_p = 1.0, .max_tokens = srv->o.default_max_tokens};
        snprintf(st.model, sizeof st.model, "%s", model);
        dw_error err;
        if (srv_actor_new(srv, r->owner, &srv->modules[0], &st, "response", &a, &err) != DW_OK) {
            ret = srv_respond_error(r, 500, "server_error", "store_failed", NULL, "%s", err.message);
            goto out;
        }
        DW_ASSERT(srv_actor_claim(srv, a, SRV_BUSY_TURN));
    }
    if (!srv_take_stream_slot(r)) {
        srv_actor_release(srv, a);
        goto out;
    }
    snprintf(e->id, sizeof e->id, "resp_%s_%" PRIu64, a->id + 5, expect_turn ? expect_turn : a->turns + 1);
    json_decref(b), b = NULL;
    srv_turn *t = srv_turn_new(srv);
    t->actor = a, a = NULL; /* the turn holds the reference now */
    t->expect_turn = expect_turn;
    t->fork = fork_from, fork_from = (srv_history){0};
    t->message = msg, t->message_len = msg_len, msg = NULL;
    t->endpoint = e, t->endpoint_free = free, e = NULL;
    if (stream) {
        t->on_start = response_start, t->on_delta = response_delta, t->on_end = response_end;
        ret = srv_respond_stream(r, t);
    } else {
        srv_run_and_wait(t);
        srv_give_stream_slot(srv, r->key);
        ret = t->http_status ? srv_respond_turn_error(r, t) : srv_respond_json(r, 200, response_obj(t->endpoint, t, response_status(t)));
    }
    srv_turn_release(t);
out:
    if (a) srv_actor_put(srv, a);
    srv_history_free(&fork_from);
    free(msg);
    free(e);
    json_decref(b);
    return ret;
}
