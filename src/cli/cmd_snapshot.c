/* `driftwood snapshot inspect FILE`: the metadata and tensor table of a KV or actor snapshot,
 * after checking its checksum. */
#include <stdio.h>
#include <string.h>

#include "cli/command.h"
#include "driftwood/safetensors.h"
#include "driftwood/snapshot.h"

DW_COMMAND_NAMED(snapshot_inspect, "snapshot inspect", "snapshot inspect FILE",
                 "print a snapshot's metadata and tensor table (after verifying its checksum)") {
    if (argc != 2) return dw_cli_fail("snapshot inspect: expected exactly one FILE");
    const char *path = argv[1];
    dw_error err;
    dw_safetensors *st;
    const char *kind;
    if (dw_snapshot_open(path, &st, &kind, &err) != DW_OK) return dw_cli_fail("%s", err.message);
    printf("%s: checksum verified\nmetadata:\n", path);
    for (size_t i = 0; i < dw_safetensors_metadata_count(st); i++) {
        const char *k, *v;
        dw_safetensors_metadata_entry(st, i, &k, &v);
        printf("  %-28s %s\n", k, v);
    }
    size_t total = 0, n = dw_safetensors_count(st);
    printf("tensors (%zu):\n", n);
    for (size_t i = 0; i < n; i++) {
        const dw_tensor_info *t = dw_safetensors_tensor(st, i);
        char shape[128] = "[";
        for (int d = 0; d < t->ndim; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        strncat(shape, "]", sizeof shape - strlen(shape) - 1);
        printf("  %-40s %-5s %-24s %12zu bytes\n", t->name, dw_dtype_name(t->dtype), shape, t->nbytes);
        total += t->nbytes;
    }
    printf("total tensor bytes: %zu\n", total);
    dw_safetensors_close(st);
    return 0;
}

DW_COMMAND_NAMED(snapshot_fingerprint, "snapshot fingerprint", "snapshot fingerprint [--model DIR]",
                 "print the model fingerprint that KV snapshots record (JSON), for tools that write them") {
    const char *model_dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model_dir = argv[++i];
        else return dw_cli_fail("snapshot fingerprint: unknown or incomplete option '%s'", argv[i]);
    }
    if (!model_dir) model_dir = dw_cli_default_model_dir();
    dw_error err;
    dw_backend *be = NULL;
    dw_model *model = NULL;
    dw_fingerprint fp;
    int rc = 1;
    if (dw_backend_open("cpu", &be, &err) || dw_model_load(model_dir, be, NULL, &model, &err) ||
        dw_model_fingerprint(model, dw_model_tokenizer(model), &fp, &err)) {
        dw_cli_fail("snapshot fingerprint: %s", err.message);
    } else {
        printf("{\"architecture\": \"%s\", \"config_hash\": \"%s\", \"weights_hash\": \"%s\", \"tokenizer_hash\": \"%s\"}\n",
               fp.architecture, fp.config_hash, fp.weights_hash, fp.tokenizer_hash);
        rc = 0;
    }
    dw_model_free(model);
    dw_backend_close(be);
    return rc;
}
