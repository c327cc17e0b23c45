/* `driftwood tokenize`: text on stdin to token ids (one output line per input line, ids
 * separated by spaces), or with --decode ids back to text. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/command.h"
#include "driftwood/tokenizer.h"

static int encode_line(const dw_tokenizer *tok, const char *line, size_t len, int flags, int32_t **ids, size_t *cap,
                       long lineno) {
    dw_error err;
    size_t n;
    dw_status st = dw_tokenizer_encode(tok, line, len, flags, *ids, *cap, &n, &err);
    if (st == DW_ERR_LIMIT && n > *cap) { /* the ids do not fit (other limits leave n at 0) */
        int32_t *bigger = realloc(*ids, sizeof(int32_t) * n);
        if (!bigger) return dw_cli_fail("out of memory");
        *ids = bigger, *cap = n;
        st = dw_tokenizer_encode(tok, line, len, flags, *ids, *cap, &n, &err);
    }
    if (st) return dw_cli_fail("stdin line %ld: %s", lineno, err.message);
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", (*ids)[i]);
    putchar('\n');
    return 0;
}

static int decode_line(const dw_tokenizer *tok, char *line, int flags, int32_t **ids, size_t *cap, char **text,
                       size_t *text_cap, long lineno) {
    size_t n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX || (*end && *end != ' ' && *end != '\t' && *end != '\r'))
            return dw_cli_fail("stdin line %ld: '%.*s' is not a token id", lineno, (int)strcspn(p, " \t\r"), p);
        if (n == *cap) {
            size_t nc = *cap ? *cap * 2 : 256;
            int32_t *bigger = realloc(*ids, sizeof(int32_t) * nc);
            if (!bigger) return dw_cli_fail("out of memory");
            *ids = bigger, *cap = nc;
        }
        (*ids)[n++] = (int32_t)v;
        p = end;
    }
    dw_error err;
    size_t len;
    dw_status st = dw_tokenizer_decode(tok, *ids, n, flags, *text, *text_cap, &len, &err);
    if (st == DW_ERR_LIMIT) {
        char *bigger = realloc(*text, len + 1);
        if (!bigger) return dw_cli_fail("out of memory");
        *text = bigger, *text_cap = len + 1;
        st = dw_tokenizer_decode(tok, *ids, n, flags, *text, *text_cap, &len, &err);
    }
    if (st) return dw_cli_fail("stdin line %ld: %s", lineno, err.message);
    fwrite(*text, 1, len, stdout);
    putchar('\n');
    return 0;
}

DW_COMMAND(tokenize, "tokenize [--model DIR] [--decode] [--special] [--bos] [--skip-special]",
           "text on stdin to token ids, one line per line (--decode: ids to text)") {
    const char *model_dir = NULL;
    int decode = 0, enc_flags = 0, dec_flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--model") && i + 1 < argc) model_dir = argv[++i];
        else if (!strcmp(a, "--decode")) decode = 1;
        else if (!strcmp(a, "--special")) enc_flags |= DW_TOKENIZE_PARSE_SPECIAL;
        else if (!strcmp(a, "--bos")) enc_flags |= DW_TOKENIZE_ADD_BOS;
        else if (!strcmp(a, "--skip-special")) dec_flags |= DW_DETOKENIZE_SKIP_SPECIAL;
        else return dw_cli_fail("tokenize: unexpected argument '%s'", a);
    }
    if (!model_dir) model_dir = dw_cli_default_model_dir();
    dw_tokenizer *tok;
    dw_error err;
    if (dw_tokenizer_load_dir(model_dir, &tok, &err)) return dw_cli_fail("%s", err.message);
    char *line = NULL, *text = NULL;
    size_t line_cap = 0, ids_cap = 0, text_cap = 0;
    int32_t *ids = NULL;
    ssize_t len;
    long lineno = 0;
    int rc = 0;
    while (!rc && (len = getline(&line, &line_cap, stdin)) >= 0) {
        lineno++;
        if (len > 0 && line[len - 1] == '\n') line[--len] = 0;
        rc = decode ? decode_line(tok, line, dec_flags, &ids, &ids_cap, &text, &text_cap, lineno)
                    : encode_line(tok, line, (size_t)len, enc_flags, &ids, &ids_cap, lineno);
    }
    free(line), free(ids), free(text);
    dw_tokenizer_free(tok);
    if (fflush(stdout) != 0) return dw_cli_fail("stdout: write failed");
    return rc;
}
