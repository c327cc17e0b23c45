/* The CUDA backend under hostile inputs (issue 21): a quantized model whose tensors lie about
 * their shape, a guest whose logits pointer straddles the end of its memory, and a KV cache larger
 * than the device: each is a clear error, never a device fault, and other work on the same
 * backend (another model, another actor) goes on. Skipped without a GPU (test_cuda.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "driftwood/actor.h"
#include "driftwood/engine.h"
#include "driftwood/file.h"
#include "driftwood/model.h"
#include "driftwood/runtime.h"
#include "test.h"
#include "test_actor_call.h"
#include "test_cuda.h"
#include "test_engine_util.h"

static void model_dir(char *out, size_t size, const char *what) {
    static int n;
    snprintf(out, size, "%s/cuda-hostile-%s-%d", dw_test_tmp_dir(), what, n++);
}

/* Greedy tokens of a short prompt on m: the proof that the backend still computes. */
static dw_status greedy_ids(dw_model *m, int n, int32_t *out, dw_error *err) {
    dw_session *s;
    dw_status st = dw_session_create(m, NULL, &s, err);
    if (st) return st;
    const int32_t prompt[4] = {3, 1, 4, 1};
    float *lg = malloc(sizeof(float) * (size_t)dw_model_get_config(m)->vocab_size);
    st = dw_session_prefill(s, prompt, 4, lg, err);
    if (!st) st = dw_session_decode_greedy(s, prompt[3], n, out, err);
    free(lg);
    dw_session_free(s);
    return st;
}

TEST(cuda_refuses_quantized_weights_with_lying_shapes_and_keeps_running) {
    dw_error err;
    dw_backend *cu;
    OPEN_CUDA_OR_SKIP(cu);
    char dir[512], qdir[512];
    model_dir(dir, sizeof dir, "f");
    model_dir(qdir, sizeof qdir, "q");
    tmodel_spec spec = tmodel_default();
    spec.hidden = 128, spec.inter = 256, spec.heads = 4, spec.kv_heads = 2, spec.head_dim = 32;
    tmodel tm;
    CHECK_OK(tmodel_write(&spec, dir, 1, &tm, &err));
    CHECK_OK(dw_model_quantize(dir, qdir, 4, 64, &err));
    dw_model *good;
    CHECK_OK(dw_model_load(qdir, cu, NULL, &good, &err));
    int32_t before[8], after[8];
    CHECK_OK(greedy_ids(good, 8, before, &err));

    /* the same tensors, but config.json now says groups of 32: every scales tensor has half the
     * columns the shape needs */
    char path[600], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", qdir);
    CHECK_OK(dw_file_read_all(path, 1 << 20, &text, &len, &err));
    char *g = strstr(text, "\"group_size\": 64");
    CHECK_MSG(g != NULL, "no group_size 64 in %s", path);
    if (g) {
        memcpy(g, "\"group_size\": 32", 16);
        CHECK_OK(dw_file_write_atomic(path, text, len, &err));
    }
    free(text);
    dw_model *lying = NULL;
    dw_status st = dw_model_load(qdir, cu, NULL, &lying, &err);
    CHECK(st != DW_OK && lying == NULL);
    CHECK_MSG(strstr(err.message, "scales") != NULL, "message: %s", err.message);

    CHECK_OK(greedy_ids(good, 8, after, &err)); /* the backend computes as before */
    CHECK(!memcmp(before, after, sizeof before));
    dw_model_free(good);
    dw_backend_close(cu);
    tmodel_free(&tm);
}

TEST(cuda_kv_cache_larger_than_the_device_is_a_clear_error) {
    dw_error err;
    dw_backend *cu;
    OPEN_CUDA_OR_SKIP(cu);
    char dir[512];
    model_dir(dir, sizeof dir, "kv");
    tmodel_spec spec = tmodel_default();
    spec.hidden = 512, spec.inter = 256, spec.heads = 16, spec.kv_heads = 16, spec.head_dim = 32;
    spec.layers = 8, spec.max_pos = 1 << 24; /* 16 M positions x 8 layers x K,V x 16 x 32 bf16: 256 GiB */
    tmodel tm;
    CHECK_OK(tmodel_write(&spec, dir, 1, &tm, &err));
    dw_model *m;
    CHECK_OK(dw_model_load(dir, cu, NULL, &m, &err));
    dw_session *s = NULL;
    dw_session_options huge = {.ctx = 1 << 24};
    dw_status st = dw_session_create(m, &huge, &s, &err);
    CHECK(st == DW_ERR_NO_MEMORY && s == NULL);
    CHECK_MSG(strstr(err.message, "KV cache") != NULL, "message: %s", err.message);
    int32_t ids[8];
    CHECK_OK(greedy_ids(m, 8, ids, &err)); /* a session that fits still runs */
    dw_model_free(m);
    dw_backend_close(cu);
    tmodel_free(&tm);
}

/* Two actors of llm_probe on the CUDA backend. */
typedef struct two_actors {
    dw_runtime *rt;
    dw_module *module;
    dw_actor *a, *b;
} two_actors;

TEST(cuda_guest_logits_past_its_memory_trap_and_other_actors_run_on) {
    SKIP_WITHOUT_CUDA(); /* the actors open their own through the runtime */
    dw_error err;
    two_actors t = {0};
    char path[512], cache[600];
    snprintf(path, sizeof path, "%s/guests/llm_probe.wasm", dw_test_build_dir());
    snprintf(cache, sizeof cache, "%s/modules", dw_test_tmp_dir());
    dw_runtime_options ro = {.module_cache_dir = cache};
    dw_actor_options ao = {.backend = "cuda"};
    CHECK_OK(dw_runtime_create(&ro, &t.rt, &err));
    CHECK_OK(dw_runtime_register_model(t.rt, "default", dw_test_model_dir(), &err));
    CHECK_OK(dw_module_load_file(t.rt, path, &t.module, &err));
    CHECK_OK(dw_actor_create(t.rt, t.module, &ao, &t.a, &err));
    CHECK_OK(dw_actor_create(t.rt, t.module, &ao, &t.b, &err));
    int32_t hash_before, hash_after, s, r;
    CHECK_OK(actor_call(t.b, "greedy_hash", 2, 24, 7, &hash_before, &err));
    CHECK(hash_before >= 0);

    CHECK_OK(actor_call(t.a, "new_session", 1, 64, 0, &s, &err));
    CHECK(s > 0);
    /* logits 64 bytes before the end of a's memory, with room claimed for 2^20 floats */
    dw_status st = actor_call(t.a, "decode_bad_pointer", 1, s, 0, &r, &err);
    CHECK(st == DW_ERR_TRAP);
    CHECK_MSG(strstr(err.message, "dw.decode") != NULL || strstr(err.message, "decode") != NULL, "message: %s",
              err.message);

    CHECK_OK(actor_call(t.b, "greedy_hash", 2, 24, 7, &hash_after, &err)); /* b is untouched */
    CHECK(hash_after == hash_before);
    dw_actor_free(t.a);
    dw_actor_free(t.b);
    dw_module_free(t.module);
    dw_runtime_free(t.rt);
}
