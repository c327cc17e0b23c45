/* The unit-test harness: TEST(name) registers a test; CHECK(cond) records a failure
 * with its location and returns from the test. Tests run in registration order
 * (file order, then line order) from tests/unit/main.c. */
#ifndef DW_TEST_H
#define DW_TEST_H

#include <stdio.h>
#include <string.h>

typedef void (*dw_test_fn)(int *failed);
void dw_test_register(const char *name, const char *file, dw_test_fn fn);

/* Where test data and built guests live (set by main.c from the environment). */
const char *dw_test_build_dir(void);  /* e.g. "build" */
const char *dw_test_tmp_dir(void);    /* a fresh per-run temporary directory */
/* The model that model tests load: $DW_TEST_MODEL, else the shipped models/driftwood-tiny. */
const char *dw_test_model_dir(void);

#define TEST(name)                                                                  \
    static void test_##name(int *dw_test_failed_);                                  \
    __attribute__((constructor)) static void register_##name(void) {                \
        dw_test_register(#name, __FILE__, test_##name);                             \
    }                                                                               \
    static void test_##name(int *dw_test_failed_)

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "    %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            *dw_test_failed_ = 1;                                                   \
            return;                                                                 \
        }                                                                           \
    } while (0)

#define CHECK_MSG(cond, ...)                                                        \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "    %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                           \
            fprintf(stderr, "\n");                                                  \
            *dw_test_failed_ = 1;                                                   \
            return;                                                                 \
        }                                                                           \
    } while (0)

/* CHECK_OK(expr): expr returns dw_status; on failure prints err.message (needs a dw_error err). */
#define CHECK_OK(expr)                                                              \
    do {                                                                            \
        dw_status st_ = (expr);                                                     \
        CHECK_MSG(st_ == DW_OK, "%s -> %s: %s", #expr, dw_status_name(st_), err.message); \
    } while (0)

#endif
