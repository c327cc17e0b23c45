/* Tokenizer unit tests: BPE merges and ignore_merges on a hand-made tokenizer.json, special-token
 * matching on and off, streaming decode of characters split across tokens, invalid UTF-8,
 * refusal of unsupported or malformed files, buffer sizes, the Llama 2 style tokenizer from
 * tests/data/tokenizer, loading from a model folder, the chat format, concurrent use, and NFC. Parity with HF on a corpus is
 * tests/py/test_tokenizer_parity.py. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "core/sha256.h"
#include "driftwood/tokenizer.h"
#include "test.h"
#include "tokenizer/tokenizer_impl.h"

/* A byte-level BPE (GPT-2 pre-tokenizer): "Ġ" is the space, "Ã" and "©" are the bytes C3 and A9
 * of "é". Merge ranks: b+c first, then a+b, then a+bc, then Ġ+a. */
#define TINY_JSON(ignore_merges, merges)                                                                     \
    "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null,"                                   \
    " \"added_tokens\": ["                                                                             \
    "  {\"id\": 32, \"content\": \"<|eot_id|>\", \"special\": true, \"normalized\": false, \"single_word\": false, \"lstrip\": false, \"rstrip\": false},"          \
    "  {\"id\": 33, \"content\": \"[X]\", \"special\": false, \"normalized\": false, \"single_word\": false, \"lstrip\": false, \"rstrip\": false},"                \
    "  {\"id\": 34, \"content\": \"<|start_header_id|>\", \"special\": true, \"normalized\": false, \"single_word\": false, \"lstrip\": false, \"rstrip\": false}," \
    "  {\"id\": 35, \"content\": \"<|end_header_id|>\", \"special\": true, \"normalized\": false, \"single_word\": false, \"lstrip\": false, \"rstrip\": false},"   \
    "  {\"id\": 36, \"content\": \"<|begin_of_text|>\", \"special\": true, \"normalized\": false, \"single_word\": false, \"lstrip\": false, \"rstrip\": false}],"  \
    " \"normalizer\": null,"                                                                           \
    " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": true}," \
    " \"post_processor\": null,"                                                                       \
    " \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": true},"                                                         \
    " \"model\": {\"type\": \"BPE\", \"ignore_merges\": " ignore_merges ","                           \
    "  \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"bc\": 4, \"abc\": 5, \"\\u0120\": 6,"   \
    "   \"\\u0120a\": 7, \"\\u00c3\": 8, \"\\u00a9\": 9, \"<\": 10, \"|\": 11, \"e\": 12, \"o\": 13,"   \
    "   \"t\": 14, \"_\": 15, \"i\": 16, \"d\": 17, \">\": 18, \"X\": 19, \"[\": 20, \"]\": 21,"       \
    "   \"cab\": 22, \"\\u00c3\\u00a9\": 23, \"\\u010a\": 24, \"s\": 25, \"r\": 26, \"u\": 27,"        \
    "   \"h\": 28, \"n\": 29, \"y\": 30, \"m\": 31},"                                                  \
    "  \"merges\": " merges "}}"

/* The same merges in the two forms HF writes. */
#define MERGES_STRINGS "[\"b c\", \"a b\", \"a bc\", \"\\u0120 a\"]"
#define MERGES_PAIRS "[[\"b\", \"c\"], [\"a\", \"b\"], [\"a\", \"bc\"], [\"\\u0120\", \"a\"]]"

static dw_tokenizer *tiny_json(const char *json) {
    dw_tokenizer *tok = NULL;
    dw_error err;
    if (dw_tokenizer_load_json("tiny.json", json, strlen(json), &tok, &err))
        fprintf(stderr, "    tiny.json: %s\n", err.message);
    return tok;
}

static const char tiny_strings[] = TINY_JSON("false", MERGES_STRINGS);

/* ignore_merges 0: merges as "a b" strings; 1: as ["a", "b"] pairs with ignore_merges set. */
static dw_tokenizer *tiny(int ignore_merges) {
    static const char pairs_ignore[] = TINY_JSON("true", MERGES_PAIRS);
    return tiny_json(ignore_merges ? pairs_ignore : tiny_strings);
}

