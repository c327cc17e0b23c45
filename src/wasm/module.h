/* Internal layout of runtimes and modules (include/driftwood/runtime.h is the interface). */
#ifndef DW_WASM_MODULE_H
#define DW_WASM_MODULE_H

#include <pthread.h>
#include <wasmtime.h>

#include "driftwood/runtime.h"

#define DW_MAX_BACKENDS 4

struct dw_runtime {
    char *module_cache_dir; /* NULL: cache disabled */
    pthread_mutex_t lock;   /* guards backends */
    dw_backend *backends[DW_MAX_BACKENDS];
    int backend_count;
};

struct dw_module {
    wasmtime_module_t *module;
    char *name; /* file name, for messages */
    dw_module_stats stats;
};

#endif
