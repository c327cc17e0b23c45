/* Loading tokenizer.json: the file and its hash, the BPE model (vocab, merges in "a b" or
 * ["a","b"] form, unk/byte_fallback/ignore_merges), added tokens, the special-token names, and
 * the tables built from them. The pipeline steps are read by steps.c. */
#include "tokenizer/tokenizer_impl.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/sha256.h"
#include "tokenizer/json_fields.h"
#include "tokenizer/steps.h"

/* ---- the model ---------------------------------------------------------------------------- */

static dw_status read_vocab(dw_tokenizer *tok, json_t *vocab, int32_t *max_id, dw_error *err) {
    if (!json_is_object(vocab)) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "model.vocab must be an object");
    const char *key;
    json_t *v;
    void *iter = json_object_iter(vocab);
    while (iter) {
        key = json_object_iter_key(iter);
        v = json_object_iter_value(iter);
        size_t klen = json_object_iter_key_len(iter);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= DW__TOK_MAX_ID)
            return dw__tok_fail(tok, err, DW_ERR_FORMAT, "model.vocab[\"%.60s\"] must be an id in [0, %d)",
                                key, DW__TOK_MAX_ID);
        int32_t id = (int32_t)json_integer_value(v);
        const char *k = dw__tok_intern(tok, key, klen);
        if (!k || dw__tok_map_put(&tok->vocab, k, (uint32_t)klen, id))
            return dw__tok_fail(tok, err, DW_ERR_NO_MEMORY, "out of memory reading model.vocab");
        if (id > *max_id) *max_id = id;
        iter = json_object_iter_next(vocab, iter);
    }
    return DW_OK;
}

static dw_status merge_id(dw_tokenizer *tok, size_t i, const char *s, size_t len, int32_t *id,
                          dw_error *err) {
    *id = dw__tok_map_get(&tok->vocab, s, len);
    if (*id < 0)
        return dw__tok_fail(tok, err, DW_ERR_FORMAT, "model.merges[%zu]: token \"%.*s\" is not in model.vocab",
                            i, (int)(len > 60 ? 60 : len), s);
    return DW_OK;
}

static dw_status read_merges(dw_tokenizer *tok, json_t *merges, dw_error *err) {
    if (!merges || json_is_null(merges)) merges = json_array(); /* borrowed below; freed at end */
    else json_incref(merges);
    dw_status st = DW_OK;
    char *buf = NULL;
    size_t buf_cap = 0;
    if (!json_is_array(merges)) {
        st = dw__tok_fail(tok, err, DW_ERR_FORMAT, "model.merges must be an array");
        goto out;
    }
    if (dw__merge_init(&tok->merges, json_array_size(merges))) {
        st = dw__tok_fail(tok, err, DW_ERR_NO_MEMORY, "out of memory reading model.merges");
        goto out;
    }
    int32_t rank = 0;
    for (size_t i = 0; i < json_array_size(merges); i++) {
        json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t alen, blen;
        if (json_is_string(m)) { /* "a b": exactly one space */
            const char *s = json_string_value(m);
            size_t len = json_string_length(m);
            if (len >= 8 && memcmp(s, "#version", 8) == 0) continue;
            const char *sp = memchr(s, ' ', len);
            if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - s))) {
                st = dw__tok_fail(tok, err, DW_ERR_FORMAT, "model.merges[%zu] \"%.60s\" is not two tokens separated by one space", i, s);
                goto out;
            }
            a = s;
            alen = (size_t)(sp - s);
            b = sp + 1;
            blen = len - alen - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            alen = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            blen = json_string_length(json_array_get(m, 1));
        } else {
            st = dw__tok_fail(tok, err, DW_ERR_FORMAT, "model.merges[%zu] must be \"a b\" or [\"a\", \"b\"]", i);
            goto out;
        }
        int32_t ia, ib, inew;
        if ((st = merge_id(tok, i, a, alen, &ia, err)) || (st = merge_id(tok, i, b, blen, &ib, err))) goto out;
        if (alen + blen > buf_cap) {
            buf_cap = (alen + blen) * 2;
            char *nb = realloc(buf, buf_cap);
            if (!nb) {
                st = dw__tok_fail(tok, err, DW_ERR_NO_MEMORY, "out of memory reading model.merges");
                goto out;
            }
            buf = nb;
        }
        memcpy(buf, a, alen);
        memcpy(buf + alen, b, blen);
        if ((st = merge_id(tok, i, buf, alen + blen, &inew, err))) goto out;
        dw__merge_put(&tok->merges, ia, ib, rank++, inew);
    }
