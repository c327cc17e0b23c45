/* Models on the command line: `--model DIR` registers DIR under the name "default", and
 * `--model NAME=DIR` under NAME (repeatable), for actors to open by name. Without any, the model
 * that ships in the source tree (models/driftwood-tiny) or $DW_MODEL is the default. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/command.h"

#ifndef DW_SOURCE_DIR
#define DW_SOURCE_DIR "."
#endif

const char *dw_cli_default_model_dir(void) {
    const char *env = getenv("DW_MODEL");
    return env && *env ? env : DW_SOURCE_DIR "/models/driftwood-tiny";
}

int dw_cli_register_models(dw_runtime *rt, const char *const *specs, int n, const dw_model_use_options *options,
                           const char **first_name) {
    static const char *fallback[1];
    if (n == 0) fallback[0] = dw_cli_default_model_dir(), specs = fallback, n = 1;
    for (int i = 0; i < n; i++) {
        char name[64] = "default";
        const char *dir = specs[i], *eq = strchr(specs[i], '=');
        if (eq) {
            if (eq == specs[i] || (size_t)(eq - specs[i]) >= sizeof name)
                return dw_cli_fail("--model %s: the name before '=' must be 1 to 63 bytes", specs[i]);
            memcpy(name, specs[i], (size_t)(eq - specs[i]));
            name[eq - specs[i]] = 0;
            dir = eq + 1;
        }
        dw_error err;
        if (dw_runtime_register_model_with(rt, name, dir, options, &err) != DW_OK) return dw_cli_fail("%s", err.message);
        if (i == 0 && first_name) *first_name = dw_runtime_model_name(rt, 0);
    }
    return 0;
}
