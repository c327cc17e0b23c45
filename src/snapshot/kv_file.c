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

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

dw_status dw_kv_save(const dw_session *s, const dw_tokenizer *tok, const char *path, dw_kv_report *report,
                     dw_error *err) {
    double t0 = now_ms();
    dw__snapfile_writer *w;
    dw_status st = dw__snapfile_writer_new("driftwood-kv", 1, &w, err);
    if (st != DW_OK) return st;
    dw__kv_export ex;
    st = dw__kv_session_export(s, tok, "", w, &ex, err);
    if (st == DW_OK) {
        uint64_t bytes = 0;
        st = dw__snapfile_write(w, path, &bytes, err);
        if (report) *report = (dw_kv_report){dw_session_n_tokens(s), 0, now_ms() - t0, bytes};
    }
    dw__kv_export_free(&ex);
    dw__snapfile_writer_free(w);
    return st;
}

dw_status dw_kv_load(dw_session *s, const dw_tokenizer *tok, const char *path, dw_kv_report *report, dw_error *err) {
    double t0 = now_ms();
    dw_safetensors *st;
    dw_status rc = dw__snapfile_open(path, "driftwood-kv", 1, &st, err);
    if (rc != DW_OK) return rc;
    int rebuilt = 0;
    rc = dw__kv_session_import(s, tok, st, "", &rebuilt, err);
    if (report) {
        FILE *f = fopen(path, "rb");
        uint64_t bytes = 0;
        if (f && fseek(f, 0, SEEK_END) == 0) bytes = (uint64_t)ftell(f);
        if (f) fclose(f);
        *report = (dw_kv_report){dw_session_n_tokens(s), rebuilt, now_ms() - t0, bytes};
    }
    dw_safetensors_close(st);
    return rc;
}
