/* Hostile tokenizer.json files and texts (issue 21): a pre-tokenizer regex that hits PCRE2's match
 * limit is an error naming the step (encode and the chat format), chained Replace steps cannot grow
 * a text or a token without bound, a Split on a literal String (Gemma 3) loads and splits on the
 * literal text, and tokenizer_config.json's "bos_token": null (Qwen3) means no BOS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "driftwood/tokenizer.h"
#include "test.h"

/* A BPE over single characters (ignore_merges: a word in the vocabulary is one id) with the
 * Llama 3 chat tokens, and the given normalizer, pre_tokenizer and decoder (JSON values). */
static dw_tokenizer *tok_with(const char *normalizer, const char *pre_tokenizer, const char *decoder, dw_error *err) {
    char json[4096];
    snprintf(json, sizeof json,
             "{\"added_tokens\": ["
             "  {\"id\": 40, \"content\": \"<|begin_of_text|>\", \"special\": true, \"normalized\": false},"
             "  {\"id\": 41, \"content\": \"<|start_header_id|>\", \"special\": true, \"normalized\": false},"
             "  {\"id\": 42, \"content\": \"<|end_header_id|>\", \"special\": true, \"normalized\": false},"
             "  {\"id\": 43, \"content\": \"<|eot_id|>\", \"special\": true, \"normalized\": false}],"
             " \"normalizer\": %s, \"pre_tokenizer\": %s, \"decoder\": %s,"
             " \"model\": {\"type\": \"BPE\", \"ignore_merges\": true, \"merges\": [],"
             "  \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"d\": 3, \"e\": 4, \"h\": 5, \"i\": 6, \"n\": 7, \"r\": 8,"
             "   \"s\": 9, \"t\": 10, \"u\": 11, \"x\": 12, \"y\": 13, \"+\": 14, \" \": 15, \"\\n\": 16,"
             "   \"a+b\": 17, \"x \": 18, \"y \": 19, \"aab\": 20}}}",
             normalizer, pre_tokenizer, decoder);
    dw_tokenizer *tok = NULL;
    if (dw_tokenizer_load_json("/models/h/tokenizer.json", json, strlen(json), &tok, err)) return NULL;
    return tok;
}

#define CATASTROPHIC_SPLIT "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a+)+$\"}, \"behavior\": \"Isolated\", \"invert\": false}"

/* 40 x "a" then "b": (a+)+$ backtracks through 2^40 ways before it fails. */
static const char *a_run(void) {
    static char text[64];
    memset(text, 'a', 40);
    strcpy(text + 40, "b");
    return text;
}

TEST(tokenizer_regex_match_limit_is_an_error_naming_the_step) {
    dw_error err;
    dw_tokenizer *tok = tok_with("null", "{\"type\": \"Sequence\", \"pretokenizers\": [" CATASTROPHIC_SPLIT "]}", "null", &err);
    CHECK_MSG(tok, "%s", err.message);
    int32_t ids[64];
    size_t n = 99;
    CHECK_OK(dw_tokenizer_encode(tok, "hi", 2, 0, ids, 64, &n, &err));
    CHECK(n == 2);
    n = 99;
    CHECK(dw_tokenizer_encode(tok, a_run(), 41, 0, ids, 64, &n, &err) == DW_ERR_LIMIT);
    CHECK(n == 0); /* not "the ids do not fit": nothing to grow */
    CHECK_MSG(strstr(err.message, "/models/h/tokenizer.json") && strstr(err.message, "pre_tokenizer.pretokenizers[0]") &&
                  strstr(err.message, "match limit"),
              "%s", err.message);
    dw_tokenizer_free(tok);
}

TEST(tokenizer_chat_format_fails_when_a_message_cannot_be_tokenized) {
    dw_error err;
    dw_tokenizer *tok = tok_with("null", CATASTROPHIC_SPLIT, "null", &err);
    CHECK_MSG(tok, "%s", err.message);
    int32_t ids[256];
    size_t n = 0;
    dw_chat_message msg = {"user", a_run()};
    /* the message is not dropped from the conversation: the whole encoding fails */
    CHECK(dw_tokenizer_chat_encode(tok, &msg, 1, DW_CHAT_ADD_GENERATION_PROMPT, ids, 256, &n, &err) == DW_ERR_LIMIT);
    CHECK_MSG(strstr(err.message, "match limit"), "%s", err.message);
    CHECK(dw_tokenizer_chat_encode(tok, &msg, 1, DW_CHAT_ADD_GENERATION_PROMPT, NULL, 0, &n, &err) == DW_ERR_LIMIT);
    CHECK_MSG(strstr(err.message, "match limit"), "%s", err.message);
    dw_tokenizer_free(tok);
}

