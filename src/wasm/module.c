/* Loading modules: a quick check of the Wasm header for clear messages, then Wasmtime
 * compilation, with compiled code cached on disk (serialized, keyed by the module's SHA-256
 * and the engine tag) so that an actor starts in milliseconds the second time.
 * The cache folder is the user's own: Wasmtime trusts serialized code, so it must not be
 * writable by others (we create it 0700). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/file.h"
#include "core/sha256.h"
#include "wasm/engine.h"
#include "wasm/module_inspect.h"
#include "wasm/module.h"
#include "core/clock.h"

static dw_status check_header(const char *name, const uint8_t *bytes, size_t len, dw_error *err) {
    static const uint8_t magic[4] = {0x00, 'a', 's', 'm'};
    if (len < 4 || memcmp(bytes, magic, 4) != 0)
        return dw_error_set(err, DW_ERR_FORMAT, "%s: not a WebAssembly module (no \\0asm magic)", name);
    if (len < 8) return dw_error_set(err, DW_ERR_FORMAT, "%s: truncated WebAssembly module (%zu bytes)", name, len);
    if (bytes[4] != 1 || bytes[5] || bytes[6] || bytes[7])
        return dw_error_set(err, DW_ERR_UNSUPPORTED,
                            "%s: unsupported WebAssembly binary version (components are not supported)", name);
    return DW_OK;
}

static int mkdir_p(const char *dir) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

static void cache_path(const char *cache_dir, const uint8_t sha[32], char *out, size_t cap) {
    char hex[65];
    dw__sha256_hex(sha, hex);
    snprintf(out, cap, "%s/%s-%s.cwasm", cache_dir, hex, dw__wasm_engine_tag());
}

static wasmtime_module_t *cache_load(wasm_engine_t *engine, const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return NULL;
    wasmtime_module_t *m = NULL;
    wasmtime_error_t *e = wasmtime_module_deserialize_file(engine, path, &m);
    if (e) { /* stale or damaged entry: recompile and overwrite */
        wasmtime_error_delete(e);
        return NULL;
    }
    return m;
}

static void cache_store(const char *cache_dir, wasmtime_module_t *m, const char *path) {
    wasm_byte_vec_t bytes;
    wasmtime_error_t *e = wasmtime_module_serialize(m, &bytes);
    if (e) {
        wasmtime_error_delete(e);
        return;
    }
    dw_error err;
    if (mkdir_p(cache_dir) == 0 && dw_file_write_atomic(path, bytes.data, bytes.size, &err) != DW_OK)
        fprintf(stderr, "driftwood: warning: module cache: %s\n", err.message);
    wasm_byte_vec_delete(&bytes);
}

dw_status dw__module_load(const char *cache_dir, const char *name, const uint8_t *bytes, size_t len,
                          dw_module **out, dw_error *err) {
    *out = NULL;
    wasm_engine_t *engine = dw__wasm_engine(err);
    if (!engine) return err ? err->status : DW_ERR_UNSUPPORTED;
    dw_status st = check_header(name, bytes, len, err);
    if (st != DW_OK) return st;

    dw_module *m = calloc(1, sizeof *m);
    if (!m || !(m->name = strdup(name))) {
        free(m);
        return dw_error_set(err, DW_ERR_NO_MEMORY, "%s: out of memory", name);
    }
    double t0 = dw__now_ms();
    dw__sha256(bytes, len, m->stats.sha256);
    m->mutable_globals = dw__wasm_count_mutable_globals(bytes, len);
    char path[4200] = "";
    if (cache_dir) {
        cache_path(cache_dir, m->stats.sha256, path, sizeof path);
        m->module = cache_load(engine, path);
        m->stats.from_cache = m->module != NULL;
    }
    if (!m->module) {
        wasmtime_error_t *e = wasmtime_module_new(engine, bytes, len, &m->module);
        if (e) {
            dw__wasm_error_take(e, NULL, err);
            dw_error_prefix(err, "%s: invalid WebAssembly module", name);
            if (err) err->status = DW_ERR_FORMAT;
            dw_module_free(m);
            return DW_ERR_FORMAT;
        }
        if (cache_dir) cache_store(cache_dir, m->module, path);
    }
    m->stats.load_ms = dw__now_ms() - t0;
    *out = m;
    return DW_OK;
}

const dw_module_stats *dw_module_stats_get(const dw_module *m) { return &m->stats; }

void dw_module_free(dw_module *m) {
    if (!m) return;
    if (m->module) wasmtime_module_delete(m->module);
    free(m->name);
    free(m);
}
