/* `driftwood bench hostcall`: the cost of one guest→host call (a guest loop calling the
 * no-op dw.nop) beside the same loop calling a no-op native function, and the module
 * compile time cold (no cache) and cached (deserialized). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/bench_util.h"
#include "cli/command.h"
#include "cli/embedded_guests.h"
#include "driftwood/file.h"
#include "driftwood/actor.h"

__attribute__((noinline)) static void native_nop(void) { __asm__ volatile(""); }

static double native_loop_ms(long calls) {
    double t0 = dw_cli_now_ms();
    for (long i = 0; i < calls; i++) native_nop();
    return dw_cli_now_ms() - t0;
}

/* Compile time with the cache off, then load time from a fresh cache folder (second load). */
static int compile_times(const char *name, const unsigned char *wasm, size_t len, double *cold_ms, double *cached_ms,
                         dw_error *err) {
    char dir[] = "/tmp/dw-bench-cache-XXXXXX";
    if (!mkdtemp(dir)) return dw_error_set(err, DW_ERR_IO, "cannot create a temporary folder"), -1;
    dw_runtime_options no_cache = {.module_cache_dir = ""}, cache = {.module_cache_dir = dir};
    dw_runtime *rt1 = NULL, *rt2 = NULL;
    dw_module *m = NULL;
    int rc = -1;
    if (dw_runtime_create(&no_cache, &rt1, err) || dw_module_load_bytes(rt1, name, wasm, len, &m, err)) goto done;
    *cold_ms = dw_module_stats_get(m)->load_ms;
    dw_module_free(m), m = NULL;
    if (dw_runtime_create(&cache, &rt2, err) || dw_module_load_bytes(rt2, name, wasm, len, &m, err)) goto done;
    dw_module_free(m), m = NULL;
    if (dw_module_load_bytes(rt2, name, wasm, len, &m, err)) goto done;
    if (!dw_module_stats_get(m)->from_cache) {
        dw_error_set(err, DW_ERR_STATE, "the module was not found in the cache on the second load");
        goto done;
    }
    *cached_ms = dw_module_stats_get(m)->load_ms;
    rc = 0;
done:
    dw_module_free(m);
    dw_runtime_free(rt1);
    dw_runtime_free(rt2);
    char cmd[100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "driftwood: warning: could not remove %s\n", dir);
    return rc;
}

DW_COMMAND_NAMED(bench_hostcall, "bench hostcall", "bench hostcall [--calls N] [--module FILE.wasm] [--json]",
                 "cost of one guest-to-host call, and module compile time cold and cached") {
    long calls = 10000000;
    const char *module_path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--calls") && i + 1 < argc) {
            if (dw_cli_parse_long("--calls", argv[++i], 1000, 2000000000L, &calls)) return 1;
        } else if (!strcmp(argv[i], "--module") && i + 1 < argc) module_path = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = 1;
        else return dw_cli_fail("bench hostcall: unknown or incomplete option '%s'", argv[i]);
    }
    dw_error err = {0};
    size_t len;
    const unsigned char *wasm = dw__embedded_bench_actor(&len);
    char *file_bytes = NULL;
    const char *compile_name = "bench_actor.wasm";
    const unsigned char *compile_wasm = wasm;
    size_t compile_len = len;
    if (module_path) {
        if (dw_file_read_all(module_path, 256 << 20, &file_bytes, &compile_len, &err))
            return dw_cli_fail("bench hostcall: %s", err.message);
        compile_wasm = (const unsigned char *)file_bytes, compile_name = module_path;
    }
    double cold_ms = 0, cached_ms = 0;
    if (compile_times(compile_name, compile_wasm, compile_len, &cold_ms, &cached_ms, &err)) {
        free(file_bytes);
        return dw_cli_fail("bench hostcall: %s", err.message);
    }
    free(file_bytes);

    dw_runtime *rt = NULL;
    dw_module *m = NULL;
    dw_actor *a = NULL;
    int rc = 1;
    if (dw_runtime_create(NULL, &rt, &err) || dw_module_load_bytes(rt, "bench_actor.wasm", wasm, len, &m, &err) ||
        dw_actor_create(rt, m, NULL, &a, &err)) {
        dw_cli_fail("bench hostcall: %s", err.message);
        goto done;
    }
    enum { REPS = 7 };
    double guest[REPS], native[REPS];
    dw_value arg = {.kind = DW_I32, .of.i32 = (int32_t)(calls / 10)};
    size_t nres;
    if (dw_actor_invoke(a, "call_nop", &arg, 1, NULL, 0, &nres, &err)) { /* warm-up */
        dw_cli_fail("bench hostcall: %s", err.message);
        goto done;
    }
    native_loop_ms(calls / 10);
    arg.of.i32 = (int32_t)calls;
    for (int r = 0; r < REPS; r++) {
        double t0 = dw_cli_now_ms();
        dw_actor_invoke(a, "call_nop", &arg, 1, NULL, 0, &nres, &err);
        guest[r] = dw_cli_now_ms() - t0;
        native[r] = native_loop_ms(calls);
    }
    double guest_ns = dw_cli_median(guest, REPS) * 1e6 / calls;
    double native_ns = dw_cli_median(native, REPS) * 1e6 / calls;
    if (json) {
        printf("{\"calls\": %ld, \"reps\": %d, \"ns_per_host_call\": %.3f, \"ns_per_native_call\": %.3f, "
               "\"compile_module\": \"%s\", \"compile_cold_ms\": %.2f, \"compile_cached_ms\": %.2f}\n",
               calls, REPS, guest_ns, native_ns, compile_name, cold_ms, cached_ms);
    } else {
        printf("host-call cost (%ld calls, median of %d runs)\n", calls, REPS);
        printf("  %-40s %10.2f ns\n", "guest -> dw.nop (Wasm to host)", guest_ns);
        printf("  %-40s %10.2f ns\n", "native loop -> no-op function", native_ns);
        printf("module %s\n", compile_name);
        printf("  %-40s %10.2f ms\n", "compile (cache off)", cold_ms);
        printf("  %-40s %10.2f ms\n", "load from compiled-module cache", cached_ms);
    }
    rc = 0;
done:
    dw_actor_free(a);
    dw_module_free(m);
    dw_runtime_free(rt);
    return rc;
}
