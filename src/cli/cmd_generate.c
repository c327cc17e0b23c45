/* `driftwood generate`: tokenizes a prompt, prefills it, samples tokens one by one and streams
 * the text to stdout; then prints one line with prefill and decode speed (to stderr). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/bench_util.h"
#include "cli/command.h"
#include "driftwood/backend.h"
#include "driftwood/engine.h"
#include "driftwood/model.h"
#include "driftwood/sampler.h"
#include "driftwood/snapshot.h"
#include "driftwood/tokenizer.h"

static int is_eos(const dw_model_config *c, const dw_tokenizer *tok, int32_t id) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_token_ids[i] == id) return 1;
    return id == dw_tokenizer_special_id(tok, DW_SPECIAL_EOS) || id == dw_tokenizer_special_id(tok, DW_SPECIAL_EOT);
}

DW_COMMAND(generate,
           "generate [--model DIR] --prompt TEXT [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P] "
           "[--repeat-penalty R] [--seed S] [--ctx N] [--backend cpu|cuda] [--chat] [--ignore-eos] [--threads N] "
           "[--kv-f32] [--save-kv FILE] [--resume-kv FILE] [--ids] [--timings]",
           "generate text from a prompt; prints the text, then prefill and decode tok/s") {
    const char *model_dir = NULL, *prompt = NULL, *backend_name = "cpu", *save_kv = NULL, *resume_kv = NULL;
    long n_gen = 128, ctx = 0, seed = 0, top_k = 0, threads = 0;
    double temp = 0.0, top_p = 1.0, min_p = 0.0, rep = 1.0;
    int chat = 0, ignore_eos = 0, print_ids = 0, kv_f32 = 0, timings = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = 0;
        if (!strcmp(a, "--model") && v) model_dir = v, i++;
        else if (!strcmp(a, "--prompt") && v) prompt = v, i++;
        else if (!strcmp(a, "--backend") && v) backend_name = v, i++;
        else if ((!strcmp(a, "-n") || !strcmp(a, "--n")) && v) r = dw_cli_parse_long(a, v, 0, INT_MAX, &n_gen), i++;
        else if (!strcmp(a, "--ctx") && v) r = dw_cli_parse_long(a, v, 1, INT_MAX, &ctx), i++;
        else if (!strcmp(a, "--seed") && v) r = dw_cli_parse_long(a, v, 0, LONG_MAX, &seed), i++;
        else if (!strcmp(a, "--top-k") && v) r = dw_cli_parse_long(a, v, 0, INT_MAX, &top_k), i++;
        else if (!strcmp(a, "--threads") && v) r = dw_cli_parse_long(a, v, 1, 1024, &threads), i++;
        else if (!strcmp(a, "--temp") && v) r = dw_cli_parse_double(a, v, &temp), i++;
        else if (!strcmp(a, "--top-p") && v) r = dw_cli_parse_double(a, v, &top_p), i++;
        else if (!strcmp(a, "--min-p") && v) r = dw_cli_parse_double(a, v, &min_p), i++;
        else if (!strcmp(a, "--repeat-penalty") && v) r = dw_cli_parse_double(a, v, &rep), i++;
        else if (!strcmp(a, "--chat")) chat = 1;
        else if (!strcmp(a, "--ignore-eos")) ignore_eos = 1;
        else if (!strcmp(a, "--save-kv") && v) save_kv = v, i++;
        else if (!strcmp(a, "--resume-kv") && v) resume_kv = v, i++;
        else if (!strcmp(a, "--kv-f32")) kv_f32 = 1; /* F32 cache: exact parity with an f32 reference */
        else if (!strcmp(a, "--ids")) print_ids = 1; /* token ids instead of text (for exact comparisons) */
        else if (!strcmp(a, "--timings")) timings = 1; /* where the time to the first token goes */
        else return dw_cli_fail("generate: unexpected argument '%s'", a);
        if (r) return 1;
    }
    if (!model_dir) model_dir = dw_cli_default_model_dir();
    if (!prompt && !resume_kv) return dw_cli_fail("generate: --prompt TEXT is required (or --resume-kv FILE)");

    dw_error err = {0};
    dw_sampler_params sp = dw_sampler_default_params();
    sp.temperature = (float)temp, sp.top_k = (int)top_k, sp.top_p = (float)top_p, sp.min_p = (float)min_p;
    sp.repetition_penalty = (float)rep, sp.seed = (uint64_t)seed;

    double t_start = dw_cli_now_s(), t_backend = 0, t_model = 0, t_first = 0;
    dw_backend *be = NULL;
    dw_model *model = NULL;
    dw_session *s = NULL;
    dw_tokenizer *tok = NULL;
    dw_tokenizer_stream *stream = NULL;
    dw_sampler *sampler = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    int rc = 1;
    dw_backend_options bo = {.n_threads = (int)threads};
    if (dw_backend_open_with(backend_name, &bo, &be, &err)) goto fail;
    t_backend = dw_cli_now_s();
    if (dw_model_load(model_dir, be, NULL, &model, &err)) goto fail;
    t_model = dw_cli_now_s();
    if (!(tok = dw_model_tokenizer(model))) {
        dw_error_set(&err, DW_ERR_NOT_FOUND, "%s: no tokenizer.json", model_dir);
        goto fail;
    }
    const dw_model_config *cfg = dw_model_get_config(model);
    if ((size_t)cfg->vocab_size < dw_tokenizer_vocab_size(tok)) {
        dw_error_set(&err, DW_ERR_FORMAT, "%s/tokenizer.json: the tokenizer has %zu tokens but the model only %d", model_dir,
                     dw_tokenizer_vocab_size(tok), cfg->vocab_size);
        goto fail;
    }
    dw_session_options so = {.ctx = (int)ctx, .kv_f32 = kv_f32};
    if (dw_session_create(model, &so, &s, &err)) goto fail;
    int n_ctx = dw_session_ctx(s);
    ids = malloc(sizeof(int32_t) * (size_t)n_ctx);
    logits = malloc(sizeof(float) * (size_t)cfg->vocab_size);
    if (!ids || !logits) {
        dw_error_set(&err, DW_ERR_NO_MEMORY, "out of memory");
        goto fail;
    }
    if (dw_sampler_create(&sp, cfg->vocab_size, &sampler, &err) ||
        dw_tokenizer_stream_new(tok, DW_DETOKENIZE_SKIP_SPECIAL, &stream, &err))
        goto fail;
    /* --resume-kv: the saved cache, and (when saved) the last logits and the sampler's state */
    int have_logits = 0;
    if (resume_kv) {
        uint8_t state[DW_SAMPLER_STATE_SIZE];
        dw_kv_extras ex = {.logits = logits, .n_logits = cfg->vocab_size, .sampler_state = state};
        dw_kv_report kr;
        if (dw_kv_load(s, tok, resume_kv, &ex, &kr, &err)) goto fail;
        if (ex.has_sampler_state && dw_sampler_load(sampler, state, &err)) goto fail;
        have_logits = ex.has_logits;
        fprintf(stderr, "driftwood: resumed %d tokens from %s in %.1f ms%s\n", kr.n_tokens, resume_kv, kr.ms,
                kr.rebuilt ? " (another model: rebuilt by re-tokenizing and prefilling the text)" : "");
    }
    size_t n_prompt = 0;
    dw_status st = DW_OK;
    int room = n_ctx - dw_session_n_tokens(s);
    if (prompt && chat) {
        dw_chat_message msg = {"user", prompt};
        st = dw_tokenizer_chat_encode(tok, &msg, 1, DW_CHAT_ADD_GENERATION_PROMPT | (resume_kv ? DW_CHAT_NO_BOS : 0), ids,
                                      (size_t)n_ctx, &n_prompt, &err);
    } else if (prompt) {
        st = dw_tokenizer_encode(tok, prompt, strlen(prompt), resume_kv ? 0 : DW_TOKENIZE_ADD_SPECIAL, ids, (size_t)n_ctx,
                                 &n_prompt, &err);
    }
    if ((st == DW_ERR_LIMIT && n_prompt > (size_t)n_ctx) || (st == DW_OK && n_prompt >= (size_t)room)) {
        dw_error_set(&err, DW_ERR_LIMIT, "the prompt (%zu tokens) does not fit the context of %d tokens (raise --ctx)",
                     n_prompt, n_ctx);
        goto fail;
    }
    if (st) goto fail;
    if (n_prompt == 0 && !have_logits) {
        dw_error_set(&err, DW_ERR_INVALID_ARGUMENT, prompt ? "the prompt encodes to no tokens"
                                                           : "the KV file has no saved logits: give --prompt to continue");
        goto fail;
    }

    double t0 = dw_cli_now_s();
    if (n_prompt && dw_session_prefill(s, ids, (int)n_prompt, logits, &err)) goto fail;
    double t1 = dw_cli_now_s();
    long produced = 0;
    int stopped_by_ctx = 0;
    double t_decode = 0;
    long decoded = 0; /* forward passes after the prefill */
    for (; produced < n_gen; produced++) {
        int32_t next;
        if (dw_sampler_sample(sampler, logits, dw_session_tokens(s), dw_session_n_tokens(s), &next, &err)) goto fail;
        if (!produced) t_first = dw_cli_now_s();
        if (!ignore_eos && is_eos(cfg, tok, next)) break;
        const char *text;
        size_t len;
        if (print_ids) printf("%s%d", produced ? " " : "", next);
        else {
            if (dw_tokenizer_stream_push(stream, next, &text, &len, &err)) goto fail;
            fwrite(text, 1, len, stdout);
        }
        fflush(stdout);
        if (produced + 1 == n_gen && !save_kv) { /* the last token needs no forward pass */
            produced++;
            break;
        }
        if (dw_session_n_tokens(s) >= n_ctx) {
            stopped_by_ctx = 1;
            produced++;
            break;
        }
        double a = dw_cli_now_s();
        if (dw_session_decode(s, next, logits, &err)) goto fail;
        t_decode += dw_cli_now_s() - a;
        decoded++;
    }
    const char *text;
    size_t len;
    dw_tokenizer_stream_flush(stream, &text, &len);
    if (!print_ids) fwrite(text, 1, len, stdout);
    printf("\n");
    if (save_kv) { /* every generated token is in the cache; the logits are for the next one */
        uint8_t state[DW_SAMPLER_STATE_SIZE];
        dw_sampler_save(sampler, state);
        dw_kv_extras ex = {.logits = logits, .n_logits = cfg->vocab_size, .sampler_state = state};
        dw_kv_report kr;
        if (dw_kv_save(s, tok, save_kv, &ex, &kr, &err)) goto fail;
        fprintf(stderr, "driftwood: saved %d tokens to %s (%.1f KiB) in %.1f ms\n", kr.n_tokens, save_kv,
                kr.file_bytes / 1024.0, kr.ms);
    }
    fflush(stdout);
    fprintf(stderr, "driftwood: prefill %zu tokens in %.3f s (%.1f tok/s); decode %ld tokens in %.3f s (%.2f tok/s)%s\n",
            n_prompt, t1 - t0, n_prompt / (t1 - t0), decoded, t_decode, decoded ? decoded / t_decode : 0.0,
            stopped_by_ctx ? " (stopped: context full)" : "");
    if (timings && t_first > 0)
        fprintf(stderr,
                "driftwood: first token %.1f ms after the command started: backend %.1f, model load (config, weights, "
                "tokenizer) %.1f, session and prompt %.1f, prefill and sampling %.1f ms\n",
                (t_first - t_start) * 1e3, (t_backend - t_start) * 1e3, (t_model - t_backend) * 1e3,
                (t0 - t_model) * 1e3, (t_first - t0) * 1e3);
    rc = 0;
    goto done;
fail:
    rc = dw_cli_fail("%s", err.message);
done:
    dw_tokenizer_stream_free(stream);
    dw_sampler_free(sampler);
    free(ids);
    free(logits);
    dw_session_free(s);
    dw_model_free(model);
    dw_backend_close(be);
    return rc;
}
