/* Decoding ids to text, whole or streamed one id at a time. Each id's "piece" (its text after the
 * decoder's per-token steps: ByteLevel unmapping, Replace, Metaspace) is computed once at load;
 * decoding joins pieces, turns "<0xHH>" pieces into bytes (ByteFallback), strips the leading
 * space (Strip) and repairs invalid UTF-8 with U+FFFD exactly as HF `tokenizers` does. */
#include "tokenizer/tokenizer_impl.h"

#include <string.h>

static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

/* ---- piece tables --------------------------------------------------------------------------- */

/* HF ByteLevel decoder: every character mapped back to its byte, or the text as is when one
 * character is not in the map. */
static size_t bytelevel_unmap(const char *s, size_t len, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int n = dw__utf8_decode(s + i, len - i, &cp);
        int b = dw__bytelevel_byte(cp);
        if (b < 0) {
            memcpy(out, s, len);
            return len;
        }
        out[o++] = (char)b;
        i += (size_t)n;
    }
    return o;
}

/* HF ByteFallback: "<0xHH>" (Rust u8::from_str_radix on the two characters) -> HH, else -1. */
static int fallback_byte(const char *s, size_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (i == 3 && c == '+') continue; /* from_str_radix accepts a leading '+' */
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The piece of one token text; first: as the first token of a text (Metaspace drops its
 * replacement characters there). Returns 0, -1 on OOM, or 1 when Replace step *bad would make
 * the piece longer than the growth limit (DW__TOK_GROWTH_FACTOR times the text plus
 * DW__TOK_PIECE_SLACK bytes). */
static int make_piece(const dw_tokenizer *tok, const char *s, size_t len, int first, dw__buf *out, dw__buf *tmp,
                      int *bad) {
    const dw__dec_plan *d = &tok->dec;
    if (dw__buf_reserve(out, len + 1)) return -1;
    if (d->kind == DW__DEC_BYTELEVEL) {
        out->len = bytelevel_unmap(s, len, out->p);
        return 0;
    }
    memcpy(out->p, s, len);
    out->len = len;
    if (d->kind == DW__DEC_NONE) return 0;
    size_t limit = len * DW__TOK_GROWTH_FACTOR + DW__TOK_PIECE_SLACK;
    for (int k = 0; k < d->n_replace; k++) {
        int rc = dw__tok_replace_all(&d->replace[k], out->p, out->len, limit, tmp);
        if (rc) {
            *bad = k;
            return rc;
        }
        dw__buf swap = *out;
        *out = *tmp;
        *tmp = swap;
    }
    if (d->metaspace) {
        size_t o = 0;
        for (size_t i = 0; i < out->len;) {
            if (out->len - i >= d->ms_repl_len && memcmp(out->p + i, d->ms_repl, d->ms_repl_len) == 0) {
                if (!(first && d->ms_strip_first)) out->p[o++] = ' ';
                i += d->ms_repl_len;
            } else {
                out->p[o++] = out->p[i++];
            }
        }
        out->len = o;
    }
    return 0;
}

dw_status dw__tok_build_pieces(dw_tokenizer *tok, dw_error *err) {
    size_t n = tok->vocab_size;
    int two = tok->dec.metaspace && tok->dec.ms_strip_first; /* first-token pieces differ */
    dw__buf arena = {0}, piece = {0}, tmp = {0};
    tok->piece_off = calloc(2 * n, sizeof *tok->piece_off);
    tok->piece_len = calloc(2 * n, sizeof *tok->piece_len);
    tok->piece_byte = malloc(n * sizeof *tok->piece_byte);
    if (!tok->piece_off || !tok->piece_len || !tok->piece_byte) goto oom;
    /* pieces 0..n-1: within a text; n..2n-1: as the first token of a text */
    for (size_t k = 0; k < 2 * n; k++) {
        size_t id = k % n;
        if (k < n) tok->piece_byte[id] = -1;
        if (!tok->text[id]) continue;
        if (k >= n && !two) {
            tok->piece_off[k] = tok->piece_off[id];
            tok->piece_len[k] = tok->piece_len[id];
            continue;
        }
        int bad, rc = make_piece(tok, tok->text[id], tok->text_len[id], k >= n, &piece, &tmp, &bad);
        if (rc > 0) {
            free(arena.p);
            free(piece.p);
            free(tmp.p);
            return dw__tok_fail(tok, err, DW_ERR_LIMIT,
                                "%s (Replace) would grow token %zu's %u-byte text past %zu bytes, the limit for decoder "
                                "steps (%d times the token plus %d bytes)",
                                tok->dec.replace[bad].where, id, tok->text_len[id],
                                (size_t)tok->text_len[id] * DW__TOK_GROWTH_FACTOR + DW__TOK_PIECE_SLACK,
                                DW__TOK_GROWTH_FACTOR, DW__TOK_PIECE_SLACK);
        }
        if (rc) goto oom;
        if (dw__buf_reserve(&arena, arena.len + piece.len + 1)) goto oom;
        memcpy(arena.p + arena.len, piece.p, piece.len);
        tok->piece_off[k] = arena.len;
        tok->piece_len[k] = (uint32_t)piece.len;
        arena.len += piece.len;
        if (piece.len > tok->max_piece) tok->max_piece = piece.len;
        if (k < n && tok->dec.byte_fallback) tok->piece_byte[id] = (int16_t)fallback_byte(piece.p, piece.len);
    }
    tok->piece_arena = arena.p ? arena.p : malloc(1);
    free(piece.p);
    free(tmp.p);
    if (!tok->piece_arena) goto oom;
    return DW_OK;
oom:
    free(arena.p);
    free(piece.p);
    free(tmp.p);
    return dw__tok_fail(tok, err, DW_ERR_NO_MEMORY, "out of memory building the decoding tables");
}

/* The piece of id, as the first token of a text or not. */
static inline const char *piece_of(const dw_tokenizer *tok, int32_t id, int first, size_t *len) {
    size_t k = (size_t)id + (first ? tok->vocab_size : 0);
    *len = tok->piece_len[k];
    return tok->piece_arena + tok->piece_off[k];
}

/* ---- whole decode ------------------------------------------------------------------------- */

static int put(dw__buf *b, const char *s, size_t len) {
    if (dw__buf_reserve(b, b->len + len + 1)) return -1;
    memcpy(b->p + b->len, s, len);
    b->len += len;
    return 0;
}

/* HF ByteFallback: a run of byte tokens is its text when it is valid UTF-8, else one U+FFFD
 * per byte token. */
static int flush_group(dw__buf *out, dw__buf *group) {
    int rc = 0;
    if (group->len == 0) return 0;
    if (dw__utf8_valid_prefix(group->p, group->len) == group->len) rc = put(out, group->p, group->len);
    else
        for (size_t i = 0; i < group->len && !rc; i++) rc = put(out, fffd, 3);
    group->len = 0;
    return rc;
}

dw_status dw_tokenizer_decode(const dw_tokenizer *tok, const int32_t *ids, size_t n, int flags, char *out,
                              size_t cap, size_t *len_out, dw_error *err) {
    *len_out = 0;
    const dw__dec_plan *d = &tok->dec;
    dw__buf text = {0}, group = {0};
    int first = 1, rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        int32_t id = ids[i];
        if (id < 0 || (size_t)id >= tok->vocab_size) {
            free(text.p);
            free(group.p);
            return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "decode: token id %d is outside the vocabulary [0, %zu)",
                                id, tok->vocab_size);
        }
        if (!tok->text[id] || ((flags & DW_DETOKENIZE_SKIP_SPECIAL) && tok->is_special[id])) continue;
        size_t len;
        const char *p = piece_of(tok, id, first, &len);
        if (d->byte_fallback && tok->piece_byte[id] >= 0) {
            char b = (char)tok->piece_byte[id];
            rc = put(&group, &b, 1);
            first = 0;
            continue;
        }
        rc = flush_group(&text, &group);
        if (!rc && d->kind == DW__DEC_NONE && !first) rc = put(&text, " ", 1);
        if (!rc) rc = put(&text, p, len);
        first = 0;
    }
    if (!rc) rc = flush_group(&text, &group);
    if (!rc) rc = dw__buf_reserve(&text, 1);
    free(group.p);
    if (rc) {
        free(text.p);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "out of memory while decoding");
    }
    const char *s = text.p;
    size_t len = text.len;
    for (int k = 0; k < d->strip_left && len >= d->strip_char_len && memcmp(s, d->strip_char, d->strip_char_len) == 0; k++) {
        s += d->strip_char_len;
        len -= d->strip_char_len;
    }
    char *fixed = NULL;
    if (d->kind == DW__DEC_BYTELEVEL) { /* String::from_utf8_lossy */
        fixed = malloc(3 * len + 1);
        if (!fixed) {
            free(text.p);
            return dw_error_set(err, DW_ERR_NO_MEMORY, "out of memory while decoding");
        }
        size_t used;
        len = dw__utf8_lossy(s, len, 0, fixed, &used);
        s = fixed;
    }
    *len_out = len;
    dw_status st = DW_OK;
    if (out && cap > 0) {
        size_t k = len < cap ? len : cap - 1;
        memcpy(out, s, k);
        out[k] = 0;
    }
    if (len + 1 > cap) st = dw_error_set(err, DW_ERR_LIMIT, "decode: %zu bytes of text do not fit in a buffer of %zu", len + 1, cap);
    free(fixed);
    free(text.p);
    return st;
}

