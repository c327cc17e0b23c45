/* The normalizer of tokenizer.json applied to text: its steps (Prepend, Replace with a string,
 * NFC) in order, as HF `tokenizers` runs them. Unicode NFC is utf8proc's, held to the Unicode
 * version HF's own tables have (see hf_starters below). utf8proc replaced hand-written tables
 * here (issue 18): measured in one run on the same text, it gave the same bytes and was as fast
 * on ASCII and stacked combining marks, and faster on accented Latin, Hangul and CJK. */
#include "tokenizer/tokenizer_impl.h"

#include <string.h>
#include <utf8proc.h>

/* HF's NFC knows Unicode 9.0 (it knows the combining marks of 9.0 and none of 10.0); utf8proc
 * a later version. Compared over every code point (canonical decomposition, combining class and
 * composition), the two differ only here: marks that Unicode 10 and later assigned with a
 * non-zero combining class, which HF, not knowing them, leaves in place as starters; and
 * U+11930, which composes with U+11935 since Unicode 13. HF treats each of these as a starter
 * that nothing composes with, so the text between them is normalized piece by piece and they
 * stay as they are. The list is for utf8proc 2.8.0 (Unicode 15.0) against HF tokenizers 0.23.2
 * (tests/py/requirements.txt): a unit test fails when utf8proc reports another Unicode version,
 * and tests/py/test_tokenizer_parity.py holds every code point against HF itself. */
static const uint32_t hf_starters[][2] = {
    {0x7FD, 0x7FD},     {0x898, 0x89F},     {0x8CA, 0x8D3},     {0x9FE, 0x9FE},     {0xC3C, 0xC3C},
    {0xD3B, 0xD3C},     {0xEBA, 0xEBA},     {0x1715, 0x1715},   {0x1ABF, 0x1ACE},   {0x1DF6, 0x1DFA},
    {0xA82C, 0xA82C},   {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50},
    {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x1133B, 0x1133B}, {0x1145E, 0x1145E}, {0x11839, 0x1183A},
    {0x11930, 0x11930}, {0x1193D, 0x1193E}, {0x11943, 0x11943}, {0x119E0, 0x119E0}, {0x11A34, 0x11A34},
    {0x11A47, 0x11A47}, {0x11A99, 0x11A99}, {0x11D42, 0x11D42}, {0x11D44, 0x11D45}, {0x11D97, 0x11D97},
    {0x11F41, 0x11F42}, {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE},
    {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF},
};

static int is_hf_starter(uint32_t cp) {
    size_t lo = 0, hi = sizeof hf_starters / sizeof hf_starters[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (hf_starters[mid][1] < cp) lo = mid + 1;
        else if (hf_starters[mid][0] > cp) hi = mid;
        else return 1;
    }
    return 0;
}

/* Appends the NFC of s[0..len) to out: utf8proc decomposes it into code points (placed in out,
 * past its text), composes them and writes them back as UTF-8 where they lay. */
static int nfc_piece(const char *s, size_t len, dw__buf *out) {
    const utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    utf8proc_ssize_t cap = (utf8proc_ssize_t)len + 8; /* code points; more when decomposing needs it */
    for (;;) {
        size_t at = (out->len + 3) & ~(size_t)3; /* the code points' place, 4-byte aligned */
        if (dw__buf_reserve(out, at + (size_t)cap * sizeof(utf8proc_int32_t))) return -1;
        utf8proc_int32_t *cps = (utf8proc_int32_t *)(void *)(out->p + at);
        utf8proc_ssize_t n = utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, cps, cap, opt);
        if (n < 0) return -1;
        if (n > cap) {
            cap = n;
            continue;
        }
        n = utf8proc_reencode(cps, n, opt);
        if (n < 0) return -1;
        memmove(out->p + out->len, cps, (size_t)n);
        out->len += (size_t)n;
        return 0;
    }
}

