/* The pipeline parts of tokenizer.json: normalizer (Prepend, Replace, NFC, Sequence), pre_tokenizer
 * (Split, ByteLevel, Metaspace, Sequence), decoder (ByteLevel, Replace, Metaspace, ByteFallback,
 * Fuse, Strip, Sequence) and post_processor (ByteLevel, TemplateProcessing, Sequence). Anything
 * else is refused with the key and value named. The normalizer is applied by normalize.c. */
#include "tokenizer/steps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/json_fields.h"

/* GPT-2's pre-tokenizer pattern (HF ByteLevel with use_regex). */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static dw_status type_of(const dw_tokenizer *tok, json_t *j, const char *where, const char **type,
                         dw_error *err) {
    if (!json_is_object(j)) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s must be an object", where);
    json_t *t = json_object_get(j, "type");
    if (!json_is_string(t)) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.type must be a string", where);
    *type = json_string_value(t);
    return DW_OK;
}

/* A pattern {"String": s} (literal) or {"Regex": r}. */
static dw_status pattern_of(const dw_tokenizer *tok, json_t *j, const char *where, const char **s,
                            size_t *len, int *is_regex, dw_error *err) {
    json_t *p = json_object_get(j, "pattern");
    json_t *v;
    if (json_is_object(p) && (v = json_object_get(p, "String")) && json_is_string(v)) {
        *is_regex = 0;
    } else if (json_is_object(p) && (v = json_object_get(p, "Regex")) && json_is_string(v)) {
        *is_regex = 1;
    } else {
        return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.pattern must be {\"String\": ...} or {\"Regex\": ...}", where);
    }
    *s = json_string_value(v);
    *len = json_string_length(v);
    return DW_OK;
}

/* One character, as HF serializes a Rust char. */
static dw_status char_of(const dw_tokenizer *tok, json_t *j, const char *where, const char *key,
                         char out[8], uint32_t *len, dw_error *err) {
    const char *s;
    size_t n;
    dw_status st = dw__tok_json_str(tok, j, where, key, &s, &n, err);
    if (st) return st;
    uint32_t cp;
    if (!s || n == 0 || n > 4 || dw__utf8_valid_prefix(s, n) != n || (size_t)dw__utf8_decode(s, n, &cp) != n)
        return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.%s must be one character", where, key);
    memcpy(out, s, n);
    *len = (uint32_t)n;
    return DW_OK;
}

static dw_status prepend_scheme_of(const dw_tokenizer *tok, json_t *j, const char *where,
                                   dw__prepend_scheme *out, dw_error *err) {
    const char *s;
    dw_status st = dw__tok_json_str(tok, j, where, "prepend_scheme", &s, NULL, err);
    if (st) return st;
    if (!s) { /* older files: add_prefix_space */
        int add;
        if ((st = dw__tok_json_bool(tok, j, where, "add_prefix_space", 1, &add, err))) return st;
        *out = add ? DW__PREPEND_ALWAYS : DW__PREPEND_NEVER;
    } else if (strcmp(s, "always") == 0) {
        *out = DW__PREPEND_ALWAYS;
    } else if (strcmp(s, "first") == 0) {
        *out = DW__PREPEND_FIRST;
    } else if (strcmp(s, "never") == 0) {
        *out = DW__PREPEND_NEVER;
    } else {
        return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s.prepend_scheme \"%.20s\" is not supported", where, s);
    }
    return DW_OK;
}

/* ---- "Sequence" steps ----------------------------------------------------------------------- */

typedef dw_status (*step_reader)(dw_tokenizer *tok, json_t *j, const char *where, int depth, dw_error *err);

/* A {"type": "Sequence", key: [...]} step: reads each element with read, one level deep (a
 * Sequence inside a Sequence is read as an ordinary, unsupported, step). */
static dw_status read_sequence(dw_tokenizer *tok, json_t *j, const char *where, const char *key, int depth,
                               step_reader read, dw_error *err) {
    json_t *list = json_object_get(j, key);
    if (!json_is_array(list)) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.%s must be an array", where, key);
    for (size_t i = 0; i < json_array_size(list); i++) {
        char w[64];
        snprintf(w, sizeof w, "%s.%s[%zu]", where, key, i);
        dw_status st = read(tok, json_array_get(list, i), w, depth + 1, err);
        if (st) return st;
    }
    return DW_OK;
}

