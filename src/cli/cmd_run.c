/* `driftwood run`: runs a module's WASI entry point or calls one of its exports. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/command.h"
#include "driftwood/actor.h"
#include "driftwood/runtime.h"

static void print_value(const dw_value *v) {
    switch (v->kind) {
    case DW_I32: printf("%d\n", v->of.i32); break;
    case DW_I64: printf("%lld\n", (long long)v->of.i64); break;
    case DW_F32: printf("%.9g\n", v->of.f32); break;
    case DW_F64: printf("%.17g\n", v->of.f64); break;
    }
}

DW_COMMAND(run, "run MODULE.wasm [--invoke NAME [ARG...]] [--backend cpu|cuda] [--timeout SECONDS] [--memory-limit BYTES] "
                "[--env NAME=VALUE]... [--dir HOST[::GUEST]]... [--model DIR|NAME=DIR]... [-- WASI-ARGS...]",
           "run an actor's _start, or call one of its exported functions") {
    const char *path = NULL, *invoke = NULL, *backend = "cpu";
    double timeout = 0;
    int call_argc = 0, wasi_argc = 0, n_env = 0, n_dirs = 0, n_models = 0;
    long memory_limit = 0;
    const char **env = calloc((size_t)argc + 1, sizeof *env), **dirs = calloc((size_t)argc + 1, sizeof *dirs);
    const char **models = calloc((size_t)argc + 1, sizeof *models);
    const char **call_argv = calloc((size_t)argc + 1, sizeof *call_argv);
    const char **wasi_argv = calloc((size_t)argc + 2, sizeof *wasi_argv);
    int rc = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
        else if (!strcmp(argv[i], "--env") && i + 1 < argc) env[n_env++] = argv[++i];
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dirs[n_dirs++] = argv[++i];
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) models[n_models++] = argv[++i];
        else if (!strcmp(argv[i], "--memory-limit") && i + 1 < argc) {
            if (dw_cli_parse_long("--memory-limit", argv[++i], 65536, 1L << 40, &memory_limit)) goto out;
        }
        else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
            /* any number (1e-320 and 1e400 too): dw_actor_create checks the range and names it */
            const char *text = argv[++i];
            char *end;
            timeout = strtod(text, &end);
            if (!*text || *end || timeout != timeout) {
                dw_cli_fail("--timeout expects a number of seconds, got '%s'", text);
                goto out;
            }
        } else if (!strcmp(argv[i], "--invoke") && i + 1 < argc) {
            invoke = argv[++i];
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) call_argv[call_argc++] = argv[++i];
        } else if (!strcmp(argv[i], "--")) {
            while (i + 1 < argc) wasi_argv[1 + wasi_argc++] = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] && !(argv[i][1] >= '0' && argv[i][1] <= '9')) {
            dw_cli_fail("run: unknown or incomplete option '%s'", argv[i]);
            goto out;
        } else if (!path) path = argv[i];
        else {
            dw_cli_fail("run: unexpected argument '%s'", argv[i]);
            goto out;
        }
    }
    if (!path) {
        dw_cli_fail("run: no module given (usage: driftwood run MODULE.wasm ...)");
        goto out;
    }
    wasi_argv[0] = path;

    dw_error err = {0};
    dw_runtime *rt = NULL;
    dw_module *module = NULL;
    dw_actor *actor = NULL;
    if (dw_runtime_create(NULL, &rt, &err) != DW_OK || dw_module_load_file(rt, path, &module, &err) != DW_OK) {
        dw_cli_fail("%s", err.message);
        goto done;
    }
    /* models the guest may open by name (the shipped one as "default" when none is given) */
    if (dw_cli_register_models(rt, models, n_models, NULL, NULL)) goto done;
    dw_actor_options opts = {.backend = backend, .timeout_seconds = timeout, .argc = 1 + wasi_argc,
                             .argv = wasi_argv, .inherit_stdio = 1, .memory_limit = (size_t)memory_limit,
                             .n_env = n_env, .env = env, .n_dirs = n_dirs, .dirs = dirs};
    if (dw_actor_create(rt, module, &opts, &actor, &err) != DW_OK) {
        dw_cli_fail("%s", err.message);
        goto done;
    }
    if (invoke) {
        dw_value args[16], results[16];
        size_t nargs, nres;
        if (dw_actor_parse_args(actor, invoke, call_argc, call_argv, args, 16, &nargs, &err) != DW_OK ||
            dw_actor_invoke(actor, invoke, args, nargs, results, 16, &nres, &err) != DW_OK) {
            dw_cli_fail("%s: %s", path, err.message);
            goto done;
        }
        for (size_t i = 0; i < nres; i++) print_value(&results[i]);
        rc = 0;
    } else {
        int exit_code;
        if (dw_actor_run_main(actor, &exit_code, &err) != DW_OK) {
            dw_cli_fail("%s: %s", path, err.message);
            goto done;
        }
        rc = exit_code;
    }
done:
    fflush(stdout);
    dw_actor_free(actor);
    dw_module_free(module);
    dw_runtime_free(rt);
out:
    free(call_argv);
    free(wasi_argv);
    free(env);
    free(dirs);
    free(models);
    return rc;
}
