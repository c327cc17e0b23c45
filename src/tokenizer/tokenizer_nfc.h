/* Unicode NFC normalization for the tokenizer's "NFC" normalizer (Qwen2 tokenizer.json), with
 * tables generated from HF `tokenizers` itself (tokenizer_nfc_data.c). */
#ifndef DW_TOKENIZER_NFC_H
#define DW_TOKENIZER_NFC_H

#include <stddef.h>
#include <stdint.h>

typedef struct dw__nfc_decomp {
    uint32_t cp;
    uint16_t off; /* into dw__nfc_decomp_pool */
    uint8_t len;  /* full canonical decomposition, 1 to 4 code points */
} dw__nfc_decomp;

typedef struct dw__nfc_class {
    uint32_t cp;
    uint8_t ccc; /* canonical combining class, non-zero */
} dw__nfc_class;

typedef struct dw__nfc_pair {
    uint32_t first, second, composite;
} dw__nfc_pair;

/* Sorted by code point (pairs by first, then second). */
extern const uint32_t dw__nfc_decomp_pool[];
extern const dw__nfc_decomp dw__nfc_decomps[];
extern const size_t dw__nfc_n_decomps;
extern const dw__nfc_class dw__nfc_classes[];
extern const size_t dw__nfc_n_classes;
extern const dw__nfc_pair dw__nfc_pairs[];
extern const size_t dw__nfc_n_pairs;
extern const uint32_t dw__nfc_seconds[]; /* the distinct seconds of dw__nfc_pairs */
extern const size_t dw__nfc_n_seconds;

/* NFC of the valid UTF-8 s[0..len) into out[0..*out_len); out must hold 3 * len + 4 bytes (NFC
 * can grow text, by at most that). Returns 0, or -1 when a temporary buffer cannot be had. */
int dw__nfc(const char *s, size_t len, char *out, size_t *out_len);

#endif