/* ---- normalizer ---------------------------------------------------------------------------- */

static dw_status read_norm_step(dw_tokenizer *tok, json_t *j, const char *where, int depth, dw_error *err) {
    const char *type;
    dw_status st = type_of(tok, j, where, &type, err);
    if (st) return st;
    if (strcmp(type, "Sequence") == 0 && depth == 0)
        return read_sequence(tok, j, where, "normalizers", depth, read_norm_step, err);
    if (tok->n_norm == DW__TOK_MAX_STEPS)
        return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s: more than %d normalizer steps", where, DW__TOK_MAX_STEPS);
    dw__norm_step *n = &tok->norm[tok->n_norm];
    const char *a, *b;
    size_t alen, blen;
    if (strcmp(type, "Prepend") == 0) {
        if ((st = dw__tok_json_str(tok, j, where, "prepend", &a, &alen, err))) return st;
        if (!a) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.prepend is missing", where);
        *n = (dw__norm_step){.kind = DW__NORM_PREPEND, .a = dw__tok_intern(tok, a, alen), .alen = (uint32_t)alen};
    } else if (strcmp(type, "Replace") == 0) {
        int is_regex;
        if ((st = pattern_of(tok, j, where, &a, &alen, &is_regex, err))) return st;
        if (is_regex) return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s.pattern.Regex is not supported (only String)", where);
        if (alen == 0) return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s.pattern.String \"\" is not supported", where);
        if ((st = dw__tok_json_str(tok, j, where, "content", &b, &blen, err))) return st;
        if (!b) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.content is missing", where);
        *n = (dw__norm_step){.kind = DW__NORM_REPLACE, .a = dw__tok_intern(tok, a, alen), .alen = (uint32_t)alen,
                             .b = dw__tok_intern(tok, b, blen), .blen = (uint32_t)blen};
    } else if (strcmp(type, "NFC") == 0) {
        *n = (dw__norm_step){.kind = DW__NORM_NFC, .a = ""};
    } else {
        return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s.type \"%.40s\" is not supported", where, type);
    }
    if (!n->a || (n->kind == DW__NORM_REPLACE && !n->b)) return dw__tok_fail(tok, err, DW_ERR_NO_MEMORY, "out of memory");
    snprintf(n->where, sizeof n->where, "%s", where);
    tok->n_norm++;
    return DW_OK;
}

dw_status dw__tok_read_normalizer(dw_tokenizer *tok, json_t *j, dw_error *err) {
    if (!j || json_is_null(j)) return DW_OK;
    return read_norm_step(tok, j, "normalizer", 0, err);
}

/* ---- pre_tokenizer ------------------------------------------------------------------------- */

/* HF runs these regexes with Oniguruma, whose tables differ from PCRE2 10.42's in two ways,
 * measured by matching every code point with both (HF tokenizers 0.23.2):
 *  - \s is Unicode White_Space in Oniguruma; PCRE2 also takes U+180E;
 *  - \p{L} and \p{N} follow Unicode 16 there and Unicode 14 in PCRE2 10.42: the characters
 *    assigned since (below) are letters/numbers only for Oniguruma. PCRE2 has none extra.
 * So those escapes are spelled out as classes that match exactly what Oniguruma matches. */
#define WHITE_SPACE "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"
#define LETTERS_SINCE_U14                                                                             \
    "\\p{L}\\x{1c89}-\\x{1c8a}\\x{a7cb}-\\x{a7cd}\\x{a7da}-\\x{a7dc}\\x{105c0}-\\x{105f3}"                 \
    "\\x{10d4a}-\\x{10d65}\\x{10d6f}-\\x{10d85}\\x{10ec2}-\\x{10ec4}\\x{1123f}-\\x{11240}"                 \
    "\\x{11380}-\\x{11389}\\x{1138b}\\x{1138e}\\x{11390}-\\x{113b5}\\x{113b7}\\x{113d1}\\x{113d3}"         \
    "\\x{11bc0}-\\x{11be0}\\x{11f02}\\x{11f04}-\\x{11f10}\\x{11f12}-\\x{11f33}\\x{1342f}"                  \
    "\\x{13441}-\\x{13446}\\x{13460}-\\x{143fa}\\x{16100}-\\x{1611d}\\x{16d40}-\\x{16d6c}\\x{18cff}"       \
    "\\x{1b132}\\x{1b155}\\x{1df25}-\\x{1df2a}\\x{1e030}-\\x{1e06d}\\x{1e4d0}-\\x{1e4eb}"                 \
    "\\x{1e5d0}-\\x{1e5ed}\\x{1e5f0}\\x{2b739}\\x{2ebf0}-\\x{2ee5d}\\x{31350}-\\x{323af}"
