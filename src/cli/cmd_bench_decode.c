/* `driftwood bench decode`: prefill and decode speed of a model, and decode as a fraction of the
 * memory-bandwidth bound (weight bytes read per token ÷ the read bandwidth measured in the
 * same run). Greedy decoding of random prompt tokens; no tokenizer needed. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/kernels.h"
#include "backend/cpu/membw.h"
#include "cli/bench_util.h"
#include "cli/command.h"
#include "core/threadpool.h"
#include "driftwood/backend.h"
#include "driftwood/engine.h"
#include "driftwood/model.h"
#ifdef DW_HAVE_CUDA
#include "backend/cuda/compute_cuda.h"
#include "engine/engine_impl.h"
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

DW_COMMAND_NAMED(bench_decode, "bench decode",
                 "bench decode [--model DIR] [--backend cpu|cuda] [--prompt-tokens N] [--gen-tokens N] [--threads N] "
                 "[--bw-mb N] [--no-interleaved-bound] [--json]",
                 "prefill and decode tok/s, and decode as a fraction of the memory-bandwidth bound") {
    const char *model_dir = NULL, *backend_name = "cpu";
    long n_prompt = 512, n_gen = 64, threads = 0, bw_mb = 1024;
    int json = 0, interleave = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = 0;
        if (!strcmp(a, "--model") && v) model_dir = v, i++;
        else if (!strcmp(a, "--backend") && v) backend_name = v, i++;
        else if (!strcmp(a, "--prompt-tokens") && v) r = dw_cli_parse_long(a, v, 1, 1 << 20, &n_prompt), i++;
        else if (!strcmp(a, "--gen-tokens") && v) r = dw_cli_parse_long(a, v, 1, 1 << 20, &n_gen), i++;
        else if (!strcmp(a, "--threads") && v) r = dw_cli_parse_long(a, v, 1, 1024, &threads), i++;
        else if (!strcmp(a, "--bw-mb") && v) r = dw_cli_parse_long(a, v, 64, 1 << 20, &bw_mb), i++;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--no-interleaved-bound")) interleave = 0;
        else return dw_cli_fail("bench decode: unexpected argument '%s'", a);
        if (r) return 1;
    }
    if (!model_dir) model_dir = dw_cli_default_model_dir();

    dw_error err = {0};
    dw_backend *be = NULL;
    dw_model *model = NULL;
    dw_session *s = NULL;
    dw_threadpool *own_pool = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    double *tok_s = NULL, *tok_bw = NULL;
    dw__membw *probe = NULL;
    int rc = 1;
    if (dw_backend_open(backend_name, &be, &err)) goto fail;
    int is_cpu = !strcmp(dw_backend_name(be), "cpu");
    double t_load0 = now_s();
    dw_model_options mo = {.n_threads = (int)threads};
    if (dw_model_load(model_dir, be, &mo, &model, &err)) goto fail;
    double load_s = now_s() - t_load0;
    const dw_model_config *cfg = dw_model_get_config(model);
    dw_session_options so = {.ctx = (int)(n_prompt + n_gen + 1)};
    if (dw_session_create(model, &so, &s, &err)) goto fail;

    /* the bound (CPU): read bandwidth through the same number of threads, measured before the
     * prefill and again after the decode; the higher of the two is the bound (other processes
     * on a shared machine can only lower a measurement) */
    dw_threadpool *pool = dw_threadpool_global();
    if (threads > 0 && dw_threadpool_create((int)threads, &own_pool, &err)) goto fail;
    if (own_pool) pool = own_pool;
    if (!pool) {
        dw_error_set(&err, DW_ERR_NO_MEMORY, "cannot start threads");
        goto fail;
    }
    double gbs = 0, gbs_before = 0, gbs_after = 0;
    if (is_cpu && dw__membw_create(pool, (size_t)bw_mb << 20, &probe, &err)) goto fail;
    for (int r = 0; probe && r < 5; r++) {
        double g = dw__membw_pass(probe, pool);
        if (g > gbs_before) gbs_before = g;
    }

    ids = malloc(sizeof(int32_t) * (size_t)n_prompt);
    logits = malloc(sizeof(float) * (size_t)cfg->vocab_size);
    tok_s = malloc(sizeof(double) * (size_t)n_gen);
    tok_bw = calloc((size_t)n_gen + 1, sizeof(double));
    uint32_t x = 12345;
    for (long i = 0; i < n_prompt; i++) {
        x = x * 1664525u + 1013904223u;
        ids[i] = (int32_t)((x >> 8) % (uint32_t)cfg->vocab_size);
    }
    double t0 = now_s();
    if (dw_session_prefill(s, ids, (int)n_prompt, logits, &err)) goto fail;
    double prefill_s = now_s() - t0;

    double decode_total = 0, sample_total = 0;
    /* the interleaved bound (CPU): one pass of the probe before the first decoded token and after
     * each one (outside the timed part), so each token is set against the bandwidth of the machine
     * as it was just then: its bound is the highest of the two passes on either side of it (four,
     * fewer at the ends) — like the best of 5 passes, not the typical single pass, which reads a
     * few percent lower on a steady machine */
    interleave = interleave && probe;
    if (interleave) tok_bw[0] = dw__membw_pass(probe, pool);
    /* CUDA: the GPU time of the steps (events) and the host's share (queuing, waiting, copying) */
    double gpu_ms = -1, enqueue_ms = 0, download_ms = 0;
