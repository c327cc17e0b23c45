/* Parity with Hugging Face transformers on the committed goldens (tests/data/models/<variant>/,
 * made by tests/py/gen_goldens.py): logits at every one of 64 positions within 1e-2 relative
 * error (‖Δ‖/‖ref‖ per position) and 64 greedy tokens identical, for each variant, with the
 * KV cache in BF16 (the default) and in F32. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driftwood/backend.h"
#include "driftwood/engine.h"
#include "driftwood/model.h"
#include "driftwood/safetensors.h"
#include "test.h"

#define TOL 1e-2

static const char *data_dir(void) {
    const char *src = getenv("DW_SOURCE_DIR");
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/tests/data/models", src && *src ? src : ".");
    return buf;
}

static double row_rel(const float *a, const float *b, int n) {
    double d = 0, r = 0;
    for (int i = 0; i < n; i++) d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), r += (double)b[i] * b[i];
    return sqrt(d / r);
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Checks one variant directory; returns 0 when it passes, else prints why. */
static int check_variant(const char *dir, int kv_f32, double *max_err, double *max_err_bf16) {
    char path[1200];
    dw_error err = {0};
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    dw_safetensors *g = NULL;
    dw_backend *be = NULL;
    dw_model *m = NULL;
    dw_session *s = NULL;
    float *logits = NULL, *one = NULL;
    int fail = 1;
    if (dw_safetensors_open(path, &g, &err) || dw_backend_open("cpu", &be, &err) || dw_model_load(dir, be, NULL, &m, &err))
        goto out;
    const dw_tensor_info *prompt = dw_safetensors_find(g, "prompt_ids"), *ref = dw_safetensors_find(g, "logits"),
                         *ref16 = dw_safetensors_find(g, "logits_hf_bf16"), *greedy = dw_safetensors_find(g, "greedy_ids");
    int V = dw_model_get_config(m)->vocab_size;
    if (!prompt || !ref || !ref16 || !greedy || prompt->dtype != DW_DTYPE_I32 || ref->dtype != DW_DTYPE_F32 ||
        ref->ndim != 2 || ref->shape[1] != V || ref->shape[0] != prompt->shape[0]) {
        fprintf(stderr, "    %s: malformed golden file\n", path);
        goto out;
    }
    int n = (int)prompt->shape[0], ng = (int)greedy->shape[0];
    const int32_t *ids = prompt->data, *want_ids = greedy->data;
    dw_session_options so = {.ctx = n + ng, .kv_f32 = kv_f32};
    logits = malloc(sizeof(float) * (size_t)n * V);
    one = malloc(sizeof(float) * V);
    if (dw_session_create(m, &so, &s, &err) || dw_session_prefill_all(s, ids, n, logits, &err)) goto out;
    *max_err = *max_err_bf16 = 0;
    for (int t = 0; t < n; t++) {
        double e = row_rel(logits + (size_t)t * V, (const float *)ref->data + (size_t)t * V, V);
        double e16 = row_rel(logits + (size_t)t * V, (const float *)ref16->data + (size_t)t * V, V);
        if (e > *max_err || e != e) *max_err = e;
        if (e16 > *max_err_bf16) *max_err_bf16 = e16;
    }
    if (!(*max_err < TOL)) {
        fprintf(stderr, "    %s (kv %s): logits max relative error %.3e >= %.0e\n", dir, kv_f32 ? "f32" : "bf16",
                *max_err, TOL);
        goto out;
    }
    /* greedy: the engine's own logits pick each next token, decoded one at a time */
    memcpy(one, logits + (size_t)(n - 1) * V, sizeof(float) * V);
    for (int i = 0; i < ng; i++) {
        int next = argmax(one, V);
        if (next != want_ids[i]) {
            fprintf(stderr, "    %s (kv %s): greedy token %d is %d, transformers gives %d\n", dir, kv_f32 ? "f32" : "bf16",
                    i, next, want_ids[i]);
            goto out;
        }
        if (i + 1 < ng && dw_session_decode(s, next, one, &err)) goto out;
    }
    fail = 0;
out:
    if (err.message[0]) fprintf(stderr, "    %s: %s\n", dir, err.message);
    free(logits), free(one);
    dw_session_free(s);
    dw_model_free(m);
    dw_backend_close(be);
    dw_safetensors_close(g);
    return fail;
}

TEST(engine_parity_with_transformers_goldens) {
    DIR *d = opendir(data_dir());
    CHECK_MSG(d != NULL, "%s: no goldens (tests/py/gen_goldens.py makes them)", data_dir());
    struct dirent *e;
    int n_variants = 0, failures = 0;
    char names[32][256];
    while ((e = readdir(d)) && n_variants < 32) {
        if (e->d_name[0] == '.') continue;
        char golden[1400];
        snprintf(golden, sizeof golden, "%s/%s/golden.safetensors", data_dir(), e->d_name);
        FILE *f = fopen(golden, "rb");
        if (!f) continue;
        fclose(f);
        snprintf(names[n_variants++], sizeof names[0], "%s", e->d_name);
    }
    closedir(d);
    CHECK_MSG(n_variants >= 6, "expected at least 6 golden variants in %s, found %d", data_dir(), n_variants);
    for (int i = 0; i < n_variants; i++) {
        char dir[1536];
        snprintf(dir, sizeof dir, "%.1024s/%.255s", data_dir(), names[i]);
        double e32, e32h, e16, e16h;
        failures += check_variant(dir, 1, &e32, &e32h);
        failures += check_variant(dir, 0, &e16, &e16h);
        printf("    %-20s max rel error vs HF f32: %.1e (kv f32), %.1e (kv bf16); vs HF bf16 compute: %.1e\n", names[i], e32,
               e16, e16h);
    }
    CHECK_MSG(failures == 0, "%d variant checks failed", failures);
}
