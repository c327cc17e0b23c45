/* Internal layout of the runtime (include/driftwood/runtime.h is the interface). */
#ifndef DW_ACTOR_RUNTIME_IMPL_H
#define DW_ACTOR_RUNTIME_IMPL_H

#include <pthread.h>

#include "driftwood/runtime.h"

#define DW_MAX_BACKENDS 4
#define DW_MAX_MODELS 16

struct dw_model;

/* A model registered by name; loaded at most once per backend. */
typedef struct dw__registered_model {
    char *name;
    char *dir;
    dw_model_use_options options;
    dw_backend *backends[DW_MAX_BACKENDS];   /* loaded[i] is on backends[i] */
    struct dw_model *loaded[DW_MAX_BACKENDS];
    int loaded_count;
} dw__registered_model;

struct dw_runtime {
    char *module_cache_dir; /* NULL: cache disabled */
    pthread_mutex_t lock;   /* guards backends and models */
    dw_backend *backends[DW_MAX_BACKENDS];
    int backend_count;
    dw__registered_model models[DW_MAX_MODELS];
    int model_count;
};

/* Frees every loaded model (before the backends are closed). model_registry.c */
void dw__runtime_free_models(dw_runtime *rt);

/* Closes every backend the runtime opened. runtime_backends.c */
void dw__runtime_close_backends(dw_runtime *rt);

#endif