/* Encodes text into ids[] (up to 64); returns the count or -1. */
static int enc(const dw_tokenizer *tok, const char *text, int flags, int32_t *ids) {
    size_t n;
    dw_error err;
    if (dw_tokenizer_encode(tok, text, strlen(text), flags, ids, 64, &n, &err)) {
        fprintf(stderr, "    encode(%s): %s\n", text, err.message);
        return -1;
    }
    return (int)n;
}

static int same(const int32_t *ids, int n, const int32_t *expect, int m) {
    return n == m && memcmp(ids, expect, (size_t)n * sizeof *ids) == 0;
}

TEST(tokenizer_merges_apply_in_rank_order) {
    dw_tokenizer *tok = tiny(0);
    CHECK(tok);
    int32_t ids[64];
    int n = enc(tok, "abc", 0, ids); /* b+c (rank 0) before a+b (rank 1), then a+bc */
    CHECK_MSG(same(ids, n, (int32_t[]){5}, 1), "n=%d ids[0]=%d", n, ids[0]);
    n = enc(tok, "abab", 0, ids);
    CHECK(same(ids, n, (int32_t[]){3, 3}, 2));
    n = enc(tok, "cab", 0, ids); /* "cab" is in the vocabulary but no merge makes it */
    CHECK(same(ids, n, (int32_t[]){2, 3}, 2));
    n = enc(tok, "ab abc", 0, ids); /* pre-tokens "ab", "Ġabc": b+c, a+bc, and Ġ+a never gets its turn */
    CHECK_MSG(same(ids, n, (int32_t[]){3, 6, 5}, 3), "n=%d", n);
    n = enc(tok, "ab a", 0, ids);
    CHECK(same(ids, n, (int32_t[]){3, 7}, 2));
    dw_tokenizer_free(tok);
}

TEST(tokenizer_reads_merges_in_both_forms) {
    static const char pairs[] = TINY_JSON("false", MERGES_PAIRS);
    dw_tokenizer *a = tiny_json(tiny_strings), *b = tiny_json(pairs);
    CHECK(a && b);
    const char *texts[] = {"abc", "ab abc", "cab ab a", "bcabca"};
    for (int i = 0; i < 4; i++) {
        int32_t x[64], y[64];
        int nx = enc(a, texts[i], 0, x), ny = enc(b, texts[i], 0, y);
        CHECK(nx > 0 && same(x, nx, y, ny));
    }
    dw_tokenizer_free(a);
    dw_tokenizer_free(b);
}

TEST(tokenizer_ignore_merges_takes_whole_words_from_the_vocabulary) {
    dw_tokenizer *tok = tiny(1);
    CHECK(tok);
    int32_t ids[64];
    int n = enc(tok, "cab", 0, ids);
    CHECK(same(ids, n, (int32_t[]){22}, 1));
    n = enc(tok, "abab", 0, ids); /* not in the vocabulary: merged as usual */
    CHECK(same(ids, n, (int32_t[]){3, 3}, 2));
    dw_tokenizer_free(tok);
}

TEST(tokenizer_special_tokens_match_only_when_asked) {
    dw_tokenizer *tok = tiny(0);
    CHECK(tok);
    int32_t ids[64];
    int n = enc(tok, "ab<|eot_id|>", DW_TOKENIZE_PARSE_SPECIAL, ids);
    CHECK(same(ids, n, (int32_t[]){3, 32}, 2));
    n = enc(tok, "ab<|eot_id|>", 0, ids); /* as text: "ab" then "<|" "eot" "_" "id" "|>" pieces */
    CHECK(n > 2);
    for (int i = 0; i < n; i++) CHECK(ids[i] != 32);
    /* a non-special added token is always matched */
    n = enc(tok, "a[X]b", 0, ids);
    CHECK(same(ids, n, (int32_t[]){0, 33, 1}, 3));
    CHECK(dw_tokenizer_token_id(tok, "<|eot_id|>") == 32);
    CHECK(dw_tokenizer_token_id(tok, "abc") == 5);
    CHECK(dw_tokenizer_token_id(tok, "nope") == -1);
    CHECK(dw_tokenizer_is_special(tok, 32) && !dw_tokenizer_is_special(tok, 33));
    CHECK(dw_tokenizer_special_id(tok, DW_SPECIAL_EOT) == 32);
    CHECK(dw_tokenizer_special_id(tok, DW_SPECIAL_BOS) == 36);
    CHECK(dw_tokenizer_special_id(tok, DW_SPECIAL_EOS) == -1);
    dw_tokenizer_free(tok);
}

