/* Whole-actor snapshots (format in include/driftwood/snapshot.h): taken between messages,
 * restored into a fresh instance of the same module. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actor/actor_impl.h"
#include "core/sha256.h"
#include "driftwood/snapshot.h"
#include "snapshot/kv_session.h"
#include "snapshot/snapshot_file.h"
#include "core/clock.h"

#define CHUNK 4096 /* memory is saved in 4 KiB chunks; all-zero chunks are left out */

static const char *kind_name(wasm_valkind_t k) {
    return k == WASM_I32 ? "i32" : k == WASM_I64 ? "i64" : k == WASM_F32 ? "f32" : k == WASM_F64 ? "f64" : NULL;
}

/* The exported mutable globals as JSON [{"name", "type", "bits"}] (floats as their bit
 * patterns, so values come back exactly). Fails when the module has mutable globals that are
 * not exported: restoring without them would silently change the actor. */
static dw_status capture_globals(dw_actor *a, json_t **out, dw_error *err) {
    json_t *list = json_array();
    int exported = 0;
    char *name;
    size_t name_len;
    wasmtime_extern_t item;
    for (size_t i = 0; wasmtime_instance_export_nth(a->context, &a->instance, i, &name, &name_len, &item); i++) {
        if (item.kind != WASMTIME_EXTERN_GLOBAL) {
            wasmtime_extern_delete(&item);
            continue;
        }
        wasm_globaltype_t *gt = wasmtime_global_type(a->context, &item.of.global);
        int mutable_ = wasm_globaltype_mutability(gt) == WASM_VAR;
        wasm_valkind_t kind = wasm_valtype_kind(wasm_globaltype_content(gt));
        wasm_globaltype_delete(gt);
        if (!mutable_) continue;
        if (!kind_name(kind)) {
            json_decref(list);
            return dw_error_set(err, DW_ERR_UNSUPPORTED, "snapshot: global '%.*s' has a reference type", (int)name_len, name);
        }
        wasmtime_val_t v;
        wasmtime_global_get(a->context, &item.of.global, &v);
        char bits[32];
        uint64_t raw = kind == WASM_I32 ? (uint32_t)v.of.i32 : kind == WASM_I64 ? (uint64_t)v.of.i64 : 0;
        if (kind == WASM_F32) memcpy(&raw, &v.of.f32, 4);
        if (kind == WASM_F64) memcpy(&raw, &v.of.f64, 8);
        snprintf(bits, sizeof bits, "%llu", (unsigned long long)raw);
        json_array_append_new(list, json_pack("{s:s%, s:s, s:s}", "name", name, name_len, "type", kind_name(kind), "bits", bits));
        exported++;
    }
    if (a->module->mutable_globals < 0 || exported < a->module->mutable_globals) {
        json_decref(list);
        return dw_error_set(err, DW_ERR_UNSUPPORTED,
                            "snapshot: the module has %d mutable globals but exports only %d, so its state cannot be "
                            "captured (build guests with sdk/guest.mk, which exports __stack_pointer)",
                            a->module->mutable_globals, exported);
    }
    *out = list;
    return DW_OK;
}

