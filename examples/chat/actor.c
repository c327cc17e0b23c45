/* The chat actor: keeps a conversation in its own memory and answers each message (one user
 * turn) with the model's reply, streamed as it is generated.
 *  - Configuration comes from its WASI arguments:
 *      --model NAME  --system TEXT  --temp T  --top-p P  --seed S  -n MAX_TOKENS  --ctx N
 *  - It renders the Llama 3 chat format and prefills only the new tokens of each turn (the
 *    session's KV cache keeps everything before them).
 *  - The device picks each next token, so no logits cross into its memory: at temperature 0
 *    the argmax (dw.decode_greedy: first index on ties, as dw_argmax_f32), else a draw by the
 *    device sampler's rule (dw.decode_sample, driftwood/pick.h: temperature + top-p among the 64
 *    most likely tokens) with a uniform number from its own seeded generator (xoshiro256**), so
 *    the sampler state is part of the actor's memory. Only a reply's first token comes from
 *    the prefill's logits, picked here by the same rule (dw_pick_top_k).
 *  - It stops at the model's end-of-turn / end-of-text tokens or after MAX_TOKENS.
 *  - A message that starts with "\x01DW1\n" is a control message (the server's protocol,
 *    src/server/protocol.h): per-message sampling settings, stop strings, several messages of a
 *    history (system/user/assistant) or raw text, and whether to generate; the reply then comes
 *    as frames, one per dw_emit: 'T' + text, and last 'E' + "finish prompt cached completion
 *    position" (or 'X' + an error code and message before a failure). */
#include <driftwood/guest.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wasi/api.h>

#define EXPORT(name) __attribute__((export_name(#name)))
#define TOP_CANDIDATES 64

typedef struct turn {
    int role; /* 0 system, 1 user, 2 assistant */
    char *text;
} turn;

/* Everything the actor knows lives here, in linear memory (and so in snapshots). */
static struct {
    int configured;
    char model_name[64];
    char *system_prompt;
    float temperature, top_p;
    uint64_t seed;
    int max_tokens, ctx;
    int32_t model, session;
    dw_model_info info;
    float *logits;           /* vocab_size floats: the host writes logits here */
    int logits_stale;        /* decoding on the device left logits behind the last token fed */
    int32_t last_fed;        /* the last token fed by decoding */
    int32_t *ids;            /* scratch for tokenizing and the current reply */
    int ids_cap;
    uint64_t rng[4];         /* xoshiro256** state */
    int assistant_open;      /* the last reply ended without <|eot_id|> in the cache */
    int n_turns, turns_cap;
    turn *turns;
} chat;

static void fail(const char *what) {
    char msg[300];
    int n = snprintf(msg, sizeof msg, "chat actor: %s", what);
    char err[200];
    if (dw_last_error(err, sizeof err) > 0) snprintf(msg + n, sizeof msg - n, ": %s", err);
    dw_log(msg, (int32_t)strlen(msg));
}

/* --- the generator (xoshiro256**, seeded with splitmix64) --------------------------------- */
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t next_u64(void) {
    uint64_t *s = chat.rng, r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t, s[3] = rotl(s[3], 45);
    return r;
}
static void seed_rng(uint64_t seed) {
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9E3779B97F4A7C15u);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u, z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
        chat.rng[i] = z ^ (z >> 31);
    }
}

