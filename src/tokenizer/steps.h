/* Reading the pipeline parts of tokenizer.json (normalizer, pre_tokenizer, decoder,
 * post_processor) into the plans of tokenizer_impl.h (steps.c). Used by the loader (load.c). */
#ifndef DW_TOKENIZER_STEPS_H
#define DW_TOKENIZER_STEPS_H

#include <jansson.h>

#include "tokenizer/tokenizer_impl.h"

/* Each takes the member's value (NULL or null: none) and fills the tokenizer's plan. */
dw_status dw__tok_read_normalizer(dw_tokenizer *tok, json_t *j, dw_error *err);
dw_status dw__tok_read_pre_tokenizer(dw_tokenizer *tok, json_t *j, dw_error *err);
dw_status dw__tok_read_decoder(dw_tokenizer *tok, json_t *j, dw_error *err);
dw_status dw__tok_read_post_processor(dw_tokenizer *tok, json_t *j, dw_error *err);

#endif