#ifdef DW_HAVE_CUDA
    int is_cuda = !strcmp(dw_backend_name(be), "cuda");
    dw__cuda_compute_stats cst0 = {0}, cst1 = {0};
    if (is_cuda) dw__cuda_compute_get_stats(&model->compute, &cst0);
#endif
    for (long g = 0; g < n_gen; g++) {
        double a0 = now_s();
        /* greedy: the largest logit (8 independent chains), then its first index */
        float mx[8];
        for (int j = 0; j < 8; j++) mx[j] = logits[0];
        int i = 0;
        for (; i + 8 <= cfg->vocab_size; i += 8)
            for (int j = 0; j < 8; j++) mx[j] = logits[i + j] > mx[j] ? logits[i + j] : mx[j];
        for (; i < cfg->vocab_size; i++) mx[0] = logits[i] > mx[0] ? logits[i] : mx[0];
        for (int j = 1; j < 8; j++) mx[0] = mx[j] > mx[0] ? mx[j] : mx[0];
        int32_t next = 0;
        while (next < cfg->vocab_size - 1 && logits[next] != mx[0]) next++;
        double a = now_s();
        sample_total += a - a0;
        if (dw_session_decode(s, next, logits, &err)) goto fail;
        tok_s[g] = now_s() - a;
        decode_total += tok_s[g];
        if (interleave) tok_bw[g + 1] = dw__membw_pass(probe, pool);
    }
#ifdef DW_HAVE_CUDA
    if (is_cuda) {
        dw__cuda_compute_get_stats(&model->compute, &cst1);
        long timed = cst1.timed_steps - cst0.timed_steps;
        gpu_ms = timed > 0 ? (cst1.gpu_step_ms - cst0.gpu_step_ms) / timed : -1;
        enqueue_ms = (cst1.enqueue_s - cst0.enqueue_s) * 1e3 / n_gen;
        download_ms = (cst1.download_s - cst0.download_s) * 1e3 / n_gen;
    }
