/* Fuzz target: actor snapshots (dw_actor_snapshot_restore) of the chat actor (build/guests/
 * chat.wasm) over the tiny model registered as "default", as `driftwood chat` does. Inputs are
 * resealed with the loaded module's SHA-256 (fuzz/support/fuzz_reseal.c), so mutations reach
 * the memory, globals and sessions. A restored actor is sent one message (under a timeout: its
 * memory is fuzzed too) and freed. */
#include <stdio.h>
#include <stdlib.h>

#include "driftwood/actor.h"
#include "driftwood/runtime.h"
#include "driftwood/snapshot.h"
#include "fuzz_support.h"

static dw_runtime *runtime;
static dw_module *module;
static char module_hex[65];
static const char *const actor_args[] = {"chat", "--model", "default", "-n", "2"};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_single_thread();
    fuzz_open_runtime("fuzz_actor_snapshot", "default", "chat", &runtime, &module);
    const uint8_t *sha = dw_module_stats_get(module)->sha256;
    for (int i = 0; i < 32; i++) snprintf(module_hex + 2 * i, 3, "%02x", sha[i]);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_scratch_path("input.snapshot");
    fuzz_write_snapshot(path, data, size, module_hex);
    dw_actor_options options = {
        .timeout_seconds = 2, /* no memory limit: as `driftwood chat` runs it */
        .argc = (int)(sizeof actor_args / sizeof actor_args[0]),
        .argv = actor_args,
        .output = fuzz_discard_output,
    };
    dw_actor *actor;
    dw_actor_snapshot_report report;
    dw_error err;
    dw_status st = dw_actor_snapshot_restore(runtime, module, &options, path, &actor, &report, &err);
    fuzz_report("fuzz_actor_snapshot", st, err.message);
    if (st == DW_OK) {
        dw_actor_send(actor, "hi", 2, &err);
        dw_actor_free(actor);
    }
    return 0;
}
