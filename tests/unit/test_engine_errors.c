/* Bad models and bad input give one-line errors that name the file and the problem: unknown
 * architecture, unsupported config keys, missing tensors, wrong shapes and dtypes, truncated
 * weight files, prompts longer than the context, ids outside the vocabulary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driftwood/backend.h"
#include "driftwood/engine.h"
#include "driftwood/model.h"
#include "driftwood/safetensors.h"
#include "test.h"
#include "test_engine_util.h"

static int counter;

static void fresh_model(char *dir, size_t size, const tmodel_spec *spec, int shards) {
    snprintf(dir, size, "%s/bad-%d", dw_test_tmp_dir(), counter++);
    tmodel tm;
    dw_error err;
    if (tmodel_write(spec, dir, shards, &tm, &err) == DW_OK) tmodel_free(&tm);
}

static dw_status try_load(const char *dir, dw_error *err) {
    dw_backend *be;
    dw_model *m = NULL;
    dw_status st = dw_backend_open("cpu", &be, err);
    if (st) return st;
    st = dw_model_load(dir, be, NULL, &m, err);
    dw_model_free(m);
    dw_backend_close(be);
    return st;
}

/* Replaces the first occurrence of `from` with `to` in dir/file. */
static void edit_file(const char *dir, const char *file, const char *from, const char *to) {
    char path[1024], buf[8192];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "rb");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strstr(buf, from), out[8192];
    if (!p) return;
    snprintf(out, sizeof out, "%.*s%s%s", (int)(p - buf), buf, to, p + strlen(from));
    f = fopen(path, "wb");
    fputs(out, f);
    fclose(f);
}

static int one_line(const char *msg) { return msg[0] && !strchr(msg, '\n'); }

TEST(engine_refuses_an_unknown_architecture_naming_it) {
    dw_error err = {0};
    char dir[512];
    tmodel_spec spec = tmodel_default();
    fresh_model(dir, sizeof dir, &spec, 1);
    edit_file(dir, "config.json", "\"LlamaForCausalLM\"", "\"GPT2LMHeadModel\"");
    CHECK(try_load(dir, &err) == DW_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.message, "config.json") && strstr(err.message, "GPT2LMHeadModel") &&
                  strstr(err.message, "architectures") && one_line(err.message),
              "%s", err.message);
}

TEST(engine_refuses_unsupported_config_keys_and_values_by_name) {
    dw_error err = {0};
    char dir[512];
    tmodel_spec spec = tmodel_default();
    fresh_model(dir, sizeof dir, &spec, 1);
    edit_file(dir, "config.json", "\"use_cache\": true", "\"use_cache\": true, \"attn_logit_softcapping\": 50.0");
    CHECK(try_load(dir, &err) == DW_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.message, "'attn_logit_softcapping'") && strstr(err.message, "config.json"), "%s", err.message);

    fresh_model(dir, sizeof dir, &spec, 1);
    edit_file(dir, "config.json", "\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"");
    CHECK(try_load(dir, &err) == DW_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.message, "'hidden_act'") && strstr(err.message, "gelu"), "%s", err.message);

    fresh_model(dir, sizeof dir, &spec, 1);
    edit_file(dir, "config.json", "\"use_cache\": true",
              "\"use_cache\": true, \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}");
    CHECK(try_load(dir, &err) == DW_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.message, "rope_scaling") && strstr(err.message, "yarn"), "%s", err.message);

    fresh_model(dir, sizeof dir, &spec, 1);
    edit_file(dir, "config.json", "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3");
    CHECK(try_load(dir, &err) == DW_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.message, "'num_key_value_heads'"), "%s", err.message);
}