#define NUMBERS_SINCE_U14                                                                             \
    "\\p{N}\\x{10d40}-\\x{10d49}\\x{116d0}-\\x{116e3}\\x{11bf0}-\\x{11bf9}\\x{11f50}-\\x{11f59}"           \
    "\\x{16130}-\\x{16139}\\x{16d70}-\\x{16d79}\\x{1ccf0}-\\x{1ccf9}\\x{1d2c0}-\\x{1d2d3}"                 \
    "\\x{1e4f0}-\\x{1e4f9}\\x{1e5f1}-\\x{1e5fa}"

static const struct {
    const char *escape; /* after the backslash */
    const char *members;
    int negated;
} onig_classes[] = {
    {"s", WHITE_SPACE, 0},          {"S", WHITE_SPACE, 1},
    {"p{L}", LETTERS_SINCE_U14, 0}, {"P{L}", LETTERS_SINCE_U14, 1},
    {"p{N}", NUMBERS_SINCE_U14, 0}, {"P{N}", NUMBERS_SINCE_U14, 1},
};

static int put_str(dw__buf *b, const char *s, size_t n) {
    if (dw__buf_reserve(b, b->len + n + 1)) return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

/* Returns the rewritten, NUL-terminated pattern (malloc'd) or NULL: *bad is set when a negated
 * escape appears inside a class (not expressible), else it was OOM. */
static char *onig_compat(const char *p, size_t len, size_t *out_len, int *bad) {
    dw__buf b = {0};
    int in_class = 0;
    *bad = 0;
    for (size_t i = 0; i < len; i++) {
        int rc;
        if (p[i] == '\\' && i + 1 < len) {
            size_t k, n = sizeof onig_classes / sizeof onig_classes[0];
            for (k = 0; k < n; k++) {
                size_t el = strlen(onig_classes[k].escape);
                if (len - i - 1 >= el && memcmp(p + i + 1, onig_classes[k].escape, el) == 0) break;
            }
            if (k == n) { /* any other escape: copied with the character it escapes */
                rc = put_str(&b, p + i, 2);
                i++;
            } else {
                const char *m = onig_classes[k].members;
                if (in_class && onig_classes[k].negated) {
                    *bad = 1;
                    free(b.p);
                    return NULL;
                }
                if (in_class) rc = put_str(&b, m, strlen(m));
                else
                    rc = put_str(&b, onig_classes[k].negated ? "[^" : "[", onig_classes[k].negated ? 2 : 1) ||
                         put_str(&b, m, strlen(m)) || put_str(&b, "]", 1);
                i += strlen(onig_classes[k].escape);
            }
        } else if (p[i] == '[' && !in_class) {
            in_class = 1;
            size_t n = 1;
            if (i + n < len && p[i + n] == '^') n++;
            if (i + n < len && p[i + n] == ']') n++; /* a leading ] is a member */
            rc = put_str(&b, p + i, n);
            i += n - 1;
        } else {
            if (p[i] == ']') in_class = 0;
            rc = put_str(&b, p + i, 1);
        }
        if (rc) {
            free(b.p);
            return NULL;
        }
    }
    if (put_str(&b, "", 0)) {
        free(b.p);
        return NULL;
    }
    b.p[b.len] = 0;
    *out_len = b.len;
    return b.p;
}

static dw_status compile(dw_tokenizer *tok, const char *pattern, size_t len, int literal,
                         const char *where, pcre2_code **out, dw_error *err) {
    int ec;
    PCRE2_SIZE eo;
    /* PCRE2 refuses PCRE2_UCP beside PCRE2_LITERAL (a literal has no classes for it to change) */
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    char *rewritten = NULL;
    if (!literal) {
        int bad;
        rewritten = onig_compat(pattern, len, &len, &bad);
        if (bad)
            return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED,
                                "%s.pattern: \\S, \\P{L} or \\P{N} inside a character class is not supported", where);
        if (!rewritten) return dw__tok_fail(tok, err, DW_ERR_NO_MEMORY, "out of memory");
        pattern = rewritten;
    }
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &ec, &eo, NULL);
    free(rewritten);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s.pattern: PCRE2 cannot compile it (at offset %zu: %s)",
                            where, (size_t)eo, (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: without JIT, matching is interpreted */
    *out = re;
    return DW_OK;
}

