/* config.json of a Hugging Face causal LM: parsing, validation and the canonical hash
 * (model.h). Every key either changes nothing we compute (ignored), is understood, or is
 * refused by name: a model we would run wrongly is never loaded. */
#include <jansson.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/sha256.h"
#include "driftwood/model.h"
#include "engine/engine_impl.h"

/* Keys that do not change the forward pass (metadata, training-only settings, and the
 * generation defaults that old configs carried). */
static const char *const ignored_keys[] = {
    "architectures", "model_type", "torch_dtype", "dtype", "transformers_version", "use_cache",
    "initializer_range", "attention_dropout", "pretraining_tp", "bos_token_id", "eos_token_id",
    "pad_token_id", "max_window_layers", "output_attentions", "output_hidden_states", "return_dict",
    "torchscript", "use_bfloat16", "tf_legacy_loss", "pruned_heads", "chunk_size_feed_forward",
    "is_encoder_decoder", "is_decoder", "cross_attention_hidden_size", "add_cross_attention",
    "tie_encoder_decoder", "id2label", "label2id", "task_specific_params", "problem_type",
    "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id", "finetuning_task",
    "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups",
    "diversity_penalty", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty",
    "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids",
    "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
    "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
    "suppress_tokens", "begin_suppress_tokens", "embd_pdrop", "resid_pdrop", "output_router_logits",
};

/* Keys this parser reads (values checked below). */
static const char *const known_keys[] = {
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps",
    "rope_theta", "rope_scaling", "rope_parameters", "tie_word_embeddings", "attention_bias", "mlp_bias",
    "sliding_window", "use_sliding_window", "layer_types",
    "quantization", "quantization_config", /* MLX affine quantized weights (src/engine/quant.h) */
};

static int in_list(const char *key, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(key, list[i])) return 1;
    return 0;
}

typedef struct {
    const char *path;
    dw_error *err;
} ctx_t;

static dw_status bad(ctx_t *c, dw_status st, const char *key, const char *what) {
    return dw_error_set(c->err, st, "%s: key '%s' %s", c->path, key, what);
}

/* Reads a positive integer key; missing is an error when required, else *out keeps its default. */
static dw_status get_int(ctx_t *c, json_t *root, const char *key, int required, long min, long max, int *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return dw_error_set(c->err, DW_ERR_FORMAT, "%s: required key '%s' is missing", c->path, key);
        return DW_OK;
    }
    if (!json_is_integer(v)) return bad(c, DW_ERR_FORMAT, key, "must be an integer");
    json_int_t x = json_integer_value(v);
    if (x < min || x > max) {
        return dw_error_set(c->err, DW_ERR_UNSUPPORTED, "%s: key '%s' = %lld is outside the supported range [%ld, %ld]",
                            c->path, key, (long long)x, min, max);
    }
    *out = (int)x;
    return DW_OK;
}

static dw_status get_number(ctx_t *c, json_t *root, const char *key, int required, double *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return dw_error_set(c->err, DW_ERR_FORMAT, "%s: required key '%s' is missing", c->path, key);
        return DW_OK;
    }
    if (!json_is_number(v)) return bad(c, DW_ERR_FORMAT, key, "must be a number");
    *out = json_number_value(v);
    if (!isfinite(*out)) return bad(c, DW_ERR_FORMAT, key, "must be finite");
    /* Every number key is kept as a float: 1e300 would become inf there, 1e-300 zero. */
    if (fabs(*out) > FLT_MAX || (*out != 0 && (float)*out == 0))
        return bad(c, DW_ERR_FORMAT, key, "is outside the range of a 32-bit float");
    return DW_OK;
}

static dw_status get_bool(ctx_t *c, json_t *root, const char *key, int *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return DW_OK;
    if (!json_is_boolean(v)) return bad(c, DW_ERR_FORMAT, key, "must be true or false");
    *out = json_is_true(v);
    return DW_OK;
}

