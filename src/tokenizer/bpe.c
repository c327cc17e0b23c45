/* Byte Pair Encoding of one pre-tokenized word, as HF's BPE model does it: the word's characters
 * become symbols (unknown ones go to "<0xHH>" byte tokens or the unk token), then the adjacent
 * pair of lowest merge rank (leftmost on ties) is merged until no pair has a rank. A priority
 * queue over a linked list of symbols keeps it O(n log n). Recent words are cached. */
#include "tokenizer/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

typedef struct bpe_sym {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
    uint32_t len;       /* bytes of the word covered; 0 once merged into its left neighbour */
} bpe_sym;

typedef struct bpe_item {
    int32_t rank, pos, new_id;
} bpe_item;

struct dw__bpe_work {
    bpe_sym *syms;
    size_t syms_cap;
    bpe_item *heap;
    size_t heap_n, heap_cap;
};

dw__bpe_work *dw__bpe_work_new(void) { return calloc(1, sizeof(dw__bpe_work)); }

void dw__bpe_work_free(dw__bpe_work *w) {
    if (!w) return;
    free(w->syms);
    free(w->heap);
    free(w);
}

/* ---- the priority queue: smallest (rank, pos) first -------------------------------------- */

static inline int item_less(bpe_item a, bpe_item b) {
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static int heap_push(dw__bpe_work *w, bpe_item it) {
    if (w->heap_n == w->heap_cap) {
        size_t n = w->heap_cap ? w->heap_cap * 2 : 64;
        bpe_item *h = realloc(w->heap, n * sizeof *h);
        if (!h) return -1;
        w->heap = h;
        w->heap_cap = n;
    }
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!item_less(it, w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = it;
    return 0;
}

static bpe_item heap_pop(dw__bpe_work *w) {
    bpe_item top = w->heap[0];
    bpe_item last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && item_less(w->heap[c + 1], w->heap[c])) c++;
        if (!item_less(w->heap[c], last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

/* ---- symbols -------------------------------------------------------------------------------- */

static int sym_add(dw__bpe_work *w, size_t *n, int32_t id, uint32_t len) {
    if (*n == w->syms_cap) {
        size_t c = w->syms_cap ? w->syms_cap * 2 : 64;
        bpe_sym *s = realloc(w->syms, c * sizeof *s);
        if (!s) return -1;
        w->syms = s;
        w->syms_cap = c;
    }
    w->syms[*n] = (bpe_sym){.id = id, .prev = (int32_t)*n - 1, .next = (int32_t)*n + 1, .len = len};
    (*n)++;
    return 0;
}

/* The initial symbols: one per character (HF's BPE::merge_word without subword prefixes). */
static int word_symbols(const dw_tokenizer *tok, dw__bpe_work *w, const char *word, size_t len,
                        size_t *n_out) {
    size_t n = 0;
    int32_t unk = -1; /* a pending unknown: its id is tok->unk_id, its length unk_len */
    uint32_t unk_len = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int clen = dw__utf8_decode(word + i, len - i, &cp);
        int32_t id = cp < 0x800 ? tok->char_id[cp] : dw__tok_map_get(&tok->vocab, word + i, (size_t)clen);
        if (id >= 0) {
            if (unk >= 0) {
                if (sym_add(w, &n, unk, unk_len)) return -1;
                unk = -1;
            }
            if (sym_add(w, &n, id, (uint32_t)clen)) return -1;
        } else {
            int fallback = 0;
            if (tok->byte_fallback) {
                fallback = 1;
                for (int k = 0; k < clen; k++)
                    if (tok->byte_token[(uint8_t)word[i + k]] < 0) fallback = 0;
                /* as HF: a pending unknown is not flushed before the byte tokens */
                for (int k = 0; fallback && k < clen; k++)
                    if (sym_add(w, &n, tok->byte_token[(uint8_t)word[i + k]], 1)) return -1;
            }
            if (!fallback && tok->unk_id >= 0) {
                if (unk >= 0 && tok->fuse_unk) {
                    unk_len += (uint32_t)clen;
                } else {
                    if (unk >= 0 && sym_add(w, &n, unk, unk_len)) return -1;
                    unk = tok->unk_id;
                    unk_len = (uint32_t)clen;
                }
            }
            /* no fallback and no unk token: the character is dropped, as HF does */
        }
        i += (size_t)clen;
    }
    if (unk >= 0 && sym_add(w, &n, unk, unk_len)) return -1;
    if (n) w->syms[n - 1].next = -1;
    *n_out = n;
    return 0;
}

static int merge_all(const dw_tokenizer *tok, dw__bpe_work *w, size_t n) {
    bpe_sym *s = w->syms;
    w->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        const dw__merge_entry *m = dw__merge_get(&tok->merges, s[i].id, s[i + 1].id);
        if (m && heap_push(w, (bpe_item){m->rank, (int32_t)i, m->new_id})) return -1;
    }
    while (w->heap_n) {
        bpe_item top = heap_pop(w);
        bpe_sym *cur = &s[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        bpe_sym *right = &s[cur->next];
        const dw__merge_entry *m = dw__merge_get(&tok->merges, cur->id, right->id);
        if (!m || m->new_id != top.new_id) continue; /* a stale entry */
        cur->id = top.new_id;
        cur->len += right->len;
        right->len = 0;
        cur->next = right->next;
        if (cur->next >= 0) s[cur->next].prev = top.pos;
        if (cur->prev >= 0) {
            m = dw__merge_get(&tok->merges, s[cur->prev].id, cur->id);
            if (m && heap_push(w, (bpe_item){m->rank, cur->prev, m->new_id})) return -1;
        }
        if (cur->next >= 0) {
            m = dw__merge_get(&tok->merges, cur->id, s[cur->next].id);
            if (m && heap_push(w, (bpe_item){m->rank, top.pos, m->new_id})) return -1;
        }
    }
    return 0;
}

/* ---- the cache of recent words ------------------------------------------------------------ */

static int cache_get(const dw_tokenizer *tok, uint32_t h, const char *word, size_t len,
                     int32_t ids[DW__BPE_CACHE_MAXIDS], int *n_ids) {
    dw_tokenizer *t = (dw_tokenizer *)tok; /* the cache is the one mutable part, under its lock */
    const dw__bpe_cache_slot *c = &t->cache[h & (DW__BPE_CACHE_SLOTS - 1)];
    int hit = 0;
    pthread_mutex_lock(&t->cache_lock);
    if (c->len == len && c->hash == h && memcmp(c->word, word, len) == 0) {
        memcpy(ids, c->ids, c->n_ids * sizeof ids[0]);
        *n_ids = c->n_ids;
        hit = 1;
    }
    pthread_mutex_unlock(&t->cache_lock);
    return hit;
}

static void cache_put(const dw_tokenizer *tok, uint32_t h, const char *word, size_t len,
                      const bpe_sym *s, size_t n) {
    dw_tokenizer *t = (dw_tokenizer *)tok;
    dw__bpe_cache_slot *c = &t->cache[h & (DW__BPE_CACHE_SLOTS - 1)];
    pthread_mutex_lock(&t->cache_lock);
    int k = 0;
    for (int32_t i = n ? 0 : -1; i >= 0 && k < DW__BPE_CACHE_MAXIDS; i = s[i].next) c->ids[k++] = s[i].id;
    c->n_ids = (uint8_t)k;
    c->hash = h;
    c->len = (uint8_t)len;
    memcpy(c->word, word, len);
    pthread_mutex_unlock(&t->cache_lock);
}

dw_status dw__bpe_word(const dw_tokenizer *tok, dw__bpe_work *w, const char *word, size_t len,
                       dw__emit_fn emit, void *ctx) {
    if (len == 0) return DW_OK;
    if (tok->ignore_merges) {
        int32_t id = dw__tok_map_get(&tok->vocab, word, len);
        if (id >= 0) {
            emit(ctx, id);
            return DW_OK;
        }
    }
    uint32_t h = 0;
    int cacheable = len <= DW__BPE_CACHE_MAXLEN && tok->cache;
    if (cacheable) {
        int32_t ids[DW__BPE_CACHE_MAXIDS];
        int n_ids;
        h = dw__tok_hash(word, len);
        if (cache_get(tok, h, word, len, ids, &n_ids)) {
            for (int i = 0; i < n_ids; i++) emit(ctx, ids[i]);
            return DW_OK;
        }
    }
    size_t n;
    if (word_symbols(tok, w, word, len, &n) || merge_all(tok, w, n)) return DW_ERR_NO_MEMORY;
    size_t live = 0;
    for (int32_t i = n ? 0 : -1; i >= 0; i = w->syms[i].next) {
        emit(ctx, w->syms[i].id);
        live++;
    }
    if (cacheable && live <= DW__BPE_CACHE_MAXIDS) cache_put(tok, h, word, len, w->syms, n);
    return DW_OK;
}