TEST(tokenizer_stream_holds_a_character_split_across_tokens) {
    dw_tokenizer *tok = tiny(0);
    CHECK(tok);
    dw_error err;
    dw_tokenizer_stream *s;
    CHECK_OK(dw_tokenizer_stream_new(tok, 0, &s, &err));
    const char *text;
    size_t len;
    /* "a", then é as two byte tokens (C3, A9), then "b" */
    CHECK_OK(dw_tokenizer_stream_push(s, 0, &text, &len, &err));
    CHECK(len == 1 && memcmp(text, "a", 1) == 0);
    CHECK_OK(dw_tokenizer_stream_push(s, 8, &text, &len, &err));
    CHECK_MSG(len == 0, "a lone lead byte printed %zu bytes", len);
    CHECK_OK(dw_tokenizer_stream_push(s, 9, &text, &len, &err));
    CHECK(len == 2 && memcmp(text, "\xC3\xA9", 2) == 0);
    CHECK_OK(dw_tokenizer_stream_push(s, 1, &text, &len, &err));
    CHECK(len == 1 && text[0] == 'b');
    /* an unfinished character at the end comes out as U+FFFD on flush */
    CHECK_OK(dw_tokenizer_stream_push(s, 8, &text, &len, &err));
    CHECK(len == 0);
    dw_tokenizer_stream_flush(s, &text, &len);
    CHECK(len == 3 && memcmp(text, "\xEF\xBF\xBD", 3) == 0);
    /* after flush: a new text; a stray continuation byte is replaced at once */
    CHECK_OK(dw_tokenizer_stream_push(s, 9, &text, &len, &err));
    CHECK(len == 3 && memcmp(text, "\xEF\xBF\xBD", 3) == 0);
    CHECK(dw_tokenizer_stream_push(s, 99, &text, &len, &err) == DW_ERR_INVALID_ARGUMENT);
    dw_tokenizer_stream_free(s);
    dw_tokenizer_free(tok);
}

TEST(tokenizer_stream_skips_special_tokens_when_asked) {
    dw_tokenizer *tok = tiny(0);
    CHECK(tok);
    dw_error err;
    dw_tokenizer_stream *s;
    CHECK_OK(dw_tokenizer_stream_new(tok, DW_DETOKENIZE_SKIP_SPECIAL, &s, &err));
    const char *text;
    size_t len;
    CHECK_OK(dw_tokenizer_stream_push(s, 32, &text, &len, &err));
    CHECK(len == 0);
    CHECK_OK(dw_tokenizer_stream_push(s, 33, &text, &len, &err)); /* not special */
    CHECK(len == 3 && memcmp(text, "[X]", 3) == 0);
    dw_tokenizer_stream_free(s);
    char out[32];
    CHECK_OK(dw_tokenizer_decode(tok, (int32_t[]){0, 32, 1}, 3, 0, out, sizeof out, &len, &err));
    CHECK(strcmp(out, "a<|eot_id|>b") == 0);
    CHECK_OK(dw_tokenizer_decode(tok, (int32_t[]){0, 32, 1}, 3, DW_DETOKENIZE_SKIP_SPECIAL, out, sizeof out, &len, &err));
    CHECK(strcmp(out, "ab") == 0);
    dw_tokenizer_free(tok);
}

