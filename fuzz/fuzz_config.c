/* Fuzz target: config.json parsing and validation (dw_model_config_parse). An accepted config
 * must describe a model the engine can size: the checks below are the invariants the loader
 * relies on after parsing. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "driftwood/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    dw_model_config cfg;
    dw_error err;
    if (dw_model_config_parse("<fuzz config.json>", text, &cfg, &err) == DW_OK) {
        if (cfg.vocab_size <= 0 || cfg.hidden_size <= 0 || cfg.n_layers <= 0 || cfg.n_heads <= 0 ||
            cfg.n_kv_heads <= 0 || cfg.head_dim <= 0 || cfg.n_heads % cfg.n_kv_heads != 0 ||
            cfg.n_eos < 0 || cfg.n_eos > DW_MAX_EOS_TOKENS || memchr(cfg.architecture, 0, sizeof cfg.architecture) == NULL)
            __builtin_trap();
        /* the numbers the forward pass uses must be finite and positive in float, as stored */
        if (!(isfinite(cfg.rms_norm_eps) && cfg.rms_norm_eps > 0 && isfinite(cfg.rope_theta) && cfg.rope_theta > 0))
            __builtin_trap();
    }
    free(text);
    return 0;
}
