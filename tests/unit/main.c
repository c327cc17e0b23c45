/* Runs every registered unit test (or those whose name contains argv[1]) and prints
 * one result line per test and the closing "N passed, N failed" line. */
#include "test.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 1024

typedef struct {
    const char *name;
    const char *file;
    dw_test_fn fn;
} test_entry;

static test_entry tests[MAX_TESTS];
static int test_count;
static char tmp_dir[256];

void dw_test_register(const char *name, const char *file, dw_test_fn fn) {
    if (test_count == MAX_TESTS) {
        fprintf(stderr, "too many tests\n");
        exit(2);
    }
    tests[test_count++] = (test_entry){name, file, fn};
}

const char *dw_test_build_dir(void) {
    const char *b = getenv("DW_BUILD_DIR");
    return b ? b : "build";
}

const char *dw_test_tmp_dir(void) { return tmp_dir; }

const char *dw_test_model_dir(void) {
    const char *env = getenv("DW_TEST_MODEL");
    return env && *env ? env : "models/driftwood-tiny";
}

static int by_file(const void *a, const void *b) {
    /* constructors run in reverse order within a file on some toolchains: keep file order stable */
    return strcmp(((const test_entry *)a)->file, ((const test_entry *)b)->file);
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/dw-tests-XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 2;
    }
    qsort(tests, test_count, sizeof tests[0], by_file);
    int passed = 0, failed = 0;
    for (int i = 0; i < test_count; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int f = 0;
        tests[i].fn(&f);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        printf("%s %s (%.0f ms)\n", f ? "FAIL" : "ok  ", tests[i].name, ms);
        fflush(stdout);
        if (f) failed++; else passed++;
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    printf("unit: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