TEST(tokenizer_decode_repairs_broken_utf8_like_hf) {
    dw_tokenizer *tok = tiny(0);
    CHECK(tok);
    dw_error err;
    char out[32];
    size_t len;
    /* C3 C3 A9: the first C3 is a broken sequence (one U+FFFD), then é */
    CHECK_OK(dw_tokenizer_decode(tok, (int32_t[]){8, 23}, 2, 0, out, sizeof out, &len, &err));
    CHECK(len == 5 && memcmp(out, "\xEF\xBF\xBD\xC3\xA9", 5) == 0);
    CHECK(dw_tokenizer_decode(tok, (int32_t[]){0, -1}, 2, 0, out, sizeof out, &len, &err) == DW_ERR_INVALID_ARGUMENT);
    dw_tokenizer_free(tok);
}

TEST(tokenizer_invalid_utf8_is_refused_with_its_offset) {
    dw_tokenizer *tok = tiny(0);
    CHECK(tok);
    static const char *const bad[] = {
        "ab\xC3(",        /* a lead byte without its continuation */
        "ab\xC0\xAF",     /* overlong */
        "ab\xED\xA0\x80", /* a UTF-16 surrogate */
        "ab\xF4\x90\x80\x80", /* beyond U+10FFFF */
        "ab\xE2\x82",     /* cut short at the end */
        "ab\xFF",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dw_error err;
        int32_t ids[8];
        size_t n;
        dw_status st = dw_tokenizer_encode(tok, bad[i], strlen(bad[i]), 0, ids, 8, &n, &err);
        CHECK_MSG(st == DW_ERR_INVALID_ARGUMENT, "case %zu: %s", i, dw_status_name(st));
        CHECK_MSG(strstr(err.message, "not valid UTF-8") && strstr(err.message, "offset 2"), "case %zu: %s", i, err.message);
    }
    dw_tokenizer_free(tok);
}

/* Loads json under a name and expects failure with status st and a message holding every part. */
static int refused(const char *json, dw_status st, const char *part1, const char *part2) {
    dw_tokenizer *tok = NULL;
    dw_error err;
    dw_status got = dw_tokenizer_load_json("/models/x/tokenizer.json", json, strlen(json), &tok, &err);
    if (got != st || tok) {
        fprintf(stderr, "    expected %s, got %s: %s\n", dw_status_name(st), dw_status_name(got), got ? err.message : "");
        dw_tokenizer_free(tok);
        return 0;
    }
    if (!strstr(err.message, "/models/x/tokenizer.json") || !strstr(err.message, part1) ||
        (part2 && !strstr(err.message, part2))) {
        fprintf(stderr, "    message: %s\n", err.message);
        return 0;
    }
    return 1;
}

TEST(tokenizer_refuses_unknown_model_types_naming_the_key) {
    CHECK(refused("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}", DW_ERR_UNSUPPORTED,
                  "model.type \"Unigram\"", "not supported"));
    CHECK(refused("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", DW_ERR_UNSUPPORTED, "model.type \"WordPiece\"", NULL));
    CHECK(refused("{\"normalizer\": {\"type\": \"NFKC\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                  DW_ERR_UNSUPPORTED, "normalizer.type \"NFKC\"", NULL));
    CHECK(refused("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Digits\"}]},"
                  " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                  DW_ERR_UNSUPPORTED, "pre_tokenizer.pretokenizers[0].type \"Digits\"", NULL));
    CHECK(refused("{\"decoder\": {\"type\": \"WordPiece\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                  DW_ERR_UNSUPPORTED, "decoder.type \"WordPiece\"", NULL));
    CHECK(refused("{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {\"a\": 0}, \"merges\": []}}",
                  DW_ERR_UNSUPPORTED, "model.dropout", NULL));
}

