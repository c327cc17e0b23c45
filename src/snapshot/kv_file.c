/* KV snapshot files (format in include/driftwood/snapshot.h): a session's cache out to a file
 * and back, or rebuilt from the history's text when the file came from another model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "driftwood/model.h"
#include "driftwood/snapshot.h"
#include "snapshot/fingerprint.h"
#include "snapshot/kv_session.h"
#include "snapshot/snapshot_file.h"
#include "core/clock.h"

dw_status dw_kv_save(const dw_session *s, const dw_tokenizer *tok, const char *path, const dw_kv_extras *extras,
                     dw_kv_report *report, dw_error *err) {
    double t0 = dw__now_ms();
    dw__snapfile_writer *w;
    dw_status st = dw__snapfile_writer_new("driftwood-kv", 1, &w, err);
    if (st != DW_OK) return st;
    dw__kv_export ex;
    st = dw__kv_session_export(s, tok, "", w, &ex, err);
    if (st == DW_OK && extras && extras->logits) {
        int64_t shape[1] = {extras->n_logits};
        st = dw__snapfile_add(w, "logits", DW_DTYPE_F32, 1, shape, extras->logits, sizeof(float) * (size_t)extras->n_logits, err);
    }
    if (st == DW_OK && extras && extras->sampler_state) {
        int64_t shape[1] = {DW_SAMPLER_STATE_SIZE};
        st = dw__snapfile_add(w, "sampler", DW_DTYPE_U8, 1, shape, extras->sampler_state, DW_SAMPLER_STATE_SIZE, err);
    }
    if (st == DW_OK) {
        uint64_t bytes = 0;
        st = dw__snapfile_write(w, path, &bytes, err);
        if (report) *report = (dw_kv_report){dw_session_n_tokens(s), 0, dw__now_ms() - t0, bytes};
    }
    dw__kv_export_free(&ex);
    dw__snapfile_writer_free(w);
    return st;
}

/* The optional extras, checked before the session changes. Their format is checked always; the
 * logits' length only for the same model (they belong to it: for another model they are
 * dropped with the cache, so its vocabulary may differ). */
static dw_status check_extras(const dw_safetensors *st, const dw_tensor_info *logits, const dw_tensor_info *sampler,
                              int same_model, const dw_kv_extras *extras, dw_error *err) {
    const char *path = dw_safetensors_path(st);
    if (logits && (logits->dtype != DW_DTYPE_F32 || logits->ndim != 1))
        return dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: tensor 'logits' must be F32 [vocab]", path);
    if (sampler && (sampler->dtype != DW_DTYPE_U8 || sampler->nbytes != DW_SAMPLER_STATE_SIZE))
        return dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: tensor 'sampler' must be U8 [%d]", path, DW_SAMPLER_STATE_SIZE);
    if (sampler && extras->sampler_state && dw_sampler_state_check(sampler->data, err) != DW_OK)
        return dw_error_prefix(err, "snapshot %s: tensor 'sampler'", path);
    if (same_model && logits && extras->logits && logits->shape[0] != extras->n_logits)
        return dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: %lld logits saved, the model's vocabulary is %d", path,
                            (long long)logits->shape[0], extras->n_logits);
    return DW_OK;
}

dw_status dw_kv_load(dw_session *s, const dw_tokenizer *tok, const char *path, dw_kv_extras *extras,
                     dw_kv_report *report, dw_error *err) {
    double t0 = dw__now_ms();
    dw_safetensors *st;
    dw_status rc = dw__snapfile_open(path, "driftwood-kv", 1, &st, err);
    if (rc != DW_OK) return rc;
    int same = 0;
    const dw_tensor_info *logits = dw_safetensors_find(st, "logits"), *sampler = dw_safetensors_find(st, "sampler");
    if (extras) extras->has_logits = extras->has_sampler_state = 0;
    rc = dw__kv_session_same_model(s, tok, st, "", &same, err);
    if (rc == DW_OK && extras) rc = check_extras(st, logits, sampler, same, extras, err);
    if (rc == DW_OK) rc = dw__kv_session_restore(s, tok, st, "", same, err);
    if (rc == DW_OK && extras) {
        /* after another model's cache, saved logits mean nothing; the sampler's state still holds */
        if (same && logits && extras->logits) memcpy(extras->logits, logits->data, logits->nbytes), extras->has_logits = 1;
        if (sampler && extras->sampler_state)
            memcpy(extras->sampler_state, sampler->data, DW_SAMPLER_STATE_SIZE), extras->has_sampler_state = 1;
    }
    if (report) {
        FILE *f = fopen(path, "rb");
        uint64_t bytes = 0;
        if (f && fseek(f, 0, SEEK_END) == 0) bytes = (uint64_t)ftell(f);
        if (f) fclose(f);
        *report = (dw_kv_report){dw_session_n_tokens(s), !same, dw__now_ms() - t0, bytes};
    }
    dw_safetensors_close(st);
    return rc;
}