/* ---- streaming ------------------------------------------------------------------------------ */

struct dw_tokenizer_stream {
    const dw_tokenizer *tok;
    int flags;
    int first;          /* no token taken yet */
    int strip_left;     /* leading strip characters still to drop */
    char held[8];       /* bytes of an unfinished character */
    size_t n_held;
    char *in;           /* held bytes + one piece */
    char *out;          /* what push hands back */
};

dw_status dw_tokenizer_stream_new(const dw_tokenizer *tok, int flags, dw_tokenizer_stream **out, dw_error *err) {
    *out = NULL;
    dw_tokenizer_stream *s = calloc(1, sizeof *s);
    size_t in_cap = tok->max_piece + 16;
    if (s) {
        s->in = malloc(in_cap);
        s->out = malloc(3 * in_cap + 8);
    }
    if (!s || !s->in || !s->out) {
        dw_tokenizer_stream_free(s);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "out of memory creating a decode stream");
    }
    s->tok = tok;
    s->flags = flags;
    dw_tokenizer_stream_reset(s);
    *out = s;
    return DW_OK;
}

void dw_tokenizer_stream_reset(dw_tokenizer_stream *s) {
    s->first = 1;
    s->strip_left = s->tok->dec.strip_left;
    s->n_held = 0;
}

