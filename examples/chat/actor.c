/* The chat actor: keeps a conversation in its own memory and answers each message (one user
 * turn) with the model's reply, streamed as it is generated.
 *  - Configuration comes from its WASI arguments:
 *      --model NAME  --system TEXT  --temp T  --top-p P  --seed S  -n MAX_TOKENS  --ctx N
 *  - It renders the Llama 3 chat format and prefills only the new tokens of each turn (the
 *    session's KV cache keeps everything before them).
 *  - It samples in the guest from the logits the host wrote into its memory: greedy at
 *    temperature 0, else temperature + top-p among the 64 most likely tokens, with its own
 *    seeded generator (xoshiro256**), so the sampler state is part of the actor's memory.
 *  - It stops at the model's end-of-turn / end-of-text tokens or after MAX_TOKENS. */
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
static int32_t sample(const float *logits, int n) {
    if (chat.temperature <= 0) return dw_argmax_f32(logits, n);
    /* the TOP_CANDIDATES largest logits, by insertion into a small sorted array */
    int32_t idx[TOP_CANDIDATES];
    float val[TOP_CANDIDATES];
    int k = 0;
    for (int i = 0; i < n; i++) {
        float v = logits[i];
        if (k == TOP_CANDIDATES && v <= val[k - 1]) continue;
        int j = k < TOP_CANDIDATES ? k++ : k - 1;
        while (j > 0 && val[j - 1] < v) val[j] = val[j - 1], idx[j] = idx[j - 1], j--;
        val[j] = v, idx[j] = i;
    }
    double p[TOP_CANDIDATES], total = 0;
    for (int i = 0; i < k; i++) total += p[i] = exp((val[i] - val[0]) / chat.temperature);
    double cum = 0;
    int keep = k;
    for (int i = 0; i < k; i++) {
        cum += p[i] / total;
        if (cum >= chat.top_p) { keep = i + 1; break; }
    }
    double mass = 0;
    for (int i = 0; i < keep; i++) mass += p[i];
    double r = (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0) * mass;
    for (int i = 0; i < keep; i++) {
        if (r < p[i]) return idx[i];
        r -= p[i];
    }
    return idx[keep - 1];
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

EXPORT(dw_on_message) int32_t dw_on_message(int32_t len) {
    if (!chat.configured && configure() < 0) return DW_E_STATE;
    if (refresh_model_info() < 0) return DW_E_STATE;
    char *user = malloc((size_t)len + 1);
    if (!user) return DW_E_LIMIT;
    dw_message_read(user, len);
    user[len] = 0;

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

    /* generate */
    int32_t *reply = malloc(sizeof(int32_t) * (size_t)(chat.max_tokens + 1));
    int n = 0;
    stream_start = emitted = 0;
    while (n < chat.max_tokens) {
        int32_t next = sample(chat.logits, chat.info.vocab_size);
        if (is_stop(next)) break;
        reply[n++] = next;
        stream(reply, n, 0);
        /* every reply token goes into the cache (the last one too: the next turn follows it) */
        dw_session_info_get(chat.session, &si);
        if (si.position >= si.capacity) break; /* context full: the reply ends here */
        if (dw_decode(chat.session, next, chat.logits, chat.info.vocab_size) < 0) return fail("decode"), DW_E_STATE;
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
