/* Encoding text to ids, in HF `tokenizers` order: split out added tokens written in the raw text
 * (special ones only when asked), normalize each remaining piece, split out added tokens written
 * in normalized form, run the pre-tokenizer steps (regex Split, ByteLevel, Metaspace) piece by
 * piece, and BPE each final word (bpe.c). Pieces are passed down by recursion, one
 * scratch buffer per step, so nothing is collected in lists. */
#include "tokenizer/tokenizer_impl.h"

#include <string.h>

typedef struct seg {
    size_t s, e;
    int m; /* the regex matched here */
} seg;

typedef struct seg_list {
    seg *v;
    size_t n, cap;
} seg_list;

typedef struct enc {
    const dw_tokenizer *tok;
    int flags;
    int32_t *ids;
    size_t cap, n;
    dw_status st;
    dw_error *err;
    dw__bpe_work *bpe;
    pcre2_match_data *md;
    size_t pre_limit; /* the most bytes a pre-tokenizer step may write (dw__tok_growth_limit) */
    dw__buf norm, norm_tmp;
    dw__buf text[DW__TOK_MAX_STEPS]; /* a step's rewritten input (prefix added, spaces replaced) */
    dw__buf word[DW__TOK_MAX_STEPS]; /* a step's rewritten output piece (byte-level mapped) */
    seg_list segs[DW__TOK_MAX_STEPS];
} enc;

static void emit(void *ctx, int32_t id) {
    enc *e = ctx;
    if (e->n < e->cap) e->ids[e->n] = id;
    e->n++;
}

static void oom(enc *e) {
    if (!e->st) e->st = dw_error_set(e->err, DW_ERR_NO_MEMORY, "out of memory while encoding");
}

static int seg_push(enc *e, seg_list *l, size_t s, size_t en, int m) {
    if (l->n == l->cap) {
        size_t c = l->cap ? l->cap * 2 : 64;
        seg *v = realloc(l->v, c * sizeof *v);
        if (!v) {
            oom(e);
            return -1;
        }
        l->v = v;
        l->cap = c;
    }
    l->v[l->n++] = (seg){s, en, m};
    return 0;
}

/* A pre-tokenizer step that would write more than e->pre_limit bytes fails (see
 * dw__tok_growth_limit). */
static int over_limit(enc *e, const dw__pre_step *p, const char *kind, size_t need) {
    if (need <= e->pre_limit) return 0;
    if (!e->st)
        e->st = dw__tok_fail(e->tok, e->err, DW_ERR_LIMIT,
                             "%s (%s) would grow the text past %zu bytes, the limit for tokenizer steps (%d times "
                             "the text plus %d bytes)",
                             p->where, kind, e->pre_limit, DW__TOK_GROWTH_FACTOR, DW__TOK_GROWTH_SLACK);
    return 1;
}

/* The regex's matches in s[0..len), with the gaps between them, as HF's Pattern::find_matches.
 * Empty matches are skipped (none of the supported patterns has them). A failed match (PCRE2's
 * match, depth or heap limit on a pattern that backtracks too much) fails the encoding with
 * DW_ERR_LIMIT naming the step: the text is never silently dropped. */
static int find_matches(enc *e, const dw__pre_step *p, const char *s, size_t len, int invert, seg_list *out) {
    out->n = 0;
    size_t prev = 0, at = 0;
    while (at < len) {
        int rc = pcre2_match(p->re, (PCRE2_SPTR)s, len, at, PCRE2_NO_UTF_CHECK, e->md, NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(p->re, (PCRE2_SPTR)s, len, at, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(rc, msg, sizeof msg);
            if (!e->st)
                e->st = dw__tok_fail(e->tok, e->err, DW_ERR_LIMIT,
                                     "the pre-tokenizer regex of %s failed on a %zu-byte piece of the text: %s (PCRE2)",
                                     p->where, len, (const char *)msg);
            return -1;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* empty: move on by one character */
            at = ms + 1;
            while (at < len && ((uint8_t)s[at] & 0xC0) == 0x80) at++;
            continue;
        }
        if (prev < ms && seg_push(e, out, prev, ms, invert)) return -1;
        if (seg_push(e, out, ms, me, !invert)) return -1;
        prev = at = me;
    }
    if (prev < len && seg_push(e, out, prev, len, invert)) return -1;
    return 0;
}

/* Applies a SplitDelimiterBehavior in place (HF NormalizedString::split); removed segments get
 * s == e. */
static void apply_behavior(seg_list *l, dw__split_behavior b) {
    size_t w = 0;
    int prev = 0;
    switch (b) {
    case DW__SPLIT_ISOLATED:
        return;
    case DW__SPLIT_REMOVED:
        for (size_t i = 0; i < l->n; i++)
            if (!l->v[i].m) l->v[w++] = l->v[i];
        break;
    case DW__SPLIT_CONTIGUOUS:
    case DW__SPLIT_MERGED_PREV:
        for (size_t i = 0; i < l->n; i++) {
            seg g = l->v[i];
            int join = b == DW__SPLIT_CONTIGUOUS ? g.m == prev : (g.m && !prev);
            if (join && w > 0) l->v[w - 1].e = g.e;
            else l->v[w++] = g;
            prev = g.m;
        }
        break;
    case DW__SPLIT_MERGED_NEXT: /* built from the end, then the kept ones are packed to the front */
        w = l->n;
        for (size_t i = l->n; i-- > 0;) {
            seg g = l->v[i];
            if (g.m && !prev && w < l->n) l->v[w].s = g.s;
            else l->v[--w] = g;
            prev = g.m;
        }
        memmove(l->v, l->v + w, (l->n - w) * sizeof *l->v);
        w = l->n - w;
        break;
    }
    l->n = w;
}

static void pre_tokenize(enc *e, int k, const char *s, size_t len, int at_origin);

/* Maps each byte to its GPT-2 character and continues with the next step. */
static void byte_level_map(enc *e, int k, const char *s, size_t len, int at_origin) {
    dw__buf *w = &e->word[k];
    if (over_limit(e, &e->tok->pre[k], "ByteLevel", 2 * len)) return;
    if (dw__buf_reserve(w, 2 * len)) return oom(e);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) o += (size_t)dw__utf8_encode(dw__bytelevel_char((uint8_t)s[i]), w->p + o);
    pre_tokenize(e, k + 1, w->p, o, at_origin);
}