TEST(engine_config_parser_accepts_real_hub_configs) {
    /* Llama 3.2 1B as published, and transformers 5's rope_parameters form */
    const char *llama32 =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0, "
        "\"bos_token_id\": 128000, \"eos_token_id\": 128001, \"head_dim\": 64, \"hidden_act\": \"silu\", "
        "\"hidden_size\": 2048, \"initializer_range\": 0.02, \"intermediate_size\": 8192, "
        "\"max_position_embeddings\": 131072, \"mlp_bias\": false, \"model_type\": \"llama\", "
        "\"num_attention_heads\": 32, \"num_hidden_layers\": 16, \"num_key_value_heads\": 8, \"pretraining_tp\": 1, "
        "\"rms_norm_eps\": 1e-05, \"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, "
        "\"low_freq_factor\": 1.0, \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}, "
        "\"rope_theta\": 500000.0, \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", "
        "\"transformers_version\": \"4.45.0.dev0\", \"use_cache\": true, \"vocab_size\": 128256}";
    dw_model_config c;
    dw_error err = {0};
    CHECK_OK(dw_model_config_parse("config.json", llama32, &c, &err));
    CHECK(c.arch == DW_ARCH_LLAMA && c.n_layers == 16 && c.n_kv_heads == 8 && c.head_dim == 64 && c.tie_word_embeddings);
    CHECK(c.rope_llama3 && c.rope_factor == 32.0f && c.rope_original_max_position == 8192 && c.rope_theta == 500000.0f);
    CHECK(c.n_eos == 1 && c.eos_token_ids[0] == 128001 && c.bos_token_id == 128000);
    const char *qwen =
        "{\"architectures\": [\"Qwen2ForCausalLM\"], \"attention_dropout\": 0.0, \"bos_token_id\": 151643, "
        "\"eos_token_id\": 151645, \"hidden_act\": \"silu\", \"hidden_size\": 896, \"initializer_range\": 0.02, "
        "\"intermediate_size\": 4864, \"max_position_embeddings\": 32768, \"max_window_layers\": 21, "
        "\"model_type\": \"qwen2\", \"num_attention_heads\": 14, \"num_hidden_layers\": 24, \"num_key_value_heads\": 2, "
        "\"rms_norm_eps\": 1e-06, \"rope_parameters\": {\"rope_theta\": 1000000.0, \"rope_type\": \"default\"}, "
        "\"sliding_window\": 32768, \"tie_word_embeddings\": true, \"dtype\": \"bfloat16\", "
        "\"use_cache\": true, \"use_sliding_window\": false, \"vocab_size\": 151936}";
    CHECK_OK(dw_model_config_parse("config.json", qwen, &c, &err));
    CHECK(c.arch == DW_ARCH_QWEN2 && c.qkv_bias && !c.o_bias && c.head_dim == 64 && c.rope_theta == 1000000.0f);
    CHECK(c.sliding_window == 0); /* use_sliding_window false */
    CHECK(dw_model_config_parse("config.json", "{\"architectures\": [\"LlamaForCausalLM\"], \"vocab_size\": 1", &c, &err) ==
          DW_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "invalid JSON"), "%s", err.message);
}

