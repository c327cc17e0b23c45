/* The Llama 3 chat format, built in: messages to ids (role and content encoded as plain text,
 * between header and end-of-turn tokens) or to the rendered template text. Matches the
 * chat_template of Llama 3's tokenizer_config.json (content | trim). */
#include "tokenizer/tokenizer_impl.h"

#include <string.h>

/* Python's str.isspace(), which Jinja's trim uses. */
static int py_is_space(uint32_t cp) { return dw__unicode_is_space(cp) || (cp >= 0x1C && cp <= 0x1F); }

static void trim(const char **s, size_t *len) {
    const char *p = *s;
    size_t n = *len;
    while (n > 0) {
        uint32_t cp;
        int k = dw__utf8_decode(p, n, &cp);
        if (!py_is_space(cp)) break;
        p += k;
        n -= (size_t)k;
    }
    while (n > 0) {
        size_t b = n - 1;
        while (b > 0 && ((uint8_t)p[b] & 0xC0) == 0x80) b--;
        uint32_t cp;
        dw__utf8_decode(p + b, n - b, &cp);
        if (!py_is_space(cp)) break;
        n = b;
    }
    *s = p;
    *len = n;
}

static dw_status chat_tokens(const dw_tokenizer *tok, int32_t t[4], dw_error *err) {
    t[0] = tok->special[DW_SPECIAL_BOS];
    t[1] = tok->special[DW_SPECIAL_START_HEADER];
    t[2] = tok->special[DW_SPECIAL_END_HEADER];
    t[3] = tok->special[DW_SPECIAL_EOT];
    if (t[1] < 0 || t[2] < 0 || t[3] < 0)
        return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED,
                            "the Llama 3 chat format needs <|start_header_id|>, <|end_header_id|> and <|eot_id|>");
    return DW_OK;
}

/* Output that counts past its capacity (ids or bytes). */
typedef struct sink {
    int32_t *ids;
    char *text;
    size_t cap, n;
} sink;

static void put_id(sink *k, int32_t id) {
    if (k->n < k->cap) k->ids[k->n] = id;
    k->n++;
}

static dw_status put_encoded(const dw_tokenizer *tok, sink *k, const char *s, size_t len, dw_error *err) {
    size_t got;
    size_t room = k->n < k->cap ? k->cap - k->n : 0;
    dw_status st = dw_tokenizer_encode(tok, s, len, 0, room ? k->ids + k->n : NULL, room, &got, err);
    if (st && !(st == DW_ERR_LIMIT && got > room)) return st; /* counted past the end: not a failure */
    k->n += got;
    return DW_OK;
}

static void put_text(sink *k, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++, k->n++)
        if (k->n < k->cap) k->text[k->n] = s[i];
}

static void put_token(const dw_tokenizer *tok, sink *k, int32_t id) {
    put_text(k, tok->text[id], tok->text_len[id]);
}

dw_status dw_tokenizer_chat_encode(const dw_tokenizer *tok, const dw_chat_message *msgs, size_t n, int flags,
                                   int32_t *ids, size_t cap, size_t *n_out, dw_error *err) {
    *n_out = 0;
    int32_t t[4];
    dw_status st = chat_tokens(tok, t, err);
    if (st) return st;
    sink k = {.ids = ids, .cap = ids ? cap : 0};
    if (!(flags & DW_CHAT_NO_BOS)) {
        if (t[0] < 0) return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "no BOS token for the chat format");
        put_id(&k, t[0]);
    }
    dw__buf body = {0};
    for (size_t i = 0; i <= n && !st; i++) {
        int prompt = i == n;
        if (prompt && !(flags & DW_CHAT_ADD_GENERATION_PROMPT)) break;
        const char *role = prompt ? "assistant" : msgs[i].role;
        const char *content = prompt ? "" : msgs[i].content;
        if (!role || !content) {
            st = dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "chat: message %zu has no role or content", i);
            break;
        }
        size_t clen = strlen(content);
        if (dw__utf8_valid_prefix(content, clen) != clen) {
            st = dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "chat: message %zu is not valid UTF-8", i);
            break;
        }
        trim(&content, &clen);
        put_id(&k, t[1]);
        if ((st = put_encoded(tok, &k, role, strlen(role), err))) break;
        put_id(&k, t[2]);
        if (dw__buf_reserve(&body, clen + 2)) {
            st = dw_error_set(err, DW_ERR_NO_MEMORY, "out of memory");
            break;
        }
        memcpy(body.p, "\n\n", 2);
        memcpy(body.p + 2, content, clen);
        if ((st = put_encoded(tok, &k, body.p, clen + 2, err))) break;
        if (!prompt) put_id(&k, t[3]);
    }
    free(body.p);
    if (st) return st;
    *n_out = k.n;
    if (k.n > cap) return dw_error_set(err, DW_ERR_LIMIT, "chat: %zu ids do not fit in a buffer of %zu", k.n, cap);
    return DW_OK;
}

dw_status dw_tokenizer_chat_render(const dw_tokenizer *tok, const dw_chat_message *msgs, size_t n, int flags,
                                   char *out, size_t cap, size_t *len_out, dw_error *err) {
    *len_out = 0;
    int32_t t[4];
    dw_status st = chat_tokens(tok, t, err);
    if (st) return st;
    sink k = {.text = out, .cap = out && cap ? cap - 1 : 0};
    if (!(flags & DW_CHAT_NO_BOS)) {
        if (t[0] < 0) return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "no BOS token for the chat format");
        put_token(tok, &k, t[0]);
    }
    for (size_t i = 0; i <= n; i++) {
        int prompt = i == n;
        if (prompt && !(flags & DW_CHAT_ADD_GENERATION_PROMPT)) break;
        const char *role = prompt ? "assistant" : msgs[i].role;
        const char *content = prompt ? "" : msgs[i].content;
        if (!role || !content) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "chat: message %zu has no role or content", i);
        size_t clen = strlen(content);
        if (dw__utf8_valid_prefix(content, clen) != clen || dw__utf8_valid_prefix(role, strlen(role)) != strlen(role))
            return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "chat: message %zu is not valid UTF-8", i);
        trim(&content, &clen);
        put_token(tok, &k, t[1]);
        put_text(&k, role, strlen(role));
        put_token(tok, &k, t[2]);
        put_text(&k, "\n\n", 2);
        put_text(&k, content, clen);
        if (!prompt) put_token(tok, &k, t[3]);
    }
    *len_out = k.n;
    if (out && cap) out[k.n < cap ? k.n : cap - 1] = 0;
    if (k.n + 1 > cap) return dw_error_set(err, DW_ERR_LIMIT, "chat: %zu bytes do not fit in a buffer of %zu", k.n + 1, cap);
    return DW_OK;
}