dw_status dw_actor_snapshot_save(dw_actor *a, const char *path, dw_actor_snapshot_report *report, dw_error *err) {
    double t0 = dw__now_ms();
    if (a->busy) return dw_error_set(err, DW_ERR_STATE, "snapshot: the actor is handling a message; take snapshots between messages");
    if (!a->abi.memory) return dw_error_set(err, DW_ERR_UNSUPPORTED, "snapshot: the actor has no memory to save");
    json_t *globals = NULL, *models = json_array(), *sessions = json_array();
    dw__snapfile_writer *w = NULL;
    dw__kv_export ex[DW_ABI_MAX_SESSIONS];
    memset(ex, 0, sizeof ex);
    uint8_t *chunks = NULL;
    uint32_t *index = NULL;
    dw_status st = capture_globals(a, &globals, err);
    if (st != DW_OK) goto done;
    if ((st = dw__snapfile_writer_new("driftwood-actor", 1, &w, err))) goto done;

    /* memory: the non-zero 4 KiB chunks and their indices */
    const uint8_t *base = a->abi.memory->base;
    size_t size = a->abi.memory->size, n_chunks = (size + CHUNK - 1) / CHUNK, kept = 0;
    static const uint8_t zero[CHUNK];
    size_t chunks_cap = 0; /* grown as chunks are kept: the buffer costs what the snapshot holds */
    for (size_t c = 0; c < n_chunks; c++) {
        size_t len = size - c * CHUNK < CHUNK ? size - c * CHUNK : CHUNK;
        if (!memcmp(base + c * CHUNK, zero, len)) continue;
        if (kept == chunks_cap) {
            size_t cap = chunks_cap ? chunks_cap * 2 : 64;
            uint8_t *more_chunks = realloc(chunks, cap * CHUNK);
            if (more_chunks) chunks = more_chunks;
            uint32_t *more_index = more_chunks ? realloc(index, cap * sizeof *index) : NULL;
            if (more_index) index = more_index;
            if (!more_chunks || !more_index) {
                st = dw_error_set(err, DW_ERR_NO_MEMORY, "snapshot: out of memory");
                goto done;
            }
            chunks_cap = cap;
        }
        memcpy(chunks + kept * CHUNK, base + c * CHUNK, len);
        if (len < CHUNK) memset(chunks + kept * CHUNK + len, 0, CHUNK - len);
        index[kept++] = (uint32_t)c;
    }
    int64_t shape_chunks[2] = {(int64_t)kept, CHUNK}, shape_index[1] = {(int64_t)kept};
    char module_hex[DW_SHA256_HEX_SIZE];
    dw__sha256_hex(a->module->stats.sha256, module_hex);
    static const uint32_t no_index[1];
    if ((st = dw__snapfile_add(w, "memory.chunks", DW_DTYPE_U8, 2, shape_chunks, kept ? chunks : zero, kept * CHUNK, err)) ||
        (st = dw__snapfile_add(w, "memory.index", DW_DTYPE_U32, 1, shape_index, kept ? index : no_index,
                               kept * sizeof *index, err)) ||
        (st = dw__snapfile_meta(w, "module_sha256", module_hex, err)) ||
        (st = dw__snapfile_meta_long(w, "memory_bytes", (long long)size, err)) ||
        (st = dw__snapfile_meta_long(w, "chunk_bytes", CHUNK, err)))
        goto done;

    for (int i = 0; i < a->abi.model_count; i++) json_array_append_new(models, json_string(a->abi.models[i].name));
    int n_sessions = 0;
    for (int i = 0; i < DW_ABI_MAX_SESSIONS; i++) {
        dw__abi_session *s = &a->abi.sessions[i];
        if (!s->session) continue;
        char prefix[32];
        snprintf(prefix, sizeof prefix, "session.%d.", i);
        if ((st = dw__kv_session_export(s->session, a->abi.models[s->model].tokenizer, prefix, w, &ex[i], err))) goto done;
        json_array_append_new(sessions, json_pack("{s:i, s:i, s:i}", "slot", i, "generation", s->generation, "model", s->model));
        n_sessions++;
    }
    char *gj = json_dumps(globals, JSON_COMPACT), *mj = json_dumps(models, JSON_COMPACT), *sj = json_dumps(sessions, JSON_COMPACT);
    st = !gj || !mj || !sj ? dw_error_set(err, DW_ERR_NO_MEMORY, "snapshot: out of memory") : DW_OK;
    if (st == DW_OK) st = dw__snapfile_meta(w, "globals", gj, err);
    if (st == DW_OK) st = dw__snapfile_meta(w, "models", mj, err);
    if (st == DW_OK) st = dw__snapfile_meta(w, "sessions", sj, err);
    free(gj), free(mj), free(sj);
    uint64_t bytes = 0;
    if (st == DW_OK) st = dw__snapfile_write(w, path, &bytes, err);
    if (st == DW_OK && report)
        *report = (dw_actor_snapshot_report){dw__now_ms() - t0, bytes, size, kept * CHUNK, n_sessions, 0};
done:
    for (int i = 0; i < DW_ABI_MAX_SESSIONS; i++) dw__kv_export_free(&ex[i]);
    dw__snapfile_writer_free(w);
    json_decref(globals), json_decref(models), json_decref(sessions);
    free(chunks), free(index);
    return st;
}

/* --- restore ------------------------------------------------------------------------------- */

static json_t *meta_json(const dw_safetensors *st, const char *key, json_type type, dw_error *err) {
    const char *text = dw_safetensors_metadata(st, key);
    json_t *j = text ? json_loads(text, 0, NULL) : NULL;
    if (!j || json_typeof(j) != type) {
        json_decref(j);
        dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: metadata '%s' is missing or malformed", dw_safetensors_path(st), key);
        return NULL;
    }
    return j;
}

