/* Lookup structures of the tokenizer: the arena that holds the strings read from the file, the
 * string -> id hash map over them (vocabulary, added tokens), the merge-pair map read by BPE,
 * and the byte trie that finds added tokens in text. */
#include "tokenizer/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

/* ---- the string arena ------------------------------------------------------------------------ */

const char *dw__tok_intern(dw_tokenizer *tok, const char *s, size_t len) {
    dw__tok_block *b = tok->blocks;
    if (!b || b->cap - b->used < len + 1) {
        size_t cap = len + 1 > ((size_t)1 << 20) ? len + 1 : ((size_t)1 << 20);
        dw__tok_block *nb = malloc(sizeof *nb + cap);
        if (!nb) return NULL;
        nb->used = 0;
        nb->cap = cap;
        if (b && len + 1 > ((size_t)1 << 20) / 2) { /* a big string: keep the current block open */
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            tok->blocks = nb;
        }
        b = nb;
    }
    char *p = b->data + b->used;
    memcpy(p, s, len);
    p[len] = 0;
    b->used += len + 1;
    return p;
}

void dw__tok_arena_free(dw_tokenizer *tok) {
    while (tok->blocks) {
        dw__tok_block *next = tok->blocks->next;
        free(tok->blocks);
        tok->blocks = next;
    }
}

/* ---- string -> id -------------------------------------------------------------------------- */

uint32_t dw__tok_hash(const char *s, size_t len) {
    /* FNV-1a, then a final mix so that the low bits (the slot index) depend on every byte */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return h;
}

void dw__tok_map_free(dw__tok_map *m) {
    free(m->slots);
    free(m->entries);
    memset(m, 0, sizeof *m);
}

static int map_grow(dw__tok_map *m) {
    uint32_t cap = m->mask ? (m->mask + 1) * 2 : 64;
    uint64_t *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    for (uint32_t i = 0; m->slots && i <= m->mask; i++) {
        if (!m->slots[i]) continue;
        uint32_t j = (uint32_t)(m->slots[i] >> 32) & (cap - 1);
        while (slots[j]) j = (j + 1) & (cap - 1);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->mask = cap - 1;
    return 0;
}

/* The slot holding key, or the empty slot where it would go. */
static uint32_t map_find(const dw__tok_map *m, const char *key, size_t len, uint32_t h) {
    uint32_t i = h & m->mask;
    for (;; i = (i + 1) & m->mask) {
        uint64_t s = m->slots[i];
        if (!s) return i;
        if ((uint32_t)(s >> 32) == h) {
            const dw__tok_entry *e = &m->entries[(uint32_t)s - 1];
            if (e->len == len && memcmp(e->key, key, len) == 0) return i;
        }
    }
}

int dw__tok_map_put(dw__tok_map *m, const char *key, uint32_t len, int32_t val) {
    uint32_t h = dw__tok_hash(key, len);
    if (m->slots) {
        uint32_t i = map_find(m, key, len, h);
        if (m->slots[i]) {
            m->entries[(uint32_t)m->slots[i] - 1].val = val;
            return 0;
        }
    }
    if (m->count == m->cap_entries) {
        uint32_t n = m->cap_entries ? m->cap_entries * 2 : 64;
        dw__tok_entry *e = realloc(m->entries, n * sizeof *e);
        if (!e) return -1;
        m->entries = e;
        m->cap_entries = n;
    }
    if (!m->slots || (m->count + 1) * 2 > m->mask + 1) {
        if (map_grow(m)) return -1;
    }
    uint32_t e = m->count++;
    m->entries[e] = (dw__tok_entry){.key = key, .len = len, .val = val};
    m->slots[map_find(m, key, len, h)] = (uint64_t)h << 32 | (e + 1);
    return 0;
}

int32_t dw__tok_map_get(const dw__tok_map *m, const char *key, size_t len) {
    if (!m->slots) return -1;
    uint64_t s = m->slots[map_find(m, key, len, dw__tok_hash(key, len))];
    return s ? m->entries[(uint32_t)s - 1].val : -1;
}

/* ---- merges ------------------------------------------------------------------------------- */

static inline uint64_t merge_hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

const dw__merge_entry *dw__merge_get(const dw__merge_map *m, int32_t left, int32_t right) {
    if (!m->slots) return NULL;
    uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
    for (uint64_t i = merge_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        const dw__merge_entry *e = &m->slots[i];
        if (e->key == key) return e;
        if (e->key == 0) return NULL;
    }
}

int dw__merge_init(dw__merge_map *m, size_t n) {
    size_t cap = 64;
    while (cap < n * 2) cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    if (!m->slots) return -1;
    m->mask = cap - 1;
    m->count = 0;
    return 0;
}

void dw__merge_put(dw__merge_map *m, int32_t left, int32_t right, int32_t rank, int32_t new_id) {
    uint64_t key = (((uint64_t)(uint32_t)left << 32) | (uint32_t)right) + 1;
    uint64_t i = merge_hash(key) & m->mask;
    while (m->slots[i].key != 0 && m->slots[i].key != key) i = (i + 1) & m->mask;
    if (m->slots[i].key == 0) m->count++;
    m->slots[i] = (dw__merge_entry){.key = key, .rank = rank, .new_id = new_id};
}

void dw__merge_free(dw__merge_map *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ---- the added-token trie ----------------------------------------------------------------- */

static int32_t trie_node(dw__trie *t, uint8_t byte) {
    if (t->count == t->cap) {
        int32_t n = t->cap ? t->cap * 2 : 64;
        dw__trie_node *nodes = realloc(t->nodes, (size_t)n * sizeof *nodes);
        if (!nodes) return -1;
        t->nodes = nodes;
        t->cap = n;
    }
    t->nodes[t->count] = (dw__trie_node){.first_child = -1, .next_sibling = -1, .token = -1, .byte = byte};
    return t->count++;
}

int dw__trie_add(dw__trie *t, const char *s, size_t len, int32_t token_index) {
    if (len == 0) return 0;
    if (t->count == 0 && trie_node(t, 0) < 0) return -1;
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = t->nodes[node].first_child;
        while (c >= 0 && t->nodes[c].byte != b) c = t->nodes[c].next_sibling;
        if (c < 0) {
            c = trie_node(t, b);
            if (c < 0) return -1;
            t->nodes[c].next_sibling = t->nodes[node].first_child;
            t->nodes[node].first_child = c;
        }
        node = c;
    }
    t->nodes[node].token = token_index; /* a repeated content: the last one wins */
    t->first_byte[(uint8_t)s[0]] = 1;
    return 0;
}

void dw__trie_free(dw__trie *t) {
    free(t->nodes);
    memset(t, 0, sizeof *t);
}

int dw__trie_find(const dw__trie *t, const char *text, size_t len, size_t from, size_t *start,
                  size_t *end, int32_t *token_index) {
    if (t->count == 0) return 0;
    for (size_t i = from; i < len; i++) {
        if (!t->first_byte[(uint8_t)text[i]]) continue;
        int32_t node = 0, best = -1;
        size_t best_end = 0;
        for (size_t j = i; j < len; j++) {
            int32_t c = t->nodes[node].first_child;
            while (c >= 0 && t->nodes[c].byte != (uint8_t)text[j]) c = t->nodes[c].next_sibling;
            if (c < 0) break;
            node = c;
            if (t->nodes[node].token >= 0) {
                best = t->nodes[node].token;
                best_end = j + 1;
            }
        }
        if (best >= 0) {
            *start = i;
            *end = best_end;
            *token_index = best;
            return 1;
        }
    }
    return 0;
}
