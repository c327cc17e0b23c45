/* Members of tokenizer.json's objects, checked for their type, with "<where>.<key>" named in
 * messages (json_fields.c). Used by the readers of the model (load.c) and of the pipeline
 * (steps.c). */
#ifndef DW_TOKENIZER_JSON_FIELDS_H
#define DW_TOKENIZER_JSON_FIELDS_H

#include <jansson.h>

#include "tokenizer/tokenizer_impl.h"

/* A boolean member (absent or null: def). */
dw_status dw__tok_json_bool(const dw_tokenizer *tok, json_t *obj, const char *where, const char *key,
                            int def, int *out, dw_error *err);
/* A string member; *out is NULL (and *len 0) when absent or null. */
dw_status dw__tok_json_str(const dw_tokenizer *tok, json_t *obj, const char *where, const char *key,
                           const char **out, size_t *len, dw_error *err);

#endif