out:
    free(buf);
    json_decref(merges);
    return st;
}

static dw_status read_model(dw_tokenizer *tok, json_t *model, int32_t *max_id, dw_error *err) {
    dw_status st;
    if (!json_is_object(model)) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "\"model\" must be an object");
    json_t *type = json_object_get(model, "type");
    if (type && !json_is_string(type)) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "model.type must be a string");
    if (type && strcmp(json_string_value(type), "BPE") != 0)
        return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "model.type \"%.40s\" is not supported (only \"BPE\")",
                            json_string_value(type));
    if (!type && !json_object_get(model, "merges"))
        return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "model.type is missing and the model has no merges (only BPE is supported)");
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && !(json_is_number(dropout) && json_number_value(dropout) == 0.0))
        return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "model.dropout other than null is not supported");
    static const char *const unsupported_str[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const char *s;
        size_t len;
        if ((st = dw__tok_json_str(tok, model, "model", unsupported_str[i], &s, &len, err))) return st;
        if (s && len)
            return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "model.%s \"%.20s\" is not supported", unsupported_str[i], s);
    }
    if ((st = dw__tok_json_bool(tok, model, "model", "fuse_unk", 0, &tok->fuse_unk, err)) ||
        (st = dw__tok_json_bool(tok, model, "model", "byte_fallback", 0, &tok->byte_fallback, err)) ||
        (st = dw__tok_json_bool(tok, model, "model", "ignore_merges", 0, &tok->ignore_merges, err)))
        return st;
    json_t *vocab = json_object_get(model, "vocab");
    if (!vocab) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "model.vocab is missing");
    if ((st = read_vocab(tok, vocab, max_id, err))) return st;
    if ((st = read_merges(tok, json_object_get(model, "merges"), err))) return st;
    const char *unk;
    size_t unk_len;
    if ((st = dw__tok_json_str(tok, model, "model", "unk_token", &unk, &unk_len, err))) return st;
    tok->unk_id = -1;
    if (unk) {
        tok->unk_id = dw__tok_map_get(&tok->vocab, unk, unk_len);
        if (tok->unk_id < 0)
            return dw__tok_fail(tok, err, DW_ERR_FORMAT, "model.unk_token \"%.40s\" is not in model.vocab", unk);
    }
    return DW_OK;
}

/* ---- added tokens --------------------------------------------------------------------------- */