static void split_step(enc *e, int k, const dw__pre_step *p, const char *s, size_t len, int at_origin,
                       int byte_level) {
    seg_list *l = &e->segs[k];
    if (find_matches(e, p, s, len, byte_level ? 0 : p->invert, l)) return;
    apply_behavior(l, byte_level ? DW__SPLIT_ISOLATED : p->behavior);
    for (size_t i = 0; i < l->n && !e->st; i++) {
        seg g = l->v[i];
        if (g.e <= g.s) continue;
        if (byte_level) byte_level_map(e, k, s + g.s, g.e - g.s, at_origin && g.s == 0);
        else pre_tokenize(e, k + 1, s + g.s, g.e - g.s, at_origin && g.s == 0);
    }
}

static void metaspace_step(enc *e, int k, const dw__pre_step *p, const char *s, size_t len, int at_origin) {
    dw__buf *t = &e->text[k];
    size_t spaces = 0;
    for (size_t i = 0; i < len; i++) spaces += s[i] == ' ';
    if (over_limit(e, p, "Metaspace", len + (spaces + 1) * p->repl_len)) return;
    if (dw__buf_reserve(t, len + (spaces + 1) * p->repl_len)) return oom(e);
    size_t o = 0;
    int starts = len >= p->repl_len && memcmp(s, p->repl, p->repl_len) == 0;
    if (len && s[0] == ' ') starts = 1; /* the space becomes the replacement */
    if ((p->prepend == DW__PREPEND_ALWAYS || (p->prepend == DW__PREPEND_FIRST && at_origin)) && !starts) {
        memcpy(t->p, p->repl, p->repl_len);
        o = p->repl_len;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') {
            memcpy(t->p + o, p->repl, p->repl_len);
            o += p->repl_len;
        } else {
            t->p[o++] = s[i];
        }
    }
    if (!p->split) return pre_tokenize(e, k + 1, t->p, o, at_origin);
    /* split on the replacement, MergedWithNext: each piece starts with it */
    size_t start = 0;
    for (size_t i = 0; i + p->repl_len <= o; i++) {
        if (i > start && memcmp(t->p + i, p->repl, p->repl_len) == 0) {
            pre_tokenize(e, k + 1, t->p + start, i - start, at_origin && start == 0);
            if (e->st) return;
            start = i;
        }
    }
    if (start < o) pre_tokenize(e, k + 1, t->p + start, o - start, at_origin && start == 0);
}

static void pre_tokenize(enc *e, int k, const char *s, size_t len, int at_origin) {
    if (e->st || len == 0) return;
    const dw_tokenizer *tok = e->tok;
    if (k == tok->n_pre) {
        dw_status st = dw__bpe_word(tok, e->bpe, s, len, emit, e);
        if (st) oom(e);
        return;
    }
    const dw__pre_step *p = &tok->pre[k];
    switch (p->kind) {
    case DW__PRE_SPLIT:
        split_step(e, k, p, s, len, at_origin, 0);
        break;
    case DW__PRE_BYTELEVEL:
        if (p->add_prefix_space && s[0] != ' ') {
            dw__buf *t = &e->text[k];
            if (over_limit(e, p, "ByteLevel", len + 1)) return;
            if (dw__buf_reserve(t, len + 1)) return oom(e);
            t->p[0] = ' ';
            memcpy(t->p + 1, s, len);
            s = t->p;
            len++;
        }
        if (p->re) split_step(e, k, p, s, len, at_origin, 1);
        else byte_level_map(e, k, s, len, at_origin);
        break;
    case DW__PRE_METASPACE:
        metaspace_step(e, k, p, s, len, at_origin);
        break;
    }
}

