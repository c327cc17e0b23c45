/* Helpers for the engine tests: write a small random model in the Hugging Face layout, and a
 * plain double-precision reference forward pass (no KV cache, recomputed from scratch) to
 * compare the engine against. */
#ifndef DW_TEST_ENGINE_UTIL_H
#define DW_TEST_ENGINE_UTIL_H

#include <stdint.h>

#include "driftwood/dtype.h"
#include "driftwood/error.h"

typedef struct tmodel_spec {
    const char *arch;  /* "LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM" */
    int vocab, hidden, inter, layers, heads, kv_heads, head_dim;
    int explicit_head_dim; /* write "head_dim" into config.json */
    int tie;
    int llama3_rope;
    int sliding_window;    /* Mistral */
    int max_pos;
    dw_dtype dtype;        /* of the matrices */
    uint64_t seed;
    float scale;           /* weight scale (0 = 0.15) */
} tmodel_spec;

/* A tiny GQA Llama with awkward sizes (vector tails everywhere). */
tmodel_spec tmodel_default(void);

/* The weights as the engine sees them (rounded to the file dtype), f32, HF layouts. */
typedef struct tmodel {
    tmodel_spec spec;
    float *embed, *final_norm, *lm_head; /* lm_head == embed when tied */
    struct tlayer {
        float *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *ffn_norm, *wg, *wu, *wd;
    } *layer;
} tmodel;

/* Writes config.json, generation_config.json and model.safetensors (or, with shards > 1,
 * that many files and model.safetensors.index.json) into dir, which is created. */
dw_status tmodel_write(const tmodel_spec *spec, const char *dir, int shards, tmodel *out, dw_error *err);
void tmodel_free(tmodel *m);

/* Logits of every position for ids[0..n) (out: [n, vocab]), in double precision. */
void tmodel_reference(const tmodel *m, const int32_t *ids, int n, float *out);

/* ‖a − b‖ / ‖b‖ over n values. */
double rel_l2(const float *a, const float *b, size_t n);

#endif
