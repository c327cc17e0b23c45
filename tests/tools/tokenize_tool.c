/* tokenize_tool: the tokenizer's command-line face for tests (tests/py/test_tokenizer_parity.py),
 * working from a tokenizer.json path like `driftwood tokenize --model DIR` does from a model.
 *
 *   tokenize_tool TOKENIZER_JSON [options] < input
 *     (default)      each input line is text; prints its ids, space-separated, one line per line
 *     --json         input lines are JSON strings (so text may hold newlines); with --decode,
 *                    output lines are JSON strings
 *     --decode       input lines are ids; prints the text
 *     --stream       with --decode: decode through the streaming decoder; fails if a chunk is
 *                    not valid UTF-8
 *     --special      match special tokens in the text (DW_TOKENIZE_PARSE_SPECIAL)
 *     --add-special  apply the post-processor (DW_TOKENIZE_ADD_SPECIAL)
 *     --bos          put BOS first (DW_TOKENIZE_ADD_BOS)
 *     --skip-special with --decode: leave special tokens out
 *     --chat         input lines are JSON [[role, content], ...]; prints the chat ids
 *                    (--gen adds the generation prompt), --render prints the rendered text (JSON)
 *     --bench FILE   encodes FILE line by line, then whole, for 2 s of CPU time each; prints MB/s
 *                    per CPU second (JSON), which other load on the machine hardly changes
 *     --info         prints vocab size, special ids and the file's SHA-256
 * Errors go to stderr with exit status 1. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "driftwood/tokenizer.h"

static int die(const dw_error *err) {
    fprintf(stderr, "tokenize_tool: %s\n", err->message);
    return 1;
}

/* Decodes a --json input line into a malloc'd buffer. */
static char *json_line(const char *line, size_t *len) {
    json_error_t jerr;
    json_t *v = json_loads(line, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!json_is_string(v)) {
        fprintf(stderr, "tokenize_tool: input line is not a JSON string: %s\n", line);
        exit(1);
    }
    *len = json_string_length(v);
    char *s = malloc(*len + 1);
    memcpy(s, json_string_value(v), *len + 1);
    json_decref(v);
    return s;
}

static void print_json_text(const char *s, size_t len) {
    json_t *v = json_stringn(s, len);
    if (!v) {
        fprintf(stderr, "tokenize_tool: decoded text is not valid UTF-8\n");
        exit(1);
    }
    char *out = json_dumps(v, JSON_ENCODE_ANY);
    puts(out);
    free(out);
    json_decref(v);
}

static void print_ids(const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
}

static int encode_line(const dw_tokenizer *tok, const char *s, size_t len, int flags) {
    dw_error err;
    size_t cap = len + 16, n;
    int32_t *ids = malloc(cap * sizeof *ids);
    dw_status st = dw_tokenizer_encode(tok, s, len, flags, ids, cap, &n, &err);
    if (st == DW_ERR_LIMIT && n > cap) {
        ids = realloc(ids, n * sizeof *ids);
        cap = n;
        st = dw_tokenizer_encode(tok, s, len, flags, ids, cap, &n, &err);
    }
    if (st) return die(&err);
    print_ids(ids, n);
    free(ids);
    return 0;
}

