/* Tokenizer: loads a Hugging Face tokenizer.json (BPE: byte-level GPT-2 / Llama 3 style, or
 * SentencePiece-style Llama 2 with byte fallback), encodes text to ids and decodes ids to
 * text, also one id at a time, and renders the Llama 3 chat format. Results match the HF
 * `tokenizers` library (tests/py/test_tokenizer_parity.py). Internals: src/tokenizer/tokenizer_impl.h. */
#ifndef DRIFTWOOD_TOKENIZER_H
#define DRIFTWOOD_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An immutable loaded tokenizer. After loading, every function may be called from any number of
 * threads at once on the same handle (stream decoders are per caller). */
typedef struct dw_tokenizer dw_tokenizer;

/* Loads path (a tokenizer.json). If a tokenizer_config.json lies in the same folder, its
 * bos_token and eos_token name the BOS/EOS tokens, and null there means the tokenizer has none;
 * otherwise well-known names are used (<|begin_of_text|>, <s>, ...). Parts of the format we do not run give DW_ERR_UNSUPPORTED
 * naming the file and the JSON key and value; malformed files give DW_ERR_FORMAT.
 * On failure *out is NULL. */
dw_status dw_tokenizer_load(const char *path, dw_tokenizer **out /* OUT */, dw_error *err);

/* As dw_tokenizer_load, from a model folder: loads model_dir/tokenizer.json (and, beside it,
 * model_dir/tokenizer_config.json when there is one). */
dw_status dw_tokenizer_load_dir(const char *model_dir, dw_tokenizer **out /* OUT */, dw_error *err);

/* As dw_tokenizer_load, from len bytes of JSON in memory; name is used in messages only.
 * No tokenizer_config.json is read. The bytes are copied. */
dw_status dw_tokenizer_load_json(const char *name, const void *json, size_t len,
                                 dw_tokenizer **out /* OUT */, dw_error *err);

/* Frees the tokenizer (NULL is a no-op). */
void dw_tokenizer_free(dw_tokenizer *tok);

/* One more than the largest token id (model vocabulary and added tokens together). */
size_t dw_tokenizer_vocab_size(const dw_tokenizer *tok);

/* SHA-256 of the exact bytes of tokenizer.json as loaded (snapshots record it). */
void dw_tokenizer_sha256(const dw_tokenizer *tok, uint8_t digest[32] /* OUT */);

/* ------------------------------------------------------------------------------------------
 * Encoding */

enum {
    /* Match special added tokens (<|eot_id|>, <s>...) written in the text; without it their text
     * is tokenized as ordinary text. Non-special added tokens are always matched (as HF does). */
    DW_TOKENIZE_PARSE_SPECIAL = 1 << 0,
    /* Put the BOS token first (error if the tokenizer has none). */
    DW_TOKENIZE_ADD_BOS = 1 << 1,
    /* Apply the file's post_processor (HF add_special_tokens=True): TemplateProcessing adds its
     * tokens around the text; ByteLevel and none add nothing. */
    DW_TOKENIZE_ADD_SPECIAL = 1 << 2,
};

/* Encodes len bytes of UTF-8 text (need not be NUL-terminated) into ids[0..cap). *n_out gets the
 * number of ids; if that is more than cap, the first cap ids are written and DW_ERR_LIMIT is
 * returned with *n_out the size needed. Invalid UTF-8 gives DW_ERR_INVALID_ARGUMENT naming the
 * byte offset. ids may be NULL when cap is 0 (to ask for the size).
 * A limit of the tokenizer itself also gives DW_ERR_LIMIT, with *n_out 0 and a message naming
 * the step: the pre-tokenizer's regex hitting PCRE2's match limit on this text, or a normalizer
 * or pre-tokenizer step growing the text past its bound (8 times the text plus 4 KiB, see
 * src/tokenizer/tokenizer_impl.h). So a caller grows its buffer only when *n_out > cap. */
dw_status dw_tokenizer_encode(const dw_tokenizer *tok, const char *text, size_t len, int flags,
                              int32_t *ids /* OUT */, size_t cap, size_t *n_out /* OUT */,
                              dw_error *err);

/* ------------------------------------------------------------------------------------------
 * Decoding */

enum {
    DW_DETOKENIZE_SKIP_SPECIAL = 1 << 0, /* leave out special tokens (HF skip_special_tokens) */
};

/* Decodes n ids into out[0..cap) as UTF-8 (invalid byte sequences become U+FFFD as HF does) and
 * NUL-terminates it when there is room. *len_out gets the text length (without the NUL); if the
 * text does not fit in cap - 1 bytes, DW_ERR_LIMIT is returned with *len_out the length needed.
 * An id outside [0, vocab_size) gives DW_ERR_INVALID_ARGUMENT. */