/* Splits text at added tokens found by trie (leftmost-longest, as HF); matched tokens are
 * emitted, the text between goes on to the next stage: normalization (stage 0) or the
 * pre-tokenizer (stage 1). */
static void normalized_piece(enc *e, const char *s, size_t len, int at_origin);

static void split_added(enc *e, const dw__trie *trie, const char *text, size_t len, int at_origin, int stage) {
    const dw_tokenizer *tok = e->tok;
    size_t pos = 0, from = 0, s, en;
    int32_t ti;
    while (!e->st && dw__trie_find(trie, text, len, from, &s, &en, &ti)) {
        const dw__added_token *t = &tok->added[ti];
        from = en;
        if (t->special && !(e->flags & DW_TOKENIZE_PARSE_SPECIAL)) continue; /* stays text */
        if (t->lstrip) {
            while (s > pos) {
                size_t b = s - 1;
                while (b > pos && ((uint8_t)text[b] & 0xC0) == 0x80) b--;
                uint32_t cp;
                dw__utf8_decode(text + b, s - b, &cp);
                if (!dw__unicode_is_space(cp)) break;
                s = b;
            }
        }
        if (t->rstrip) {
            while (en < len) {
                uint32_t cp;
                int n = dw__utf8_decode(text + en, len - en, &cp);
                if (!dw__unicode_is_space(cp)) break;
                en += (size_t)n;
            }
            from = en;
        }
        if (pos < s) {
            if (stage == 0) normalized_piece(e, text + pos, s - pos, at_origin && pos == 0);
            else pre_tokenize(e, 0, text + pos, s - pos, at_origin && pos == 0);
        }
        emit(e, t->id);
        pos = en;
    }
    if (!e->st && pos < len) {
        if (stage == 0) normalized_piece(e, text + pos, len - pos, at_origin && pos == 0);
        else pre_tokenize(e, 0, text + pos, len - pos, at_origin && pos == 0);
    }
}

static void normalized_piece(enc *e, const char *s, size_t len, int at_origin) {
    if (e->tok->n_norm == 0) {
        e->pre_limit = dw__tok_growth_limit(len);
        return split_added(e, &e->tok->trie_norm, s, len, at_origin, 1);
    }
    dw_status st = dw__tok_normalize(e->tok, s, len, &e->norm, &e->norm_tmp, e->err);
    if (st) {
        if (!e->st) e->st = st;
        return;
    }
    e->pre_limit = dw__tok_growth_limit(e->norm.len);
    split_added(e, &e->tok->trie_norm, e->norm.p, e->norm.len, at_origin, 1);
}

dw_status dw_tokenizer_encode(const dw_tokenizer *tok, const char *text, size_t len, int flags,
                              int32_t *ids, size_t cap, size_t *n_out, dw_error *err) {
    *n_out = 0;
    if (!text && len) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "encode: text is NULL");
    if (!ids) cap = 0;
    size_t valid = dw__utf8_valid_prefix(text, len);
    if (valid != len)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT,
                            "encode: the text is not valid UTF-8 (bad byte 0x%02X at offset %zu)",
                            (uint8_t)text[valid], valid);
    enc e = {.tok = tok, .flags = flags, .ids = ids, .cap = cap, .err = err};
    if (flags & DW_TOKENIZE_ADD_SPECIAL)
        for (size_t i = 0; i < tok->post.n_before; i++) emit(&e, tok->post.before[i]);
    if (flags & DW_TOKENIZE_ADD_BOS) {
        int32_t bos = tok->special[DW_SPECIAL_BOS];
        if (bos < 0)
            return dw__tok_fail(tok, err, DW_ERR_NOT_FOUND, "no BOS token to add: %s",
                                tok->special_null[DW_SPECIAL_BOS]
                                    ? "tokenizer_config.json sets bos_token to null (this model takes none)"
                                    : "the tokenizer has no <|begin_of_text|> or <s> and no tokenizer_config.json "
                                      "bos_token names one");
        if (!(e.n > 0 && tok->post.before[0] == bos)) emit(&e, bos);
    }
    e.bpe = dw__bpe_work_new();
    e.md = pcre2_match_data_create(32, NULL);
    if (!e.bpe || !e.md) oom(&e);
    else split_added(&e, &tok->trie_raw, text, len, 1, 0);
    if (flags & DW_TOKENIZE_ADD_SPECIAL)
        for (size_t i = 0; i < tok->post.n_after; i++) emit(&e, tok->post.after[i]);
    dw__bpe_work_free(e.bpe);
    pcre2_match_data_free(e.md);
    free(e.norm.p);
    free(e.norm_tmp.p);
    for (int k = 0; k < DW__TOK_MAX_STEPS; k++) {
        free(e.text[k].p);
        free(e.word[k].p);
        free(e.segs[k].v);
    }
    if (e.st) return e.st;
    *n_out = e.n;
    if (e.n > cap)
        return dw_error_set(err, DW_ERR_LIMIT, "encode: %zu ids do not fit in a buffer of %zu", e.n, cap);
    return DW_OK;
}
