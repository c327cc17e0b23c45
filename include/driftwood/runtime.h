/* The Driftwood runtime: compiled Wasm modules (with an on-disk cache of compiled code) and
 * the backends that actors run on. One runtime per process is typical; it is thread-safe. */
#ifndef DRIFTWOOD_RUNTIME_H
#define DRIFTWOOD_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "driftwood/backend.h"
#include "driftwood/engine.h"
#include "driftwood/error.h"

typedef struct dw_runtime dw_runtime;
typedef struct dw_module dw_module;

typedef struct dw_runtime_options {
    /* Folder for compiled modules; NULL: $DW_CACHE/modules, else ~/.cache/driftwood/modules.
     * "" disables the cache. */
    const char *module_cache_dir;
} dw_runtime_options;

dw_status dw_runtime_create(const dw_runtime_options *options, dw_runtime **out, dw_error *err);
/* Frees the runtime; every actor and module made from it must be freed first. */
void dw_runtime_free(dw_runtime *rt);

/* The backend of that name ("cpu", "cuda"), opened on first use and owned by the runtime. */
dw_status dw_runtime_backend(dw_runtime *rt, const char *name, dw_backend **out, dw_error *err);

/* ------------------------------------------------------------------------------------------
 * Models. Whoever starts the runtime registers models by name; actors open them by name (they
 * never open files). A model is loaded once per backend, on first use, and shared by every
 * actor and session on that backend. */

struct dw_model;
struct dw_tokenizer;

/* Registers the Hugging Face model directory dir (config.json, *.safetensors, tokenizer.json)
 * under name. Nothing is loaded yet; a name registered twice is an error. */
dw_status dw_runtime_register_model(dw_runtime *rt, const char *name, const char *dir, dw_error *err);

/* Options for the sessions actors open on a registered model. */
typedef struct dw_model_use_options {
    int kv_f32; /* 1: sessions keep their KV cache in F32 (exact parity with an f32 reference) */
    /* 1: the model batches its sessions (engine.h, "Batching") from its first load: actors on
     * many threads share its steps, with batch (its kv_f32 is taken from the field above). */
    int batching;
    dw_batch_options batch;
} dw_model_use_options;

/* dw_runtime_register_model with options (NULL: defaults, a BF16 cache). */
dw_status dw_runtime_register_model_with(dw_runtime *rt, const char *name, const char *dir,
                                         const dw_model_use_options *options, dw_error *err);

/* The options name was registered with; NULL if no such model. */
const dw_model_use_options *dw_runtime_model_options(dw_runtime *rt, const char *name);

/* The registered model `name` loaded onto `backend` ("cpu"/"cuda"), loading it now if this is
 * the first use; its tokenizer too. *load_ms (may be NULL) gets how long the load took (0 when
 * it was already loaded). Owned by the runtime. */
dw_status dw_runtime_model(dw_runtime *rt, const char *name, const char *backend, struct dw_model **model,
                           struct dw_tokenizer **tokenizer, double *load_ms, dw_error *err);

/* The name of the i-th registered model (in registration order), or NULL. */
const char *dw_runtime_model_name(dw_runtime *rt, int i);

/* The directory registered under name, or NULL. */
const char *dw_runtime_model_dir(dw_runtime *rt, const char *name);

/* How a module was obtained (for timing reports). */
typedef struct dw_module_stats {
    int from_cache;        /* 1: deserialized from the compiled-module cache */
    double load_ms;        /* compile or deserialize, wall time */
    uint8_t sha256[32];    /* of the .wasm bytes */
} dw_module_stats;

/* Loads and compiles (or fetches from the cache) a .wasm file. A file that is not Wasm,
 * truncated or invalid gives DW_ERR_FORMAT with a one-line reason naming the file. */
dw_status dw_module_load_file(dw_runtime *rt, const char *path, dw_module **out, dw_error *err);
dw_status dw_module_load_bytes(dw_runtime *rt, const char *name, const uint8_t *bytes, size_t len,
                               dw_module **out, dw_error *err);
const dw_module_stats *dw_module_stats_get(const dw_module *m);
void dw_module_free(dw_module *m);

#endif