static dw_status read_added(dw_tokenizer *tok, json_t *added, int32_t *max_id, dw_error *err) {
    if (!added || json_is_null(added)) return DW_OK;
    if (!json_is_array(added)) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "added_tokens must be an array");
    tok->added = calloc(json_array_size(added) + 1, sizeof *tok->added);
    if (!tok->added) return dw__tok_fail(tok, err, DW_ERR_NO_MEMORY, "out of memory");
    /* HF gives added tokens their ids itself (AddedVocabulary::add_tokens), only warning when the
     * file says otherwise: the vocabulary's id for a text it has, else the next id after the
     * vocabulary's size (its number of entries). Files written by HF agree with this. */
    int32_t next_id = (int32_t)tok->vocab.count;
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        char where[48];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        if (!json_is_object(a)) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s must be an object", where);
        json_t *id = json_object_get(a, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= DW__TOK_MAX_ID)
            return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.id must be an id in [0, %d)", where, DW__TOK_MAX_ID);
        const char *content;
        size_t len;
        int single_word = 0, lstrip = 0, rstrip = 0, normalized = 1, special = 0;
        dw_status st;
        if ((st = dw__tok_json_str(tok, a, where, "content", &content, &len, err)) ||
            (st = dw__tok_json_bool(tok, a, where, "single_word", 0, &single_word, err)) ||
            (st = dw__tok_json_bool(tok, a, where, "lstrip", 0, &lstrip, err)) ||
            (st = dw__tok_json_bool(tok, a, where, "rstrip", 0, &rstrip, err)) ||
            (st = dw__tok_json_bool(tok, a, where, "normalized", 1, &normalized, err)) ||
            (st = dw__tok_json_bool(tok, a, where, "special", 0, &special, err)))
            return st;
        if (!content) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.content is missing", where);
        if (single_word)
            return dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "%s.single_word true is not supported", where);
        if (len == 0) continue; /* HF ignores empty added tokens */
        if (dw__utf8_valid_prefix(content, len) != len)
            return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s.content is not valid UTF-8", where);
        const char *c = dw__tok_intern(tok, content, len);
        if (!c) return dw__tok_fail(tok, err, DW_ERR_NO_MEMORY, "out of memory");
        int32_t tid = dw__tok_map_get(&tok->added_map, content, len);
        if (tid < 0) tid = dw__tok_map_get(&tok->vocab, content, len);
        if (tid < 0) tid = next_id++;
        if (tid >= DW__TOK_MAX_ID) return dw__tok_fail(tok, err, DW_ERR_FORMAT, "%s: too many tokens", where);
        dw__added_token *t = &tok->added[tok->n_added++];
        *t = (dw__added_token){.id = tid, .content = c, .len = (uint32_t)len,
                               .special = (uint8_t)special, .normalized = (uint8_t)normalized,
                               .lstrip = (uint8_t)lstrip, .rstrip = (uint8_t)rstrip};
        if (t->id > *max_id) *max_id = t->id;
        if (dw__tok_map_put(&tok->added_map, c, (uint32_t)len, t->id))
            return dw__tok_fail(tok, err, DW_ERR_NO_MEMORY, "out of memory");
    }
    return DW_OK;
}

/* Tries for matching added tokens: raw ones now; normalized ones after the normalizer is known. */
static dw_status build_tries(dw_tokenizer *tok, dw_error *err) {
    dw__buf buf = {0}, tmp = {0};
    for (size_t i = 0; i < tok->n_added; i++) {
        const dw__added_token *t = &tok->added[i];
        int rc;
        if (!t->normalized) {
            rc = dw__trie_add(&tok->trie_raw, t->content, t->len, (int32_t)i);
        } else {
            dw_status st = dw__tok_normalize(tok, t->content, t->len, &buf, &tmp, err);
            if (st) {
                free(buf.p);
                free(tmp.p);
                return st;
            }
            rc = dw__trie_add(&tok->trie_norm, buf.p, buf.len, (int32_t)i);
            /* HF decodes such a token from its normalized form */
            const char *norm = rc ? NULL : dw__tok_intern(tok, buf.p, buf.len);
            if (!norm) rc = -1;
            else {
                tok->text[t->id] = norm;
                tok->text_len[t->id] = (uint32_t)buf.len;
            }
        }
        if (rc) {
            free(buf.p);
            free(tmp.p);
            return dw__tok_fail(tok, err, DW_ERR_NO_MEMORY, "out of memory");
        }
    }
    free(buf.p);
    free(tmp.p);
    return DW_OK;
}

/* ---- tables -------------------------------------------------------------------------------- */

