/* Fuzz target: KV files (dw_kv_load) into a session of the tiny model (models/driftwood-tiny),
 * loaded once per process. Inputs are resealed (fuzz/support/fuzz_reseal.c) so that mutations
 * get past the checksum. After a load that succeeds, one token is decoded on the restored cache
 * and the session is reset, so every input starts from the same empty session. */
#include <stdio.h>
#include <stdlib.h>

#include "driftwood/backend.h"
#include "driftwood/engine.h"
#include "driftwood/model.h"
#include "driftwood/snapshot.h"
#include "fuzz_support.h"

#define SESSION_CTX 64

static dw_backend *backend;
static dw_model *model;
static dw_session *session;
static float *logits;
static int vocab;

static void die(const char *what, const dw_error *err) {
    fprintf(stderr, "fuzz_kv_file: %s: %s\n", what, err->message);
    exit(2);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_single_thread();
    dw_error err;
    if (dw_backend_open("cpu", &backend, &err) != DW_OK) die("cpu backend", &err);
    if (dw_model_load(fuzz_model_dir(), backend, NULL, &model, &err) != DW_OK) die(fuzz_model_dir(), &err);
    if (dw_session_create(model, &(dw_session_options){.ctx = SESSION_CTX}, &session, &err) != DW_OK)
        die("session", &err);
    vocab = dw_model_get_config(model)->vocab_size;
    if (!(logits = malloc(sizeof *logits * (size_t)vocab))) exit(2);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_scratch_path("input.kv");
    fuzz_write_snapshot(path, data, size, NULL);
    uint8_t sampler_state[DW_SAMPLER_STATE_SIZE];
    dw_kv_extras extras = {.logits = logits, .n_logits = vocab, .sampler_state = sampler_state};
    dw_kv_report report;
    dw_error err;
    dw_status st = dw_kv_load(session, dw_model_tokenizer(model), path, &extras, &report, &err);
    fuzz_report("fuzz_kv_file", st, err.message);
    if (st == DW_OK) {
        if (dw_session_n_tokens(session) != report.n_tokens || report.n_tokens > SESSION_CTX) __builtin_trap();
        if (report.n_tokens < SESSION_CTX) dw_session_decode(session, 1, logits, &err);
    }
    dw_session_reset(session);
    return 0;
}
