/* Private layouts of the engine's handles (model.h, engine.h): the model's weights on the
 * device and a session's KV cache and activation buffers. Shapes in comments are row-major. */
#ifndef DW_ENGINE_ENGINE_IMPL_H
#define DW_ENGINE_ENGINE_IMPL_H

#include <jansson.h>

#include "backend/backend.h"
#include "core/sha256.h"
#include "driftwood/engine.h"
#include "driftwood/model.h"
#include "driftwood/safetensors.h"
#include "engine/quant.h"

/* A weight whose data is NULL is absent (optional biases). */
typedef struct dw_layer_weights {
    dw_cweight attn_norm;            /* [hidden] */
    dw_cweight wq, wk, wv, wo;       /* [n_heads·hd, hidden], [n_kv·hd, hidden] ×2, [hidden, n_heads·hd] */
    dw_cweight bq, bk, bv, bo;       /* biases (optional) */
    dw_cweight ffn_norm;             /* [hidden] */
    dw_cweight w_gate, w_up, w_down; /* [inter, hidden] ×2, [hidden, inter] */
    dw_cweight b_gate, b_up, b_down; /* biases (optional) */
} dw_layer_weights;

/* The safetensors files of a model directory and where each tensor lives. */
typedef struct dw__weight_files {
    const char *dir;
    int n_files;
    dw_safetensors **files;
    char **file_names;    /* as named in the index (or "model.safetensors") */
    json_t *weight_map;   /* index.json's weight_map, or NULL for a single file */
    char index_path[4096];
} dw__weight_files;

struct dw_model {
    char *dir;
    dw_backend *backend;   /* the device the weights live on (not owned) */
    dw_tokenizer *tokenizer; /* tokenizer.json's, or NULL */
    dw_model_config cfg;
    char config_hash[DW_SHA256_HEX_SIZE];
    dw__weight_files wf;
    dw_cweight embed;      /* [vocab, hidden] */
    dw_cweight final_norm; /* [hidden] */
    dw_cweight lm_head;    /* [vocab, hidden]; same data as embed when tied (released once) */
    dw_layer_weights *layers;
    float *inv_freq;       /* device [head_dim/2]: RoPE frequencies, llama3 scaling applied */
    uint64_t weight_bytes;
    dw__quant_config quant; /* config.json's "quantization" block (enabled = 0 when absent) */
    struct dw__batcher *batcher; /* batching (batch_impl.h), or NULL before dw_model_batching_start */
};

struct dw_session {
    dw_model *model;
    int ctx, max_batch;
    int n_tokens;
    int32_t *tokens;       /* host [ctx] */
    dw_dtype kv_dtype;
    dw_kv_view *kv;        /* [n_layers] views into kv_mem */
    void *kv_mem;          /* device: per layer K then V, [n_kv, ctx, hd] each */
    /* activations, device, [max_batch, width] */
    float *x, *xn, *q, *k, *v, *att, *o, *gate, *up;
    float *logits;         /* device [vocab] */
    int32_t *greedy;       /* device [DW__GREEDY_CHUNK]: tokens chosen on the device (when ops->argmax), the
                            * step at pos in [pos % DW__GREEDY_CHUNK]; &greedy keys greedy steps' recording */
    float *logits_all;     /* device [max_batch, vocab], allocated on first prefill_all */
    dw_pick_row *pick;     /* device: a sampled decode's settings (dw_pick_row), then its token (int32) (when
                            * ops->sample_rows) */
    struct dw__paged *paged; /* a batching session (batch_impl.h): blocks of the pool instead of kv_mem and
                              * the buffers above, which it leaves NULL */
};

/* config.c */
void dw__config_hash(const dw_model_config *cfg, char hex[DW_SHA256_HEX_SIZE]);
void dw__config_add_eos_ids(dw_model_config *cfg, json_t *v);

/* weights.c: opens model.safetensors or the shards listed by model.safetensors.index.json. */
dw_status dw__weights_open(const char *dir, dw__weight_files *wf, dw_error *err);
void dw__weights_close(dw__weight_files *wf);
/* Finds tensor name with the given shape (ndim dims) and a float dtype (F32, F16, BF16).
 * Errors name the file and the tensor. required == 0 makes a missing tensor return
 * DW_ERR_NOT_FOUND without setting err. */
dw_status dw__weights_find(const dw__weight_files *wf, const char *name, int ndim, const int64_t *shape, int required,
                           const dw_tensor_info **out, dw_error *err);

/* rope.c: the HF RoPE inverse frequencies [head_dim/2], with llama3 scaling when configured. */
void dw__rope_inv_freq(const dw_model_config *cfg, float *out);

/* forward.c: runs n tokens at the session's position. logits (host) gets the last row, or all
 * n rows when all_logits; NULL skips the LM head. Checks nothing (session.c validates). */
dw_status dw__forward(dw_session *s, const int32_t *ids, int n, float *logits, int all_logits, dw_error *err);

/* forward.c: one token at the session's position through the LM head into s->logits (the
 * session's recorded decode step where the backend records), queued: nothing is downloaded and
 * nothing waited for. Checks nothing. */
void dw__forward_decode_queued(dw_session *s, int32_t id);

/* forward.c: greedy decoding (engine.h: dw_session_decode_greedy), n checked to fit. The host
 * waits for the device once per DW__GREEDY_CHUNK tokens when the backend chooses the tokens
 * and chains the steps on the device (ops->argmax, ops->decode_step_from). */
#define DW__GREEDY_CHUNK 64
dw_status dw__forward_greedy(dw_session *s, int32_t id, int n, int32_t *out, dw_error *err);

#endif