static dw_status restore_memory(dw_actor *a, const dw_safetensors *st, dw_error *err) {
    long long size, chunk;
    dw_status rc;
    if ((rc = dw__snapfile_meta_get_long(st, "memory_bytes", 0, (long long)1 << 34, &size, err)) ||
        (rc = dw__snapfile_meta_get_long(st, "chunk_bytes", CHUNK, CHUNK, &chunk, err)))
        return rc;
    const dw_tensor_info *chunks, *index;
    int64_t any2[2] = {-1, CHUNK}, any1[1] = {-1};
    if ((rc = dw__snapfile_tensor(st, "memory.chunks", DW_DTYPE_U8, 2, any2, &chunks, err)) ||
        (rc = dw__snapfile_tensor(st, "memory.index", DW_DTYPE_U32, 1, any1, &index, err)))
        return rc;
    if (index->shape[0] != chunks->shape[0])
        return dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: memory.index and memory.chunks disagree", dw_safetensors_path(st));
    if (!a->has_memory || !a->abi.memory) return dw_error_set(err, DW_ERR_UNSUPPORTED, "restore: the module has no memory");
    size_t cur = wasmtime_memory_data_size(a->context, &a->memory);
    if ((size_t)size < cur || size % 65536)
        return dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: memory of %lld bytes cannot hold this module's %zu",
                            dw_safetensors_path(st), size, cur);
    if (a->memory_context.limit && (size_t)size > a->memory_context.limit)
        return dw_error_set(err, DW_ERR_LIMIT, "snapshot %s: its memory of %lld bytes is over the actor's memory limit of %zu bytes",
                            dw_safetensors_path(st), size, a->memory_context.limit);
    /* Restore costs what the snapshot holds: the pages a grow adds are zero and stay untouched;
     * of the instance's first `cur` bytes, only chunks that are not zero (data segments) are
     * cleared; then the saved chunks are written. */
    uint8_t *base = a->abi.memory->base;
    static const uint8_t zero[CHUNK];
    for (size_t off = 0; off < cur; off += CHUNK) {
        size_t len = cur - off < CHUNK ? cur - off : CHUNK;
        if (memcmp(base + off, zero, len)) memset(base + off, 0, len);
    }
    if ((size_t)size > cur) {
        uint64_t prev;
        wasmtime_error_t *e = wasmtime_memory_grow(a->context, &a->memory, ((size_t)size - cur) / 65536, &prev);
        if (e) return dw__wasm_error_take(e, NULL, err), dw_error_prefix(err, "restore: growing memory to %lld bytes", size);
    }
    const uint32_t *idx = index->data;
    const uint8_t *data = chunks->data;
    size_t n_chunks = ((size_t)size + CHUNK - 1) / CHUNK;
    for (int64_t i = 0; i < index->shape[0]; i++) {
        uint32_t c;
        memcpy(&c, idx + i, sizeof c);
        if (c >= n_chunks) return dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: memory chunk %u out of range", dw_safetensors_path(st), c);
        size_t len = (size_t)size - (size_t)c * CHUNK < CHUNK ? (size_t)size - (size_t)c * CHUNK : CHUNK;
        memcpy(base + (size_t)c * CHUNK, data + (size_t)i * CHUNK, len);
    }
    return DW_OK;
}

static dw_status restore_globals(dw_actor *a, const dw_safetensors *st, dw_error *err) {
    json_t *globals = meta_json(st, "globals", JSON_ARRAY, err);
    if (!globals) return DW_ERR_FORMAT;
    dw_status rc = DW_OK;
    size_t i;
    json_t *g;
    json_array_foreach(globals, i, g) {
        const char *name = json_string_value(json_object_get(g, "name")), *type = json_string_value(json_object_get(g, "type")),
                   *bits = json_string_value(json_object_get(g, "bits"));
        wasmtime_extern_t item;
        if (!name || !type || !bits || !wasmtime_instance_export_get(a->context, &a->instance, name, strlen(name), &item) ||
            item.kind != WASMTIME_EXTERN_GLOBAL) {
            rc = dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: global '%s' does not match the module", dw_safetensors_path(st),
                              name ? name : "?");
            break;
        }
        uint64_t raw = strtoull(bits, NULL, 10);
        wasmtime_val_t v = {0};
        if (!strcmp(type, "i32")) v.kind = WASMTIME_I32, v.of.i32 = (int32_t)(uint32_t)raw;
        else if (!strcmp(type, "i64")) v.kind = WASMTIME_I64, v.of.i64 = (int64_t)raw;
        else if (!strcmp(type, "f32")) v.kind = WASMTIME_F32, memcpy(&v.of.f32, &raw, 4);
        else v.kind = WASMTIME_F64, memcpy(&v.of.f64, &raw, 8);
        wasmtime_error_t *e = wasmtime_global_set(a->context, &item.of.global, &v);
        if (e) {
            rc = dw__wasm_error_take(e, NULL, err);
            dw_error_prefix(err, "restore: global '%s'", name);
            break;
        }
    }
    json_decref(globals);
    return rc;
}