TEST(tokenizer_refuses_malformed_files) {
    CHECK(refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}", DW_ERR_FORMAT, "JSON error", "line 1"));
    CHECK(refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
                  DW_ERR_FORMAT, "model.merges[0]", "\"ab\" is not in model.vocab"));
    CHECK(refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b c\"]}}",
                  DW_ERR_FORMAT, "model.merges[0]", NULL));
    CHECK(refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}", DW_ERR_FORMAT,
                  "model.vocab[\"a\"]", NULL));
    CHECK(refused("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": [{\"id\": 1}]}",
                  DW_ERR_FORMAT, "added_tokens[0].content is missing", NULL));
    CHECK(refused("[1, 2]", DW_ERR_FORMAT, "top level", NULL));
    dw_tokenizer *tok;
    dw_error err;
    CHECK(dw_tokenizer_load("/nonexistent/tokenizer.json", &tok, &err) == DW_ERR_IO && tok == NULL);
    CHECK(strstr(err.message, "/nonexistent/tokenizer.json"));
}

TEST(tokenizer_reports_the_size_needed_when_buffers_are_small) {
    dw_tokenizer *tok = tiny(0);
    CHECK(tok);
    dw_error err;
    int32_t ids[2] = {-7, -7};
    size_t n;
    /* "ab", "Ġab", "Ġab" -> ab, Ġ ab, Ġ ab: 5 ids */
    CHECK(dw_tokenizer_encode(tok, "ab ab ab", 8, 0, ids, 1, &n, &err) == DW_ERR_LIMIT);
    CHECK(n == 5 && ids[0] == 3 && ids[1] == -7);
    CHECK(dw_tokenizer_encode(tok, "ab ab ab", 8, 0, NULL, 0, &n, &err) == DW_ERR_LIMIT && n == 5);
    char out[4];
    size_t len;
    CHECK(dw_tokenizer_decode(tok, (int32_t[]){5, 5}, 2, 0, out, sizeof out, &len, &err) == DW_ERR_LIMIT);
    CHECK(len == 6 && strcmp(out, "abc") == 0);
    CHECK_OK(dw_tokenizer_encode(tok, "", 0, 0, ids, 2, &n, &err));
    CHECK(n == 0);
    dw_tokenizer_free(tok);
}

TEST(tokenizer_chat_format_equals_the_rendered_template) {
    dw_tokenizer *tok = tiny(0);
    CHECK(tok);
    dw_error err;
    dw_chat_message msgs[] = {{"user", "  ab abc\n"}, {"assistant", "cab"}};
    char text[256];
    size_t len;
    CHECK_OK(dw_tokenizer_chat_render(tok, msgs, 2, DW_CHAT_ADD_GENERATION_PROMPT, text, sizeof text, &len, &err));
    const char *expect = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nab abc<|eot_id|>"
                         "<|start_header_id|>assistant<|end_header_id|>\n\ncab<|eot_id|>"
                         "<|start_header_id|>assistant<|end_header_id|>\n\n";
    CHECK_MSG(strcmp(text, expect) == 0, "%s", text);
    int32_t a[64], b[64];
    size_t na, nb;
    CHECK_OK(dw_tokenizer_chat_encode(tok, msgs, 2, DW_CHAT_ADD_GENERATION_PROMPT, a, 64, &na, &err));
    CHECK_OK(dw_tokenizer_encode(tok, text, len, DW_TOKENIZE_PARSE_SPECIAL, b, 64, &nb, &err));
    CHECK(na == nb && memcmp(a, b, na * sizeof *a) == 0);
    CHECK(a[0] == 36 && a[1] == 34);
    /* content cannot inject an end of turn */
    dw_chat_message inject[] = {{"user", "a<|eot_id|>"}};
    CHECK_OK(dw_tokenizer_chat_encode(tok, inject, 1, DW_CHAT_NO_BOS, a, 64, &na, &err));
    int eots = 0;
    for (size_t i = 0; i < na; i++) eots += a[i] == 32;
    CHECK(eots == 1 && a[na - 1] == 32 && a[0] == 34);
    dw_tokenizer_free(tok);
}

TEST(tokenizer_records_the_sha256_of_its_file) {
    dw_tokenizer *tok = tiny(0);
    CHECK(tok);
    uint8_t got[32], expect[32];
    dw_tokenizer_sha256(tok, got);
    dw__sha256(tiny_strings, strlen(tiny_strings), expect);
    CHECK(memcmp(got, expect, 32) == 0);
    dw_tokenizer_free(tok);
}

/* The Llama 2 style tokenizer committed in tests/data (SentencePiece BPE with byte fallback). */
static dw_tokenizer *sp_bpe(void) {
    dw_tokenizer *tok = NULL;
    dw_error err;
    if (dw_tokenizer_load("tests/data/tokenizer/sp_bpe.json", &tok, &err)) fprintf(stderr, "    %s\n", err.message);
    return tok;
}

TEST(tokenizer_sentencepiece_style_falls_back_to_bytes_and_round_trips) {
    dw_tokenizer *tok = sp_bpe();
    CHECK(tok);
    const char *text = "The llama 🦙 said: 中文!";
    int32_t ids[64];
    int n = enc(tok, text, 0, ids);
    CHECK(n > 0);
    int32_t b0 = dw_tokenizer_token_id(tok, "<0xF0>"); /* first byte of the emoji */
    CHECK(b0 >= 0);
    int has_byte = 0;
    for (int i = 0; i < n; i++) has_byte |= ids[i] == b0;
    CHECK(has_byte);
    dw_error err;
    char out[128];
    size_t len;
    CHECK_OK(dw_tokenizer_decode(tok, ids, (size_t)n, 0, out, sizeof out, &len, &err));
    CHECK_MSG(strcmp(out, text) == 0, "%s", out);
    /* streamed: the leading "▁" of the first piece is stripped too, and the pieces join to the text */
    dw_tokenizer_stream *s;
    CHECK_OK(dw_tokenizer_stream_new(tok, 0, &s, &err));
    char joined[128];
    size_t jl = 0;
    for (int i = 0; i <= n; i++) {
        const char *t;
        size_t l;
        if (i < n) CHECK_OK(dw_tokenizer_stream_push(s, ids[i], &t, &l, &err));
        else dw_tokenizer_stream_flush(s, &t, &l);
        CHECK(jl + l < sizeof joined);
        memcpy(joined + jl, t, l);
        jl += l;
    }
    joined[jl] = 0;
    CHECK_MSG(strcmp(joined, text) == 0, "%s", joined);
    dw_tokenizer_stream_free(s);
    /* the post-processor puts <s> first */
    n = enc(tok, "hi", DW_TOKENIZE_ADD_SPECIAL, ids);
    CHECK(n >= 2 && ids[0] == 1);
    n = enc(tok, "hi", DW_TOKENIZE_ADD_SPECIAL | DW_TOKENIZE_ADD_BOS, ids); /* not twice */
    CHECK(n >= 2 && ids[0] == 1 && ids[1] != 1);
    dw_tokenizer_free(tok);
}

typedef struct {
    const dw_tokenizer *tok;
    int ok;
} thread_arg;

static void *encode_many(void *p) {
    thread_arg *a = p;
    a->ok = 1;
    const char *texts[] = {"The llama said hello", "abc abc abc", "中文 and 🦙", "  spaces  "};
    int32_t first[4][64];
    int nfirst[4];
    for (int r = 0; r < 300 && a->ok; r++) {
        for (int t = 0; t < 4; t++) {
            int32_t ids[64];
            int n = enc(a->tok, texts[t], 0, ids);
            if (r == 0) {
                memcpy(first[t], ids, sizeof ids);
                nfirst[t] = n;
            } else if (n != nfirst[t] || memcmp(ids, first[t], (size_t)n * sizeof *ids) != 0) {
                a->ok = 0;
            }
        }
    }
    return NULL;
}

TEST(tokenizer_can_be_shared_between_threads) {
    dw_tokenizer *tok = sp_bpe();
    CHECK(tok);
    pthread_t th[4];
    thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i].tok = tok;
        CHECK(pthread_create(&th[i], NULL, encode_many, &args[i]) == 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) CHECK(args[i].ok);
    dw_tokenizer_free(tok);
}

