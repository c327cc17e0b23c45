/* Internal layout of the runtime (include/driftwood/runtime.h is the interface). */
#ifndef DW_ACTOR_RUNTIME_IMPL_H
#define DW_ACTOR_RUNTIME_IMPL_H

#include <pthread.h>

#include "driftwood/runtime.h"

#define DW_MAX_BACKENDS 4
#define DW_MAX_MODELS 16

struct dw_model;
struct dw_tokenizer;

/* A model registered by name; loaded at most once per backend. */
typedef struct dw__registered_model {
    char *name;
    char *dir;
    dw_model_use_options options;
    struct dw_tokenizer *tokenizer;          /* loaded with the first model */
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

/* Frees every loaded model and tokenizer (before the backends are closed). */
void dw__runtime_free_models(dw_runtime *rt);

#endif
