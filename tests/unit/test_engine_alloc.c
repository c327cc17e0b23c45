/* The decode loop allocates nothing: malloc, calloc, realloc and aligned_alloc are interposed
 * for this test binary (forwarding to glibc's own) and counted while a session decodes and the
 * sampler samples. Outside a counted window the wrappers only forward. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driftwood/backend.h"
#include "driftwood/engine.h"
#include "driftwood/model.h"
#include "driftwood/sampler.h"
#include "test.h"
#include "test_engine_util.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_int counting;
static atomic_long n_allocs;

void *malloc(size_t n) {
    if (atomic_load_explicit(&counting, memory_order_relaxed)) atomic_fetch_add(&n_allocs, 1);
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t size) {
    if (atomic_load_explicit(&counting, memory_order_relaxed)) atomic_fetch_add(&n_allocs, 1);
    return __libc_calloc(n, size);
}
void *realloc(void *p, size_t n) {
    if (atomic_load_explicit(&counting, memory_order_relaxed)) atomic_fetch_add(&n_allocs, 1);
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t align, size_t n) {
    if (atomic_load_explicit(&counting, memory_order_relaxed)) atomic_fetch_add(&n_allocs, 1);
    return __libc_memalign(align, n);
}

TEST(engine_decode_loop_allocates_nothing) {
    dw_error err = {0};
    char dir[512];
    snprintf(dir, sizeof dir, "%s/alloc-model", dw_test_tmp_dir());
    tmodel_spec spec = tmodel_default();
    tmodel tm;
    CHECK_OK(tmodel_write(&spec, dir, 1, &tm, &err));
    tmodel_free(&tm);
    dw_backend *be;
    dw_model *m;
    dw_session *s;
    dw_sampler *smp;
    CHECK_OK(dw_backend_open("cpu", &be, &err));
    CHECK_OK(dw_model_load(dir, be, NULL, &m, &err));
    CHECK_OK(dw_session_create(m, NULL, &s, &err));
    dw_sampler_params sp = dw_sampler_default_params();
    sp.temperature = 0.8f, sp.top_p = 0.9f, sp.top_k = 20, sp.repetition_penalty = 1.1f;
    CHECK_OK(dw_sampler_create(&sp, spec.vocab, &smp, &err));
    float *logits = malloc(sizeof(float) * spec.vocab);
    int32_t prompt[5] = {1, 5, 9, 13, 17};
    CHECK_OK(dw_session_prefill(s, prompt, 5, logits, &err));
    /* the allocator itself counts: make sure a counted call would be seen */
    atomic_store(&counting, 1);
    void *volatile probe = malloc(16); /* volatile: the pair must not be optimized away */
    free(probe);
    atomic_store(&counting, 0);
    CHECK(atomic_exchange(&n_allocs, 0) == 1);

    atomic_store(&counting, 1);
    dw_status st = DW_OK;
    for (int i = 0; i < 40 && st == DW_OK; i++) {
        int32_t next;
        st = dw_sampler_sample(smp, logits, dw_session_tokens(s), dw_session_n_tokens(s), &next, &err);
        if (st == DW_OK) st = dw_session_decode(s, next, logits, &err);
    }
    atomic_store(&counting, 0);
    long seen = atomic_exchange(&n_allocs, 0);
    CHECK_OK(st);
    CHECK_MSG(seen == 0, "%ld allocations during 40 decode steps", seen);
    /* sampling on the device, a token a call (as the chat actor asks) */
    const dw_device_sampling ds = {.temperature = 0.8f, .top_p = 0.9f, .top_k = 20};
    int32_t tok = 3;
    atomic_store(&counting, 1);
    for (int i = 0; i < 40 && st == DW_OK; i++) {
        const double u = (double)i / 40.0;
        st = dw_session_decode_sample(s, tok, 1, &ds, &u, &tok, &err);
    }
    atomic_store(&counting, 0);
    seen = atomic_exchange(&n_allocs, 0);
    CHECK_OK(st);
    CHECK_MSG(seen == 0, "%ld allocations during 40 sampled decode steps", seen);
    free(logits);
    dw_sampler_free(smp);
    dw_session_free(s);
    dw_model_free(m);
    dw_backend_close(be);
}
