/* Small random models for the engine tests and a double-precision reference forward
 * (see test_engine_util.h). */
#include "test_engine_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "driftwood/safetensors.h"

tmodel_spec tmodel_default(void) {
    return (tmodel_spec){.arch = "LlamaForCausalLM", .vocab = 97, .hidden = 40, .inter = 72, .layers = 2,
                         .heads = 4, .kv_heads = 2, .head_dim = 10, .tie = 0, .max_pos = 256,
                         .dtype = DW_DTYPE_BF16, .seed = 1};
}

static uint64_t rs;
static float urand(void) { /* uniform [-1, 1) */
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((rs >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

typedef struct writer_state {
    dw_safetensors_writer *w[8];
    int shards, next;
    void *keep[4096]; /* encoded buffers, alive until written */
    int n_keep;
    char (*names)[96];
    int *shard_of;
    int n_names;
} writer_state;

/* Makes a [rows × cols] tensor of random values (or `fill` when fill != 0), rounds it to the dtype,
 * keeps an f32 copy for the reference, and adds it to one of the shard writers. */
static float *add_tensor(writer_state *ws, const char *name, dw_dtype dtype, int rows, int cols, float scale, float fill,
                         dw_error *err) {
    size_t n = (size_t)rows * cols;
    float *f = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) f[i] = fill != 0.0f ? fill + 0.1f * urand() : urand() * scale;
    size_t es = dw_dtype_size(dtype);
    void *enc = malloc(n * es);
    dw_convert_from_f32(dtype, f, enc, n);
    dw_convert_to_f32(dtype, enc, f, n); /* the reference sees the rounded values */
    ws->keep[ws->n_keep++] = enc;
    int64_t shape[2] = {rows, cols};
    int ndim = rows == 1 ? 1 : 2;
    if (ndim == 1) shape[0] = cols;
    int shard = ws->next++ % ws->shards;
    if (dw_safetensors_writer_add(ws->w[shard], name, dtype, ndim, shape, enc, n * es, err) != DW_OK) {
        free(f);
        return NULL;
    }
    snprintf(ws->names[ws->n_names], 96, "%s", name);
    ws->shard_of[ws->n_names++] = shard;
    return f;
}

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

dw_status tmodel_write(const tmodel_spec *spec, const char *dir, int shards, tmodel *out, dw_error *err) {
    memset(out, 0, sizeof *out);
    out->spec = *spec;
    const tmodel_spec *s = &out->spec;
    mkdir(dir, 0777);
    char path[1024], text[4096];
    char extra[512] = "";
    int off = 0;
    if (s->explicit_head_dim) off += snprintf(extra + off, sizeof extra - off, "\"head_dim\": %d, ", s->head_dim);
    if (s->llama3_rope)
        off += snprintf(extra + off, sizeof extra - off,
                        "\"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                        "\"original_max_position_embeddings\": 16, \"rope_type\": \"llama3\"}, ");
    if (!strcmp(s->arch, "MistralForCausalLM")) {
        if (s->sliding_window) off += snprintf(extra + off, sizeof extra - off, "\"sliding_window\": %d, ", s->sliding_window);
        else off += snprintf(extra + off, sizeof extra - off, "\"sliding_window\": null, ");
    }
    const char *model_type = !strcmp(s->arch, "Qwen2ForCausalLM")     ? "qwen2"
                             : !strcmp(s->arch, "MistralForCausalLM") ? "mistral"
                                                                      : "llama";
    snprintf(text, sizeof text,
             "{\"architectures\": [\"%s\"], \"model_type\": \"%s\", \"vocab_size\": %d, \"hidden_size\": %d, "
             "\"intermediate_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
             "\"num_key_value_heads\": %d, %s\"hidden_act\": \"silu\", \"max_position_embeddings\": %d, "
             "\"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"tie_word_embeddings\": %s, "
             "\"bos_token_id\": 1, \"eos_token_id\": 2, \"torch_dtype\": \"bfloat16\", \"use_cache\": true}\n",
             s->arch, model_type, s->vocab, s->hidden, s->inter, s->layers, s->heads, s->kv_heads, extra, s->max_pos,
             s->tie ? "true" : "false");
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (write_text(path, text)) return dw_error_set(err, DW_ERR_IO, "%s: cannot write", path);
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    write_text(path, "{\"bos_token_id\": 1, \"eos_token_id\": [2, 3]}\n");

    writer_state *ws = calloc(1, sizeof *ws);
    ws->shards = shards < 1 ? 1 : shards;
    ws->names = calloc(4096, sizeof *ws->names);
    ws->shard_of = calloc(4096, sizeof *ws->shard_of);
    for (int i = 0; i < ws->shards; i++) dw_safetensors_writer_new(&ws->w[i], err);
    rs = spec->seed * 0x9e3779b97f4a7c15ull + 12345;
    float sc = s->scale > 0 ? s->scale : 0.15f;
    int bias = !strcmp(s->arch, "Qwen2ForCausalLM");
    int qd = s->heads * s->head_dim, kvd = s->kv_heads * s->head_dim;
    dw_dtype dt = s->dtype;
    dw_status st = DW_OK;
#define ADD(dst, name, dtype, r, c, scale, fill)                                          \
    do {                                                                                  \
        if (!((dst) = add_tensor(ws, name, dtype, r, c, scale, fill, err))) {             \
            st = err->status;                                                             \
            goto done;                                                                    \
        }                                                                                 \
    } while (0)
    ADD(out->embed, "model.embed_tokens.weight", dt, s->vocab, s->hidden, 1.0f, 0);
    out->layer = calloc((size_t)s->layers, sizeof *out->layer);
    char name[128];
    for (int l = 0; l < s->layers; l++) {
        struct tlayer *L = &out->layer[l];
#define LNAME(suffix) (snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix), name)
        ADD(L->attn_norm, LNAME("input_layernorm.weight"), dt, 1, s->hidden, 0, 1.0f);
        ADD(L->wq, LNAME("self_attn.q_proj.weight"), dt, qd, s->hidden, sc, 0);
        ADD(L->wk, LNAME("self_attn.k_proj.weight"), dt, kvd, s->hidden, sc, 0);
        ADD(L->wv, LNAME("self_attn.v_proj.weight"), dt, kvd, s->hidden, sc, 0);
        ADD(L->wo, LNAME("self_attn.o_proj.weight"), dt, s->hidden, qd, sc, 0);
        if (bias) {
            ADD(L->bq, LNAME("self_attn.q_proj.bias"), dt, 1, qd, 0.5f, 0);
            ADD(L->bk, LNAME("self_attn.k_proj.bias"), dt, 1, kvd, 0.5f, 0);
            ADD(L->bv, LNAME("self_attn.v_proj.bias"), dt, 1, kvd, 0.5f, 0);
        }
        ADD(L->ffn_norm, LNAME("post_attention_layernorm.weight"), dt, 1, s->hidden, 0, 1.0f);
        ADD(L->wg, LNAME("mlp.gate_proj.weight"), dt, s->inter, s->hidden, sc, 0);
        ADD(L->wu, LNAME("mlp.up_proj.weight"), dt, s->inter, s->hidden, sc, 0);
        ADD(L->wd, LNAME("mlp.down_proj.weight"), dt, s->hidden, s->inter, sc, 0);
#undef LNAME
    }
    ADD(out->final_norm, "model.norm.weight", dt, 1, s->hidden, 0, 1.0f);
    if (s->tie) out->lm_head = out->embed;
    else ADD(out->lm_head, "lm_head.weight", dt, s->vocab, s->hidden, sc, 0);
#undef ADD
    if (ws->shards == 1) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        st = dw_safetensors_writer_write(ws->w[0], path, err);
    } else {
        char *index = malloc(1 << 20);
        int o = snprintf(index, 1 << 20, "{\"metadata\": {}, \"weight_map\": {");
        for (int i = 0; i < ws->n_names; i++)
            o += snprintf(index + o, (1 << 20) - o, "%s\"%s\": \"model-%05d-of-%05d.safetensors\"", i ? ", " : "",
                          ws->names[i], ws->shard_of[i] + 1, ws->shards);
        snprintf(index + o, (1 << 20) - o, "}}\n");
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        write_text(path, index);
        free(index);
        for (int i = 0; i < ws->shards && !st; i++) {
            snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, i + 1, ws->shards);
            st = dw_safetensors_writer_write(ws->w[i], path, err);
        }
    }
done:
    for (int i = 0; i < ws->shards; i++) dw_safetensors_writer_free(ws->w[i]);
    for (int i = 0; i < ws->n_keep; i++) free(ws->keep[i]);
    free(ws->names);
    free(ws->shard_of);
    free(ws);
    return st;
}

