/* `driftwood quantize`: a bf16/f16/f32 model directory to an MLX-affine 4- or 8-bit one
 * (the format: src/core/quant_layout.h; the algorithm: src/engine/quant_write.c). */
#include <stdio.h>
#include <string.h>

#include "cli/bench_util.h"
#include "cli/command.h"
#include "driftwood/model.h"

DW_COMMAND(quantize, "quantize --model DIR --bits 4|8 [--group-size 64] --out DIR | --dequantize --model DIR --out DIR",
           "writes a 4- or 8-bit (MLX affine) copy of a model (or an f32 copy of a quantized one)") {
    const char *model = NULL, *out = NULL;
    long bits = 0, group_size = 64;
    int dequantize = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--dequantize")) {
            dequantize = 1;
            continue;
        }
        if (i + 1 >= argc && a[0] == '-') return dw_cli_fail("quantize: %s needs a value", a);
        if (!strcmp(a, "--model")) model = argv[++i];
        else if (!strcmp(a, "--out")) out = argv[++i];
        else if (!strcmp(a, "--bits")) {
            if (dw_cli_parse_long("--bits", argv[++i], 1, 64, &bits)) return 1;
        } else if (!strcmp(a, "--group-size")) {
            if (dw_cli_parse_long("--group-size", argv[++i], 1, 1 << 20, &group_size)) return 1;
        } else return dw_cli_fail("quantize: unexpected argument '%s'", a);
    }
    dw_error err;
    if (dequantize) {
        if (!model || !out) return dw_cli_fail("quantize: --dequantize needs --model and --out");
        if (dw_model_dequantize(model, out, &err) != DW_OK) return dw_cli_fail("%s", err.message);
        printf("dequantized %s to f32 in %s\n", model, out);
        return 0;
    }
    if (!model || !out || !bits) return dw_cli_fail("quantize: --model, --bits and --out are required");
    if (bits != 4 && bits != 8) return dw_cli_fail("quantize: --bits %ld is not supported (4 or 8)", bits);
    if (group_size != 32 && group_size != 64 && group_size != 128)
        return dw_cli_fail("quantize: --group-size %ld is not supported (32, 64 or 128)", group_size);
    double t0 = dw_cli_now_s();
    if (dw_model_quantize(model, out, (int)bits, (int)group_size, &err) != DW_OK) return dw_cli_fail("%s", err.message);
    printf("quantized %s to %ld bits (group size %ld) in %s (%.1f s)\n", model, bits, group_size, out,
           dw_cli_now_s() - t0);
    return 0;
}
