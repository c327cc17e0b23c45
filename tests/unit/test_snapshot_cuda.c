/* Snapshots move between backends: a KV cache saved from a CUDA session restores into a CPU
 * session and the reverse, and generation goes on from it as from a cache the restoring backend
 * computed itself (logits within tolerance, the same greedy tokens). Passes without running when
 * there is no GPU, unless DW_REQUIRE_CUDA=1 (tools/gpu-check.sh). Model: the shipped tiny model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driftwood/engine.h"
#include "driftwood/model.h"
#include "driftwood/snapshot.h"
#include "driftwood/tokenizer.h"
#include "test.h"

typedef struct side {
    dw_backend *backend;
    dw_model *model;
} side;

static dw_status open_side(const char *backend, side *s, int batching, dw_error *err) {
    memset(s, 0, sizeof *s);
    dw_status st = dw_backend_open(backend, &s->backend, err);
    if (!st) st = dw_model_load(dw_test_model_dir(), s->backend, NULL, &s->model, err);
    dw_batch_options bo = {.kv_f32 = 1};
    if (!st && batching) st = dw_model_batching_start(s->model, &bo, err);
    return st;
}

static void close_side(side *s) {
    dw_model_free(s->model);
    dw_backend_close(s->backend);
}

static double rel_err(const float *a, const float *b, int n) {
    double d = 0, r = 0;
    for (int i = 0; i < n; i++) d += (double)(a[i] - b[i]) * (a[i] - b[i]), r += (double)b[i] * b[i];
    return sqrt(d / r);
}

static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Saves a cache computed on `from` and restores it on `to`; compares with `to` computing it. */
static void cross(const char *from_name, const char *to_name, int batching, int *failed_) {
    int *dw_test_failed_ = failed_;
    dw_error err;
    side from, to;
    dw_backend *probe;
    dw_status st = dw_backend_open("cuda", &probe, &err);
    const char *req = getenv("DW_REQUIRE_CUDA");
    if (st == DW_ERR_UNSUPPORTED && !(req && *req == '1')) {
        printf("    skipped: no CUDA device (%s)\n", err.message);
        return;
    }
    CHECK_OK(st);
    dw_backend_close(probe);
    CHECK_OK(open_side(from_name, &from, batching, &err));
    CHECK_OK(open_side(to_name, &to, batching, &err));
    char tok_path[600], kv[600];
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", dw_test_model_dir());
    snprintf(kv, sizeof kv, "%s/cross-%s-%s-%d.kv", dw_test_tmp_dir(), from_name, to_name, batching);
    dw_tokenizer *tok;
    CHECK_OK(dw_tokenizer_load(tok_path, &tok, &err));
    int vocab = dw_model_get_config(from.model)->vocab_size;
    const char *text = "And the LORD said unto Moses, Go unto Pharaoh, and say unto him";
    int32_t ids[64];
    size_t n;
    CHECK_OK(dw_tokenizer_encode(tok, text, strlen(text), DW_TOKENIZE_ADD_SPECIAL, ids, 64, &n, &err));
    float *la = malloc(sizeof(float) * (size_t)vocab), *lb = malloc(sizeof(float) * (size_t)vocab);
    dw_session_options so = {.ctx = 128, .kv_f32 = 1};
    dw_session *a, *restored, *own;
    CHECK_OK(dw_session_create(from.model, &so, &a, &err));
    CHECK_OK(dw_session_prefill(a, ids, (int)n, la, &err));
    CHECK_OK(dw_kv_save(a, tok, kv, NULL, NULL, &err));
    CHECK_OK(dw_session_create(to.model, &so, &restored, &err));
    CHECK_OK(dw_session_create(to.model, &so, &own, &err));
    dw_kv_report rep;
    CHECK_OK(dw_kv_load(restored, tok, kv, NULL, &rep, &err));
    CHECK(!rep.rebuilt && rep.n_tokens == (int)n); /* same model on another backend: the cache itself */
    CHECK_OK(dw_session_prefill(own, ids, (int)n, lb, &err));
    /* continue both greedily on the restoring backend */
    int32_t next = argmax(lb, vocab);
    for (int t = 0; t < 16; t++) {
        CHECK_OK(dw_session_decode(restored, next, la, &err));
        CHECK_OK(dw_session_decode(own, next, lb, &err));
        double e = rel_err(la, lb, vocab);
        CHECK_MSG(e < 1e-2, "%s -> %s step %d: logits differ by %.2e", from_name, to_name, t, e);
        CHECK_MSG(argmax(la, vocab) == argmax(lb, vocab), "%s -> %s step %d: greedy tokens differ", from_name, to_name, t);
        next = argmax(lb, vocab);
    }
    free(la), free(lb);
    dw_session_free(a), dw_session_free(restored), dw_session_free(own);
    dw_tokenizer_free(tok);
    close_side(&to), close_side(&from);
}

TEST(cuda_snapshot_taken_on_cuda_restores_on_cpu) { cross("cuda", "cpu", 0, dw_test_failed_); }
/* The same with batching on both sides: the caches live in blocks of a pool (paged KV). */
TEST(cuda_snapshot_with_batching_taken_on_cuda_restores_on_cpu) { cross("cuda", "cpu", 1, dw_test_failed_); }
TEST(cuda_snapshot_with_batching_taken_on_cpu_restores_on_cuda) { cross("cpu", "cuda", 1, dw_test_failed_); }
TEST(cuda_snapshot_taken_on_cpu_restores_on_cuda) { cross("cpu", "cuda", 0, dw_test_failed_); }