static int decode_line(const dw_tokenizer *tok, const char *line, int flags, int stream, int as_json) {
    dw_error err;
    size_t n = 0, cap = 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    for (char *p = (char *)line, *end; *p;) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        if (n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
        ids[n++] = (int32_t)v;
        p = end;
    }
    char *text = NULL;
    size_t len = 0;
    if (stream) {
        dw_tokenizer_stream *s;
        if (dw_tokenizer_stream_new(tok, flags, &s, &err)) return die(&err);
        size_t tcap = 64;
        text = malloc(tcap);
        for (size_t i = 0; i <= n; i++) {
            const char *chunk;
            size_t clen;
            if (i < n) {
                if (dw_tokenizer_stream_push(s, ids[i], &chunk, &clen, &err)) return die(&err);
            } else {
                dw_tokenizer_stream_flush(s, &chunk, &clen);
            }
            json_t *check = json_stringn(chunk, clen); /* jansson validates UTF-8 */
            if (!check) {
                fprintf(stderr, "tokenize_tool: stream chunk %zu is not valid UTF-8\n", i);
                return 1;
            }
            json_decref(check);
            while (len + clen + 1 > tcap) text = realloc(text, tcap *= 2);
            memcpy(text + len, chunk, clen);
            len += clen;
        }
        dw_tokenizer_stream_free(s);
    } else {
        dw_status st = dw_tokenizer_decode(tok, ids, n, flags, NULL, 0, &len, &err);
        if (st && st != DW_ERR_LIMIT) return die(&err);
        text = malloc(len + 1);
        if (dw_tokenizer_decode(tok, ids, n, flags, text, len + 1, &len, &err)) return die(&err);
    }
    if (as_json) print_json_text(text, len);
    else {
        fwrite(text, 1, len, stdout);
        putchar('\n');
    }
    free(text);
    free(ids);
    return 0;
}

static int chat_line(const dw_tokenizer *tok, const char *line, int flags, int render) {
    json_error_t jerr;
    json_t *v = json_loads(line, 0, &jerr);
    if (!json_is_array(v)) {
        fprintf(stderr, "tokenize_tool: --chat input must be a JSON array of [role, content]\n");
        return 1;
    }
    size_t n = json_array_size(v);
    dw_chat_message *msgs = calloc(n + 1, sizeof *msgs);
    for (size_t i = 0; i < n; i++) {
        msgs[i].role = json_string_value(json_array_get(json_array_get(v, i), 0));
        msgs[i].content = json_string_value(json_array_get(json_array_get(v, i), 1));
    }
    dw_error err;
    size_t len;
    if (render) {
        dw_status st = dw_tokenizer_chat_render(tok, msgs, n, flags, NULL, 0, &len, &err);
        if (st && st != DW_ERR_LIMIT) return die(&err);
        char *text = malloc(len + 1);
        if (dw_tokenizer_chat_render(tok, msgs, n, flags, text, len + 1, &len, &err)) return die(&err);
        print_json_text(text, len);
        free(text);
    } else {
        dw_status st = dw_tokenizer_chat_encode(tok, msgs, n, flags, NULL, 0, &len, &err);
        if (st && st != DW_ERR_LIMIT) return die(&err);
        int32_t *ids = malloc((len + 1) * sizeof *ids);
        if (dw_tokenizer_chat_encode(tok, msgs, n, flags, ids, len, &len, &err)) return die(&err);
        print_ids(ids, len);
        free(ids);
    }
    free(msgs);
    json_decref(v);
    return 0;
}