/* Two Replace steps "a" -> 100 x "a": a 16-byte text would become 160,000 bytes. */
TEST(tokenizer_normalizer_growth_is_bounded_and_names_the_step) {
    char hundred[101], norm[1024];
    memset(hundred, 'a', 100);
    hundred[100] = 0;
    snprintf(norm, sizeof norm,
             "{\"type\": \"Sequence\", \"normalizers\": ["
             "{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"%s\"},"
             "{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"%s\"}]}",
             hundred, hundred);
    dw_error err;
    dw_tokenizer *tok = tok_with(norm, "null", "null", &err);
    CHECK_MSG(tok, "%s", err.message);
    size_t n = 99;
    CHECK(dw_tokenizer_encode(tok, "aaaaaaaaaaaaaaaa", 16, 0, NULL, 0, &n, &err) == DW_ERR_LIMIT);
    CHECK(n == 0);
    CHECK_MSG(strstr(err.message, "normalizer.normalizers[1] (Replace)") && strstr(err.message, "16-byte"), "%s",
              err.message);
    /* a text the steps leave within the bound still encodes: "b" is not replaced */
    int32_t ids[4];
    CHECK_OK(dw_tokenizer_encode(tok, "b", 1, 0, ids, 4, &n, &err));
    CHECK(n == 1 && ids[0] == 1);
    dw_tokenizer_free(tok);
}

/* Four ByteLevel steps double a text of spaces four times: 16 times its length. */
TEST(tokenizer_pre_tokenizer_growth_is_bounded_and_names_the_step) {
    const char *bl = "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}";
    char pre[512];
    snprintf(pre, sizeof pre, "{\"type\": \"Sequence\", \"pretokenizers\": [%s, %s, %s, %s]}", bl, bl, bl, bl);
    dw_error err;
    dw_tokenizer *tok = tok_with("null", pre, "null", &err);
    CHECK_MSG(tok, "%s", err.message);
    char spaces[1001];
    memset(spaces, ' ', 1000);
    spaces[1000] = 0;
    size_t n = 99;
    CHECK(dw_tokenizer_encode(tok, spaces, 1000, 0, NULL, 0, &n, &err) == DW_ERR_LIMIT);
    CHECK(n == 0);
    CHECK_MSG(strstr(err.message, "pre_tokenizer.pretokenizers[3] (ByteLevel)"), "%s", err.message);
    dw_tokenizer_free(tok);
}

/* Two decoder Replace steps "a" -> "aaaaa": token "a" would decode to 25 bytes, more than the
 * 8 x 1 + 16 a token may grow to; the file is refused when it loads. */
TEST(tokenizer_decoder_growth_is_refused_at_load_naming_the_step) {
    const char *dec = "{\"type\": \"Sequence\", \"decoders\": ["
                      "{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"aaaaa\"},"
                      "{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"aaaaa\"}]}";
    dw_error err;
    dw_tokenizer *tok = tok_with("null", "null", dec, &err);
    CHECK(tok == NULL);
    CHECK(err.status == DW_ERR_LIMIT);
    CHECK_MSG(strstr(err.message, "decoder.decoders[1] (Replace)") && strstr(err.message, "token 0"), "%s", err.message);
    /* one such step (5 bytes from 1) is within the bound and decodes as HF does */
    dec = "{\"type\": \"Replace\", \"pattern\": {\"String\": \"a\"}, \"content\": \"aaaaa\"}";
    tok = tok_with("null", "null", dec, &err);
    CHECK_MSG(tok, "%s", err.message);
    char out[16];
    size_t len;
    CHECK_OK(dw_tokenizer_decode(tok, (int32_t[]){0, 1}, 2, 0, out, sizeof out, &len, &err));
    CHECK_MSG(strcmp(out, "aaaaab") == 0, "%s", out);
    dw_tokenizer_free(tok);
}