dw_status dw_tokenizer_decode(const dw_tokenizer *tok, const int32_t *ids, size_t n, int flags,
                              char *out /* OUT */, size_t cap, size_t *len_out /* OUT */,
                              dw_error *err);

/* A streaming decoder: fed one id at a time, it hands back only complete UTF-8 characters; bytes
 * of a character split across tokens are held until the character is complete. Concatenating
 * everything it returns (flush included) gives dw_tokenizer_decode's text for valid text. Pushing
 * allocates nothing. One stream per generation; not shared between threads. */
typedef struct dw_tokenizer_stream dw_tokenizer_stream;

/* flags: DW_DETOKENIZE_*. The stream keeps a pointer to tok, which must outlive it. */
dw_status dw_tokenizer_stream_new(const dw_tokenizer *tok, int flags,
                                  dw_tokenizer_stream **out /* OUT */, dw_error *err);

/* Feeds one id. *text gets the text ready to print (possibly empty, never broken UTF-8) and *len
 * its length; the text is owned by the stream and valid until the next call on it. */
dw_status dw_tokenizer_stream_push(dw_tokenizer_stream *s, int32_t id, const char **text /* OUT */,
                                   size_t *len /* OUT */, dw_error *err);

/* Ends the text: bytes of an unfinished character come out as U+FFFD. The stream is then reset
 * (ready for a new text, as if new). */
void dw_tokenizer_stream_flush(dw_tokenizer_stream *s, const char **text /* OUT */, size_t *len /* OUT */);

/* Forgets held bytes and starts a new text. */
void dw_tokenizer_stream_reset(dw_tokenizer_stream *s);

void dw_tokenizer_stream_free(dw_tokenizer_stream *s);

/* ------------------------------------------------------------------------------------------
 * Tokens by name */

/* The id of the token whose text is exactly `token` (added tokens first, then the vocabulary);
 * -1 if there is none. */
int32_t dw_tokenizer_token_id(const dw_tokenizer *tok, const char *token);

/* The text of token id as written in tokenizer.json (byte-level tokens in their mapped form,
 * e.g. "Ġthe"); NULL for an id out of range or unused. Valid as long as tok. */
const char *dw_tokenizer_token_text(const dw_tokenizer *tok, int32_t id);

/* Whether id is a special added token. */
int dw_tokenizer_is_special(const dw_tokenizer *tok, int32_t id);

typedef enum dw_special_token {
    DW_SPECIAL_BOS,          /* <|begin_of_text|>, <s> (or tokenizer_config.json bos_token) */
    DW_SPECIAL_EOS,          /* <|end_of_text|>, </s> (or tokenizer_config.json eos_token) */
    DW_SPECIAL_EOT,          /* <|eot_id|>: end of a chat turn */
    DW_SPECIAL_START_HEADER, /* <|start_header_id|> */
    DW_SPECIAL_END_HEADER,   /* <|end_header_id|> */
    DW_SPECIAL_COUNT
} dw_special_token;

/* The id of a well-known special token, or -1 if this tokenizer has none. */
int32_t dw_tokenizer_special_id(const dw_tokenizer *tok, dw_special_token which);

/* ------------------------------------------------------------------------------------------
 * Llama 3 chat format:
 *   <|begin_of_text|>                                             (once, first)
 *   <|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>   (each message)
 *   <|start_header_id|>assistant<|end_header_id|>\n\n               (generation prompt)
 * content is trimmed of surrounding whitespace, as the Llama 3 template does (Jinja `trim`). */

typedef struct dw_chat_message {
    const char *role;    /* "system", "user", "assistant", ... (NUL-terminated UTF-8) */
    const char *content; /* NUL-terminated UTF-8 */
} dw_chat_message;

enum {
    DW_CHAT_ADD_GENERATION_PROMPT = 1 << 0, /* end with the assistant header */
    DW_CHAT_NO_BOS = 1 << 1,                /* leave out <|begin_of_text|> (continuing a chat) */
};

/* Encodes the messages straight to ids (same ids as HF encoding the rendered template). Role and
 * content are encoded as plain text, so a message cannot inject header or end-of-turn tokens.
 * Needs the Llama 3 header tokens (DW_ERR_UNSUPPORTED otherwise). Sizes as dw_tokenizer_encode. */
dw_status dw_tokenizer_chat_encode(const dw_tokenizer *tok, const dw_chat_message *msgs, size_t n,
                                   int flags, int32_t *ids /* OUT */, size_t cap,
                                   size_t *n_out /* OUT */, dw_error *err);

/* Renders the same as text (for display and for tools that tokenize with PARSE_SPECIAL).
 * Sizes as dw_tokenizer_decode. */
dw_status dw_tokenizer_chat_render(const dw_tokenizer *tok, const dw_chat_message *msgs, size_t n,
                                   int flags, char *out /* OUT */, size_t cap,
                                   size_t *len_out /* OUT */, dw_error *err);

#ifdef __cplusplus
}
#endif

#endif