/* rope_scaling (or v5's rope_parameters): null, "default", or "llama3" with its four values. */
static dw_status parse_rope(ctx_t *c, json_t *rs, const char *key, dw_model_config *cfg) {
    if (!rs || json_is_null(rs)) return DW_OK;
    if (!json_is_object(rs)) return bad(c, DW_ERR_FORMAT, key, "must be an object or null");
    json_t *type = json_object_get(rs, "rope_type");
    if (!type) type = json_object_get(rs, "type");
    const char *t = type && json_is_string(type) ? json_string_value(type) : NULL;
    if (!t) return dw_error_set(c->err, DW_ERR_FORMAT, "%s: key '%s' has no rope_type", c->path, key);
    const char *k;
    json_t *v;
    json_object_foreach(rs, k, v) {
        static const char *const allowed[] = {"rope_type", "type", "factor", "low_freq_factor", "high_freq_factor",
                                              "original_max_position_embeddings", "rope_theta"};
        if (!in_list(k, allowed, sizeof allowed / sizeof allowed[0]))
            return dw_error_set(c->err, DW_ERR_UNSUPPORTED, "%s: key '%s.%s' is not supported", c->path, key, k);
    }
    double theta = cfg->rope_theta;
    dw_status st = get_number(c, rs, "rope_theta", 0, &theta);
    if (st) return st;
    if (!(theta > 0)) return dw_error_set(c->err, DW_ERR_FORMAT, "%s: key '%s.rope_theta' must be positive", c->path, key);
    cfg->rope_theta = (float)theta;
    if (!strcmp(t, "default")) return DW_OK;
    if (strcmp(t, "llama3") != 0)
        return dw_error_set(c->err, DW_ERR_UNSUPPORTED, "%s: key '%s.rope_type' = \"%s\" is not supported (default, llama3)",
                            c->path, key, t);
    double factor = 0, lo = 0, hi = 0;
    int orig = 0;
    if ((st = get_number(c, rs, "factor", 1, &factor)) || (st = get_number(c, rs, "low_freq_factor", 1, &lo)) ||
        (st = get_number(c, rs, "high_freq_factor", 1, &hi)) ||
        (st = get_int(c, rs, "original_max_position_embeddings", 1, 1, 1L << 30, &orig)))
        return st;
    if (!(factor > 0) || !(lo > 0) || !(hi > lo))
        return dw_error_set(c->err, DW_ERR_FORMAT, "%s: key '%s' has inconsistent llama3 factors", c->path, key);
    cfg->rope_llama3 = 1;
    cfg->rope_factor = (float)factor;
    cfg->rope_low_freq_factor = (float)lo;
    cfg->rope_high_freq_factor = (float)hi;
    cfg->rope_original_max_position = orig;
    return DW_OK;
}

static void add_eos(dw_model_config *cfg, json_int_t id) {
    for (int i = 0; i < cfg->n_eos; i++)
        if (cfg->eos_token_ids[i] == id) return;
    if (cfg->n_eos < DW_MAX_EOS_TOKENS && id >= 0 && id < (1LL << 31)) cfg->eos_token_ids[cfg->n_eos++] = (int)id;
}

void dw__config_add_eos_ids(dw_model_config *cfg, json_t *v) {
    if (json_is_integer(v)) add_eos(cfg, json_integer_value(v));
    else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) if (json_is_integer(e)) add_eos(cfg, json_integer_value(e));
    }
}