/* Gemma 3 splits on {"String": " "}; a String pattern is literal text, metacharacters included. */
TEST(tokenizer_split_on_a_string_pattern_splits_on_the_literal_text) {
    dw_error err;
    dw_tokenizer *tok = tok_with(
        "null", "{\"type\": \"Split\", \"pattern\": {\"String\": \"a+b\"}, \"behavior\": \"Isolated\", \"invert\": false}",
        "null", &err);
    CHECK_MSG(tok, "%s", err.message);
    int32_t ids[16];
    size_t n;
    CHECK_OK(dw_tokenizer_encode(tok, "xa+by", 5, 0, ids, 16, &n, &err));
    CHECK_MSG(n == 3 && ids[0] == 12 && ids[1] == 17 && ids[2] == 13, "n=%zu", n); /* x, a+b, y */
    /* not the regex a+b: "xaaby" is one word, its characters (the regex would isolate "aab") */
    CHECK_OK(dw_tokenizer_encode(tok, "xaaby", 5, 0, ids, 16, &n, &err));
    CHECK_MSG(n == 5 && ids[0] == 12 && ids[1] == 0, "n=%zu", n);
    dw_tokenizer_free(tok);
    tok = tok_with("null",
                   "{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"MergedWithPrevious\", \"invert\": false}",
                   "null", &err);
    CHECK_MSG(tok, "%s", err.message);
    CHECK_OK(dw_tokenizer_encode(tok, "x y a", 5, 0, ids, 16, &n, &err));
    CHECK_MSG(n == 3 && ids[0] == 18 && ids[1] == 19 && ids[2] == 0, "n=%zu", n); /* "x ", "y ", "a" */
    dw_tokenizer_free(tok);
}

/* A model folder whose tokenizer_config.json has "bos_token": null, and whose vocabulary has
 * <|begin_of_text|>, the name used when nothing else is said. */
TEST(tokenizer_config_bos_token_null_means_no_bos) {
    dw_error err;
    dw_tokenizer *tok = tok_with("null", "null", "null", &err);
    CHECK_MSG(tok, "%s", err.message);
    CHECK(dw_tokenizer_special_id(tok, DW_SPECIAL_BOS) == dw_tokenizer_token_id(tok, "<|begin_of_text|>")); /* no config: the name */
    dw_tokenizer_free(tok);
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/bos_null", dw_test_tmp_dir());
    CHECK(mkdir(dir, 0755) == 0);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f && fputs("{\"bos_token\": null, \"eos_token\": \"<|eot_id|>\"}", f) >= 0 && fclose(f) == 0);
    /* the same tokenizer.json, written beside it */
    const char *json = "{\"added_tokens\": [{\"id\": 2, \"content\": \"<|begin_of_text|>\", \"special\": true, \"normalized\": false},"
                       " {\"id\": 3, \"content\": \"<|eot_id|>\", \"special\": true, \"normalized\": false}],"
                       " \"model\": {\"type\": \"BPE\", \"merges\": [], \"vocab\": {\"a\": 0, \"<s>\": 1}}}";
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    f = fopen(path, "wb");
    CHECK(f && fputs(json, f) >= 0 && fclose(f) == 0);
    CHECK_OK(dw_tokenizer_load_dir(dir, &tok, &err));
    CHECK(dw_tokenizer_special_id(tok, DW_SPECIAL_BOS) == -1);
    CHECK(dw_tokenizer_special_id(tok, DW_SPECIAL_EOS) == 3);
    int32_t ids[4];
    size_t n;
    CHECK(dw_tokenizer_encode(tok, "a", 1, DW_TOKENIZE_ADD_BOS, ids, 4, &n, &err) == DW_ERR_NOT_FOUND);
    CHECK_MSG(strstr(err.message, "bos_token") && strstr(err.message, "null"), "%s", err.message);
    CHECK_OK(dw_tokenizer_encode(tok, "a", 1, 0, ids, 4, &n, &err));
    CHECK(n == 1 && ids[0] == 0);
    dw_tokenizer_free(tok);
}