void tmodel_free(tmodel *m) {
    if (m->layer)
        for (int l = 0; l < m->spec.layers; l++) {
            struct tlayer *L = &m->layer[l];
            float *all[] = {L->attn_norm, L->wq, L->wk, L->wv, L->wo, L->bq, L->bk, L->bv, L->ffn_norm, L->wg, L->wu, L->wd};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
        }
    free(m->layer);
    if (m->lm_head != m->embed) free(m->lm_head);
    free(m->embed);
    free(m->final_norm);
    memset(m, 0, sizeof *m);
}

/* ---- reference forward (double precision, whole sequence at once) ------------------------- */

static void rmsnorm(double *out, const double *x, const float *w, int d) {
    double ss = 0;
    for (int i = 0; i < d; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / d + 1e-5);
    for (int i = 0; i < d; i++) out[i] = x[i] * r * w[i];
}

static void linear(double *out, const double *x, const float *w, const float *b, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        double acc = b ? b[r] : 0.0;
        for (int c = 0; c < cols; c++) acc += x[c] * w[(size_t)r * cols + c];
        out[r] = acc;
    }
}

static void inv_freqs(const tmodel_spec *s, double *f) {
    int half = s->head_dim / 2;
    for (int i = 0; i < half; i++) f[i] = 1.0 / pow(10000.0, (2.0 * i) / s->head_dim);
    if (!s->llama3_rope) return;
    double factor = 8, lo = 1, hi = 4, old = 16, lw = old / lo, hw = old / hi;
    for (int i = 0; i < half; i++) {
        double wl = 2 * M_PI / f[i];
        double scaled = wl > lw ? f[i] / factor : f[i];
        double sm = (old / wl - lo) / (hi - lo);
        double smoothed = (1 - sm) * scaled / factor + sm * scaled;
        f[i] = (!(wl < hw) && !(wl > lw)) ? smoothed : scaled;
    }
}

