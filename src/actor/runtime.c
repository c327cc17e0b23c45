/* The runtime: the object an embedding application holds. It owns the module cache folder,
 * the backends (runtime_backends.c) and the registered models (model_registry.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor/runtime_impl.h"
#include "core/file.h"
#include "wasm/engine.h"
#include "wasm/module.h"

static char *default_cache_dir(void) {
    char buf[4096];
    return dw__cache_dir("modules", buf, sizeof buf) ? strdup(buf) : NULL;
}

dw_status dw_runtime_create(const dw_runtime_options *options, dw_runtime **out, dw_error *err) {
    *out = NULL;
    if (!dw__wasm_engine(err)) return err ? err->status : DW_ERR_UNSUPPORTED;
    dw_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) return dw_error_set(err, DW_ERR_NO_MEMORY, "runtime: out of memory");
    const char *dir = options ? options->module_cache_dir : NULL;
    rt->module_cache_dir = dir ? (*dir ? strdup(dir) : NULL) : default_cache_dir();
    pthread_mutex_init(&rt->lock, NULL);
    *out = rt;
    return DW_OK;
}

void dw_runtime_free(dw_runtime *rt) {
    if (!rt) return;
    dw__runtime_free_models(rt);
    dw__runtime_close_backends(rt);
    pthread_mutex_destroy(&rt->lock);
    free(rt->module_cache_dir);
    free(rt);
}

dw_status dw_module_load_bytes(dw_runtime *rt, const char *name, const uint8_t *bytes, size_t len,
                               dw_module **out, dw_error *err) {
    return dw__module_load(rt->module_cache_dir, name, bytes, len, out, err);
}

#define DW_MAX_MODULE_BYTES ((size_t)256 << 20)

dw_status dw_module_load_file(dw_runtime *rt, const char *path, dw_module **out, dw_error *err) {
    char *bytes;
    size_t len;
    *out = NULL;
    dw_status st = dw_file_read_all(path, DW_MAX_MODULE_BYTES, &bytes, &len, err);
    if (st != DW_OK) return st;
    st = dw_module_load_bytes(rt, path, (const uint8_t *)bytes, len, out, err);
    free(bytes);
    return st;
}