TEST(engine_config_refuses_numbers_that_do_not_fit_naming_the_key) {
    /* each kept as a float: out of range, or turned into inf or 0 by the rounding, is refused */
    const struct {
        const char *json_value, *key;
    } cases[] = {
        {"\"rms_norm_eps\": 1e300", "'rms_norm_eps'"},     /* inf as a float: every logit 0 */
        {"\"rms_norm_eps\": 1.5", "'rms_norm_eps'"},       /* not a small guard any more */
        {"\"rms_norm_eps\": 1e-50", "'rms_norm_eps'"},     /* 0 as a float */
        {"\"rms_norm_eps\": -1e-5", "'rms_norm_eps'"},
        {"\"rope_theta\": 1e300", "'rope_theta'"},
        {"\"rope_theta\": 0", "'rope_theta'"},
        {"\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 1e300, \"low_freq_factor\": 1.0, "
         "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}",
         "'rope_scaling.factor'"},
        {"\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1e40}", "'rope_parameters.rope_theta'"},
        {"\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 0.0}", "'rope_parameters.rope_theta'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[1024];
        snprintf(json, sizeof json,
                 "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"intermediate_size\": 128, "
                 "\"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"vocab_size\": 300, %s}",
                 cases[i].json_value);
        dw_model_config c;
        dw_error err = {0};
        dw_status st = dw_model_config_parse("config.json", json, &c, &err);
        CHECK_MSG(st == DW_ERR_FORMAT && strstr(err.message, cases[i].key) && strstr(err.message, "config.json") &&
                      one_line(err.message),
                  "%s -> %s: %s (rms_norm_eps %g, rope_theta %g)", cases[i].json_value, dw_status_name(st), err.message,
                  c.rms_norm_eps, c.rope_theta);
    }
}

TEST(engine_names_file_and_tensor_when_a_tensor_is_missing) {
    dw_error err = {0};
    char dir[512];
    tmodel_spec spec = tmodel_default();
    spec.tie = 1;
    fresh_model(dir, sizeof dir, &spec, 1);
    /* the config now asks for an untied LM head the file does not have */
    edit_file(dir, "config.json", "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
    CHECK(try_load(dir, &err) == DW_ERR_NOT_FOUND);
    CHECK_MSG(strstr(err.message, "model.safetensors") && strstr(err.message, "'lm_head.weight'") && one_line(err.message),
              "%s", err.message);
    /* sharded: the index does not list it */
    fresh_model(dir, sizeof dir, &spec, 2);
    edit_file(dir, "config.json", "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false");
    CHECK(try_load(dir, &err) == DW_ERR_NOT_FOUND);
    CHECK_MSG(strstr(err.message, "model.safetensors.index.json") && strstr(err.message, "'lm_head.weight'"), "%s",
              err.message);
}

TEST(engine_names_file_and_tensor_for_a_wrong_shape) {
    dw_error err = {0};
    char dir[512];
    tmodel_spec spec = tmodel_default();
    fresh_model(dir, sizeof dir, &spec, 1);
    edit_file(dir, "config.json", "\"intermediate_size\": 72", "\"intermediate_size\": 80");
    CHECK(try_load(dir, &err) == DW_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "model.safetensors") && strstr(err.message, "'model.layers.0.mlp.gate_proj.weight'") &&
                  strstr(err.message, "[72, 40]") && strstr(err.message, "[80, 40]"),
              "%s", err.message);
}

TEST(engine_names_file_and_tensor_for_a_wrong_dtype) {
    dw_error err = {0};
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/bad-dtype", dw_test_tmp_dir());
    tmodel_spec spec = tmodel_default();
    spec.layers = 1;
    tmodel tm;
    CHECK_OK(tmodel_write(&spec, dir, 1, &tm, &err));
    tmodel_free(&tm);
    /* rewrite the file with the embedding stored as I16 */
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    dw_safetensors *st;
    CHECK_OK(dw_safetensors_open(path, &st, &err));
    dw_safetensors_writer *w;
    CHECK_OK(dw_safetensors_writer_new(&w, &err));
    for (size_t i = 0; i < dw_safetensors_count(st); i++) {
        const dw_tensor_info *t = dw_safetensors_tensor(st, i);
        dw_dtype dt = !strcmp(t->name, "model.embed_tokens.weight") ? DW_DTYPE_I16 : t->dtype;
        CHECK_OK(dw_safetensors_writer_add(w, t->name, dt, t->ndim, t->shape, t->data, t->nbytes, &err));
    }
    char path2[620];
    snprintf(path2, sizeof path2, "%s.new", path);
    CHECK_OK(dw_safetensors_writer_write(w, path2, &err));
    dw_safetensors_writer_free(w);
    dw_safetensors_close(st);
    CHECK(rename(path2, path) == 0);
    CHECK(try_load(dir, &err) == DW_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.message, "model.safetensors") && strstr(err.message, "'model.embed_tokens.weight'") &&
                  strstr(err.message, "I16"),
              "%s", err.message);
}

TEST(engine_refuses_a_truncated_weight_file) {
    dw_error err = {0};
    char dir[512], path[600];
    tmodel_spec spec = tmodel_default();
    fresh_model(dir, sizeof dir, &spec, 1);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    struct stat sb;
    CHECK(stat(path, &sb) == 0);
    CHECK(truncate(path, sb.st_size - 100) == 0);
    dw_status st = try_load(dir, &err);
    CHECK(st == DW_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "model.safetensors") && one_line(err.message), "%s", err.message);
    /* no weights at all */
    CHECK(unlink(path) == 0);
    CHECK(try_load(dir, &err) == DW_ERR_NOT_FOUND);
    CHECK_MSG(strstr(err.message, "model.safetensors"), "%s", err.message);
    /* no config */
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(unlink(path) == 0);
    CHECK(try_load(dir, &err) != DW_OK);
    CHECK_MSG(strstr(err.message, "config.json"), "%s", err.message);
}

