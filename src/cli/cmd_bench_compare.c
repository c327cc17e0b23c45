/* `driftwood bench compare`: the decode speed of two models (e.g. a bf16 model and its 4-bit
 * copy) measured token by token in turn in one process, so both see the machine as it is at that
 * moment: on a shared machine whose memory bandwidth swings within seconds, two separate
 * `bench decode` runs can differ by the swing, while adjacent tokens cannot. Reports each model's
 * decode tok/s and the speed ratio B/A, over the whole run and as the median of adjacent pairs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/bench_util.h"
#include "cli/command.h"
#include "driftwood/backend.h"
#include "driftwood/engine.h"
#include "driftwood/guest.h" /* dw_argmax_f32 */
#include "driftwood/model.h"

/* One side of the comparison: its model, a session holding the prompt, and its token times. */
typedef struct side {
    const char *dir;
    dw_model *model;
    dw_session *session;
    float *logits;
    int vocab;
    int32_t next;
    double *ms; /* per decoded token */
    double total_ms;
} side;

static dw_status side_open(side *x, dw_backend *be, long n_prompt, long n_gen, dw_error *err) {
    dw_status st = dw_model_load(x->dir, be, NULL, &x->model, err);
    if (st) return st;
    x->vocab = dw_model_get_config(x->model)->vocab_size;
    dw_session_options so = {.ctx = (int)(n_prompt + n_gen + 1)};
    if ((st = dw_session_create(x->model, &so, &x->session, err))) return st;
    x->logits = malloc(sizeof(float) * (size_t)x->vocab);
    x->ms = malloc(sizeof(double) * (size_t)n_gen);
    if (!x->logits || !x->ms) return dw_error_set(err, DW_ERR_NO_MEMORY, "bench compare: out of memory");
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n_prompt);
    if (!ids) return dw_error_set(err, DW_ERR_NO_MEMORY, "bench compare: out of memory");
    uint32_t r = 12345;
    for (long i = 0; i < n_prompt; i++) {
        r = r * 1664525u + 1013904223u;
        ids[i] = (int32_t)((r >> 8) % (uint32_t)x->vocab);
    }
    st = dw_session_prefill(x->session, ids, (int)n_prompt, x->logits, err);
    free(ids);
    x->next = dw_argmax_f32(x->logits, x->vocab);
    return st;
}

static dw_status side_step(side *x, long g, dw_error *err) {
    const double t0 = dw_cli_now_ms();
    dw_status st = dw_session_decode(x->session, x->next, x->logits, err);
    x->ms[g] = dw_cli_now_ms() - t0;
    x->total_ms += x->ms[g];
    x->next = dw_argmax_f32(x->logits, x->vocab);
    return st;
}

static void side_close(side *x) {
    dw_session_free(x->session);
    dw_model_free(x->model);
    free(x->logits), free(x->ms);
}

DW_COMMAND_NAMED(bench_compare, "bench compare",
                 "bench compare --model DIR --model-b DIR [--backend cpu|cuda] [--prompt-tokens N] [--gen-tokens N] "
                 "[--json]",
                 "decode tok/s of two models measured token by token in turn, and their speed ratio") {
    const char *backend_name = "cpu";
    long n_prompt = 64, n_gen = 64;
    int json = 0;
    side a = {0}, b = {0};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = 0;
        if (!strcmp(o, "--model") && v) a.dir = v, i++;
        else if (!strcmp(o, "--model-b") && v) b.dir = v, i++;
        else if (!strcmp(o, "--backend") && v) backend_name = v, i++;
        else if (!strcmp(o, "--prompt-tokens") && v) r = dw_cli_parse_long(o, v, 1, 1 << 20, &n_prompt), i++;
        else if (!strcmp(o, "--gen-tokens") && v) r = dw_cli_parse_long(o, v, 2, 1 << 20, &n_gen), i++;
        else if (!strcmp(o, "--json")) json = 1;
        else return dw_cli_fail("bench compare: unexpected argument '%s'", o);
        if (r) return 1;
    }
    if (!a.dir || !b.dir) return dw_cli_fail("bench compare: both --model DIR and --model-b DIR are required");

    dw_error err = {0};
    dw_backend *be = NULL;
    double *pair = NULL;
    int rc = 1;
    if (dw_backend_open(backend_name, &be, &err) || side_open(&a, be, n_prompt, n_gen, &err) ||
        side_open(&b, be, n_prompt, n_gen, &err))
        goto fail;
    pair = malloc(sizeof(double) * (size_t)n_gen);
    if (!pair) {
        dw_error_set(&err, DW_ERR_NO_MEMORY, "bench compare: out of memory");
        goto fail;
    }
    for (long g = 0; g < n_gen; g++) { /* A then B, then B then A: neither always goes first */
        side *first = g % 2 ? &b : &a, *second = g % 2 ? &a : &b;
        if (side_step(first, g, &err) || side_step(second, g, &err)) goto fail;
        pair[g] = a.ms[g] / b.ms[g];
    }
    const double tps_a = n_gen / (a.total_ms / 1e3), tps_b = n_gen / (b.total_ms / 1e3);
    const double ratio = tps_b / tps_a, pair_median = dw_cli_median(pair, (size_t)n_gen);
    if (json) {
        printf("{\"model\": \"%s\", \"model_b\": \"%s\", \"backend\": \"%s\", \"prompt_tokens\": %ld, "
               "\"gen_tokens\": %ld, \"decode_tok_s\": %.3f, \"decode_tok_s_b\": %.3f, \"speed_ratio_b_over_a\": %.4f, "
               "\"pair_ratio_median\": %.4f, \"decode_ms_median\": %.3f, \"decode_ms_median_b\": %.3f}\n",
               a.dir, b.dir, backend_name, n_prompt, n_gen, tps_a, tps_b, ratio, pair_median,
               dw_cli_median(a.ms, (size_t)n_gen), dw_cli_median(b.ms, (size_t)n_gen));
    } else {
        printf("A                %s: %.3f tok/s (median %.2f ms/token)\n", a.dir, tps_a,
               dw_cli_median(a.ms, (size_t)n_gen));
        printf("B                %s: %.3f tok/s (median %.2f ms/token)\n", b.dir, tps_b,
               dw_cli_median(b.ms, (size_t)n_gen));
        printf("B / A            %.3fx over the run; median of %ld adjacent pairs %.3fx\n", ratio, n_gen, pair_median);
    }
    rc = 0;
    goto done;
fail:
    rc = dw_cli_fail("%s", err.message);
done:
    free(pair);
    side_close(&a);
    side_close(&b);
    dw_backend_close(be);
    return rc;
}
