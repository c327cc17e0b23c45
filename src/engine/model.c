/* Loading a Hugging Face model directory onto a backend (model.h): config.json and
 * generation_config.json, then every tensor the architecture needs, checked for shape and
 * dtype and handed to the backend's weight_load (no copy on the CPU). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "engine/batch_impl.h"

#define MAX_CONFIG_BYTES (4u << 20)

/* A quantized matrix (src/engine/quant.h): DW_ERR_NOT_FOUND (err untouched) when name's module
 * has no scales. The backend's weight_load_quant makes the weight (pointing into the mapping
 * on the CPU, a device copy on CUDA). */
static dw_status load_quantized(dw_model *m, const char *name, int64_t d0, int64_t d1, dw_cweight *out, dw_error *err) {
    char module[256];
    size_t len = strlen(name);
    if (len < 7 || strcmp(name + len - 7, ".weight") || len - 7 >= sizeof module) return DW_ERR_NOT_FOUND;
    memcpy(module, name, len - 7);
    module[len - 7] = 0;
    dw__qtensor t;
    dw_status st = dw__quant_find(&m->wf, &m->quant, module, d0, d1, &t, err);
    if (st) return st;
    dw_cweight host;
    memset(&host, 0, sizeof host);
    host.data = t.q;
    host.dtype = DW_DTYPE_U32;
    host.rows = d0;
    host.cols = d1;
    host.qbits = t.bits;
    host.qgroup = t.group_size;
    host.qscales = t.scales;
    host.qbiases = t.biases;
    host.qsdtype = t.sdtype;
    m->weight_bytes += t.nbytes;
    st = m->backend->ops->weight_load_quant(m->backend->ctx, &host, out, err);
    return st ? dw_error_prefix(err, "%s", name) : DW_OK;
}

static dw_status load_weight(dw_model *m, const char *name, int ndim, int64_t d0, int64_t d1, int required,
                             dw_cweight *out, dw_error *err) {
    if (ndim == 2) {
        dw_status qs = load_quantized(m, name, d0, d1, out, err);
        if (qs != DW_ERR_NOT_FOUND) return qs;
    }
    int64_t shape[2] = {d0, d1};
    const dw_tensor_info *ti;
    dw_status st = dw__weights_find(&m->wf, name, ndim, shape, required, &ti, err);
    if (st == DW_ERR_NOT_FOUND && !required) return DW_OK;
    if (st) return st;
    st = m->backend->ops->weight_load(m->backend->ctx, ti->data, ti->dtype, ndim == 1 ? 1 : d0, ndim == 1 ? d0 : d1, out,
                                     err);
    if (st) return dw_error_prefix(err, "%s", name);
    if (ndim == 2) m->weight_bytes += ti->nbytes;
    return DW_OK;
}

static dw_status load_layer(dw_model *m, int l, dw_error *err) {
    const dw_model_config *c = &m->cfg;
    dw_layer_weights *L = &m->layers[l];
    int64_t h = c->hidden_size, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t inter = c->intermediate_size;
    char name[256];
    dw_status st;
#define W(field, suffix, ndim, d0, d1, req)                                              \
    do {                                                                                 \
        snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);                    \
        if ((st = load_weight(m, name, ndim, d0, d1, req, &L->field, err))) return st;  \
    } while (0)
    W(attn_norm, "input_layernorm.weight", 1, h, 0, 1);
    W(wq, "self_attn.q_proj.weight", 2, qd, h, 1);
    W(wk, "self_attn.k_proj.weight", 2, kvd, h, 1);
    W(wv, "self_attn.v_proj.weight", 2, kvd, h, 1);
    W(wo, "self_attn.o_proj.weight", 2, h, qd, 1);
    if (c->qkv_bias) {
        W(bq, "self_attn.q_proj.bias", 1, qd, 0, 1);
        W(bk, "self_attn.k_proj.bias", 1, kvd, 0, 1);
        W(bv, "self_attn.v_proj.bias", 1, kvd, 0, 1);
    }
    if (c->o_bias) W(bo, "self_attn.o_proj.bias", 1, h, 0, 1);
    W(ffn_norm, "post_attention_layernorm.weight", 1, h, 0, 1);
    W(w_gate, "mlp.gate_proj.weight", 2, inter, h, 1);
    W(w_up, "mlp.up_proj.weight", 2, inter, h, 1);
    W(w_down, "mlp.down_proj.weight", 2, h, inter, 1);
    if (c->mlp_bias) {
        W(b_gate, "mlp.gate_proj.bias", 1, inter, 0, 1);
        W(b_up, "mlp.up_proj.bias", 1, inter, 0, 1);
        W(b_down, "mlp.down_proj.bias", 1, h, 0, 1);
    }
#undef W
    return DW_OK;
}

static dw_status read_generation_config(dw_model *m, dw_error *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/generation_config.json", m->dir);
    char *text;
    size_t len;
    dw_error ignored;
    if (dw_file_read_all(path, MAX_CONFIG_BYTES, &text, &len, &ignored) != DW_OK) return DW_OK; /* optional */
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    free(text);
    if (!root) return dw_error_set(err, DW_ERR_FORMAT, "%s: invalid JSON at line %d: %s", path, jerr.line, jerr.text);
    json_t *eos = json_object_get(root, "eos_token_id");
    if (eos) dw__config_add_eos_ids(&m->cfg, eos);
    json_t *bos = json_object_get(root, "bos_token_id");
    if (m->cfg.bos_token_id < 0 && json_is_integer(bos)) m->cfg.bos_token_id = (int)json_integer_value(bos);
    json_decref(root);
    return DW_OK;
}