static dw_status build_tables(dw_tokenizer *tok, dw_error *err) {
    size_t n = tok->vocab_size;
    tok->text = calloc(n, sizeof *tok->text);
    tok->text_len = calloc(n, sizeof *tok->text_len);
    tok->is_special = calloc(n, 1);
    tok->cache = calloc(DW__BPE_CACHE_SLOTS, sizeof *tok->cache);
    if (!tok->text || !tok->text_len || !tok->is_special || !tok->cache)
        return dw__tok_fail(tok, err, DW_ERR_NO_MEMORY, "out of memory");
    for (uint32_t e = 0; e < tok->vocab.count; e++) {
        const dw__tok_entry *v = &tok->vocab.entries[e];
        tok->text[v->val] = v->key;
        tok->text_len[v->val] = v->len;
    }
    for (size_t i = 0; i < tok->n_added; i++) { /* HF looks up added tokens first */
        tok->text[tok->added[i].id] = tok->added[i].content;
        tok->text_len[tok->added[i].id] = tok->added[i].len;
    }
    for (uint32_t cp = 0; cp < 0x800; cp++) {
        char u[4];
        int len = dw__utf8_encode(cp, u);
        tok->char_id[cp] = (cp >= 0xD800 && cp < 0xE000) ? -1 : dw__tok_map_get(&tok->vocab, u, (size_t)len);
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        tok->byte_token[b] = dw__tok_map_get(&tok->vocab, name, 6);
    }
    return DW_OK;
}

/* HF: an id is special when its decoding text is the content of a special added token. */
static dw_status find_special_ids(dw_tokenizer *tok, dw_error *err) {
    dw__tok_map specials = {0};
    for (size_t i = 0; i < tok->n_added; i++)
        if (tok->added[i].special && dw__tok_map_put(&specials, tok->added[i].content, tok->added[i].len, 1)) {
            dw__tok_map_free(&specials);
            return dw__tok_fail(tok, err, DW_ERR_NO_MEMORY, "out of memory");
        }
    for (size_t id = 0; specials.count && id < tok->vocab_size; id++)
        tok->is_special[id] = tok->text[id] && dw__tok_map_get(&specials, tok->text[id], tok->text_len[id]) > 0;
    dw__tok_map_free(&specials);
    return DW_OK;
}

/* The token named by a tokenizer_config.json member: a string or {"content": "..."}; -1 if it
 * names none (or no token of this tokenizer). *is_null is set when the member is null, which
 * HF reads as "this tokenizer has no such token" (Qwen3's bos_token, for one). */
static int32_t config_token(const dw_tokenizer *tok, json_t *cfg, const char *key, int *is_null) {
    json_t *v = json_object_get(cfg, key);
    *is_null = v && json_is_null(v);
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v)) return -1;
    return dw_tokenizer_token_id(tok, json_string_value(v));
}

static void find_specials(dw_tokenizer *tok, json_t *cfg) {
    static const char *const names[DW_SPECIAL_COUNT][2] = {
        [DW_SPECIAL_BOS] = {"<|begin_of_text|>", "<s>"},
        [DW_SPECIAL_EOS] = {"<|end_of_text|>", "</s>"},
        [DW_SPECIAL_EOT] = {"<|eot_id|>", NULL},
        [DW_SPECIAL_START_HEADER] = {"<|start_header_id|>", NULL},
        [DW_SPECIAL_END_HEADER] = {"<|end_header_id|>", NULL},
    };
    for (int i = 0; i < DW_SPECIAL_COUNT; i++) {
        tok->special[i] = dw_tokenizer_token_id(tok, names[i][0]);
        if (tok->special[i] < 0 && names[i][1]) tok->special[i] = dw_tokenizer_token_id(tok, names[i][1]);
    }
    static const struct {
        dw_special_token which;
        const char *key;
    } configured[] = {{DW_SPECIAL_BOS, "bos_token"}, {DW_SPECIAL_EOS, "eos_token"}};
    for (size_t i = 0; cfg && i < sizeof configured / sizeof configured[0]; i++) {
        int is_null;
        int32_t id = config_token(tok, cfg, configured[i].key, &is_null);
        if (id >= 0) tok->special[configured[i].which] = id;
        if (is_null) { /* no such token: not the well-known name's, whatever the vocabulary holds */
            tok->special[configured[i].which] = -1;
            tok->special_null[configured[i].which] = 1;
        }
    }
}

