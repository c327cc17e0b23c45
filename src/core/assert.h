/* DW_ASSERT: aborts on a broken invariant (never for bad input; that gets a dw_status). */
#ifndef DW_CORE_ASSERT_H
#define DW_CORE_ASSERT_H
#include <stdio.h>
#include <stdlib.h>
#define DW_ASSERT(cond)                                                                    \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "driftwood: internal error: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            abort();                                                                       \
        }                                                                                  \
    } while (0)
#endif
