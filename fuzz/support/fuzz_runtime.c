/* The runtime the actor targets share (fuzz_support.h): made once per process with the tiny
 * model registered and one guest module loaded; a failure here is the harness's, not a finding. */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_support.h"

void fuzz_discard_output(void *user, const char *bytes, size_t len) {}

void fuzz_open_runtime(const char *target, const char *model_name, const char *guest, dw_runtime **runtime,
                       dw_module **module) {
    dw_error err;
    const char *what = "runtime";
    if (dw_runtime_create(&(dw_runtime_options){.module_cache_dir = ""}, runtime, &err) == DW_OK) {
        what = "model";
        if (dw_runtime_register_model(*runtime, model_name, fuzz_model_dir(), &err) == DW_OK) {
            what = guest;
            if (dw_module_load_file(*runtime, fuzz_guest_path(guest), module, &err) == DW_OK) return;
        }
    }
    fprintf(stderr, "%s: %s: %s\n", target, what, err.message);
    exit(2);
}
