/* Shared by the CUDA tests: open the CUDA backend or skip. Without a usable GPU a CUDA test
 * passes without running (saying so once), unless DW_REQUIRE_CUDA=1 (tools/gpu-check.sh), which
 * turns a missing GPU into a failure. Any other failure to open fails the test. */
#ifndef DW_TEST_CUDA_H
#define DW_TEST_CUDA_H

#include <stdio.h>
#include <stdlib.h>

#include "driftwood/backend.h"
#include "test.h"

static inline int dw_test_cuda_required(void) {
    const char *r = getenv("DW_REQUIRE_CUDA");
    return r && *r == '1';
}

static inline void dw_test_cuda_note_skip(const char *why) {
    static int said;
    if (!said++) printf("    skipped: no CUDA device, CUDA tests pass without running (%s)\n", why);
}

/* Opens "cuda" into b, or returns from the test (passing) as above. Needs a dw_error err. */
#define OPEN_CUDA_OR_SKIP(b)                                                                      \
    do {                                                                                          \
        dw_status open_st_ = dw_backend_open("cuda", &(b), &err);                                 \
        if (open_st_ == DW_ERR_UNSUPPORTED && !dw_test_cuda_required()) {                         \
            dw_test_cuda_note_skip(err.message);                                                  \
            return;                                                                               \
        }                                                                                         \
        CHECK_OK(open_st_);                                                                       \
    } while (0)

/* Returns from the test (passing) as OPEN_CUDA_OR_SKIP when there is no GPU; else goes on, for a
 * test whose code opens the CUDA backend itself. */
#define SKIP_WITHOUT_CUDA()                                                                       \
    do {                                                                                          \
        dw_error err = {0};                                                                       \
        dw_backend *probe_;                                                                       \
        OPEN_CUDA_OR_SKIP(probe_);                                                                \
        dw_backend_close(probe_);                                                                 \
    } while (0)

#endif