static dw_status read_pre_step(dw_tokenizer *tok, json_t *j, const char *where, int depth, dw_error *err) {
    const char *type;
    dw_status st = type_of(tok, j, where, &type, err);
    if (st) return st;
    if (strcmp(type, "Sequence") == 0 && depth == 0)
        return read_sequence(tok, j, where, "pretokenizers", depth, read_pre_step, err);
    if (tok->n_pre == DW__TOK_MAX_STEPS)
        return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizer steps", where, DW__TOK_MAX_STEPS);
    dw__pre_step *p = &tok->pre[tok->n_pre];
    memset(p, 0, sizeof *p);
    snprintf(p->where, sizeof p->where, "%s", where);
    if (strcmp(type, "Split") == 0) {
        static const char *const behaviors[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        const char *pat, *beh;
        size_t plen;
        int is_regex;
        if ((st = pattern_of(tok, j, where, &pat, &plen, &is_regex, err)) ||
            (st = dw__tok_json_str(tok, j, where, "behavior", &beh, NULL, err)) ||
            (st = dw__tok_json_bool(tok, j, where, "invert", 0, &p->invert, err)))
            return st;
        if (!beh) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.behavior is missing", where);
        int b = -1;
        for (int i = 0; i < 5; i++)
            if (strcmp(beh, behaviors[i]) == 0) b = i;
        if (b < 0) return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s.behavior \"%.30s\" is not supported", where, beh);
        p->kind = DW__PRE_SPLIT;
        p->behavior = (dw__split_behavior)b;
        if ((st = compile(tok, pat, plen, !is_regex, where, &p->re, err))) return st;
    } else if (strcmp(type, "ByteLevel") == 0) {
        int use_regex;
        if ((st = dw__tok_json_bool(tok, j, where, "add_prefix_space", 1, &p->add_prefix_space, err)) ||
            (st = dw__tok_json_bool(tok, j, where, "use_regex", 1, &use_regex, err)))
            return st;
        p->kind = DW__PRE_BYTELEVEL;
        if (use_regex && (st = compile(tok, gpt2_pattern, strlen(gpt2_pattern), 0, where, &p->re, err))) return st;
    } else if (strcmp(type, "Metaspace") == 0) {
        p->kind = DW__PRE_METASPACE;
        if ((st = char_of(tok, j, where, "replacement", p->repl, &p->repl_len, err)) ||
            (st = prepend_scheme_of(tok, j, where, &p->prepend, err)) ||
            (st = dw__tok_json_bool(tok, j, where, "split", 1, &p->split, err)))
            return st;
    } else {
        return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s.type \"%.40s\" is not supported", where, type);
    }
    tok->n_pre++;
    return DW_OK;
}

dw_status dw__tok_read_pre_tokenizer(dw_tokenizer *tok, json_t *j, dw_error *err) {
    if (!j || json_is_null(j)) return DW_OK;
    return read_pre_step(tok, j, "pre_tokenizer", 0, err);
}

/* ---- decoder ---------------------------------------------------------------------------------
 * Accepted shapes: ByteLevel alone; or, in this order, per-token steps (Replace with a String
 * pattern, Metaspace), ByteFallback, Fuse, Strip (left only, after Fuse). */

enum { PHASE_TOKEN, PHASE_FALLBACK, PHASE_FUSE, PHASE_STRIP };