#endif
    for (int r = 0; probe && r < 5; r++) {
        double g = dw__membw_pass(probe, pool);
        if (g > gbs_after) gbs_after = g;
    }
    gbs = gbs_before > gbs_after ? gbs_before : gbs_after;
    double huge = is_cpu ? dw_cli_huge_mapped_fraction(model_dir) : -1;
    uint64_t wbytes = dw_model_weight_bytes(model);
    /* interleaved: Σ per-token bound times ÷ Σ token times; il_gbs is the bandwidth that would
     * give that Σ over the run; the lowest and highest single passes show how much it moved */
    double il_ideal_s = 0, il_gbs = 0, il_min = 1e30, il_max = 0, il_fraction = 0;
    if (interleave) {
        for (long g = 0; g < n_gen; g++) { /* token g ran between passes g and g + 1 */
            double b = 0;
            for (long i = g - 1; i <= g + 2; i++)
                if (i >= 0 && i <= n_gen && tok_bw[i] > b) b = tok_bw[i];
            il_ideal_s += (double)wbytes / (b * 1e9);
        }
        for (long g = 0; g <= n_gen; g++) {
            if (tok_bw[g] < il_min) il_min = tok_bw[g];
            if (tok_bw[g] > il_max) il_max = tok_bw[g];
        }
        il_gbs = (double)wbytes * n_gen / il_ideal_s / 1e9;
        il_fraction = il_ideal_s / decode_total;
    }
    qsort(tok_s, (size_t)n_gen, sizeof *tok_s, cmp_double);
    double median_ms = tok_s[n_gen / 2] * 1e3;
    double decode_tps = n_gen / decode_total, prefill_tps = n_prompt / prefill_s;
    double bound_tps = gbs * 1e9 / (double)wbytes; /* 0 when not measured (not the CPU) */
    int n_threads = is_cpu ? dw_threadpool_size(pool) : 0;
    const char *isa = is_cpu ? dw__cpu_kernels_best()->isa : backend_name;
    if (json) {
        printf("{\"model\": \"%s\", \"backend\": \"%s\", \"isa\": \"%s\", \"threads\": %d, \"load_s\": %.3f, "
               "\"weight_bytes_per_token\": %llu, \"read_bandwidth_gbs\": %.2f, \"read_bandwidth_before_gbs\": %.2f, "
               "\"read_bandwidth_after_gbs\": %.2f, \"bound_tok_s\": %.3f, "
               "\"prompt_tokens\": %ld, \"prefill_s\": %.4f, \"prefill_tok_s\": %.2f, \"gen_tokens\": %ld, "
               "\"decode_s\": %.4f, \"decode_tok_s\": %.3f, \"decode_ms_per_token_median\": %.3f, "
               "\"fraction_of_bound\": %.4f, \"sample_ms_per_token\": %.4f",
               model_dir, backend_name, isa, n_threads, load_s, (unsigned long long)wbytes, gbs, gbs_before, gbs_after,
               bound_tps, n_prompt, prefill_s, prefill_tps, n_gen, decode_total, decode_tps, median_ms,
               bound_tps > 0 ? decode_tps / bound_tps : 0.0, sample_total * 1e3 / n_gen);
        /* GPU backends: GPU time per token and the host's time beside it: (decode wall + sampling)
         * - GPU; launch = queuing the step, sync_download = waiting for it and the logits copy */
        if (gpu_ms >= 0)
            printf(", \"gpu_ms_per_token\": %.4f, \"host_ms_per_token\": %.4f, \"launch_ms_per_token\": %.4f, "
                   "\"sync_download_ms_per_token\": %.4f",
                   gpu_ms, (decode_total + sample_total) * 1e3 / n_gen - gpu_ms, enqueue_ms, download_ms);
        if (huge >= 0) printf(", \"weights_huge_mapped_fraction\": %.3f", huge);
        if (interleave)
            printf(", \"interleaved_bandwidth_gbs\": %.2f, \"interleaved_bandwidth_min_gbs\": %.2f, "
                   "\"interleaved_bandwidth_max_gbs\": %.2f, \"interleaved_bound_tok_s\": %.3f, "
                   "\"fraction_of_interleaved_bound\": %.4f",
                   il_gbs, il_min, il_max, n_gen / il_ideal_s, il_fraction);
        printf("}\n");
    } else {
        printf("model            %s (%s, %d layers, hidden %d)\n", model_dir, cfg->architecture, cfg->n_layers,
               cfg->hidden_size);
        printf("backend          %s, kernels %s, %d threads\n", backend_name, isa, n_threads);
        printf("load             %.3f s\n", load_s);
        printf("prefill          %ld tokens in %.3f s: %.2f tok/s\n", n_prompt, prefill_s, prefill_tps);
        printf("decode           %ld tokens in %.3f s: %.3f tok/s (median %.1f ms/token)\n", n_gen, decode_total,
               decode_tps, median_ms);
        if (gpu_ms >= 0)
            printf("per token        GPU %.3f ms; host %.3f ms (launch %.3f, sync + download %.3f, sampling %.3f)\n",
                   gpu_ms, (decode_total + sample_total) * 1e3 / n_gen - gpu_ms, enqueue_ms, download_ms,
                   sample_total * 1e3 / n_gen);
        if (is_cpu) {
            printf("memory bandwidth %.2f GB/s (read; %.2f before the prefill, %.2f after the decode)\n", gbs, gbs_before,
                   gbs_after);
            printf("bound            %.3f tok/s (%.3f GB of weights per token)\n", bound_tps, wbytes / 1e9);
            if (huge >= 0) printf("huge pages       %.0f%% of the resident weights mapped with huge pages\n", 100 * huge);
            printf("decode / bound   %.1f%%\n", 100.0 * decode_tps / bound_tps);
            if (interleave)
                printf("interleaved      %.1f%% of the bound measured between tokens (%.2f GB/s over the decode; "
                       "single passes %.2f-%.2f GB/s)\n",
                       100.0 * il_fraction, il_gbs, il_min, il_max);
        }
    }
    rc = 0;
    goto done;
fail:
    rc = dw_cli_fail("%s", err.message);
done:
    free(ids), free(logits), free(tok_s), free(tok_bw);
    dw__membw_free(probe);
    dw_session_free(s);
    dw_model_free(model);
    dw_backend_close(be);
    if (own_pool) dw_threadpool_destroy(own_pool);
    return rc;
}
