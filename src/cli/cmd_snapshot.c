/* `driftwood snapshot inspect FILE`: the metadata and tensor table of a KV or actor snapshot,
 * after checking its checksum. */
#include <stdio.h>
#include <string.h>

#include "cli/command.h"
#include "driftwood/safetensors.h"
#include "snapshot/snapshot_file.h"

DW_COMMAND_NAMED(snapshot_inspect, "snapshot inspect", "snapshot inspect FILE",
                 "print a snapshot's metadata and tensor table (after verifying its checksum)") {
    if (argc != 2) return dw_cli_fail("snapshot inspect: expected exactly one FILE");
    const char *path = argv[1];
    dw_error err;
    dw_safetensors *st;
    dw_status rc = dw__snapfile_open(path, "driftwood-kv", 1, &st, &err);
    if (rc == DW_ERR_FORMAT && strstr(err.message, "a driftwood-actor file"))
        rc = dw__snapfile_open(path, "driftwood-actor", 1, &st, &err);
    if (rc != DW_OK) return dw_cli_fail("%s", err.message);
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
