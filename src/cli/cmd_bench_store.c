/* `driftwood bench store`: the cluster's snapshot store measured: a snapshot-sized object of
 * fresh random bytes put into JetStream (in chunks, replicated like the cluster's streams) and
 * read back, beside the same bytes through a file in a plain folder (what a shared mount would
 * offer), both in MB/s. */
#include <stdio.h>
#include <string.h>

#include "cli/bench_util.h"
#include "cli/command.h"
#include "driftwood/server.h"

DW_COMMAND_NAMED(bench_store, "bench store", "bench store --cluster nats://HOST:PORT[,...] [--size-mb N] [--dir DIR] [--reps N] [--json]",
                 "snapshot store throughput: JetStream chunks against a file in a folder") {
    const char *cluster = NULL, *dir = "/tmp";
    long size_mb = 128, reps = 3;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--cluster") && v) cluster = v, i++;
        else if (!strcmp(a, "--dir") && v) dir = v, i++;
        else if (!strcmp(a, "--size-mb") && v) { if (dw_cli_parse_long(a, v, 1, 4096, &size_mb)) return 1; i++; }
        else if (!strcmp(a, "--reps") && v) { if (dw_cli_parse_long(a, v, 1, 20, &reps)) return 1; i++; }
        else if (!strcmp(a, "--json")) json = 1;
        else return dw_cli_fail("bench store: unknown or incomplete option '%s'", a);
    }
    if (!cluster) return dw_cli_fail("bench store: --cluster nats://HOST:PORT[,...] is required");
    dw_store_bench runs[20];
    for (long r = 0; r < reps; r++) {
        dw_error err = {0};
        if (!json) fprintf(stderr, "bench store: %ld MB, run %ld of %ld\n", size_mb, r + 1, reps);
        if (dw_server_store_bench(cluster, dir, (size_t)size_mb << 20, &runs[r], &err) != DW_OK)
            return dw_cli_fail("bench store: %s", err.message);
    }
    /* medians of each measure */
    double med[4];
    for (int k = 0; k < 4; k++) {
        double v[20];
        for (long r = 0; r < reps; r++)
            v[r] = k == 0 ? runs[r].jetstream_put_mbs : k == 1 ? runs[r].jetstream_get_mbs : k == 2 ? runs[r].dir_put_mbs : runs[r].dir_get_mbs;
        med[k] = dw_cli_median(v, (size_t)reps);
    }
    if (json)
        printf("{\"size_mb\": %ld, \"reps\": %ld, \"jetstream_put_mbs\": %.1f, \"jetstream_get_mbs\": %.1f, "
               "\"dir_put_mbs\": %.1f, \"dir_get_mbs\": %.1f}\n", size_mb, reps, med[0], med[1], med[2], med[3]);
    else
        printf("snapshot of %ld MB (median of %ld)\n  JetStream chunks: put %.1f MB/s, get %.1f MB/s\n"
               "  file in %s:   put %.1f MB/s (fsync'd), get %.1f MB/s (page cache)\n",
               size_mb, reps, med[0], med[1], dir, med[2], med[3]);
    return 0;
}
