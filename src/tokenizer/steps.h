/* Reading the pipeline parts of tokenizer.json (normalizer, pre_tokenizer, decoder,
 * post_processor) into the plans of tokenizer_impl.h, plus the normalizer itself and the
 * loader's message and JSON helpers. Used by tokenizer_json.c and tokenizer_encode.c. */
#ifndef DW_TOKENIZER_STEPS_H
#define DW_TOKENIZER_STEPS_H

#include <jansson.h>

#include "tokenizer/tokenizer_impl.h"

/* Sets err to "<file>: <message>" and returns st. */
dw_status dw__tok_fail(const dw_tokenizer *tok, dw_error *err, dw_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Members of JSON objects, with "<where>.<key>" in messages. */
dw_status dw__tok_json_bool(const dw_tokenizer *tok, json_t *obj, const char *where, const char *key,
                            int def, int *out, dw_error *err);
dw_status dw__tok_json_str(const dw_tokenizer *tok, json_t *obj, const char *where, const char *key,
                           const char **out, size_t *len, dw_error *err);

/* Each takes the member's value (NULL or null: none) and fills the tokenizer's plan. */
dw_status dw__tok_read_normalizer(dw_tokenizer *tok, json_t *j, dw_error *err);
dw_status dw__tok_read_pre_tokenizer(dw_tokenizer *tok, json_t *j, dw_error *err);
dw_status dw__tok_read_decoder(dw_tokenizer *tok, json_t *j, dw_error *err);
dw_status dw__tok_read_post_processor(dw_tokenizer *tok, json_t *j, dw_error *err);

/* Applies the normalizer to s[0..len): the result is in out->p[0..out->len); tmp is scratch.
 * 0 on success, -1 on OOM. */
int dw__tok_normalize(const dw_tokenizer *tok, const char *s, size_t len, dw__buf *out, dw__buf *tmp);

#endif