static dw_status read_dec_step(dw_tokenizer *tok, json_t *j, const char *where, int *phase, int *fused,
                               dw_error *err) {
    dw__dec_plan *d = &tok->dec;
    const char *type;
    dw_status st = type_of(tok, j, where, &type, err);
    if (st) return st;
    int my_phase;
    if (strcmp(type, "Replace") == 0 || strcmp(type, "Metaspace") == 0) my_phase = PHASE_TOKEN;
    else if (strcmp(type, "ByteFallback") == 0) my_phase = PHASE_FALLBACK;
    else if (strcmp(type, "Fuse") == 0) my_phase = PHASE_FUSE;
    else if (strcmp(type, "Strip") == 0) my_phase = PHASE_STRIP;
    else if (strcmp(type, "ByteLevel") == 0)
        return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s: ByteLevel combined with other decoders is not supported", where);
    else return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s.type \"%.40s\" is not supported", where, type);
    if (my_phase < *phase || (my_phase == *phase && my_phase != PHASE_TOKEN))
        return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s: decoder \"%s\" in this position of the sequence is not supported", where, type);
    *phase = my_phase;
    if (strcmp(type, "Replace") == 0) {
        const char *a, *b;
        size_t alen, blen;
        int is_regex;
        if ((st = pattern_of(tok, j, where, &a, &alen, &is_regex, err))) return st;
        if (is_regex) return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s.pattern.Regex is not supported (only String)", where);
        if (alen == 0) return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s.pattern.String \"\" is not supported", where);
        if ((st = dw__tok_json_str(tok, j, where, "content", &b, &blen, err))) return st;
        if (!b) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.content is missing", where);
        if (d->metaspace || d->n_replace == DW__TOK_MAX_STEPS)
            return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s: this Replace decoder is not supported here", where);
        dw__norm_step *r = &d->replace[d->n_replace++];
        *r = (dw__norm_step){.kind = DW__NORM_REPLACE, .a = dw__tok_intern(tok, a, alen), .alen = (uint32_t)alen,
                             .b = dw__tok_intern(tok, b, blen), .blen = (uint32_t)blen};
        if (!r->a || !r->b) return dw__tok_fail(tok, err, DW_ERR_NO_MEMORY, "out of memory");
        snprintf(r->where, sizeof r->where, "%s", where);
    } else if (strcmp(type, "Metaspace") == 0) {
        dw__prepend_scheme scheme;
        if (d->metaspace) return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s: a second Metaspace decoder is not supported", where);
        if ((st = char_of(tok, j, where, "replacement", d->ms_repl, &d->ms_repl_len, err)) ||
            (st = prepend_scheme_of(tok, j, where, &scheme, err)))
            return st;
        d->metaspace = 1;
        d->ms_strip_first = scheme != DW__PREPEND_NEVER;
    } else if (my_phase == PHASE_FALLBACK) {
        d->byte_fallback = 1;
    } else if (my_phase == PHASE_FUSE) {
        *fused = 1;
    } else {
        json_t *start = json_object_get(j, "start"), *stop = json_object_get(j, "stop");
        if (!json_is_integer(start) || json_integer_value(start) < 0 || json_integer_value(start) > 1000 ||
            !json_is_integer(stop) || json_integer_value(stop) < 0)
            return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.start and .stop must be counts", where);
        if (json_integer_value(stop) != 0)
            return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s.stop %lld is not supported (only 0)", where,
                                (long long)json_integer_value(stop));
        if (!*fused && json_integer_value(start) != 0)
            return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s: Strip without Fuse before it is not supported", where);
        if ((st = char_of(tok, j, where, "content", d->strip_char, &d->strip_char_len, err))) return st;
        d->strip_left = (int)json_integer_value(start);
    }
    return DW_OK;
}

