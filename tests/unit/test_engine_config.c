/* config.json numbers the engine computes with: a value a 32-bit float cannot hold is refused by
 * name instead of becoming inf or zero, and so is a rope_theta of 0 wherever it is given (both
 * found by fuzz/fuzz_config.c). */
#include <stdio.h>
#include <stdlib.h>

#include "driftwood/model.h"
#include "test.h"

/* The tiny model's config.json with `from` replaced by `to`, parsed. */
static dw_status parse_edited(const char *from, const char *to, dw_model_config *cfg, dw_error *err) {
    char path[512], text[8192], edited[8192];
    snprintf(path, sizeof path, "%s/config.json", dw_test_model_dir());
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = 0;
    const char *at = strstr(text, from);
    if (!at) return DW_ERR_NOT_FOUND;
    snprintf(edited, sizeof edited, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    return dw_model_config_parse("config.json", edited, cfg, err);
}

TEST(config_numbers_outside_float_range_are_refused_by_name) {
    dw_model_config cfg;
    dw_error err = {0};
    CHECK_OK(parse_edited("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 1e-05", &cfg, &err));
    CHECK(parse_edited("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 1e300", &cfg, &err) == DW_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "'rms_norm_eps'") && strstr(err.message, "32-bit float"), "%s", err.message);
    CHECK(parse_edited("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 1e-300", &cfg, &err) == DW_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "'rms_norm_eps'"), "%s", err.message);
    CHECK(parse_edited("\"rope_theta\": 500000.0", "\"rope_theta\": 1e39", &cfg, &err) == DW_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "'rope_theta'"), "%s", err.message);
    CHECK(parse_edited("\"factor\": 8.0", "\"factor\": 3.5e38", &cfg, &err) == DW_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "'factor'"), "%s", err.message);
}

TEST(config_rope_theta_inside_rope_scaling_must_be_positive) {
    dw_model_config cfg;
    dw_error err = {0};
    CHECK_OK(parse_edited("\"rope_type\": \"llama3\"", "\"rope_type\": \"llama3\", \"rope_theta\": 10000.0", &cfg, &err));
    CHECK(cfg.rope_theta == 10000.0f);
    CHECK(parse_edited("\"rope_type\": \"llama3\"", "\"rope_type\": \"llama3\", \"rope_theta\": 0.0", &cfg, &err) ==
          DW_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "'rope_scaling.rope_theta'") && strstr(err.message, "positive"), "%s", err.message);
}