int dw__tok_nfc(const char *s, size_t len, dw__buf *out) {
    out->len = 0;
    size_t i = 0;
    while (i < len && (uint8_t)s[i] < 0xCC) i++; /* below U+0300 NFC changes nothing */
    if (i == len) {
        if (dw__buf_reserve(out, len + 1)) return -1;
        memcpy(out->p, s, len);
        out->len = len;
        return 0;
    }
    size_t piece = 0; /* start of the text not yet normalized */
    for (; i < len; i++) {
        if ((uint8_t)s[i] < 0xDF) continue; /* the lead byte of a character from U+07C0 on */
        uint32_t cp;
        int n = dw__utf8_decode(s + i, len - i, &cp);
        if (!is_hf_starter(cp)) continue;
        if (nfc_piece(s + piece, i - piece, out) || dw__buf_reserve(out, out->len + (size_t)n)) return -1;
        memcpy(out->p + out->len, s + i, (size_t)n);
        out->len += (size_t)n;
        piece = i + (size_t)n;
        i += (size_t)n - 1;
    }
    return nfc_piece(s + piece, len - piece, out);
}

int dw__tok_replace_all(const dw__norm_step *r, const char *s, size_t len, size_t limit, dw__buf *out) {
    out->len = 0;
    if (dw__buf_reserve(out, 1)) return -1; /* a buffer even for an empty result */
    size_t i = 0;
    while (i < len) {
        const char *hit = r->alen <= len - i ? memmem(s + i, len - i, r->a, r->alen) : NULL;
        size_t upto = hit ? (size_t)(hit - s) : len;
        size_t need = out->len + (upto - i) + (hit ? r->blen : 0);
        if (need > limit) return 1;
        if (dw__buf_reserve(out, need)) return -1;
        memcpy(out->p + out->len, s + i, upto - i);
        out->len += upto - i;
        if (!hit) break;
        memcpy(out->p + out->len, r->b, r->blen);
        out->len += r->blen;
        i = upto + r->alen;
    }
    return 0;
}

static dw_status too_long(const dw_tokenizer *tok, const dw__norm_step *n, const char *kind, size_t len, size_t limit,
                          dw_error *err) {
    return dw__tok_fail(tok, err, DW_ERR_LIMIT,
                        "%s (%s) would grow a %zu-byte text past %zu bytes, the limit for tokenizer steps (%d times "
                        "the text plus %d bytes)",
                        n->where, kind, len, limit, DW__TOK_GROWTH_FACTOR, DW__TOK_GROWTH_SLACK);
}

/* NFC makes a text at most three times as long (Unicode's bound for UTF-8), so only Prepend and
 * Replace are held to the growth limit. */
dw_status dw__tok_normalize(const dw_tokenizer *tok, const char *s, size_t len, dw__buf *out, dw__buf *tmp,
                            dw_error *err) {
    size_t limit = dw__tok_growth_limit(len);
    if (dw__buf_reserve(out, len + 1)) goto oom;
    memmove(out->p, s, len);
    out->len = len;
    for (int k = 0; k < tok->n_norm; k++) {
        const dw__norm_step *n = &tok->norm[k];
        if (n->kind == DW__NORM_PREPEND) {
            if (out->len == 0) continue; /* HF prepends only to non-empty text */
            if (out->len + n->alen > limit) return too_long(tok, n, "Prepend", len, limit, err);
            if (dw__buf_reserve(out, out->len + n->alen)) goto oom;
            memmove(out->p + n->alen, out->p, out->len);
            memcpy(out->p, n->a, n->alen);
            out->len += n->alen;
        } else {
            if (n->kind == DW__NORM_NFC) {
                if (dw__tok_nfc(out->p, out->len, tmp)) goto oom;
            } else {
                int rc = dw__tok_replace_all(n, out->p, out->len, limit, tmp);
                if (rc > 0) return too_long(tok, n, "Replace", len, limit, err);
                if (rc) goto oom;
            }
            dw__buf swap = *out;
            *out = *tmp;
            *tmp = swap;
        }
    }
    return DW_OK;
oom:
    return dw__tok_fail(tok, err, DW_ERR_NO_MEMORY, "out of memory while normalizing");
}
