/* Fuzz target: the `dw` host functions under a guest that calls them with fuzzed arguments.
 * Each input is delivered as one message to a fresh actor of fuzz/guests/fuzz_abi_driver.c,
 * which plays it as a program of host calls (the format is described there). Traps and error
 * codes are answers; a crash, a sanitizer report or a hang of the host is a finding. The tiny
 * model is registered as "tiny" (and loaded once per process, on first use). */
#include <stdio.h>
#include <stdlib.h>

#include "driftwood/actor.h"
#include "driftwood/runtime.h"
#include "fuzz_support.h"

static dw_runtime *runtime;
static dw_module *module;

static void die(const char *what, const dw_error *err) {
    fprintf(stderr, "fuzz_abi: %s: %s\n", what, err->message);
    exit(2);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fuzz_single_thread();
    fuzz_open_runtime("fuzz_abi", "tiny", "fuzz_abi_driver", &runtime, &module);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dw_actor_options options = {.timeout_seconds = 5, .memory_limit = 4u << 20, .output = fuzz_discard_output};
    dw_actor *actor;
    dw_error err;
    if (dw_actor_create(runtime, module, &options, &actor, &err) != DW_OK) die("actor", &err);
    dw_actor_send(actor, data, size, &err);
    dw_actor_free(actor);
    return 0;
}