static dw_status parse(ctx_t *c, json_t *root, dw_model_config *cfg) {
    dw_status st;
    if (!json_is_object(root)) return dw_error_set(c->err, DW_ERR_FORMAT, "%s: not a JSON object", c->path);

    json_t *archs = json_object_get(root, "architectures");
    if (!archs || !json_is_array(archs) || json_array_size(archs) != 1 || !json_is_string(json_array_get(archs, 0)))
        return dw_error_set(c->err, DW_ERR_FORMAT, "%s: key 'architectures' must be a list of one name", c->path);
    const char *arch = json_string_value(json_array_get(archs, 0));
    const char *expect_type;
    if (!strcmp(arch, "LlamaForCausalLM")) cfg->arch = DW_ARCH_LLAMA, expect_type = "llama";
    else if (!strcmp(arch, "Qwen2ForCausalLM")) cfg->arch = DW_ARCH_QWEN2, expect_type = "qwen2";
    else if (!strcmp(arch, "MistralForCausalLM")) cfg->arch = DW_ARCH_MISTRAL, expect_type = "mistral";
    else
        return dw_error_set(c->err, DW_ERR_UNSUPPORTED,
                            "%s: key 'architectures' = \"%s\" is not supported (LlamaForCausalLM, Qwen2ForCausalLM, "
                            "MistralForCausalLM)",
                            c->path, arch);
    snprintf(cfg->architecture, sizeof cfg->architecture, "%s", arch);
    json_t *mt = json_object_get(root, "model_type");
    if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), expect_type) != 0))
        return dw_error_set(c->err, DW_ERR_UNSUPPORTED, "%s: key 'model_type' = %s does not match %s (expected \"%s\")",
                            c->path, json_is_string(mt) ? json_string_value(mt) : "(not a string)", arch, expect_type);

    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (key[0] == '_') continue; /* "_name_or_path" and other private bookkeeping */
        if (in_list(key, ignored_keys, sizeof ignored_keys / sizeof ignored_keys[0])) continue;
        if (in_list(key, known_keys, sizeof known_keys / sizeof known_keys[0])) continue;
        return dw_error_set(c->err, DW_ERR_UNSUPPORTED, "%s: key '%s' is not supported", c->path, key);
    }

    const long big = 1L << 30;
    if ((st = get_int(c, root, "vocab_size", 1, 1, big, &cfg->vocab_size)) ||
        (st = get_int(c, root, "hidden_size", 1, 1, 1 << 20, &cfg->hidden_size)) ||
        (st = get_int(c, root, "intermediate_size", 1, 1, 1 << 22, &cfg->intermediate_size)) ||
        (st = get_int(c, root, "num_hidden_layers", 1, 1, 4096, &cfg->n_layers)) ||
        (st = get_int(c, root, "num_attention_heads", 1, 1, 4096, &cfg->n_heads)))
        return st;
    cfg->n_kv_heads = cfg->n_heads;
    if ((st = get_int(c, root, "num_key_value_heads", 0, 1, 4096, &cfg->n_kv_heads))) return st;
    cfg->head_dim = cfg->hidden_size / cfg->n_heads;
    if (!json_object_get(root, "head_dim") || json_is_null(json_object_get(root, "head_dim"))) {
        if (cfg->hidden_size % cfg->n_heads)
            return dw_error_set(c->err, DW_ERR_FORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                                c->path, cfg->hidden_size, cfg->n_heads);
    } else if ((st = get_int(c, root, "head_dim", 1, 2, 512, &cfg->head_dim))) {
        return st;
    }
    if (cfg->head_dim % 2 || cfg->head_dim > 512)
        return dw_error_set(c->err, DW_ERR_UNSUPPORTED, "%s: key 'head_dim' = %d is not supported (even, at most 512)",
                            c->path, cfg->head_dim);
    if (cfg->n_heads % cfg->n_kv_heads || cfg->n_heads / cfg->n_kv_heads > 32)
        return dw_error_set(c->err, DW_ERR_UNSUPPORTED,
                            "%s: key 'num_key_value_heads' = %d is not supported with %d attention heads (a divisor, "
                            "at most 32 query heads per KV head)",
                            c->path, cfg->n_kv_heads, cfg->n_heads);
    cfg->max_position_embeddings = 2048;
    if ((st = get_int(c, root, "max_position_embeddings", 0, 1, big, &cfg->max_position_embeddings))) return st;

    json_t *act = json_object_get(root, "hidden_act");
    if (act && !(json_is_string(act) && !strcmp(json_string_value(act), "silu")))
        return dw_error_set(c->err, DW_ERR_UNSUPPORTED, "%s: key 'hidden_act' = %s is not supported (silu)", c->path,
                            json_is_string(act) ? json_string_value(act) : "(not a string)");

    double eps = 1e-6, theta = 10000.0;
    if ((st = get_number(c, root, "rms_norm_eps", 0, &eps)) || (st = get_number(c, root, "rope_theta", 0, &theta)))
        return st;
    if (!(eps > 0) || !(theta > 0)) return dw_error_set(c->err, DW_ERR_FORMAT, "%s: rms_norm_eps and rope_theta must be positive", c->path);
    cfg->rms_norm_eps = (float)eps;
    cfg->rope_theta = (float)theta;
    if ((st = parse_rope(c, json_object_get(root, "rope_scaling"), "rope_scaling", cfg)) ||
        (st = parse_rope(c, json_object_get(root, "rope_parameters"), "rope_parameters", cfg)))
        return st;

    cfg->tie_word_embeddings = 0; /* the default of all three config classes */
    if ((st = get_bool(c, root, "tie_word_embeddings", &cfg->tie_word_embeddings))) return st;

    int attention_bias = 0, mlp_bias = 0;
    if ((st = get_bool(c, root, "attention_bias", &attention_bias)) || (st = get_bool(c, root, "mlp_bias", &mlp_bias)))
        return st;
    if (cfg->arch == DW_ARCH_QWEN2) {
        /* Qwen2 has q/k/v biases always; o_proj never */
        if (json_object_get(root, "attention_bias") || json_object_get(root, "mlp_bias"))
            return dw_error_set(c->err, DW_ERR_UNSUPPORTED, "%s: key '%s' is not supported for Qwen2ForCausalLM", c->path,
                                json_object_get(root, "attention_bias") ? "attention_bias" : "mlp_bias");
        cfg->qkv_bias = 1;
    } else if (cfg->arch == DW_ARCH_LLAMA) {
        cfg->qkv_bias = cfg->o_bias = attention_bias;
        cfg->mlp_bias = mlp_bias;
    } else if (attention_bias || mlp_bias) {
        return dw_error_set(c->err, DW_ERR_UNSUPPORTED, "%s: key '%s' is not supported for %s", c->path,
                            attention_bias ? "attention_bias" : "mlp_bias", arch);
    }

    /* Sliding windows: Mistral applies sliding_window to every layer; Qwen2 only with
     * use_sliding_window (which we refuse: it mixes window and full layers). */
    int use_sw = 0;
    if ((st = get_bool(c, root, "use_sliding_window", &use_sw))) return st;
    if (use_sw) return dw_error_set(c->err, DW_ERR_UNSUPPORTED, "%s: key 'use_sliding_window' = true is not supported", c->path);
    if (cfg->arch == DW_ARCH_MISTRAL) {
        if ((st = get_int(c, root, "sliding_window", 0, 1, big, &cfg->sliding_window))) return st;
    } else if (cfg->arch == DW_ARCH_LLAMA && json_object_get(root, "sliding_window") &&
               !json_is_null(json_object_get(root, "sliding_window"))) {
        return dw_error_set(c->err, DW_ERR_UNSUPPORTED, "%s: key 'sliding_window' is not supported for LlamaForCausalLM", c->path);
    }
    json_t *lt = json_object_get(root, "layer_types");
    if (lt && !json_is_null(lt)) {
        if (!json_is_array(lt) || json_array_size(lt) != (size_t)cfg->n_layers)
            return bad(c, DW_ERR_FORMAT, "layer_types", "must list one type per layer");
        size_t i;
        json_t *e;
        json_array_foreach(lt, i, e) {
            const char *want = cfg->sliding_window ? "sliding_attention" : "full_attention";
            if (!json_is_string(e) || strcmp(json_string_value(e), want) != 0)
                return dw_error_set(c->err, DW_ERR_UNSUPPORTED, "%s: key 'layer_types' entry %zu is not \"%s\"", c->path, i, want);
        }
    }

    cfg->bos_token_id = -1;
    json_t *bos = json_object_get(root, "bos_token_id");
    if (bos && json_is_integer(bos) && json_integer_value(bos) >= 0) cfg->bos_token_id = (int)json_integer_value(bos);
    json_t *eos = json_object_get(root, "eos_token_id");
    if (eos) dw__config_add_eos_ids(cfg, eos);

    cfg->dtype = DW_DTYPE_BF16;
    json_t *dt = json_object_get(root, "torch_dtype");
    if (!dt) dt = json_object_get(root, "dtype");
    if (dt && json_is_string(dt)) {
        const char *s = json_string_value(dt);
        if (!strcmp(s, "float32")) cfg->dtype = DW_DTYPE_F32;
        else if (!strcmp(s, "float16")) cfg->dtype = DW_DTYPE_F16;
    }
    return DW_OK;
}

