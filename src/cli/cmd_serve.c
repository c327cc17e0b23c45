/* `driftwood serve`: the HTTP server (include/driftwood/server.h) with the chat actor embedded
 * in the program and the models given by --model (the shipped tiny model by default). It runs
 * until SIGINT or SIGTERM, then hibernates every awake actor to the store. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/command.h"
#include "cli/embedded_guests.h"
#include "driftwood/runtime.h"
#include "driftwood/server.h"

#define MAX_MODELS 8
#define MAX_MODULES 8

static int parse_size(const char *option, const char *text, size_t *out) {
    long v;
    if (dw_cli_parse_long(option, text, 1, 0x7FFFFFFFFFFFFFFFL, &v)) return 1;
    *out = (size_t)v;
    return 0;
}

DW_COMMAND(serve,
           "serve [--listen ADDR:PORT] [--model DIR|NAME=DIR]... [--backend cpu|cuda] [--store DIR] [--keys FILE] "
           "[--idle-seconds N] [--max-body BYTES] [--max-streams N] [--max-tokens N] [--default-max-tokens N] "
           "[--actor-memory BYTES] [--kv-memory BYTES] [--memory-budget BYTES] [--turn-timeout S] [--ctx N] "
           "[--workers N] [--request-timeout S] [--max-connections N] [--module NAME=FILE.wasm]... [--kv-f32] "
           "[--no-fsync] [--kv-pool BYTES] [--step-tokens N] [--no-batching] "
           "[--cluster nats://HOST:PORT[,...] --node NAME [--lease-ms N]]",
           "serve actors over HTTP: an OpenAI-compatible API, native actor endpoints, hibernation, a page at /") {
    dw_server_options o = {0};
    const char *models[MAX_MODELS], *module_specs[MAX_MODULES];
    int n_models = 0, n_module_specs = 0, kv_f32 = 0, batching = 1;
    size_t kv_pool = 0;
    long step_tokens = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long l;
        double d;
        int need_value = strcmp(a, "--kv-f32") && strcmp(a, "--no-fsync") && strcmp(a, "--no-batching");
        if (need_value && !v) return dw_cli_fail("serve: option '%s' needs a value (or is unknown)", a);
        if (!strcmp(a, "--kv-f32")) kv_f32 = 1;
        else if (!strcmp(a, "--no-fsync")) o.no_fsync = 1;
        else if (!strcmp(a, "--no-batching")) batching = 0;
        else if (!strcmp(a, "--kv-pool")) {
            if (parse_size(a, v, &kv_pool)) return 1;
        } else if (!strcmp(a, "--step-tokens")) {
            if (dw_cli_parse_long(a, v, 1, 65536, &step_tokens)) return 1;
        }
        else if (!strcmp(a, "--listen")) o.listen = v;
        else if (!strcmp(a, "--cluster")) o.cluster = v;
        else if (!strcmp(a, "--node")) o.node = v;
        else if (!strcmp(a, "--lease-ms")) {
            if (dw_cli_parse_long(a, v, 300, 600000, &l)) return 1;
            o.lease_ms = (int)l;
        }
        else if (!strcmp(a, "--backend")) o.backend = v;
        else if (!strcmp(a, "--store")) o.store_dir = v;
        else if (!strcmp(a, "--keys")) o.keys_file = v;
        else if (!strcmp(a, "--model")) {
            if (n_models == MAX_MODELS) return dw_cli_fail("serve: at most %d --model", MAX_MODELS);
            models[n_models++] = v;
        } else if (!strcmp(a, "--module")) {
            if (n_module_specs == MAX_MODULES) return dw_cli_fail("serve: at most %d --module", MAX_MODULES);
            module_specs[n_module_specs++] = v;
        } else if (!strcmp(a, "--idle-seconds") || !strcmp(a, "--turn-timeout")) {
            if (dw_cli_parse_double(a, v, &d)) return 1;
            if (!(d > 0 && d <= 1e6)) return dw_cli_fail("%s must be in (0, 1e6]", a);
            *(!strcmp(a, "--idle-seconds") ? &o.idle_seconds : &o.turn_timeout_seconds) = d;
        } else if (!strcmp(a, "--max-body")) {
            if (parse_size(a, v, &o.max_body_bytes)) return 1;
        } else if (!strcmp(a, "--actor-memory")) {
            if (parse_size(a, v, &o.actor_memory_limit)) return 1;
        } else if (!strcmp(a, "--kv-memory")) {
            if (parse_size(a, v, &o.kv_memory_limit)) return 1;
        } else if (!strcmp(a, "--memory-budget")) {
            if (parse_size(a, v, &o.memory_budget)) return 1;
        } else if (!strcmp(a, "--max-streams") || !strcmp(a, "--max-tokens") || !strcmp(a, "--default-max-tokens") ||
                   !strcmp(a, "--ctx") || !strcmp(a, "--workers") || !strcmp(a, "--request-timeout") ||
                   !strcmp(a, "--max-connections")) {
            if (dw_cli_parse_long(a, v, 1, 1 << 24, &l)) return 1;
            int *slot = !strcmp(a, "--max-streams") ? &o.max_streams_per_key : !strcmp(a, "--max-tokens") ? &o.max_tokens
                      : !strcmp(a, "--default-max-tokens") ? &o.default_max_tokens : !strcmp(a, "--ctx") ? &o.ctx
                      : !strcmp(a, "--workers") ? &o.workers : !strcmp(a, "--request-timeout") ? &o.request_timeout_seconds
                      : &o.max_connections;
            *slot = (int)l;
        } else return dw_cli_fail("serve: unknown option '%s'", a);
        if (need_value) i++;
    }

    /* Hibernation frees and wakes allocate large buffers over and over (snapshots, turn logs, KV on
     * the host without batching); glibc's adaptive mmap threshold would then serve them from the
     * heap and fragment it (RSS grew 40 -> 200 MiB over 100 hibernate/wake cycles of one actor;
     * with the threshold fixed at 256 KiB through MALLOC_MMAP_THRESHOLD_ it barely grew). Buffers of
     * 256 KiB and more are mapped and unmapped. */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);

    /* Signals are waited for by this thread alone: blocked before any thread starts. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    dw_error err = {0};
    dw_runtime *rt = NULL;
    dw_server *server = NULL;
    dw_server_module modules[1 + MAX_MODULES] = {0};
    int n_modules = 0, rc = 1;
    if (dw_runtime_create(NULL, &rt, &err)) {
        dw_cli_fail("serve: %s", err.message);
        goto done;
    }
    /* Every model batches its actors' steps (engine.h, "Batching") unless --no-batching: one KV pool
     * of --kv-pool bytes per model (default 1 GiB). */
    dw_model_use_options uo = {.kv_f32 = kv_f32, .batching = batching,
                               .batch = {.kv_memory = kv_pool, .step_tokens = (int)step_tokens}};
    if (dw_cli_register_models(rt, models, n_models, &uo, NULL)) goto done;
    size_t wasm_len;
    const unsigned char *wasm = dw__embedded_chat_actor(&wasm_len);
    modules[0] = (dw_server_module){.name = "chat", .chat_protocol = 1};
    if (dw_module_load_bytes(rt, "chat.wasm", wasm, wasm_len, &modules[0].module, &err)) {
        dw_cli_fail("serve: %s", err.message);
        goto done;
    }
    n_modules = 1;
    for (int i = 0; i < n_module_specs; i++) { /* modules the operator allows: NAME=FILE.wasm */
        const char *eq = strchr(module_specs[i], '=');
        static char names[MAX_MODULES][64];
        if (!eq || eq == module_specs[i] || (size_t)(eq - module_specs[i]) >= sizeof names[0]) {
            dw_cli_fail("--module %s: expected NAME=FILE.wasm", module_specs[i]);
            goto done;
        }
        memcpy(names[i], module_specs[i], (size_t)(eq - module_specs[i]));
        names[i][eq - module_specs[i]] = 0;
        modules[n_modules] = (dw_server_module){.name = names[i]};
        if (dw_module_load_file(rt, eq + 1, &modules[n_modules].module, &err)) {
            dw_cli_fail("serve: %s", err.message);
            goto done;
        }
        n_modules++;
    }
    o.modules = modules, o.n_modules = n_modules;
    if (dw_server_start(rt, &o, &server, &err)) {
        dw_cli_fail("serve: %s", err.message);
        goto done;
    }
    fprintf(stderr, "driftwood serve: listening on http://%.*s:%d (model %s on %s, store %s%s)\n",
            (int)(strrchr(o.listen ? o.listen : "127.0.0.1:8080", ':') - (o.listen ? o.listen : "127.0.0.1:8080")),
            o.listen ? o.listen : "127.0.0.1:8080", dw_server_port(server), dw_runtime_model_name(rt, 0),
            o.backend ? o.backend : "cpu", o.store_dir ? o.store_dir : "driftwood-store",
            o.keys_file ? ", API keys required" : ", no API keys");
    int sig;
    sigwait(&stop_signals, &sig);
    fprintf(stderr, "driftwood serve: stopping (hibernating awake actors)\n");
    dw_server_stop(server);
    rc = 0;
done:
    for (int i = 0; i < n_modules; i++) dw_module_free(modules[i].module);
    dw_runtime_free(rt);
    return rc;
}