static dw_status restore_sessions(dw_actor *a, const dw_safetensors *st, int *rebuilt, int *n_sessions, dw_error *err) {
    json_t *models = meta_json(st, "models", JSON_ARRAY, err), *sessions = models ? meta_json(st, "sessions", JSON_ARRAY, err) : NULL;
    if (!models || !sessions) return json_decref(models), DW_ERR_FORMAT;
    dw_status rc = DW_OK;
    size_t i;
    json_t *m, *s;
    json_array_foreach(models, i, m) { /* reopened in the same order: same handles */
        int32_t handle;
        if (!json_is_string(m)) rc = dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: bad model list", dw_safetensors_path(st));
        else rc = dw__abi_open_model(&a->abi, json_string_value(m), &handle, err);
        if (rc != DW_OK || handle != (int32_t)i + 1) {
            if (rc == DW_OK) rc = dw_error_set(err, DW_ERR_STATE, "restore: model handles do not line up");
            else dw_error_prefix(err, "restore: model '%s'", json_string_value(m) ? json_string_value(m) : "?");
            break;
        }
    }
    json_array_foreach(sessions, i, s) {
        if (rc != DW_OK) break;
        json_int_t slot = json_integer_value(json_object_get(s, "slot")), gen = json_integer_value(json_object_get(s, "generation")),
                   model = json_integer_value(json_object_get(s, "model"));
        if (slot < 0 || slot >= DW_ABI_MAX_SESSIONS || model < 0 || model >= a->abi.model_count || a->abi.sessions[slot].session) {
            rc = dw_error_set(err, DW_ERR_FORMAT, "snapshot %s: bad session entry", dw_safetensors_path(st));
            break;
        }
        char prefix[32], key[64];
        long long ctx;
        snprintf(prefix, sizeof prefix, "session.%d.", (int)slot);
        snprintf(key, sizeof key, "%sctx", prefix);
        if ((rc = dw__snapfile_meta_get_long(st, key, 1, 1 << 24, &ctx, err))) break;
        dw__abi_session *slot_p = &a->abi.sessions[slot];
        if ((rc = dw__abi_session_open(&a->abi, (int)model, (int)ctx, slot_p, err))) {
            dw_error_prefix(err, "snapshot %s: session %d", dw_safetensors_path(st), (int)slot);
            break;
        }
        slot_p->generation = (uint16_t)gen;
        int was_rebuilt = 0;
        rc = dw__kv_session_import(slot_p->session, a->abi.models[model].tokenizer, st, prefix, &was_rebuilt, err);
        *rebuilt += was_rebuilt;
        ++*n_sessions;
    }
    json_decref(models), json_decref(sessions);
    return rc;
}

dw_status dw_actor_snapshot_restore(dw_runtime *rt, dw_module *module, const dw_actor_options *options, const char *path,
                                    dw_actor **out, dw_actor_snapshot_report *report, dw_error *err) {
    double t0 = dw__now_ms();
    *out = NULL;
    dw_safetensors *st;
    dw_status rc = dw__snapfile_open(path, "driftwood-actor", 1, &st, err);
    if (rc != DW_OK) return rc;
    char module_hex[DW_SHA256_HEX_SIZE];
    dw__sha256_hex(module->stats.sha256, module_hex);
    const char *want = dw_safetensors_metadata(st, "module_sha256");
    dw_actor *a = NULL;
    int rebuilt = 0, n_sessions = 0;
    if (!want || strcmp(want, module_hex) != 0) {
        rc = dw_error_set(err, DW_ERR_STATE, "snapshot %s: taken from module %.16s…, not from %s (%.16s…)", path,
                          want ? want : "?", module->name, module_hex);
        goto done;
    }
    if ((rc = dw__actor_create(rt, module, options, 0, &a, err))) goto done;
    if ((rc = restore_memory(a, st, err)) || (rc = restore_globals(a, st, err)) ||
        (rc = restore_sessions(a, st, &rebuilt, &n_sessions, err)))
        goto done;
    if (report) {
        long long size = 0;
        dw__snapfile_meta_get_long(st, "memory_bytes", 0, (long long)1 << 34, &size, NULL);
        FILE *f = fopen(path, "rb");
        uint64_t bytes = 0;
        if (f && fseek(f, 0, SEEK_END) == 0) bytes = (uint64_t)ftell(f);
        if (f) fclose(f);
        *report = (dw_actor_snapshot_report){dw__now_ms() - t0, bytes, (uint64_t)size, 0, n_sessions, rebuilt};
    }
    *out = a;
    a = NULL;
done:
    dw_actor_free(a);
    dw_safetensors_close(st);
    return rc;
}
