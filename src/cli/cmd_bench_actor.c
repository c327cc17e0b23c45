/* `driftwood bench actor`: the seed's table for one actor — model load, prefill of 5 and of 512
 * tokens, time per generated token — measured through a Wasm actor (the embedded benchmark
 * actor: it keeps the logits in its memory and picks tokens itself) and, in the same run,
 * directly through the engine API, so the cost of the actor (host calls plus the guest's own
 * work) is a measured difference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/bench_util.h"
#include "cli/command.h"
#include "cli/embedded_guests.h"
#include "driftwood/actor.h"
#include "driftwood/engine.h"
#include "driftwood/model.h"
#include "driftwood/runtime.h"
#include "driftwood/sampler.h"
#include "driftwood/tokenizer.h"

typedef struct side {
    double prefill5_ms, prefill512_ms, token_ms;
} side;


static dw_status invoke(dw_actor *a, const char *name, int32_t a0, int32_t a1, int nargs, int32_t *result,
                        dw_error *err) {
    dw_value in[2] = {{DW_I32, {.i32 = a0}}, {DW_I32, {.i32 = a1}}}, out;
    size_t nres;
    dw_status st = dw_actor_invoke(a, name, in, (size_t)nargs, &out, 1, &nres, err);
    if (st == DW_OK && result) *result = out.of.i32;
    if (st == DW_OK && out.of.i32 < 0 && strcmp(name, "llm_argmax"))
        st = dw_error_set(err, DW_ERR_STATE, "bench actor: %s returned %d", name, out.of.i32);
    return st;
}

DW_COMMAND_NAMED(bench_actor, "bench actor", "bench actor [--model DIR] [--backend cpu|cuda] [--gen-tokens N] [--reps N] [--json]",
                 "one actor running a model: load, prefill 5 and 512 tokens, ms per token, host-call overhead") {
    const char *model_dir = NULL, *backend = "cpu";
    long gen = 32, reps = 3;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) model_dir = v, i++;
        else if (!strcmp(a, "--backend") && v) backend = v, i++;
        else if (!strcmp(a, "--gen-tokens") && v) { if (dw_cli_parse_long(a, v, 1, 100000, &gen)) return 1; i++; }
        else if (!strcmp(a, "--reps") && v) { if (dw_cli_parse_long(a, v, 1, 16, &reps)) return 1; i++; }
        else if (!strcmp(a, "--json")) json = 1;
        else return dw_cli_fail("bench actor: unknown or incomplete option '%s'", a);
    }
    if (!model_dir) model_dir = dw_cli_default_model_dir();
    dw_error err = {0};
    dw_runtime *rt = NULL;
    dw_module *m = NULL;
    dw_actor *a = NULL;
    dw_session *direct_s = NULL;
    dw_sampler *sampler = NULL;
    float *logits = NULL;
    int32_t *ids = NULL;
    dw_model *model;
    dw_tokenizer *tok;
    double load_ms;
    int rc = 1, ctx = 512 + 2 * (int)gen + 8; /* the actor's session decodes two blocks per repetition */
    size_t wasm_len;
    const unsigned char *wasm = dw__embedded_bench_actor(&wasm_len);
    side d = {0}, act = {0};
    if (dw_runtime_create(NULL, &rt, &err) || dw_runtime_register_model(rt, "default", model_dir, &err) ||
        dw_runtime_model(rt, "default", backend, &model, &tok, &load_ms, &err) ||
        dw_module_load_bytes(rt, "bench_actor.wasm", wasm, wasm_len, &m, &err))
        goto fail;
    dw_actor_options ao = {.backend = backend};
    if (dw_actor_create(rt, m, &ao, &a, &err)) goto fail;
    int32_t vocab;
    if (invoke(a, "llm_setup", ctx, 0, 1, &vocab, &err)) goto fail;

    /* the engine alone, on the same model: the same prompts and the same greedy loop */
    int vocab_direct = dw_model_get_config(model)->vocab_size;
    dw_session_options so = {.ctx = ctx};
    if (dw_session_create(model, &so, &direct_s, &err)) goto fail;
    logits = malloc(sizeof(float) * (size_t)vocab_direct);
    ids = malloc(sizeof(int32_t) * 512);
    if (!logits || !ids) {
        dw_error_set(&err, DW_ERR_NO_MEMORY, "out of memory");
        goto fail_free;
    }

    /* warm-up: pages of the weights in, caches warm (not timed) */
    dw_sampler_params greedy = dw_sampler_default_params();
    if (dw_sampler_create(&greedy, vocab_direct, &sampler, &err)) goto fail_free;
    if (invoke(a, "llm_prefill", 5, 99, 2, NULL, &err) || invoke(a, "llm_decode", 2, 1, 2, NULL, &err)) goto fail_free;
    /* actor and engine measured in alternation, so that drift in the machine hits both alike */
    double a5[16], a512[16], d5[16], d512[16], at[16], dt[16], eng[16], guest[16], ag[16], de[16];
    for (int r = 0; r < reps; r++) {
        for (int n = 5; n <= 512; n = n == 5 ? 512 : 1024) {
            double t0 = dw_cli_now_ms();
            if (invoke(a, "llm_prefill", n, r, 2, NULL, &err)) goto fail_free;
            (n == 5 ? a5 : a512)[r] = dw_cli_now_ms() - t0;
            for (int i = 0; i < n; i++) ids[i] = (int32_t)(((uint32_t)r * 7919u + (uint32_t)i * 104729u) % (uint32_t)vocab_direct);
            dw_session_reset(direct_s);
            t0 = dw_cli_now_ms();
            if (dw_session_prefill(direct_s, ids, n, logits, &err)) goto fail_free;
            (n == 5 ? d5 : d512)[r] = dw_cli_now_ms() - t0;
        }
        /* gen tokens after the 512-token prompt, each way, picked by the same greedy sampler
         * (the engine's, as `driftwood generate` uses it; the actor reaches it through dw.sample),
         * and the actor once more picking them in Wasm. The three blocks run in an order that
         * rotates with r, so that no way always comes first after the prefills. */
        for (int k = 0; k < 3; k++) {
            int which = (k + r) % 3;
            double t0 = dw_cli_now_ms();
            if (which == 0) {
                dw_actor_stats_reset(a);
                if (invoke(a, "llm_decode", (int32_t)gen, 1, 2, NULL, &err)) goto fail_free;
                at[r] = (dw_cli_now_ms() - t0) / gen;
                dw_actor_stats stats;
                dw_actor_stats_get(a, &stats);
                eng[r] = stats.decode_ms / gen;
            } else if (which == 1) {
                double in_decode = 0;
                for (long i = 0; i < gen; i++) {
                    int32_t next;
                    if (dw_sampler_sample(sampler, logits, NULL, 0, &next, &err)) goto fail_free;
                    double t1 = dw_cli_now_ms();
                    if (dw_session_decode(direct_s, next, logits, &err)) goto fail_free;
                    in_decode += dw_cli_now_ms() - t1;
                }
                dt[r] = (dw_cli_now_ms() - t0) / gen;
                de[r] = in_decode / gen;
            } else {
                if (invoke(a, "llm_decode", (int32_t)gen, 0, 2, NULL, &err)) goto fail_free;
                ag[r] = (dw_cli_now_ms() - t0) / gen;
            }
        }
        double t0 = dw_cli_now_ms();
        if (invoke(a, "llm_argmax", (int32_t)gen, 0, 1, NULL, &err)) goto fail_free;
        guest[r] = (dw_cli_now_ms() - t0) / gen;
    }
    free(logits), free(ids);
    logits = NULL, ids = NULL;
    act.prefill5_ms = dw_cli_median(a5, (size_t)reps), act.prefill512_ms = dw_cli_median(a512, (size_t)reps);
    d.prefill5_ms = dw_cli_median(d5, (size_t)reps), d.prefill512_ms = dw_cli_median(d512, (size_t)reps);
    act.token_ms = dw_cli_median(at, (size_t)reps), d.token_ms = dw_cli_median(dt, (size_t)reps);
    double engine_in_calls_ms = dw_cli_median(eng, (size_t)reps), guest_ms = dw_cli_median(guest, (size_t)reps);
    double guest_sampling_token_ms = dw_cli_median(ag, (size_t)reps), direct_engine_ms = dw_cli_median(de, (size_t)reps);

    /* actor time per token beyond the engine: the boundary of its two host calls (decode,
     * sample), the sampler itself and the guest's loop */
    double boundary_ms = act.token_ms - engine_in_calls_ms - (d.token_ms - direct_engine_ms);
    if (boundary_ms < 0) boundary_ms = 0;
    double ratio = d.token_ms / act.token_ms; /* actor tok/s over direct tok/s */
    if (json) {
        printf("{\"model\": \"%s\", \"backend\": \"%s\", \"load_ms\": %.1f, \"actor\": {\"prefill5_ms\": %.3f, "
               "\"prefill512_ms\": %.2f, \"token_ms\": %.4f}, \"direct\": {\"prefill5_ms\": %.3f, \"prefill512_ms\": %.2f, "
               "\"token_ms\": %.4f}, \"actor_over_direct_tok_s\": %.4f, \"guest_work_ms_per_token\": %.4f, "
               "\"host_call_overhead_ms_per_token\": %.5f, \"host_call_overhead_fraction\": %.6f, "
               "\"actor_guest_sampling_token_ms\": %.4f, \"gen_tokens\": %ld, \"reps\": %ld}\n",
               model_dir, backend, load_ms, act.prefill5_ms, act.prefill512_ms, act.token_ms, d.prefill5_ms, d.prefill512_ms,
               d.token_ms, ratio, guest_ms, boundary_ms, boundary_ms / act.token_ms, guest_sampling_token_ms, gen, reps);
    } else {
        printf("one actor on %s, model %s (median of %ld, actor and engine interleaved; %ld tokens after a 512-token prompt)\n", backend,
               model_dir, reps, gen);
        printf("  %-40s %12.1f ms\n", "model load", load_ms);
        printf("  %-40s %12s %12s\n", "", "actor", "engine API");
        printf("  %-40s %12.2f %12.2f ms\n", "prefill 5 tokens", act.prefill5_ms, d.prefill5_ms);
        printf("  %-40s %12.1f %12.1f ms\n", "prefill 512 tokens", act.prefill512_ms, d.prefill512_ms);
        printf("  %-40s %12.3f %12.3f ms  (%.1f / %.1f tok/s)\n", "per generated token", act.token_ms, d.token_ms,
               1e3 / act.token_ms, 1e3 / d.token_ms);
        printf("  %-40s %12.3f ms  (%.1f tok/s)\n", "per token, the actor sampling in Wasm", guest_sampling_token_ms,
               1e3 / guest_sampling_token_ms);
        printf("  %-40s %12.4f ms  (argmax over %d logits in Wasm)\n", "guest's own argmax per token", guest_ms, vocab);
        printf("  %-40s %12.5f ms  (%.4f%% of a token)\n", "host-call overhead per token", boundary_ms,
               100 * boundary_ms / act.token_ms);
        printf("  %-40s %12.2f%%\n", "actor token rate vs engine API", 100 * ratio);
    }
    rc = 0;
    goto done;
fail_free:
    free(logits), free(ids);
fail:
    dw_cli_fail("bench actor: %s", err.message);
done:
    dw_sampler_free(sampler);
    dw_session_free(direct_s);
    dw_actor_free(a);
    dw_module_free(m);
    dw_runtime_free(rt);
    return rc;
}