static void rope(double *x, int hd, int pos, const double *f) {
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        double a = x[i], b = x[i + half], c = cos(pos * f[i]), s = sin(pos * f[i]);
        x[i] = a * c - b * s;
        x[i + half] = b * c + a * s;
    }
}

void tmodel_reference(const tmodel *m, const int32_t *ids, int n, float *out) {
    const tmodel_spec *s = &m->spec;
    int H = s->hidden, hd = s->head_dim, qd = s->heads * hd, kvd = s->kv_heads * hd, I = s->inter;
    double *x = calloc((size_t)n * H, sizeof(double)), *xn = calloc(H > I ? I : H, sizeof(double) * 2);
    double *q = calloc((size_t)n * qd, sizeof(double)), *k = calloc((size_t)n * kvd, sizeof(double));
    double *v = calloc((size_t)n * kvd, sizeof(double)), *att = calloc(qd, sizeof(double));
    double *tmp = calloc(I > H ? I : H, sizeof(double)), *g = calloc(I, sizeof(double)), *u = calloc(I, sizeof(double));
    double *sc = calloc(n, sizeof(double)), f[256];
    double *xn2 = calloc(H, sizeof(double));
    inv_freqs(s, f);
    for (int t = 0; t < n; t++)
        for (int i = 0; i < H; i++) x[(size_t)t * H + i] = m->embed[(size_t)ids[t] * H + i];
    for (int l = 0; l < s->layers; l++) {
        const struct tlayer *L = &m->layer[l];
        for (int t = 0; t < n; t++) {
            rmsnorm(xn2, x + (size_t)t * H, L->attn_norm, H);
            linear(q + (size_t)t * qd, xn2, L->wq, L->bq, qd, H);
            linear(k + (size_t)t * kvd, xn2, L->wk, L->bk, kvd, H);
            linear(v + (size_t)t * kvd, xn2, L->wv, L->bv, kvd, H);
            for (int h = 0; h < s->heads; h++) rope(q + (size_t)t * qd + h * hd, hd, t, f);
            for (int h = 0; h < s->kv_heads; h++) rope(k + (size_t)t * kvd + h * hd, hd, t, f);
        }
        double *newx = calloc((size_t)n * H, sizeof(double));
        memcpy(newx, x, sizeof(double) * n * H);
        for (int t = 0; t < n; t++) {
            for (int h = 0; h < s->heads; h++) {
                int kh = h / (s->heads / s->kv_heads);
                int start = s->sliding_window && t - s->sliding_window + 1 > 0 ? t - s->sliding_window + 1 : 0;
                double mx = -INFINITY, z = 0;
                for (int j = start; j <= t; j++) {
                    double d = 0;
                    for (int i = 0; i < hd; i++) d += q[(size_t)t * qd + h * hd + i] * k[(size_t)j * kvd + kh * hd + i];
                    sc[j] = d / sqrt((double)hd);
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int j = start; j <= t; j++) z += (sc[j] = exp(sc[j] - mx));
                for (int i = 0; i < hd; i++) {
                    double acc = 0;
                    for (int j = start; j <= t; j++) acc += sc[j] * v[(size_t)j * kvd + kh * hd + i];
                    att[h * hd + i] = acc / z;
                }
            }
            linear(tmp, att, L->wo, NULL, H, qd);
            for (int i = 0; i < H; i++) newx[(size_t)t * H + i] += tmp[i];
        }
        memcpy(x, newx, sizeof(double) * n * H);
        free(newx);
        for (int t = 0; t < n; t++) {
            rmsnorm(xn2, x + (size_t)t * H, L->ffn_norm, H);
            linear(g, xn2, L->wg, NULL, I, H);
            linear(u, xn2, L->wu, NULL, I, H);
            for (int i = 0; i < I; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            linear(tmp, g, L->wd, NULL, H, I);
            for (int i = 0; i < H; i++) x[(size_t)t * H + i] += tmp[i];
        }
    }
    double *lg = calloc(s->vocab, sizeof(double));
    for (int t = 0; t < n; t++) {
        rmsnorm(xn2, x + (size_t)t * H, m->final_norm, H);
        linear(lg, xn2, m->lm_head, NULL, s->vocab, H);
        for (int i = 0; i < s->vocab; i++) out[(size_t)t * s->vocab + i] = (float)lg[i];
    }
    free(lg), free(x), free(xn), free(q), free(k), free(v), free(att), free(tmp), free(g), free(u), free(sc), free(xn2);
}

double rel_l2(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return sqrt(d / (r > 0 ? r : 1e-30));
}