/* ---- loading ------------------------------------------------------------------------------- */

static dw_status load(dw_tokenizer *tok, const char *json, size_t len, dw_error *err) {
    dw__sha256(json, len, tok->sha256);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &jerr);
    if (!root)
        return dw__tok_fail(tok, err, DW_ERR_FORMAT, "JSON error at line %d column %d: %s", jerr.line,
                            jerr.column, jerr.text);
    dw_status st = DW_OK;
    int32_t max_id = -1;
    if (!json_is_object(root)) {
        st = dw__tok_fail(tok, err, DW_ERR_FORMAT, "the top level must be an object");
        goto out;
    }
    json_t *trunc = json_object_get(root, "truncation");
    if (trunc && !json_is_null(trunc)) {
        st = dw__tok_fail(tok, err, DW_ERR_UNSUPPORTED, "truncation other than null is not supported");
        goto out;
    }
    json_t *model = json_object_get(root, "model");
    if (!model) {
        st = dw__tok_fail(tok, err, DW_ERR_FORMAT, "\"model\" is missing");
        goto out;
    }
    if ((st = read_model(tok, model, &max_id, err)) ||
        (st = read_added(tok, json_object_get(root, "added_tokens"), &max_id, err)))
        goto out;
    tok->vocab_size = (size_t)max_id + 1;
    if ((st = build_tables(tok, err)) ||
        (st = dw__tok_read_normalizer(tok, json_object_get(root, "normalizer"), err)) ||
        (st = build_tries(tok, err)) ||
        (st = find_special_ids(tok, err)) ||
        (st = dw__tok_read_pre_tokenizer(tok, json_object_get(root, "pre_tokenizer"), err)) ||
        (st = dw__tok_read_decoder(tok, json_object_get(root, "decoder"), err)) ||
        (st = dw__tok_read_post_processor(tok, json_object_get(root, "post_processor"), err)) ||
        (st = dw__tok_build_pieces(tok, err)))
        goto out;
out:
    json_decref(root);
    return st;
}

static dw_tokenizer *tok_new(const char *name) {
    dw_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return NULL;
    tok->name = strdup(name ? name : "tokenizer.json");
    tok->unk_id = -1;
    for (int i = 0; i < DW_SPECIAL_COUNT; i++) tok->special[i] = -1;
    pthread_mutex_init(&tok->cache_lock, NULL);
    if (!tok->name) {
        free(tok);
        return NULL;
    }
    return tok;
}

dw_status dw_tokenizer_load_json(const char *name, const void *json, size_t len, dw_tokenizer **out,
                                 dw_error *err) {
    *out = NULL;
    dw_tokenizer *tok = tok_new(name);
    if (!tok) return dw_error_set(err, DW_ERR_NO_MEMORY, "out of memory loading %s", name);
    dw_status st = load(tok, json, len, err);
    if (st) {
        dw_tokenizer_free(tok);
        return st;
    }
    find_specials(tok, NULL);
    *out = tok;
    return DW_OK;
}