static int bench(const dw_tokenizer *tok, const char *path, int flags) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    char *line = NULL;
    size_t lcap = 0, total = 0, n_lines = 0, n_ids;
    ssize_t got;
    char **lines = NULL;
    size_t *lens = NULL;
    while ((got = getline(&line, &lcap, f)) >= 0) {
        if (got && line[got - 1] == '\n') got--;
        lines = realloc(lines, (n_lines + 1) * sizeof *lines);
        lens = realloc(lens, (n_lines + 1) * sizeof *lens);
        lines[n_lines] = strndup(line, (size_t)got);
        lens[n_lines++] = (size_t)got;
        total += (size_t)got;
    }
    fclose(f);
    free(line);
    /* the lines one by one, then the whole file as one text */
    char *whole = malloc(total + n_lines + 1);
    size_t wlen = 0;
    for (size_t i = 0; i < n_lines; i++) {
        memcpy(whole + wlen, lines[i], lens[i]);
        wlen += lens[i];
        whole[wlen++] = '\n';
    }
    size_t cap = wlen + 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    dw_error err;
    printf("{");
    for (int mode = 0; mode < 2; mode++) {
        struct timespec t0, t1;
        double secs = 0;
        size_t bytes = 0;
        n_ids = 0;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
        while (secs < 2.0) {
            size_t n;
            if (mode == 0) {
                for (size_t i = 0; i < n_lines; i++) {
                    if (dw_tokenizer_encode(tok, lines[i], lens[i], flags, ids, cap, &n, &err)) return die(&err);
                    n_ids += n;
                    bytes += lens[i];
                }
            } else {
                if (dw_tokenizer_encode(tok, whole, wlen, flags, ids, cap, &n, &err)) return die(&err);
                n_ids += n;
                bytes += wlen;
            }
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
            secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
        }
        printf("%s\"%s\": {\"MB_per_s\": %.2f, \"tokens_per_s\": %.0f}", mode ? ", " : "",
               mode ? "whole_file" : "line_by_line", (double)bytes / secs / 1e6, (double)n_ids / secs);
    }
    printf(", \"bytes\": %zu, \"lines\": %zu}\n", total, n_lines);
    free(whole);
    for (size_t i = 0; i < n_lines; i++) free(lines[i]);
    free(lines);
    free(lens);
    free(ids);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: tokenize_tool TOKENIZER_JSON [--json] [--decode [--stream] [--skip-special]] "
                        "[--special] [--add-special] [--bos] [--chat [--gen] [--render]] [--bench FILE] [--info]\n");
        return 2;
    }
    int as_json = 0, decode = 0, stream = 0, enc_flags = 0, dec_flags = 0, chat = 0, chat_flags = 0, render = 0, info = 0;
    const char *bench_file = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) as_json = 1;
        else if (!strcmp(a, "--decode")) decode = 1;
        else if (!strcmp(a, "--stream")) stream = 1;
        else if (!strcmp(a, "--special")) enc_flags |= DW_TOKENIZE_PARSE_SPECIAL;
        else if (!strcmp(a, "--add-special")) enc_flags |= DW_TOKENIZE_ADD_SPECIAL;
        else if (!strcmp(a, "--bos")) enc_flags |= DW_TOKENIZE_ADD_BOS;
        else if (!strcmp(a, "--skip-special")) dec_flags |= DW_DETOKENIZE_SKIP_SPECIAL;
        else if (!strcmp(a, "--chat")) chat = 1;
        else if (!strcmp(a, "--gen")) chat_flags |= DW_CHAT_ADD_GENERATION_PROMPT;
        else if (!strcmp(a, "--render")) render = 1;
        else if (!strcmp(a, "--info")) info = 1;
        else if (!strcmp(a, "--bench") && i + 1 < argc) bench_file = argv[++i];
        else {
            fprintf(stderr, "tokenize_tool: unknown option %s\n", a);
            return 2;
        }
    }
    dw_tokenizer *tok;
    dw_error err;
    if (dw_tokenizer_load(argv[1], &tok, &err)) return die(&err);
    int rc = 0;
    if (info) {
        uint8_t d[32];
        dw_tokenizer_sha256(tok, d);
        printf("vocab_size %zu\nbos %d\neos %d\neot %d\nsha256 ", dw_tokenizer_vocab_size(tok),
               dw_tokenizer_special_id(tok, DW_SPECIAL_BOS), dw_tokenizer_special_id(tok, DW_SPECIAL_EOS),
               dw_tokenizer_special_id(tok, DW_SPECIAL_EOT));
        for (int i = 0; i < 32; i++) printf("%02x", d[i]);
        putchar('\n');
    } else if (bench_file) {
        rc = bench(tok, bench_file, enc_flags);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t got;
        while (rc == 0 && (got = getline(&line, &cap, stdin)) >= 0) {
            if (got && line[got - 1] == '\n') line[--got] = 0;
            if (chat) rc = chat_line(tok, line, chat_flags, render);
            else if (decode) rc = decode_line(tok, line, dec_flags, stream, as_json);
            else if (as_json) {
                size_t len;
                char *s = json_line(line, &len);
                rc = encode_line(tok, s, len, enc_flags);
                free(s);
            } else {
                rc = encode_line(tok, line, (size_t)got, enc_flags);
            }
        }
        free(line);
    }
    fflush(stdout);
    dw_tokenizer_free(tok);
    return rc;
}