void dw_tokenizer_stream_free(dw_tokenizer_stream *s) {
    if (!s) return;
    free(s->in);
    free(s->out);
    free(s);
}

/* Converts in[0..len) to out, holding an unfinished character back unless final; applies the
 * leading Strip. */
static size_t stream_emit(dw_tokenizer_stream *s, size_t len, int final) {
    size_t used;
    size_t o = dw__utf8_lossy(s->in, len, !final, s->out, &used);
    s->n_held = len - used;
    memcpy(s->held, s->in + used, s->n_held);
    const dw__dec_plan *d = &s->tok->dec;
    size_t skip = 0;
    while (s->strip_left > 0 && o - skip > 0) {
        if (o - skip >= d->strip_char_len && memcmp(s->out + skip, d->strip_char, d->strip_char_len) == 0) {
            skip += d->strip_char_len;
            s->strip_left--;
        } else {
            s->strip_left = 0;
        }
    }
    if (skip) memmove(s->out, s->out + skip, o - skip);
    s->out[o - skip] = 0;
    return o - skip;
}

dw_status dw_tokenizer_stream_push(dw_tokenizer_stream *s, int32_t id, const char **text, size_t *len, dw_error *err) {
    const dw_tokenizer *tok = s->tok;
    const dw__dec_plan *d = &tok->dec;
    *text = s->out;
    *len = 0;
    s->out[0] = 0;
    if (id < 0 || (size_t)id >= tok->vocab_size)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "decode: token id %d is outside the vocabulary [0, %zu)", id,
                            tok->vocab_size);
    if (!tok->text[id] || ((s->flags & DW_DETOKENIZE_SKIP_SPECIAL) && tok->is_special[id])) return DW_OK;
    size_t plen;
    const char *p = piece_of(tok, id, s->first, &plen);
    size_t n = s->n_held;
    memcpy(s->in, s->held, n);
    if (d->byte_fallback && tok->piece_byte[id] >= 0) {
        s->in[n++] = (char)tok->piece_byte[id];
    } else {
        if (d->kind == DW__DEC_NONE && !s->first) s->in[n++] = ' ';
        memcpy(s->in + n, p, plen);
        n += plen;
    }
    s->first = 0;
    *len = stream_emit(s, n, 0);
    return DW_OK;
}

void dw_tokenizer_stream_flush(dw_tokenizer_stream *s, const char **text, size_t *len) {
    memcpy(s->in, s->held, s->n_held);
    *len = stream_emit(s, s->n_held, 1);
    *text = s->out;
    dw_tokenizer_stream_reset(s);
}
