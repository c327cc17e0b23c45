/* Internal layout of the runtime (include/driftwood/runtime.h is the interface). */
#ifndef DW_ACTOR_RUNTIME_IMPL_H
#define DW_ACTOR_RUNTIME_IMPL_H

#include <pthread.h>

#include "driftwood/runtime.h"

#define DW_MAX_BACKENDS 4

struct dw_runtime {
    char *module_cache_dir; /* NULL: cache disabled */
    pthread_mutex_t lock;   /* guards backends */
    dw_backend *backends[DW_MAX_BACKENDS];
    int backend_count;
};

#endif