dw_status dw_tokenizer_load(const char *path, dw_tokenizer **out, dw_error *err) {
    *out = NULL;
    char *buf;
    size_t len;
    dw_status st = dw_file_read_all(path, DW__TOK_FILE_MAX, &buf, &len, err);
    if (st) return st;
    dw_tokenizer *tok = tok_new(path);
    if (!tok) {
        free(buf);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "out of memory loading %s", path);
    }
    st = load(tok, buf, len, err);
    free(buf);
    if (st) {
        dw_tokenizer_free(tok);
        return st;
    }
    /* tokenizer_config.json beside it names BOS/EOS (optional) */
    json_t *cfg = NULL;
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path + 1) : 0;
    char *cfg_path = malloc(dir_len + sizeof "tokenizer_config.json");
    if (cfg_path) {
        memcpy(cfg_path, path, dir_len);
        strcpy(cfg_path + dir_len, "tokenizer_config.json");
        FILE *f = fopen(cfg_path, "rb");
        if (f) {
            json_error_t jerr;
            cfg = json_loadf(f, JSON_DECODE_INT_AS_REAL, &jerr);
            fclose(f);
            if (!cfg) {
                st = dw_error_set(err, DW_ERR_FORMAT, "%s: JSON error at line %d column %d: %s", cfg_path,
                                  jerr.line, jerr.column, jerr.text);
            }
        }
        free(cfg_path);
    }
    if (st) {
        dw_tokenizer_free(tok);
        return st;
    }
    find_specials(tok, cfg);
    json_decref(cfg);
    *out = tok;
    return DW_OK;
}

dw_status dw_tokenizer_load_dir(const char *model_dir, dw_tokenizer **out, dw_error *err) {
    *out = NULL;
    size_t n = strlen(model_dir);
    while (n > 1 && model_dir[n - 1] == '/') n--;
    char *path = malloc(n + sizeof "/tokenizer.json");
    if (!path) return dw_error_set(err, DW_ERR_NO_MEMORY, "out of memory loading the tokenizer of %s", model_dir);
    memcpy(path, model_dir, n);
    strcpy(path + n, "/tokenizer.json");
    dw_status st = dw_tokenizer_load(path, out, err);
    free(path);
    return st;
}

void dw_tokenizer_free(dw_tokenizer *tok) {
    if (!tok) return;
    dw__tok_map_free(&tok->vocab);
    dw__tok_map_free(&tok->added_map);
    dw__merge_free(&tok->merges);
    dw__trie_free(&tok->trie_raw);
    dw__trie_free(&tok->trie_norm);
    for (int i = 0; i < tok->n_pre; i++) pcre2_code_free(tok->pre[i].re);
    free(tok->post.before);
    free(tok->post.after);
    free(tok->added);
    free(tok->text);
    free(tok->text_len);
    free(tok->is_special);
    free(tok->piece_arena);
    free(tok->piece_off);
    free(tok->piece_len);
    free(tok->piece_byte);
    free(tok->cache);
    dw__tok_arena_free(tok);
    pthread_mutex_destroy(&tok->cache_lock);
    free(tok->name);
    free(tok);
}

/* ---- small queries ------------------------------------------------------------------------- */

size_t dw_tokenizer_vocab_size(const dw_tokenizer *tok) { return tok->vocab_size; }

void dw_tokenizer_sha256(const dw_tokenizer *tok, uint8_t digest[32]) { memcpy(digest, tok->sha256, 32); }

int32_t dw_tokenizer_token_id(const dw_tokenizer *tok, const char *token) {
    size_t len = strlen(token);
    int32_t id = dw__tok_map_get(&tok->added_map, token, len);
    return id >= 0 ? id : dw__tok_map_get(&tok->vocab, token, len);
}

const char *dw_tokenizer_token_text(const dw_tokenizer *tok, int32_t id) {
    if (id < 0 || (size_t)id >= tok->vocab_size) return NULL;
    return tok->text[id];
}

int dw_tokenizer_is_special(const dw_tokenizer *tok, int32_t id) {
    return id >= 0 && (size_t)id < tok->vocab_size && tok->is_special[id];
}

int32_t dw_tokenizer_special_id(const dw_tokenizer *tok, dw_special_token which) {
    if ((int)which < 0 || which >= DW_SPECIAL_COUNT) return -1;
    return tok->special[which];
}
