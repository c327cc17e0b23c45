/* Compiled modules (the wasm layer's part of include/driftwood/runtime.h): compilation with
 * an on-disk cache of compiled code. */
#ifndef DW_WASM_MODULE_H
#define DW_WASM_MODULE_H

#include <wasmtime.h>

#include "driftwood/runtime.h"

struct dw_module {
    wasmtime_module_t *module;
    char *name; /* file name, for messages */
    dw_module_stats stats;
    int mutable_globals; /* defined or imported; -1 if unknown */
};

/* Compiles bytes (or loads the compiled code from cache_dir, which may be NULL: no cache). */
dw_status dw__module_load(const char *cache_dir, const char *name, const uint8_t *bytes, size_t len,
                          dw_module **out, dw_error *err);

#endif