TEST(engine_refuses_prompts_longer_than_the_context_and_bad_ids) {
    dw_error err = {0};
    char dir[512];
    tmodel_spec spec = tmodel_default();
    fresh_model(dir, sizeof dir, &spec, 1);
    dw_backend *be;
    dw_model *m;
    dw_session *s;
    CHECK_OK(dw_backend_open("cpu", &be, &err));
    CHECK_OK(dw_model_load(dir, be, NULL, &m, &err));
    dw_session_options so = {.ctx = 16};
    CHECK_OK(dw_session_create(m, &so, &s, &err));
    int32_t ids[20] = {0};
    float *logits = malloc(sizeof(float) * spec.vocab);
    CHECK(dw_session_prefill(s, ids, 17, logits, &err) == DW_ERR_LIMIT);
    CHECK_MSG(strstr(err.message, "17 tokens") && strstr(err.message, "16"), "%s", err.message);
    CHECK(dw_session_n_tokens(s) == 0);
    CHECK_OK(dw_session_prefill(s, ids, 16, logits, &err));
    CHECK(dw_session_decode(s, 1, logits, &err) == DW_ERR_LIMIT);
    dw_session_reset(s);
    ids[3] = spec.vocab;
    CHECK(dw_session_prefill(s, ids, 5, logits, &err) == DW_ERR_INVALID_ARGUMENT);
    CHECK_MSG(strstr(err.message, "outside the vocabulary"), "%s", err.message);
    CHECK(dw_session_decode(s, -1, logits, &err) == DW_ERR_INVALID_ARGUMENT);
    dw_session_free(s);
    so.ctx = spec.max_pos + 1;
    CHECK(dw_session_create(m, &so, &s, &err) == DW_ERR_LIMIT);
    CHECK_MSG(strstr(err.message, "max_position_embeddings"), "%s", err.message);
    free(logits);
    dw_model_free(m);
    dw_backend_close(be);
}

/* Writes text to dir/file. */
static void write_file(const char *dir, const char *file, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "wb");
    if (f) fputs(text, f), fclose(f);
}

/* The message is written before the index is freed (issue 21: it named freed memory). */
TEST(engine_names_the_index_and_tensor_for_a_bad_shard_file_name) {
    static const char *const bad_maps[] = {"{\"weight_map\": {\"model.norm.weight\": \"../model.safetensors\"}}",
                                           "{\"weight_map\": {\"model.norm.weight\": 7}}"};
    for (int i = 0; i < 2; i++) {
        dw_error err = {0};
        char dir[512], index[600];
        tmodel_spec spec = tmodel_default();
        fresh_model(dir, sizeof dir, &spec, 2);
        write_file(dir, "model.safetensors.index.json", bad_maps[i]);
        snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
        CHECK(try_load(dir, &err) == DW_ERR_FORMAT);
        CHECK_MSG(strncmp(err.message, index, strlen(index)) == 0 && strstr(err.message, "'model.norm.weight'") &&
                      strstr(err.message, "invalid file name"),
                  "%s", err.message);
    }
}

/* 1,025 shard names, each a link to one real shard. */
TEST(engine_names_the_index_when_it_lists_too_many_shards) {
    dw_error err = {0};
    char dir[512], index[600], link[600];
    tmodel_spec spec = tmodel_default();
    fresh_model(dir, sizeof dir, &spec, 1);
    size_t cap = 64 * 1025 + 64, len = 0;
    char *map = malloc(cap);
    CHECK(map);
    len += (size_t)snprintf(map + len, cap - len, "{\"weight_map\": {");
    for (int i = 0; i < 1025; i++) {
        snprintf(link, sizeof link, "%s/s%d.safetensors", dir, i);
        CHECK(symlink("model.safetensors", link) == 0);
        len += (size_t)snprintf(map + len, cap - len, "%s\"t%d\": \"s%d.safetensors\"", i ? ", " : "", i, i);
    }
    snprintf(map + len, cap - len, "}}");
    write_file(dir, "model.safetensors.index.json", map);
    free(map);
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    CHECK(try_load(dir, &err) == DW_ERR_LIMIT);
    CHECK_MSG(strncmp(err.message, index, strlen(index)) == 0 && strstr(err.message, "more than 1024 shards"), "%s",
              err.message);
}