/* --- configuration from WASI arguments ------------------------------------------------------ */
static int configure(void) {
    size_t argc, size;
    if (__wasi_args_sizes_get(&argc, &size) != 0) return -1;
    char **argv = malloc((argc + 1) * sizeof *argv), *buf = malloc(size);
    if (!argv || !buf || __wasi_args_get((uint8_t **)argv, (uint8_t *)buf) != 0) return -1;
    strcpy(chat.model_name, "default");
    chat.temperature = 0.0f, chat.top_p = 1.0f, chat.max_tokens = 256, chat.seed = 0, chat.ctx = 0;
    chat.system_prompt = strdup("");
    for (size_t i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--model")) snprintf(chat.model_name, sizeof chat.model_name, "%s", v);
        else if (!strcmp(k, "--system")) free(chat.system_prompt), chat.system_prompt = strdup(v);
        else if (!strcmp(k, "--temp")) chat.temperature = strtof(v, NULL);
        else if (!strcmp(k, "--top-p")) chat.top_p = strtof(v, NULL);
        else if (!strcmp(k, "--seed")) chat.seed = strtoull(v, NULL, 10);
        else if (!strcmp(k, "-n")) chat.max_tokens = atoi(v);
        else if (!strcmp(k, "--ctx")) chat.ctx = atoi(v);
    }
    free(argv), free(buf);
    seed_rng(chat.seed);
    if ((chat.model = dw_model_open(chat.model_name, (int32_t)strlen(chat.model_name))) < 0) return fail("open model"), -1;
    if (dw_model_info_get(chat.model, &chat.info) < 0) return fail("model info"), -1;
    if (chat.info.chat_format != DW_CHAT_LLAMA3) return fail("the model has no Llama 3 chat tokens"), -1;
    if ((chat.session = dw_session_create(chat.model, chat.ctx)) < 0) return fail("create session"), -1;
    chat.logits = malloc(sizeof(float) * (size_t)chat.info.vocab_size);
    chat.ids_cap = 4096;
    chat.ids = malloc(sizeof(int32_t) * (size_t)chat.ids_cap);
    if (!chat.logits || !chat.ids) return -1;
    if (chat.system_prompt[0]) {
        chat.turns = realloc(chat.turns, sizeof(turn) * (size_t)(chat.turns_cap = 8));
        chat.turns[chat.n_turns++] = (turn){0, strdup(chat.system_prompt)};
    }
    chat.configured = 1;
    return 0;
}