dw_status dw_model_config_parse(const char *path, const char *json_text, dw_model_config *cfg, dw_error *err) {
    memset(cfg, 0, sizeof *cfg);
    json_error_t jerr;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return dw_error_set(err, DW_ERR_FORMAT, "%s: invalid JSON at line %d: %s", path, jerr.line, jerr.text);
    ctx_t c = {path, err};
    dw_status st = parse(&c, root, cfg);
    json_decref(root);
    return st;
}

void dw__config_hash(const dw_model_config *cfg, char hex[DW_SHA256_HEX_SIZE]) {
    char buf[1024];
    int n = snprintf(buf, sizeof buf,
                     "driftwood-config-v1 arch=%s vocab=%d hidden=%d inter=%d layers=%d heads=%d kv=%d hd=%d "
                     "maxpos=%d eps=%.9g theta=%.9g llama3=%d factor=%.9g lo=%.9g hi=%.9g orig=%d tie=%d "
                     "qkvb=%d ob=%d mlpb=%d window=%d",
                     cfg->architecture, cfg->vocab_size, cfg->hidden_size, cfg->intermediate_size, cfg->n_layers,
                     cfg->n_heads, cfg->n_kv_heads, cfg->head_dim, cfg->max_position_embeddings, cfg->rms_norm_eps,
                     cfg->rope_theta, cfg->rope_llama3, cfg->rope_factor, cfg->rope_low_freq_factor,
                     cfg->rope_high_freq_factor, cfg->rope_original_max_position, cfg->tie_word_embeddings,
                     cfg->qkv_bias, cfg->o_bias, cfg->mlp_bias, cfg->sliding_window);
    uint8_t digest[DW_SHA256_DIGEST_SIZE];
    dw__sha256(buf, (size_t)n, digest);
    dw__sha256_hex(digest, hex);
}
