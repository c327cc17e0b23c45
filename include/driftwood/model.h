/* Models in the Hugging Face layout (config.json + safetensors weights, single file or
 * sharded with model.safetensors.index.json): loading onto a backend, and the parsed
 * configuration. A loaded model is immutable and shared by any number of sessions
 * (engine.h) on any threads. */
#ifndef DRIFTWOOD_MODEL_H
#define DRIFTWOOD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/backend.h"
#include "driftwood/dtype.h"
#include "driftwood/error.h"
#include "driftwood/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dw_model dw_model;

typedef enum dw_arch {
    DW_ARCH_LLAMA,   /* LlamaForCausalLM (Llama 2, 3, 3.1, 3.2) */
    DW_ARCH_QWEN2,   /* Qwen2ForCausalLM: q/k/v biases */
    DW_ARCH_MISTRAL, /* MistralForCausalLM: optional sliding window */
} dw_arch;

#define DW_MAX_EOS_TOKENS 8

/* What config.json says, after validation. Every field that changes the math is here; the
 * config hash covers all of them. */
typedef struct dw_model_config {
    dw_arch arch;
    char architecture[40];       /* "LlamaForCausalLM", ... */
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int n_layers;                /* num_hidden_layers */
    int n_heads;                 /* num_attention_heads */
    int n_kv_heads;              /* num_key_value_heads (GQA; = n_heads when absent) */
    int head_dim;                /* explicit, or hidden_size / n_heads */
    int max_position_embeddings;
    float rms_norm_eps;
    float rope_theta;
    int rope_llama3;             /* rope_scaling {"rope_type": "llama3", ...} present */
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_position;
    int tie_word_embeddings;     /* lm_head is embed_tokens */
    int qkv_bias;                /* q/k/v projections carry a bias (Qwen2; Llama attention_bias) */
    int o_bias;                  /* o_proj carries a bias (Llama attention_bias) */
    int mlp_bias;                /* gate/up/down carry biases (Llama mlp_bias) */
    int sliding_window;          /* keys older than this many positions are not attended; 0 = off */
    int bos_token_id;            /* -1 when absent */
    int eos_token_ids[DW_MAX_EOS_TOKENS]; /* from config.json and generation_config.json */
    int n_eos;
    dw_dtype dtype;              /* torch_dtype / dtype (informational; weights carry their own) */
} dw_model_config;

/* Options for dw_model_load; a zeroed struct (or NULL) means the defaults. (The CPU's thread
 * count is the backend's: dw_backend_options.) */
typedef struct dw_model_options {
    int skip_tokenizer; /* 1: do not load tokenizer.json (benchmarks of the forward pass alone) */
} dw_model_options;

/* Opens the model directory dir onto backend (which must outlive the model): config.json and
 * generation_config.json, the weights (mmap'd, and on a device backend uploaded once) and
 * tokenizer.json when the directory has one. Errors name the file and the problem: an
 * unsupported architecture or config key, a missing tensor, a wrong shape or dtype, a bad
 * tokenizer. */
dw_status dw_model_load(const char *dir, dw_backend *backend, const dw_model_options *opts,
                        dw_model **out /* OUT */, dw_error *err);

/* Frees the model. Every session made from it must be freed first. NULL is a no-op. */
void dw_model_free(dw_model *model);

const dw_model_config *dw_model_get_config(const dw_model *model);
const char *dw_model_dir(const dw_model *model);
dw_backend *dw_model_backend(const dw_model *model);
/* The model directory's tokenizer, owned by the model; NULL when the directory has no
 * tokenizer.json or it was skipped. */
dw_tokenizer *dw_model_tokenizer(const dw_model *model);

/* Bytes of weights read per decoded token (every matrix once; the embedding table only when it
 * doubles as the LM head): the numerator of the memory-bandwidth bound. */
uint64_t dw_model_weight_bytes(const dw_model *model);

/* Lowercase hex SHA-256 of the canonical form of the configuration (every field above except
 * dtype and eos ids, in a fixed order): equal for configs that compute the same function. */
const char *dw_model_config_hash(const dw_model *model);

/* Writes a quantized copy of the model directory in_dir (BF16/F16/F32 weights) to out_dir
 * (which must not exist or be empty) in the MLX affine layout (bits 4 or 8, group_size 32, 64
 * or 128): config.json with the quantization block, every other file but the weights copied,
 * and one model.safetensors where each 2-D non-norm "<m>.weight" becomes
 * <m>.weight/.scales/.biases. Written in a temporary folder renamed into place at the end. */
dw_status dw_model_quantize(const char *in_dir, const char *out_dir, int bits, int group_size, dw_error *err);

/* The reverse, for references: writes in_dir's quantized matrices dequantized to F32 (w = scale·q
 * + bias in f32), everything else as it is, and config.json without the quantization block. */
dw_status dw_model_dequantize(const char *in_dir, const char *out_dir, dw_error *err);

/* Parses config.json text (path only names it in messages) into cfg; the model loader's
 * first step, exposed for tests and tools. eos ids from generation_config.json are not read. */
dw_status dw_model_config_parse(const char *path, const char *json_text, dw_model_config *cfg /* OUT */,
                                dw_error *err);

#ifdef __cplusplus
}
#endif

#endif
