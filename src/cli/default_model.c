/* The model used where --model is optional: $DW_MODEL, else the small model that ships in
 * the source tree (models/driftwood-tiny). */
#include <stdlib.h>

#include "cli/command.h"

#ifndef DW_SOURCE_DIR
#define DW_SOURCE_DIR "."
#endif

const char *dw_cli_default_model_dir(void) {
    const char *env = getenv("DW_MODEL");
    return env && *env ? env : DW_SOURCE_DIR "/models/driftwood-tiny";
}