/* tokenizer.json beside the weights, when there is one. */
static dw_status load_tokenizer(dw_model *m, dw_error *err) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/tokenizer.json", m->dir) >= (int)sizeof path)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "%s: path too long", m->dir);
    if (access(path, F_OK) != 0) return DW_OK;
    return dw_tokenizer_load_dir(m->dir, &m->tokenizer, err);
}

static dw_status load(dw_model *m, const dw_model_options *opts, dw_error *err) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/config.json", m->dir) >= (int)sizeof path)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "%s: path too long", m->dir);
    char *text;
    size_t len;
    dw_status st = dw_file_read_all(path, MAX_CONFIG_BYTES, &text, &len, err);
    if (st) return st;
    st = dw_model_config_parse(path, text, &m->cfg, err);
    if (!st) {
        json_t *root = json_loads(text, 0, NULL); /* parsed once already: valid */
        st = root ? dw__quant_config_parse(path, root, &m->quant, err) : DW_OK;
        json_decref(root);
    }
    free(text);
    if (st) return st;
    if ((st = read_generation_config(m, err))) return st;
    dw__config_hash(&m->cfg, m->config_hash);

    if ((st = dw__weights_open(m->dir, &m->wf, err))) return st;
    if ((!opts || !opts->skip_tokenizer) && (st = load_tokenizer(m, err))) return st;

    const dw_model_config *c = &m->cfg;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return dw_error_set(err, DW_ERR_NO_MEMORY, "%s: out of memory", m->dir);
    if ((st = load_weight(m, "model.embed_tokens.weight", 2, c->vocab_size, c->hidden_size, 1, &m->embed, err)))
        return st;
    m->weight_bytes = 0; /* the embedding is read one row per token, not whole */
    for (int l = 0; l < c->n_layers; l++)
        if ((st = load_layer(m, l, err))) return st;
    if ((st = load_weight(m, "model.norm.weight", 1, c->hidden_size, 0, 1, &m->final_norm, err))) return st;
    if (c->tie_word_embeddings) {
        m->lm_head = m->embed;
        if (m->embed.qbits) /* packed codes + scales + biases */
            m->weight_bytes += (uint64_t)c->vocab_size * c->hidden_size * m->embed.qbits / 8 +
                               2ull * c->vocab_size * (c->hidden_size / m->embed.qgroup) * dw_dtype_size(m->embed.qsdtype);
        else m->weight_bytes += (uint64_t)c->vocab_size * c->hidden_size * dw_dtype_size(m->embed.dtype);
    } else if ((st = load_weight(m, "lm_head.weight", 2, c->vocab_size, c->hidden_size, 1, &m->lm_head, err))) {
        return st;
    }

    float inv_freq[256];
    dw__rope_inv_freq(c, inv_freq);
    const dw_backend_ops *ops = m->backend->ops;
    size_t bytes = sizeof(float) * (size_t)(c->head_dim / 2);
    if ((st = ops->alloc(m->backend->ctx, bytes, (void **)&m->inv_freq, err))) return st;
    return ops->upload(m->backend->ctx, m->inv_freq, inv_freq, bytes, err);
}

dw_status dw_model_load(const char *dir, dw_backend *backend, const dw_model_options *opts, dw_model **out,
                        dw_error *err) {
    *out = NULL;
    dw_model *m = calloc(1, sizeof *m);
    if (!m || !(m->dir = strdup(dir))) {
        free(m);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "%s: out of memory", dir);
    }
    m->backend = backend;
    dw_status st = backend ? load(m, opts, err)
                           : dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "%s: no backend to load the model onto", dir);
    if (st) {
        dw_model_free(m);
        return st;
    }
    *out = m;
    return DW_OK;
}

static void release(dw_model *m, dw_cweight *w) {
    if (w->data) m->backend->ops->weight_release(m->backend->ctx, w);
}

void dw_model_free(dw_model *m) {
    if (!m) return;
    dw__batcher_free(m); /* after every session of the model was freed */
    if (m->backend) {
        if (m->layers)
            for (int l = 0; l < m->cfg.n_layers; l++) {
                dw_layer_weights *L = &m->layers[l];
                dw_cweight *all[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->bq, &L->bk, &L->bv,
                                     &L->bo, &L->ffn_norm, &L->w_gate, &L->w_up, &L->w_down, &L->b_gate,
                                     &L->b_up, &L->b_down};
                for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) release(m, all[i]);
            }
        if (!m->cfg.tie_word_embeddings) release(m, &m->lm_head);
        release(m, &m->embed);
        release(m, &m->final_norm);
        if (m->inv_freq) m->backend->ops->free(m->backend->ctx, m->inv_freq);
    }
    free(m->layers);
    dw_tokenizer_free(m->tokenizer);
    dw__quant_config_free(&m->quant);
    dw__weights_close(&m->wf);
    free(m->dir);
    free(m);
}

const dw_model_config *dw_model_get_config(const dw_model *m) { return &m->cfg; }
const char *dw_model_dir(const dw_model *m) { return m->dir; }
dw_backend *dw_model_backend(const dw_model *m) { return m->backend; }
dw_tokenizer *dw_model_tokenizer(const dw_model *m) { return m->tokenizer; }
uint64_t dw_model_weight_bytes(const dw_model *m) { return m->weight_bytes; }
const char *dw_model_config_hash(const dw_model *m) { return m->config_hash; }