/* --- rendering the Llama 3 format, piece by piece --------------------------------------------- */
static int n_ids;
static int append_tokens(const char *text, int len, int flags) {
    for (;;) {
        int32_t need = dw_tokenize(chat.model, text, len, flags, chat.ids + n_ids, chat.ids_cap - n_ids);
        if (need < 0) return fail("tokenize"), -1;
        if (n_ids + need <= chat.ids_cap) return n_ids += need, 0;
        chat.ids_cap = (n_ids + need) * 2;
        if (!(chat.ids = realloc(chat.ids, sizeof(int32_t) * (size_t)chat.ids_cap))) return -1;
    }
}
static int append_special(int32_t id) {
    if (n_ids == chat.ids_cap && append_tokens("", 0, 0) < 0) return -1;
    chat.ids[n_ids++] = id;
    return 0;
}
static const char *trim(const char *s, int *len) {
    int n = (int)strlen(s);
    while (n && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    *len = n;
    return s;
}
/* <|start_header_id|>role<|end_header_id|>\n\n content <|eot_id|> (content and role as plain text) */
static int append_message(const char *role, const char *content, int close) {
    int len;
    const char *body = content ? trim(content, &len) : (len = 0, "");
    if (append_special(chat.info.start_header_id) || append_tokens(role, (int)strlen(role), 0) ||
        append_special(chat.info.end_header_id) || append_tokens("\n\n", 2, 0) || append_tokens(body, len, 0))
        return -1;
    return close ? append_special(chat.info.eot_id) : 0;
}

/* --- sampling ----------------------------------------------------------------------------------- */
/* The uniform number of the next draw: 53 bits of the generator. */
static double next_unit(void) { return (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0); }

static dw_device_sampling sampling(void) {
    return (dw_device_sampling){.temperature = chat.temperature, .top_p = chat.top_p, .top_k = TOP_CANDIDATES};
}

/* The token after the logits in chat.logits (a reply's first one, after the prefill). */
static int32_t sample(const float *logits, int n) {
    if (chat.temperature <= 0) return dw_argmax_f32(logits, n);
    dw_device_sampling s = sampling();
    return dw_pick_top_k(logits, n, &s, next_unit());
}

/* Feeds *tok to the session and leaves in *tok the token the device chose after it: the argmax at
 * temperature 0 (dw.decode_greedy), else a draw by the same rule as sample() with the next
 * number of the generator (dw.decode_sample). One draw per sampled token, as sample() makes. */
static int feed(int32_t *tok) {
    chat.last_fed = *tok;
    int32_t out;
    if (chat.temperature <= 0) {
        if (dw_decode_greedy(chat.session, *tok, 1, &out) < 0) return -1;
    } else {
        dw_device_sampling s = sampling();
        double u = next_unit();
        if (dw_decode_sample(chat.session, *tok, 1, &s, &u, &out) < 0) return -1;
    }
    chat.logits_stale = 1;
    *tok = out;
    return 0;
}

/* The logits after the last token in the cache, for a reply that starts with no new tokens to
 * prefill: after greedy decoding they were never downloaded, so that token is fed again (its KV
 * and logits come out the same: they depend on the tokens alone). */
static int refresh_logits(void) {
    if (!chat.logits_stale) return 0;
    dw_session_info si;
    dw_session_info_get(chat.session, &si);
    if (si.position < 1 || dw_session_truncate(chat.session, si.position - 1) < 0 ||
        dw_decode(chat.session, chat.last_fed, chat.logits, chat.info.vocab_size) < 0)
        return -1;
    chat.logits_stale = 0;
    return 0;
}

static int is_stop(int32_t id) {
    for (int i = 0; i < chat.info.n_stop; i++)
        if (chat.info.stop_ids[i] == id) return 1;
    return 0;
}

/* --- streaming text: emit only complete UTF-8 (a token may end inside a character) --------- */
static char text_buf[16384];
static int stream_start, emitted; /* reply ids [stream_start, n) not yet final; bytes emitted of them */
static void stream(const int32_t *reply, int n, int final) {
    int32_t len = dw_detokenize(chat.model, reply + stream_start, n - stream_start, DW_DETOK_SKIP_SPECIAL, text_buf,
                                sizeof text_buf);
    if (len < 0 || len > (int32_t)sizeof text_buf) return;
    /* a trailing U+FFFD may be a character still being spelled out by the next token */
    int hold = !final && len >= 3 && !memcmp(text_buf + len - 3, "\xEF\xBF\xBD", 3);
    int ready = hold ? len - 3 : len;
    if (ready > emitted) dw_emit(text_buf + emitted, ready - emitted);
    emitted = ready > emitted ? ready : emitted;
    if (!hold) stream_start = n, emitted = 0;
}

/* The model may have changed since the last message (a snapshot restored onto another model):
 * its vocabulary and special tokens are read again every time. */
static int refresh_model_info(void) {
    int32_t old_vocab = chat.info.vocab_size;
    if (dw_model_info_get(chat.model, &chat.info) < 0) return fail("model info"), -1;
    if (chat.info.chat_format != DW_CHAT_LLAMA3) return fail("the model has no Llama 3 chat tokens"), -1;
    if (chat.info.vocab_size != old_vocab) {
        free(chat.logits);
        if (!(chat.logits = malloc(sizeof(float) * (size_t)chat.info.vocab_size))) return -1;
    }
    return 0;
}

static int32_t on_control(char *msg, int32_t len);

EXPORT(dw_on_message) int32_t dw_on_message(int32_t len) {
    if (!chat.configured && configure() < 0) return DW_E_STATE;
    if (refresh_model_info() < 0) return DW_E_STATE;
    char *user = malloc((size_t)len + 1);
    if (!user) return DW_E_LIMIT;
    dw_message_read(user, len);
    user[len] = 0;
    if (len >= 5 && !memcmp(user, "\x01" "DW1\n", 5)) {
        int32_t r = on_control(user, len);
        free(user);
        return r;
    }

    /* the new tokens: close the previous reply, the user's turn, the assistant header */
    n_ids = 0;
    if (chat.assistant_open && append_special(chat.info.eot_id)) return DW_E_STATE;
    dw_session_info si;
    dw_session_info_get(chat.session, &si);
    if (si.position == 0) {
        if (chat.info.bos_id >= 0 && append_special(chat.info.bos_id)) return DW_E_STATE;
        if (chat.system_prompt[0] && append_message("system", chat.system_prompt, 1)) return DW_E_STATE;
    }
    if (append_message("user", user, 1) || append_message("assistant", NULL, 0)) return DW_E_STATE;
    if (dw_prefill(chat.session, chat.ids, n_ids, chat.logits, chat.info.vocab_size) < 0) return fail("prefill"), DW_E_LIMIT;
    chat.logits_stale = 0;

    /* generate */
    int32_t *reply = malloc(sizeof(int32_t) * (size_t)(chat.max_tokens + 1));
    int n = 0;
    int32_t next = -1;
    stream_start = emitted = 0;
    while (n < chat.max_tokens) {
        if (next < 0) next = sample(chat.logits, chat.info.vocab_size);
        if (is_stop(next)) break;
        reply[n++] = next;
        stream(reply, n, 0);
        /* every reply token goes into the cache (the last one too: the next turn follows it) */
        dw_session_info_get(chat.session, &si);
        if (si.position >= si.capacity) break; /* context full: the reply ends here */
        if (feed(&next) < 0) return fail("decode"), DW_E_STATE;
    }
    if (n) stream(reply, n, 1);
    chat.assistant_open = 1;

    /* remember the turn */
    int32_t tlen = n ? dw_detokenize(chat.model, reply, n, DW_DETOK_SKIP_SPECIAL, text_buf, sizeof text_buf) : 0;
    if (tlen < 0 || tlen > (int32_t)sizeof text_buf) tlen = 0;
    if (chat.n_turns + 2 > chat.turns_cap)
        chat.turns = realloc(chat.turns, sizeof(turn) * (size_t)(chat.turns_cap = chat.turns_cap * 2 + 8));
    chat.turns[chat.n_turns++] = (turn){1, user};
    char *assistant = malloc((size_t)tlen + 1);
    memcpy(assistant, text_buf, (size_t)tlen);
    assistant[tlen] = 0;
    chat.turns[chat.n_turns++] = (turn){2, assistant};
    free(reply);
    return n;
}

/* --- control messages (the server's protocol) ------------------------------------------------ */
#define MAX_STOPS 4
#define MAX_ITEMS 256

typedef struct item {
    int kind; /* 0 system, 1 user, 2 assistant, 3 raw */
    const char *text;
    int len;
} item;

static void frame(char type, const char *bytes, int len) {
    char *f = malloc((size_t)len + 1);
    if (!f) return;
    f[0] = type;
    memcpy(f + 1, bytes, (size_t)len);
    dw_emit(f, len + 1);
    free(f);
}

static int32_t control_error(const char *code, const char *message, int32_t rc) {
    char buf[300];
    int n = snprintf(buf, sizeof buf, "%s %s", code, message);
    frame('X', buf, n < (int)sizeof buf ? n : (int)sizeof buf - 1);
    return rc;
}

/* The reply's text so far, and how much of it went out: text that might be the start of a stop
 * string is held back until the next token decides. */
static char *reply_text;
static int reply_len, reply_cap, reply_sent;
static const char *stops[MAX_STOPS];
static int stop_lens[MAX_STOPS], n_stops;

static void reply_append(const char *bytes, int len) {
    if (reply_len + len + 1 > reply_cap) {
        reply_cap = (reply_len + len + 1) * 2;
        reply_text = realloc(reply_text, (size_t)reply_cap);
    }
    memcpy(reply_text + reply_len, bytes, (size_t)len);
    reply_len += len;
}

/* Sends what is certain; returns 1 when a stop string has appeared (the reply ends before it). */
static int reply_flush(int final) {
    int stop_at = -1;
    for (int i = 0; i < n_stops; i++) {
        int from = reply_sent - stop_lens[i] + 1;
        for (int p = from < 0 ? 0 : from; p + stop_lens[i] <= reply_len; p++)
            if (!memcmp(reply_text + p, stops[i], (size_t)stop_lens[i])) {
                if (stop_at < 0 || p < stop_at) stop_at = p;
                break;
            }
    }
    int ready = stop_at >= 0 ? stop_at : reply_len;
    if (stop_at < 0 && !final) /* hold back a tail that begins a stop string */
        for (int i = 0; i < n_stops; i++)
            for (int k = stop_lens[i] - 1; k > 0; k--)
                if (k <= reply_len && reply_len - k >= reply_sent &&
                    !memcmp(reply_text + reply_len - k, stops[i], (size_t)k)) {
                    if (reply_len - k < ready) ready = reply_len - k;
                    break;
                }
    if (ready > reply_sent) frame('T', reply_text + reply_sent, ready - reply_sent), reply_sent = ready;
    return stop_at >= 0;
}

/* Like stream() above, but into reply_text (complete UTF-8 only). */
static int ctl_stream_start, ctl_pending;
static void ctl_stream(const int32_t *reply, int n, int final) {
    int32_t len = dw_detokenize(chat.model, reply + ctl_stream_start, n - ctl_stream_start, DW_DETOK_SKIP_SPECIAL,
                                text_buf, sizeof text_buf);
    if (len < 0 || len > (int32_t)sizeof text_buf) return;
    int hold = !final && len >= 3 && !memcmp(text_buf + len - 3, "\xEF\xBF\xBD", 3);
    int ready = hold ? len - 3 : len;
    if (ready > ctl_pending) reply_append(text_buf + ctl_pending, ready - ctl_pending), ctl_pending = ready;
    if (!hold) ctl_stream_start = n, ctl_pending = 0;
}

static void remember(int role, const char *text, int len) {
    if (chat.n_turns + 1 > chat.turns_cap)
        chat.turns = realloc(chat.turns, sizeof(turn) * (size_t)(chat.turns_cap = chat.turns_cap * 2 + 8));
    char *copy = malloc((size_t)len + 1);
    memcpy(copy, text, (size_t)len);
    copy[len] = 0;
    chat.turns[chat.n_turns++] = (turn){role, copy};
}

/* "\x01DW1\n" then lines "key=value" up to an empty line, then the body. Items that carry text
 * (system=N, user=N, assistant=N, raw=N, stop=N) take the next N bytes of the body, in order.
 * temp=, top_p=, seed=, max= apply to this message only (seed reseeds the generator);
 * generate=chat (default: an assistant reply), raw (continue the text) or none (prefill only). */
static int32_t on_control(char *msg, int32_t len) {
    char *p = msg + 5, *end = msg + len;
    float temperature = chat.temperature, top_p = chat.top_p;
    int max_tokens = chat.max_tokens, generate = 1, have_seed = 0;
    uint64_t seed = 0;
    item items[MAX_ITEMS];
    int n_items = 0, lens[MAX_ITEMS + MAX_STOPS], kinds[MAX_ITEMS + MAX_STOPS], n_parts = 0;
    n_stops = 0;
    while (p < end && *p != '\n') {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) return control_error("invalid_request", "unterminated header", DW_E_INVALID);
        *nl = 0;
        char *eq = strchr(p, '=');
        if (!eq) return control_error("invalid_request", "header line without '='", DW_E_INVALID);
        *eq = 0;
        const char *k = p, *v = eq + 1;
        int kind = !strcmp(k, "system") ? 0 : !strcmp(k, "user") ? 1 : !strcmp(k, "assistant") ? 2
                 : !strcmp(k, "raw") ? 3 : !strcmp(k, "stop") ? 4 : -1;
        if (kind >= 0) {
            if (n_parts == MAX_ITEMS + MAX_STOPS || (kind == 4 && n_stops == MAX_STOPS) || (kind < 4 && n_items == MAX_ITEMS))
                return control_error("invalid_request", "too many messages or stop strings", DW_E_LIMIT);
            lens[n_parts] = atoi(v), kinds[n_parts++] = kind;
            if (kind == 4) n_stops++; else n_items++;
        } else if (!strcmp(k, "temp")) temperature = strtof(v, NULL);
        else if (!strcmp(k, "top_p")) top_p = strtof(v, NULL);
        else if (!strcmp(k, "seed")) seed = strtoull(v, NULL, 10), have_seed = 1;
        else if (!strcmp(k, "max")) max_tokens = atoi(v);
        else if (!strcmp(k, "generate")) generate = !strcmp(v, "chat") ? 1 : !strcmp(v, "raw") ? 2 : 0;
        else return control_error("invalid_request", "unknown header", DW_E_INVALID);
        p = nl + 1;
    }
    if (p >= end) return control_error("invalid_request", "no body separator", DW_E_INVALID);
    p++;
    n_items = n_stops = 0;
    for (int i = 0; i < n_parts; i++) {
        if (lens[i] < 0 || lens[i] > end - p) return control_error("invalid_request", "body shorter than its items", DW_E_INVALID);
        if (kinds[i] == 4) stops[n_stops] = p, stop_lens[n_stops++] = lens[i];
        else items[n_items++] = (item){kinds[i], p, lens[i]};
        p += lens[i];
    }
    int kept = 0; /* an empty stop string stops nothing */
    for (int i = 0; i < n_stops; i++)
        if (stop_lens[i] > 0) stops[kept] = stops[i], stop_lens[kept++] = stop_lens[i];
    n_stops = kept;

    /* the new tokens */
    dw_session_info si;
    dw_session_info_get(chat.session, &si);
    int cached = si.position, chat_mode = generate != 2;
    for (int i = 0; i < n_items; i++)
        if (items[i].kind == 3) chat_mode = 0;
    n_ids = 0;
    if (chat_mode) {
        if (chat.assistant_open && append_special(chat.info.eot_id)) return DW_E_STATE;
        if (si.position == 0) {
            int has_system = n_items && items[0].kind == 0;
            if (chat.info.bos_id >= 0 && append_special(chat.info.bos_id)) return DW_E_STATE;
            if (!has_system && chat.system_prompt[0] && append_message("system", chat.system_prompt, 1)) return DW_E_STATE;
        }
        static const char *roles[] = {"system", "user", "assistant"};
        for (int i = 0; i < n_items; i++) {
            char *text = malloc((size_t)items[i].len + 1);
            memcpy(text, items[i].text, (size_t)items[i].len);
            text[items[i].len] = 0;
            int r = append_message(roles[items[i].kind], text, 1);
            free(text);
            if (r) return DW_E_STATE;
        }
        if (generate == 1 && append_message("assistant", NULL, 0)) return DW_E_STATE;
    } else {
        for (int i = 0; i < n_items; i++)
            if (append_tokens(items[i].text, items[i].len, si.position == 0 && i == 0 ? DW_TOK_BOS : 0)) return DW_E_STATE;
    }
    if (n_ids == 0 && si.position == 0) return control_error("invalid_request", "nothing to continue from", DW_E_INVALID);
    if (si.position + n_ids + (generate ? 1 : 0) > si.capacity)
        return control_error("context_length_exceeded", "the conversation does not fit the context", DW_E_LIMIT);
    if (n_ids && dw_prefill(chat.session, chat.ids, n_ids, chat.logits, chat.info.vocab_size) < 0)
        return fail("prefill"), control_error("prefill_failed", "prefill failed", DW_E_LIMIT);
    if (n_ids) chat.logits_stale = 0;
    else if (generate && refresh_logits() < 0)
        return fail("decode"), control_error("decode_failed", "decode failed", DW_E_STATE);
    if (chat_mode) chat.assistant_open = generate == 1;
    for (int i = 0; i < n_items; i++)
        if (items[i].kind < 3) remember(items[i].kind, items[i].text, items[i].len);
    if (have_seed) seed_rng(seed);

    /* generate */
    float saved_t = chat.temperature, saved_p = chat.top_p;
    chat.temperature = temperature, chat.top_p = top_p;
    int n = 0, stopped = 0;
    reply_len = reply_sent = 0;
    ctl_stream_start = ctl_pending = 0;
    int32_t *reply = generate ? malloc(sizeof(int32_t) * (size_t)(max_tokens + 1)) : NULL;
    const char *finish = "stop";
    int32_t next = -1;
    while (generate && n < max_tokens) {
        if (next < 0) next = sample(chat.logits, chat.info.vocab_size);
        if (is_stop(next)) break;
        reply[n++] = next;
        ctl_stream(reply, n, 0);
        if (reply_flush(0)) { stopped = 1; break; }
        dw_session_info_get(chat.session, &si);
        if (si.position >= si.capacity) { finish = "length"; break; }
        if (feed(&next) < 0) {
            chat.temperature = saved_t, chat.top_p = saved_p;
            return fail("decode"), control_error("decode_failed", "decode failed", DW_E_STATE);
        }
    }
    chat.temperature = saved_t, chat.top_p = saved_p;
    if (generate && !stopped && n == max_tokens) finish = "length";
    if (n && !stopped) ctl_stream(reply, n, 1), stopped = reply_flush(1);
    if (stopped) finish = "stop";
    if (generate == 1) remember(2, reply_text ? reply_text : "", reply_sent);
    free(reply);
    dw_session_info_get(chat.session, &si);
    char e[160];
    int elen = snprintf(e, sizeof e, "%s %d %d %d %d", finish, cached + n_ids, cached, n, si.position);
    frame('E', e, elen);
    return n;
}
