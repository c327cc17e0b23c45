/* `driftwood bench snapshot`: what a KV snapshot saves — for contexts of several lengths, the
 * time to save the cache, the file size, the time to restore it into a fresh session, and the
 * time to rebuild it by prefilling the same tokens again (the alternative a snapshot replaces). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/bench_util.h"
#include "cli/command.h"
#include "driftwood/model.h"
#include "driftwood/snapshot.h"

#define MAX_SIZES 8

typedef struct row {
    int tokens;
    double prefill_ms, save_ms, restore_ms;
    uint64_t file_bytes, kv_bytes_per_token;
} row;

static int parse_sizes(const char *text, int *sizes) {
    int n = 0;
    char buf[256], *save = NULL;
    snprintf(buf, sizeof buf, "%s", text);
    for (char *t = strtok_r(buf, ",", &save); t && n < MAX_SIZES; t = strtok_r(NULL, ",", &save)) {
        long v;
        if (dw_cli_parse_long("--tokens", t, 1, 1 << 20, &v)) return -1;
        sizes[n++] = (int)v;
    }
    return n;
}

static dw_status measure(dw_model *model, dw_tokenizer *tok, int T, int reps, const char *path, row *r, dw_error *err) {
    const dw_model_config *c = dw_model_get_config(model);
    dw_session_options so = {.ctx = T + 8};
    dw_session *a = NULL, *b = NULL;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
    double *pre = calloc((size_t)reps, sizeof *pre), *sav = calloc((size_t)reps, sizeof *sav),
           *res = calloc((size_t)reps, sizeof *res);
    dw_status st = dw_session_create(model, &so, &a, err);
    if (!st) st = dw_session_create(model, &so, &b, err);
    for (int i = 0; i < T; i++) ids[i] = (int32_t)(((uint32_t)i * 104729u + 17u) % (uint32_t)c->vocab_size);
    for (int k = 0; k < reps && !st; k++) {
        dw_session_reset(a);
        double t0 = dw_cli_now_ms();
        for (int i = 0; i < T && !st; i += 512) st = dw_session_prefill(a, ids + i, T - i < 512 ? T - i : 512, NULL, err);
        pre[k] = dw_cli_now_ms() - t0;
        dw_kv_report rep;
        if (!st) st = dw_kv_save(a, tok, path, NULL, &rep, err);
        sav[k] = rep.ms, r->file_bytes = rep.file_bytes;
        if (!st) st = dw_kv_load(b, tok, path, NULL, &rep, err);
        res[k] = rep.ms;
        if (!st && dw_session_n_tokens(b) != T) st = dw_error_set(err, DW_ERR_STATE, "restored %d tokens, not %d", dw_session_n_tokens(b), T);
    }
    r->tokens = T;
    r->prefill_ms = dw_cli_median(pre, (size_t)reps);
    r->save_ms = dw_cli_median(sav, (size_t)reps);
    r->restore_ms = dw_cli_median(res, (size_t)reps);
    r->kv_bytes_per_token = (uint64_t)c->n_layers * 2 * (uint64_t)c->n_kv_heads * (uint64_t)c->head_dim *
                            dw_dtype_size(dw_session_kv_dtype(a));
    free(ids), free(pre), free(sav), free(res);
    dw_session_free(a), dw_session_free(b);
    unlink(path);
    return st;
}

DW_COMMAND_NAMED(bench_snapshot, "bench snapshot",
                 "bench snapshot [--model DIR] [--backend cpu|cuda] [--tokens 24,512,4096] [--reps N] [--json]",
                 "KV snapshot save / restore time and size against prefilling the same tokens again") {
    const char *model_dir = NULL, *backend = "cpu", *sizes_text = "24,512,4096";
    long reps = 3;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) model_dir = v, i++;
        else if (!strcmp(a, "--backend") && v) backend = v, i++;
        else if (!strcmp(a, "--tokens") && v) sizes_text = v, i++;
        else if (!strcmp(a, "--reps") && v) { if (dw_cli_parse_long(a, v, 1, 50, &reps)) return 1; i++; }
        else if (!strcmp(a, "--json")) json = 1;
        else return dw_cli_fail("bench snapshot: unknown or incomplete option '%s'", a);
    }
    int sizes[MAX_SIZES], n_sizes = parse_sizes(sizes_text, sizes);
    if (n_sizes <= 0) return dw_cli_fail("bench snapshot: --tokens expects a list like 24,512,4096");
    if (!model_dir) model_dir = dw_cli_default_model_dir();
    dw_error err = {0};
    dw_backend *be = NULL;
    dw_model *model = NULL;
    dw_tokenizer *tok = NULL;
    char path[64];
    snprintf(path, sizeof path, "/tmp/dw-bench-snapshot-%d.kv", (int)getpid());
    row rows[MAX_SIZES];
    int rc = 1;
    if (dw_backend_open(backend, &be, &err) || dw_model_load(model_dir, be, NULL, &model, &err)) goto fail;
    if (!(tok = dw_model_tokenizer(model))) {
        dw_error_set(&err, DW_ERR_NOT_FOUND, "%s: no tokenizer.json", model_dir);
        goto fail;
    }
    /* the model's fingerprint hashes its weights once (then cached on disk): timed apart */
    dw_fingerprint fp;
    double t_fp = dw_cli_now_ms();
    if (dw_model_fingerprint(model, tok, &fp, &err)) goto fail;
    t_fp = dw_cli_now_ms() - t_fp;
    for (int i = 0; i < n_sizes; i++) {
        if (sizes[i] + 8 > dw_model_get_config(model)->max_position_embeddings) {
            dw_error_set(&err, DW_ERR_LIMIT, "%d tokens exceed the model's context", sizes[i]);
            goto fail;
        }
        if (measure(model, tok, sizes[i], (int)reps, path, &rows[i], &err)) goto fail;
    }
    if (json) {
        printf("{\"model\": \"%s\", \"backend\": \"%s\", \"reps\": %ld, \"fingerprint_ms\": %.1f, \"rows\": [", model_dir,
               backend, reps, t_fp);
        for (int i = 0; i < n_sizes; i++)
            printf("%s{\"tokens\": %d, \"save_ms\": %.3f, \"file_bytes\": %llu, \"restore_ms\": %.3f, \"prefill_ms\": %.3f, "
                   "\"speedup\": %.2f, \"kv_bytes_per_token\": %llu}",
                   i ? ", " : "", rows[i].tokens, rows[i].save_ms, (unsigned long long)rows[i].file_bytes, rows[i].restore_ms,
                   rows[i].prefill_ms, rows[i].prefill_ms / rows[i].restore_ms, (unsigned long long)rows[i].kv_bytes_per_token);
        printf("]}\n");
    } else {
        printf("KV snapshots on %s, model %s (median of %ld; model fingerprint %.1f ms, cached on disk after the first)\n",
               backend, model_dir, reps, t_fp);
        printf("  %8s %10s %12s %12s %14s %10s %14s\n", "tokens", "save ms", "file bytes", "restore ms", "re-prefill ms",
               "speed-up", "KV bytes/token");
        for (int i = 0; i < n_sizes; i++)
            printf("  %8d %10.2f %12llu %12.2f %14.1f %9.1fx %14llu\n", rows[i].tokens, rows[i].save_ms,
                   (unsigned long long)rows[i].file_bytes, rows[i].restore_ms, rows[i].prefill_ms,
                   rows[i].prefill_ms / rows[i].restore_ms, (unsigned long long)rows[i].kv_bytes_per_token);
    }
    rc = 0;
    goto done;
fail:
    dw_cli_fail("bench snapshot: %s", err.message);
done:
    dw_model_free(model);
    dw_backend_close(be);
    return rc;
}
