/* Where the fuzz targets find their inputs on disk, and their scratch folder. */
#include "fuzz_support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef DW_FUZZ_SOURCE_DIR
#define DW_FUZZ_SOURCE_DIR "."
#endif
#ifndef DW_FUZZ_GUEST_DIR
#define DW_FUZZ_GUEST_DIR "build/guests"
#endif

static char scratch_dir[256];

void fuzz_single_thread(void) { setenv("DW_THREADS", "1", 1); }

const char *fuzz_model_dir(void) {
    const char *env = getenv("DW_FUZZ_MODEL_DIR");
    return env && *env ? env : DW_FUZZ_SOURCE_DIR "/models/driftwood-tiny";
}

const char *fuzz_guest_path(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s.wasm", DW_FUZZ_GUEST_DIR, name);
    return path;
}

static void remove_scratch(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch_dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", scratch_dir);
}

const char *fuzz_scratch_path(const char *name) {
    if (!scratch_dir[0]) {
        /* /dev/shm when there is one: the snapshot writer syncs every file it writes. */
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(scratch_dir, sizeof scratch_dir, "%s/dw-fuzz-XXXXXX", base);
        if (!mkdtemp(scratch_dir)) {
            perror("fuzz: mkdtemp");
            exit(2);
        }
        atexit(remove_scratch);
    }
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", scratch_dir, name);
    return path;
}

void fuzz_write_file(const char *path, const uint8_t *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

void fuzz_report(const char *target, int status, const char *message) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("DW_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "%s: status %d%s%s\n", target, status, status ? ": " : "", status ? message : "");
}