/* NFC of s as dw__tok_nfc gives it equals expect. */
static int nfc_is(const char *s, const char *expect) {
    dw__buf out = {0};
    int ok = dw__tok_nfc(s, strlen(s), &out) == 0 && out.len == strlen(expect) && memcmp(out.p, expect, out.len) == 0;
    free(out.p);
    return ok;
}

TEST(tokenizer_nfc_composes_reorders_and_leaves_exclusions_decomposed) {
    static const char *const cases[][2] = {
        {"e\xCC\x81", "\xC3\xA9"},                                 /* e + acute -> é */
        {"\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", "\xEA\xB0\x81"},  /* jamo L V T -> 각 */
        {"\xEA\xB0\x80\xE1\x86\xA8", "\xEA\xB0\x81"},              /* syllable LV + T */
        {"a\xCC\x87\xCC\xA3", "\xE1\xBA\xA1\xCC\x87"},             /* dot below (220) moves first, composes */
        {"\xE2\x84\xAB", "\xC3\x85"},                              /* Angstrom sign: a singleton */
        {"\xE0\xA5\x98", "\xE0\xA4\x95\xE0\xA4\xBC"},              /* U+0958: a composition exclusion */
        {"\xE0\xAD\x87\xE0\xAD\x97", "\xE0\xAD\x8C"},              /* two starters compose (Oriya AU) */
        {"plain ASCII and \xE4\xB8\xAD\xE6\x96\x87", "plain ASCII and \xE4\xB8\xAD\xE6\x96\x87"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) CHECK_MSG(nfc_is(cases[i][0], cases[i][1]), "case %zu", i);
}

/* HF's NFC knows Unicode 9.0: marks assigned later stay where they are, as starters, and block
 * the composition that utf8proc alone would make (normalize.c's hf_starters). */
TEST(tokenizer_nfc_leaves_marks_newer_than_unicode_9_in_place_as_hf_does) {
    CHECK(nfc_is("a\xE0\xA2\x98\xCC\xA3", "a\xE0\xA2\x98\xCC\xA3"));                 /* a, U+0898, U+0323 */
    CHECK(nfc_is("e\xE1\xAA\xBF\xCC\x81", "e\xE1\xAA\xBF\xCC\x81"));                 /* e, U+1ABF, U+0301 */
    CHECK(nfc_is("\xF0\x91\xA4\xB5\xF0\x91\xA4\xB0", "\xF0\x91\xA4\xB5\xF0\x91\xA4\xB0")); /* U+11935 U+11930 */
}

/* normalize.c's list of HF's differences is utf8proc 2.8.0's, on Unicode 15.0: another Unicode
 * version may add marks to it (compare the two over every code point again, then update this). */
TEST(tokenizer_nfc_differences_list_is_for_the_unicode_version_of_utf8proc) {
    CHECK_MSG(strcmp(utf8proc_unicode_version(), "15.0.0") == 0, "utf8proc has Unicode %s", utf8proc_unicode_version());
}

/* A model folder with a tokenizer.json and a tokenizer_config.json naming the BOS token. */
TEST(tokenizer_load_dir_reads_the_folders_tokenizer_and_its_config) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/tok_dir", dw_test_tmp_dir());
    CHECK(mkdir(dir, 0755) == 0);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(tiny_strings, 1, strlen(tiny_strings), f) == strlen(tiny_strings) && fclose(f) == 0);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    f = fopen(path, "wb");
    CHECK(f && fputs("{\"bos_token\": \"[X]\"}", f) >= 0 && fclose(f) == 0);
    dw_tokenizer *tok;
    dw_error err;
    CHECK_OK(dw_tokenizer_load_dir(dir, &tok, &err));
    CHECK(dw_tokenizer_vocab_size(tok) == 37);
    CHECK(dw_tokenizer_special_id(tok, DW_SPECIAL_BOS) == 33);
    dw_tokenizer_free(tok);
}

TEST(tokenizer_load_dir_without_tokenizer_json_names_the_file) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/no_tok_dir", dw_test_tmp_dir());
    CHECK(mkdir(dir, 0755) == 0);
    dw_tokenizer *tok = (dw_tokenizer *)&tok;
    dw_error err;
    CHECK(dw_tokenizer_load_dir(dir, &tok, &err) == DW_ERR_IO);
    CHECK(tok == NULL);
    CHECK_MSG(strstr(err.message, "no_tok_dir/tokenizer.json") != NULL, "%s", err.message);
}
