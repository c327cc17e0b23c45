/* Fuzz target: tokenizer.json loading (dw_tokenizer_load_json), then encoding and decoding.
 * The input is a tokenizer.json, optionally followed by a NUL byte and a text: a tokenizer that
 * loads encodes the text (or a fixed sample) with each flag set, decodes the ids again (whole
 * and streamed), decodes the text's bytes read as ids, and renders and encodes a chat. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "driftwood/tokenizer.h"

#define MAX_IDS 4096
#define MAX_TEXT (64 * 1024)

static const char sample[] = "Hello, world! It's 2024 — naïve café 東京 🙂\n\tcode_x = f(y) <|eot_id|> <s>";

static int32_t ids[MAX_IDS];
static char out[MAX_TEXT];

static void decode_both_ways(const dw_tokenizer *tok, const int32_t *list, size_t n, int flags) {
    size_t len;
    dw_error err;
    dw_tokenizer_decode(tok, list, n, flags, out, sizeof out, &len, &err);
    dw_tokenizer_stream *s;
    if (dw_tokenizer_stream_new(tok, flags, &s, &err) != DW_OK) return;
    for (size_t i = 0; i < n; i++) {
        const char *piece;
        size_t piece_len;
        if (dw_tokenizer_stream_push(s, list[i], &piece, &piece_len, &err) != DW_OK) break;
    }
    const char *rest;
    size_t rest_len;
    dw_tokenizer_stream_flush(s, &rest, &rest_len);
    dw_tokenizer_stream_free(s);
}

static void exercise(const dw_tokenizer *tok, const char *text, size_t len) {
    static const int flag_sets[] = {0, DW_TOKENIZE_PARSE_SPECIAL,
                                    DW_TOKENIZE_PARSE_SPECIAL | DW_TOKENIZE_ADD_BOS | DW_TOKENIZE_ADD_SPECIAL};
    dw_error err;
    for (size_t f = 0; f < sizeof flag_sets / sizeof flag_sets[0]; f++) {
        size_t n = 0;
        dw_status st = dw_tokenizer_encode(tok, text, len, flag_sets[f], ids, MAX_IDS, &n, &err);
        if (st == DW_OK || st == DW_ERR_LIMIT) decode_both_ways(tok, ids, n < MAX_IDS ? n : MAX_IDS, f == 1 ? DW_DETOKENIZE_SKIP_SPECIAL : 0);
    }
    /* The text's bytes as ids (in and out of the vocabulary). */
    size_t vocab = dw_tokenizer_vocab_size(tok), n = 0;
    for (size_t i = 0; i + 2 <= len && n < MAX_IDS; i += 2) {
        int32_t id = (int32_t)((uint8_t)text[i] | (uint8_t)text[i + 1] << 8);
        ids[n++] = vocab && id < 0x7000 ? id % (int32_t)vocab : id;
    }
    decode_both_ways(tok, ids, n, 0);
    for (int32_t id = -1; id <= (int32_t)vocab && id < 512; id++) {
        const char *t = dw_tokenizer_token_text(tok, id);
        if (t) dw_tokenizer_token_id(tok, t);
        dw_tokenizer_is_special(tok, id);
    }
    for (int w = 0; w < DW_SPECIAL_COUNT; w++) dw_tokenizer_special_id(tok, (dw_special_token)w);
    char *content = strndup(text, len);
    if (!content) return;
    dw_chat_message msgs[2] = {{"system", "Be brief."}, {"user", content}};
    size_t n_chat, chat_len;
    dw_tokenizer_chat_encode(tok, msgs, 2, DW_CHAT_ADD_GENERATION_PROMPT, ids, MAX_IDS, &n_chat, &err);
    dw_tokenizer_chat_render(tok, msgs, 2, DW_CHAT_ADD_GENERATION_PROMPT, out, sizeof out, &chat_len, &err);
    free(content);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    const char *text = nul ? (const char *)nul + 1 : sample;
    size_t text_len = nul ? size - json_len - 1 : sizeof sample - 1;
    if (text_len > MAX_TEXT) text_len = MAX_TEXT;
    dw_tokenizer *tok;
    dw_error err;
    if (dw_tokenizer_load_json("<fuzz tokenizer.json>", data, json_len, &tok, &err) != DW_OK) return 0;
    exercise(tok, text, text_len);
    dw_tokenizer_free(tok);
    return 0;
}
