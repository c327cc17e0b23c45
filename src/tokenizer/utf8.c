/* UTF-8 helpers of the tokenizer: validation, the lossy conversion HF applies when decoding
 * (one U+FFFD per maximal invalid subpart, as Rust's String::from_utf8_lossy), Unicode
 * White_Space, and the GPT-2 byte-level character map. */
#include "tokenizer/tokenizer_impl.h"

#include <string.h>

/* Expected length of a sequence starting with lead byte b (0 for an invalid lead) and the
 * allowed range of its second byte. */
static int utf8_lead(uint8_t b, uint8_t *lo, uint8_t *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (b < 0x80) return 1;
    if (b < 0xC2) return 0;
    if (b < 0xE0) return 2;
    if (b < 0xF0) {
        if (b == 0xE0) *lo = 0xA0;
        if (b == 0xED) *hi = 0x9F;
        return 3;
    }
    if (b < 0xF5) {
        if (b == 0xF0) *lo = 0x90;
        if (b == 0xF4) *hi = 0x8F;
        return 4;
    }
    return 0;
}

/* Scans the sequence at s[0..len): returns its length if complete and valid; otherwise -k where
 * k >= 1 is the length of the maximal invalid subpart, or 0 when the input ends inside a
 * sequence whose bytes so far are valid. */
static int utf8_scan(const uint8_t *s, size_t len) {
    uint8_t lo, hi;
    int need = utf8_lead(s[0], &lo, &hi);
    if (need == 0) return -1;
    for (int j = 1; j < need; j++) {
        if ((size_t)j >= len) return 0;
        uint8_t c = s[j];
        if (j == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) return -j;
    }
    return need;
}

size_t dw__utf8_valid_prefix(const char *s, size_t len) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        int n = utf8_scan(p + i, len - i);
        if (n <= 0) return i;
        i += (size_t)n;
    }
    return len;
}

int dw__utf8_decode(const char *s, size_t len, uint32_t *cp) {
    const uint8_t *p = (const uint8_t *)s;
    if (p[0] < 0x80 || len < 2) {
        *cp = p[0];
        return 1;
    }
    if (p[0] < 0xE0) {
        *cp = ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
        return 2;
    }
    if (p[0] < 0xF0 || len < 4) {
        *cp = ((uint32_t)(p[0] & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
        return 3;
    }
    *cp = ((uint32_t)(p[0] & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) |
          ((uint32_t)(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
    return 4;
}

int dw__utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int dw__unicode_is_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

size_t dw__utf8_lossy(const char *in, size_t len, int keep_tail, char *out, size_t *consumed) {
    static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    const uint8_t *p = (const uint8_t *)in;
    size_t i = 0, o = 0;
    while (i < len) {
        if (p[i] < 0x80) {
            out[o++] = (char)p[i++];
            continue;
        }
        int n = utf8_scan(p + i, len - i);
        if (n > 0) {
            memcpy(out + o, p + i, (size_t)n);
            o += (size_t)n;
            i += (size_t)n;
        } else if (n == 0) { /* input ends inside a sequence that may still complete */
            if (keep_tail) break;
            memcpy(out + o, fffd, 3);
            o += 3;
            i = len;
        } else {
            memcpy(out + o, fffd, 3);
            o += 3;
            i += (size_t)(-n);
        }
    }
    *consumed = i;
    return o;
}

/* bytes_to_unicode(): printable bytes map to themselves; the others, in order, to 256 + n. */
uint32_t dw__bytelevel_char(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 256u + b;
    if (b <= 0xA0) return 256u + 33u + (uint32_t)(b - 0x7F);
    return 256u + 67u; /* 0xAD */
}

int dw__bytelevel_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp >= 256 && cp <= 256 + 32) return (int)(cp - 256);
    if (cp >= 256 + 33 && cp <= 256 + 66) return (int)(cp - 256 - 33 + 0x7F);
    if (cp == 256 + 67) return 0xAD;
    return -1;
}
