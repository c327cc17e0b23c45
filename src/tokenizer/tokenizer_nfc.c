/* Unicode NFC (canonical decomposition, canonical ordering, canonical composition; Hangul by
 * arithmetic), as the HF tokenizers NFC normalizer does it. Text made only of characters that
 * neither decompose, combine nor compose is returned as is without the full pass. */
#include "tokenizer/tokenizer_nfc.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_impl.h"

enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7, L_COUNT = 19, V_COUNT = 21,
       T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT, S_COUNT = L_COUNT * N_COUNT };

static const dw__nfc_decomp *find_decomp(uint32_t cp) {
    size_t lo = 0, hi = dw__nfc_n_decomps;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (dw__nfc_decomps[mid].cp < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < dw__nfc_n_decomps && dw__nfc_decomps[lo].cp == cp ? &dw__nfc_decomps[lo] : NULL;
}

static int ccc_of(uint32_t cp) {
    if (cp < 0x300) return 0;
    size_t lo = 0, hi = dw__nfc_n_classes;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (dw__nfc_classes[mid].cp < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < dw__nfc_n_classes && dw__nfc_classes[lo].cp == cp ? dw__nfc_classes[lo].ccc : 0;
}

/* The primary composite of (a, b), or 0. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE && b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    size_t lo = 0, hi = dw__nfc_n_pairs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const dw__nfc_pair *p = &dw__nfc_pairs[mid];
        if (p->first < a || (p->first == a && p->second < b)) lo = mid + 1;
        else hi = mid;
    }
    if (lo < dw__nfc_n_pairs && dw__nfc_pairs[lo].first == a && dw__nfc_pairs[lo].second == b)
        return dw__nfc_pairs[lo].composite;
    return 0;
}

/* Whether cp may be the second of a composition (so text holding it needs the full pass). */
static int composes_with_previous(uint32_t cp) {
    if ((cp >= V_BASE && cp < V_BASE + V_COUNT) || (cp > T_BASE && cp < T_BASE + T_COUNT)) return 1;
    size_t lo = 0, hi = dw__nfc_n_seconds;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (dw__nfc_seconds[mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < dw__nfc_n_seconds && dw__nfc_seconds[lo] == cp;
}

/* Whether every character of s is left alone by NFC. */
static int stable(const char *s, size_t len) {
    for (size_t i = 0; i < len;) {
        if ((uint8_t)s[i] < 0xCC) { /* below U+0300 nothing decomposes, combines or composes */
            i++;
            continue;
        }
        uint32_t cp;
        int n = dw__utf8_decode(s + i, len - i, &cp);
        i += (size_t)n;
        if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
            /* a syllable is stable unless a trailing jamo could join it: checked as that jamo */
            continue;
        }
        if (find_decomp(cp) || ccc_of(cp) || composes_with_previous(cp)) return 0;
    }
    return 1;
}

static size_t decompose(uint32_t cp, uint32_t *out) {
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE;
        out[0] = L_BASE + s / N_COUNT;
        out[1] = V_BASE + (s % N_COUNT) / T_COUNT;
        if (s % T_COUNT == 0) return 2;
        out[2] = T_BASE + s % T_COUNT;
        return 3;
    }
    const dw__nfc_decomp *d = find_decomp(cp);
    if (!d) {
        out[0] = cp;
        return 1;
    }
    memcpy(out, &dw__nfc_decomp_pool[d->off], d->len * sizeof *out);
    return d->len;
}

int dw__nfc(const char *s, size_t len, char *out, size_t *out_len) {
    if (stable(s, len)) {
        memcpy(out, s, len);
        *out_len = len;
        return 0;
    }
    /* each character decomposes into at most 4 code points */
    uint32_t *cps = malloc((4 * len + 4) * sizeof *cps);
    uint8_t *cc = malloc(4 * len + 4);
    if (!cps || !cc) {
        free(cps);
        free(cc);
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += (size_t)dw__utf8_decode(s + i, len - i, &cp);
        size_t k = decompose(cp, cps + n);
        for (size_t j = 0; j < k; j++) {
            cc[n + j] = (uint8_t)ccc_of(cps[n + j]);
            /* canonical ordering: a mark moves before marks of higher class (stable insertion) */
            size_t p = n + j;
            while (cc[p] != 0 && p > 0 && cc[p - 1] > cc[p]) {
                uint32_t t = cps[p - 1];
                cps[p - 1] = cps[p];
                cps[p] = t;
                uint8_t u = cc[p - 1];
                cc[p - 1] = cc[p];
                cc[p] = u;
                p--;
            }
        }
        n += k;
    }
    /* canonical composition */
    size_t w = 0;
    long starter = -1; /* index in the output of the last starter */
    int last = -1;     /* class of the last character after that starter; -1: none */
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cps[i];
        int k = cc[i];
        if (starter >= 0 && (last == -1 || (last != 0 && last < k))) {
            uint32_t comp = compose(cps[starter], c);
            if (comp) {
                cps[starter] = comp;
                continue;
            }
        }
        if (k == 0) {
            starter = (long)w;
            last = -1;
        } else {
            last = k;
        }
        cps[w] = c;
        cc[w] = (uint8_t)k;
        w++;
    }
    size_t o = 0;
    for (size_t i = 0; i < w; i++) o += (size_t)dw__utf8_encode(cps[i], out + o);
    *out_len = o;
    free(cps);
    free(cc);
    return 0;
}
