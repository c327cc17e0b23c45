/* Private layout of dw_tokenizer, shared by the files of src/tokenizer/: the loaded tables (vocab,
 * merges, added tokens) and the encode pipeline's plan, which mirrors HF `tokenizers`:
 *   added tokens (raw) -> normalizer -> added tokens (normalized) -> pre-tokenizer steps -> BPE.
 * Public API: include/driftwood/tokenizer.h. */
#ifndef DW_TOKENIZER_IMPL_H
#define DW_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "driftwood/tokenizer.h"

/* ---- a growable byte buffer ------------------------------------------------------------------ */
typedef struct dw__buf {
    char *p;
    size_t len, cap;
} dw__buf;

/* Makes room for at least n bytes; 0 on success, -1 on OOM. */
static inline int dw__buf_reserve(dw__buf *b, size_t n) {
    if (n <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < n) cap *= 2;
    char *p = (char *)realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

/* ---- limits ---------------------------------------------------------------------------- */
#define DW__TOK_MAX_ID        (1 << 24)  /* ids beyond this are refused as malformed */
#define DW__TOK_MAX_STEPS     8          /* normalizer / pre-tokenizer / decoder steps */
#define DW__TOK_FILE_MAX      ((size_t)512 << 20)

/* How far the steps that rewrite a text may grow it (issue 21: eight chained Replace steps, each
 * "a" -> 1,000 x "a", made a 16-byte prompt take 6 GB). A normalizer step or a rewriting
 * pre-tokenizer step (ByteLevel, Metaspace) may make the text it was given at most
 * DW__TOK_GROWTH_FACTOR times as long plus DW__TOK_GROWTH_SLACK bytes, and never longer than
 * DW__TOK_GROWTH_CAP (or the text itself, when that is longer); a decoder may make a token's text
 * at most DW__TOK_GROWTH_FACTOR times as long plus DW__TOK_PIECE_SLACK bytes. Each step checks
 * this before it allocates, and one that would pass it fails with DW_ERR_LIMIT naming the step
 * (for the decoder at load, when the pieces are built). The tokenizers we run stay far below:
 * Llama 2's Prepend + Replace(" " -> "\u2581") at most triple a text, ByteLevel doubles it. */
#define DW__TOK_GROWTH_FACTOR 8
#define DW__TOK_GROWTH_SLACK  4096
#define DW__TOK_GROWTH_CAP    ((size_t)256 << 20)
#define DW__TOK_PIECE_SLACK   16

/* The most bytes a normalizer or pre-tokenizer step may turn a len-byte text into. */
static inline size_t dw__tok_growth_limit(size_t len) {
    size_t grown = len <= DW__TOK_GROWTH_CAP ? len * DW__TOK_GROWTH_FACTOR + DW__TOK_GROWTH_SLACK : len;
    size_t cap = len > DW__TOK_GROWTH_CAP ? len : DW__TOK_GROWTH_CAP;
    return grown < cap ? grown : cap;
}

/* ---- string -> id hash map (open addressing; keys live in the tokenizer's arena) -------- */
typedef struct dw__tok_entry {
    const char *key;
    uint32_t len;
    int32_t val;
} dw__tok_entry;

typedef struct dw__tok_map {
    uint64_t *slots;        /* (capacity) hash << 32 | (entry index + 1); 0 = empty */
    uint32_t mask;          /* capacity - 1 (capacity is a power of two) */
    uint32_t count, cap_entries;
    dw__tok_entry *entries; /* (count) in insertion order */
} dw__tok_map;

uint32_t dw__tok_hash(const char *s, size_t len);
void dw__tok_map_free(dw__tok_map *m);
/* Inserts or overwrites key -> val (the key pointer must stay valid). 0 on success, -1 on OOM. */
int dw__tok_map_put(dw__tok_map *m, const char *key, uint32_t len, int32_t val);
/* The id for key, or -1. */
int32_t dw__tok_map_get(const dw__tok_map *m, const char *key, size_t len);

/* ---- merges: (left id, right id) -> (rank, merged id) ------------------------------------ */
typedef struct dw__merge_entry {
    uint64_t key;    /* ((uint64_t)left << 32 | right) + 1; 0 = empty */
    int32_t rank;
    int32_t new_id;
} dw__merge_entry;

typedef struct dw__merge_map {
    dw__merge_entry *slots;
    uint64_t mask;
    size_t count;
} dw__merge_map;

/* Sized for n merges (the map never grows); 0 on success, -1 on OOM. */
int dw__merge_init(dw__merge_map *m, size_t n);
/* Inserts or overwrites (a repeated pair keeps the later rank, as HF does). */
void dw__merge_put(dw__merge_map *m, int32_t left, int32_t right, int32_t rank, int32_t new_id);
void dw__merge_free(dw__merge_map *m);
/* Returns the entry or NULL. */
const dw__merge_entry *dw__merge_get(const dw__merge_map *m, int32_t left, int32_t right);

/* ---- added tokens ----------------------------------------------------------------------- */
typedef struct dw__added_token {
    int32_t id;
    const char *content;  /* as written (arena) */
    uint32_t len;
    uint8_t special, normalized, lstrip, rstrip;
} dw__added_token;

/* A byte trie over added-token texts, for leftmost-longest matching as HF's Aho-Corasick does. */
typedef struct dw__trie_node {
    int32_t first_child, next_sibling;
    int32_t token;   /* index into tok->added, or -1 */
    uint8_t byte;
} dw__trie_node;

typedef struct dw__trie {
    dw__trie_node *nodes;  /* node 0 is the root */
    int32_t count, cap;
    uint8_t first_byte[256]; /* a match can start with this byte */
} dw__trie;

/* ---- pipeline steps ---------------------------------------------------------------------- */
typedef enum { DW__NORM_PREPEND, DW__NORM_REPLACE, DW__NORM_NFC } dw__norm_kind;

typedef struct dw__norm_step {
    dw__norm_kind kind;
    char where[64];               /* its place in tokenizer.json, for messages */
    const char *a; uint32_t alen; /* PREPEND: text; REPLACE: pattern */
    const char *b; uint32_t blen; /* REPLACE: replacement */
} dw__norm_step;

typedef enum { DW__PRE_SPLIT, DW__PRE_BYTELEVEL, DW__PRE_METASPACE } dw__pre_kind;

typedef enum {
    DW__SPLIT_REMOVED, DW__SPLIT_ISOLATED, DW__SPLIT_MERGED_PREV, DW__SPLIT_MERGED_NEXT,
    DW__SPLIT_CONTIGUOUS
} dw__split_behavior;

typedef enum { DW__PREPEND_ALWAYS, DW__PREPEND_FIRST, DW__PREPEND_NEVER } dw__prepend_scheme;

typedef struct dw__pre_step {
    dw__pre_kind kind;
    char where[64];            /* its place in tokenizer.json, for messages */
    pcre2_code *re;            /* SPLIT, or BYTELEVEL with use_regex (GPT-2 pattern) */
    dw__split_behavior behavior;
    int invert;
    int add_prefix_space;      /* BYTELEVEL */
    char repl[8]; uint32_t repl_len; /* METASPACE replacement (one character, UTF-8) */
    dw__prepend_scheme prepend;/* METASPACE */
    int split;                 /* METASPACE */
} dw__pre_step;

/* The decoder, reduced to a per-token transform plus what happens across tokens:
 *   piece(id)  = per-token steps (Replace..., Metaspace or ByteLevel) applied to the token text
 *   then ByteFallback groups "<0xHH>" pieces into bytes, the pieces are joined ("" or " ")
 *   and Strip removes up to strip_left leading strip_char characters of the whole text. */
typedef enum { DW__DEC_NONE, DW__DEC_BYTELEVEL, DW__DEC_PIECES } dw__dec_kind;

typedef struct dw__dec_plan {
    dw__dec_kind kind;         /* NONE: pieces joined with " " (no decoder in the file) */
    int n_replace;
    dw__norm_step replace[DW__TOK_MAX_STEPS];
    int metaspace;             /* a Metaspace decoder step: replacement -> ' ' */
    char ms_repl[8]; uint32_t ms_repl_len;
    int ms_strip_first;        /* prepend_scheme != never: the first token loses its replacements */
    int byte_fallback;
    int strip_left;            /* Strip after Fuse: count of leading strip_char to drop */
    char strip_char[8]; uint32_t strip_char_len;
} dw__dec_plan;

/* post_processor TemplateProcessing "single": ids before and after the sequence. */
typedef struct dw__post_plan {
    int32_t *before; size_t n_before;
    int32_t *after;  size_t n_after;
} dw__post_plan;

/* ---- the BPE word cache ---------------------------------------------------------------- */
#define DW__BPE_CACHE_SLOTS 4096  /* direct-mapped; a power of two */
#define DW__BPE_CACHE_MAXLEN 48   /* words up to this many bytes are cached */
#define DW__BPE_CACHE_MAXIDS 16
typedef struct dw__bpe_cache_slot {
    uint32_t hash;
    uint8_t len, n_ids;       /* len 0 = empty */
    char word[DW__BPE_CACHE_MAXLEN];
    int32_t ids[DW__BPE_CACHE_MAXIDS];
} dw__bpe_cache_slot;

/* One block of the string arena. */
typedef struct dw__tok_block {
    struct dw__tok_block *next;
    size_t used, cap;
    char data[];
} dw__tok_block;

/* ---- the tokenizer ----------------------------------------------------------------------- */
struct dw_tokenizer {
    char *name;               /* the path, for messages */
    uint8_t sha256[32];

    /* model (BPE) */
    size_t vocab_size;        /* max id + 1 over vocab and added tokens */
    const char **text;        /* (vocab_size) id -> token text (added content wins), or NULL */
    uint32_t *text_len;       /* (vocab_size) */
    dw__tok_map vocab;        /* model vocabulary: text -> id */
    dw__merge_map merges;
    int32_t char_id[0x800];   /* id of the one-character token for code points < 0x800, or -1 */
    int32_t byte_token[256];  /* id of "<0xHH>" or -1 (byte_fallback) */
    int32_t unk_id;           /* -1 if none */
    int fuse_unk, byte_fallback, ignore_merges;

    /* added tokens */
    dw__added_token *added;
    size_t n_added;
    dw__tok_map added_map;    /* content -> id */
    dw__trie trie_raw;        /* normalized == false */
    dw__trie trie_norm;       /* normalized == true, matched on normalized text */
    uint8_t *is_special;      /* (vocab_size) */
    int32_t special[DW_SPECIAL_COUNT];
    uint8_t special_null[DW_SPECIAL_COUNT]; /* tokenizer_config.json sets it to null: none */

    /* pipeline */
    int n_norm;
    dw__norm_step norm[DW__TOK_MAX_STEPS];
    int n_pre;
    dw__pre_step pre[DW__TOK_MAX_STEPS];
    dw__dec_plan dec;
    dw__post_plan post;

    /* decoding tables: piece bytes per id (after the per-token decoder steps) */
    char *piece_arena;
    uint64_t *piece_off;      /* (2 * vocab_size) start in piece_arena; ids, then ids as first token */
    uint32_t *piece_len;      /* (2 * vocab_size) */
    int16_t *piece_byte;      /* (vocab_size) byte value if the piece is "<0xHH>" (byte_fallback), else -1 */
    size_t max_piece;         /* longest piece */

    /* strings loaded from the file, in blocks that never move */
    struct dw__tok_block *blocks;

    pthread_mutex_t cache_lock;
    dw__bpe_cache_slot *cache; /* (DW__BPE_CACHE_SLOTS) */
};

/* json_fields.c: sets err to "<file>: <message>" and returns st. */
dw_status dw__tok_fail(const dw_tokenizer *tok, dw_error *err, dw_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* map.c: the string arena. Copies len bytes into it (NUL-terminated); NULL on OOM. */
const char *dw__tok_intern(dw_tokenizer *tok, const char *s, size_t len);
void dw__tok_arena_free(dw_tokenizer *tok);

/* map.c: the added-token trie. */
int dw__trie_add(dw__trie *t, const char *s, size_t len, int32_t token_index);
void dw__trie_free(dw__trie *t);
/* Finds the leftmost-longest match at or after position from in text[0..len); returns 1 and
 * sets *start, *end, *token_index, or 0 when there is none. */
int dw__trie_find(const dw__trie *t, const char *text, size_t len, size_t from, size_t *start,
                  size_t *end, int32_t *token_index);

/* normalize.c: applies the normalizer to the valid UTF-8 s[0..len): the result is in
 * out->p[0..out->len); tmp is scratch. DW_ERR_NO_MEMORY, or DW_ERR_LIMIT naming the step that
 * would grow the text past dw__tok_growth_limit(len). */
dw_status dw__tok_normalize(const dw_tokenizer *tok, const char *s, size_t len, dw__buf *out, dw__buf *tmp,
                            dw_error *err);
/* normalize.c: out = s[0..len) with every occurrence (non-overlapping, leftmost first) of the
 * Replace step's pattern replaced by its content. 0 on success, -1 on OOM, 1 when the result
 * would be longer than limit bytes (out is then incomplete). */
int dw__tok_replace_all(const dw__norm_step *r, const char *s, size_t len, size_t limit, dw__buf *out);
/* Unicode NFC of the valid UTF-8 s[0..len) as HF's NFC normalizer gives it, into
 * out->p[0..out->len). 0 on success, -1 on OOM. */
int dw__tok_nfc(const char *s, size_t len, dw__buf *out);

/* bpe.c: BPE of one pre-tokenized word; appends ids through the callback. */
typedef struct dw__bpe_work dw__bpe_work;
dw__bpe_work *dw__bpe_work_new(void);
void dw__bpe_work_free(dw__bpe_work *w);
typedef void (*dw__emit_fn)(void *ctx, int32_t id);
/* Returns DW_OK or DW_ERR_NO_MEMORY. */
dw_status dw__bpe_word(const dw_tokenizer *tok, dw__bpe_work *w, const char *word, size_t len,
                       dw__emit_fn emit, void *ctx);

/* utf8.c */
/* Length of the valid UTF-8 prefix of s; equals len when all of s is valid. */
size_t dw__utf8_valid_prefix(const char *s, size_t len);
/* Decodes one character at s (valid UTF-8 assumed); sets *cp and returns its byte length. */
int dw__utf8_decode(const char *s, size_t len, uint32_t *cp);
int dw__utf8_encode(uint32_t cp, char out[4]);
/* Unicode White_Space (Rust char::is_whitespace). */
int dw__unicode_is_space(uint32_t cp);
/* Copies bytes to out as HF's String::from_utf8_lossy does, but stops before an unfinished
 * (possibly still valid) sequence at the end when keep_tail is set. Writes at most 3*len bytes
 * (one U+FFFD per bad byte); returns bytes written and sets *consumed. */
size_t dw__utf8_lossy(const char *in, size_t len, int keep_tail, char *out, size_t *consumed);

/* decode.c: builds the piece tables (called once by the loader). */
dw_status dw__tok_build_pieces(dw_tokenizer *tok, dw_error *err);

/* GPT-2 byte <-> character map (bytes_to_unicode): byte -> code point, and code point -> byte
 * or -1 when cp is not one of the 256 characters. */
uint32_t dw__bytelevel_char(uint8_t b);
int dw__bytelevel_byte(uint32_t cp);

#endif