dw_status dw__tok_read_decoder(dw_tokenizer *tok, json_t *j, dw_error *err) {
    dw__dec_plan *d = &tok->dec;
    memset(d, 0, sizeof *d);
    if (!j || json_is_null(j)) {
        d->kind = DW__DEC_NONE;
        return DW_OK;
    }
    const char *type;
    dw_status st = type_of(tok, j, "decoder", &type, err);
    if (st) return st;
    json_t *list = NULL;
    if (strcmp(type, "Sequence") == 0) {
        list = json_object_get(j, "decoders");
        if (!json_is_array(list)) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "decoder.decoders must be an array");
        if (json_array_size(list) == 1) { /* a sequence of one is that one */
            j = json_array_get(list, 0);
            if ((st = type_of(tok, j, "decoder.decoders[0]", &type, err))) return st;
            list = NULL;
        }
    }
    if (!list && strcmp(type, "ByteLevel") == 0) {
        d->kind = DW__DEC_BYTELEVEL;
        return DW_OK;
    }
    d->kind = DW__DEC_PIECES;
    int phase = PHASE_TOKEN, fused = 0;
    if (!list) return read_dec_step(tok, j, "decoder", &phase, &fused, err);
    for (size_t i = 0; i < json_array_size(list); i++) {
        char w[48];
        snprintf(w, sizeof w, "decoder.decoders[%zu]", i);
        if ((st = read_dec_step(tok, json_array_get(list, i), w, &phase, &fused, err))) return st;
    }
    return DW_OK;
}

/* ---- post_processor -------------------------------------------------------------------------- */

static dw_status special_ids(dw_tokenizer *tok, json_t *specials, const char *name, const char *where,
                             int32_t **ids, size_t *n, dw_error *err) {
    json_t *s = json_object_get(specials, name);
    json_t *list = json_is_object(s) ? json_object_get(s, "ids") : NULL;
    if (!json_is_array(list))
        return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s: special token \"%.40s\" has no ids in special_tokens", where, name);
    size_t k = json_array_size(list);
    int32_t *p = realloc(*ids, (*n + k + 1) * sizeof *p);
    if (!p) return dw__tok_fail(tok, err, DW_ERR_NO_MEMORY, "out of memory");
    *ids = p;
    for (size_t i = 0; i < k; i++) {
        json_t *v = json_array_get(list, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || (size_t)json_integer_value(v) >= tok->vocab_size)
            return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s: special token \"%.40s\" has an id out of range", where, name);
        p[(*n)++] = (int32_t)json_integer_value(v);
    }
    return DW_OK;
}

static dw_status read_template(dw_tokenizer *tok, json_t *j, const char *where, dw_error *err) {
    json_t *single = json_object_get(j, "single"), *specials = json_object_get(j, "special_tokens");
    if (!json_is_array(single)) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.single must be an array", where);
    if (tok->post.n_before || tok->post.n_after)
        return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s: a second TemplateProcessing is not supported", where);
    int seen_a = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
        json_t *item = json_array_get(single, i), *v;
        dw_status st;
        if ((v = json_object_get(item, "SpecialToken")) && json_is_string(json_object_get(v, "id"))) {
            const char *name = json_string_value(json_object_get(v, "id"));
            if (seen_a) st = special_ids(tok, specials, name, where, &tok->post.after, &tok->post.n_after, err);
            else st = special_ids(tok, specials, name, where, &tok->post.before, &tok->post.n_before, err);
            if (st) return st;
        } else if ((v = json_object_get(item, "Sequence")) && json_is_string(json_object_get(v, "id"))) {
            if (strcmp(json_string_value(json_object_get(v, "id")), "A") != 0 || seen_a)
                return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s.single[%zu]: only one sequence \"A\" is supported", where, i);
            seen_a = 1;
        } else {
            return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.single[%zu] must be a SpecialToken or a Sequence", where, i);
        }
    }
    if (!seen_a) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.single has no sequence \"A\"", where);
    return DW_OK;
}

static dw_status read_post_step(dw_tokenizer *tok, json_t *j, const char *where, int depth, dw_error *err) {
    const char *type;
    dw_status st = type_of(tok, j, where, &type, err);
    if (st) return st;
    if (strcmp(type, "Sequence") == 0 && depth == 0)
        return read_sequence(tok, j, where, "processors", depth, read_post_step, err);
    if (strcmp(type, "ByteLevel") == 0) return DW_OK; /* changes offsets only */
    if (strcmp(type, "TemplateProcessing") == 0) return read_template(tok, j, where, err);
    return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s.type \"%.40s\" is not supported", where, type);
}

dw_status dw__tok_read_post_processor(dw_tokenizer *tok, json_t *j, dw_error *err) {
    if (!j || json_is_null(j)) return DW_OK;
    return read_post_step(tok, j, "post_processor", 0, err);
}
