/* Actor lifetime and calls into the guest: one store, linker and instance per actor; the
 * actor's memories are created by Driftwood (wasm/memory_creator.c) and registered with the
 * actor's backend while the instance is created on the calling thread. */
#include "actor/actor_impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/clock.h"

#define NO_DEADLINE ((uint64_t)1 << 62)

/* Two clocks hold the one limit: Wasm code is interrupted at the epoch deadline, and host
 * functions compare the monotonic clock with abi.deadline_s (abi.c, and the chunked host work). */
void dw__actor_arm_deadline(dw_actor *actor) {
    wasmtime_context_set_epoch_deadline(actor->context, actor->timeout_ticks ? actor->timeout_ticks : NO_DEADLINE);
    actor->abi.deadline_s = actor->timeout_ticks ? dw__now_s() + actor->abi.timeout_s : 0;
}

/* 0 (none), or a finite number of seconds in [DW_ACTOR_TIMEOUT_MIN_SECONDS, DW_ACTOR_TIMEOUT_MAX_SECONDS]. */
static dw_status check_timeout(double t, dw_error *err) {
    if (t == 0) return DW_OK;
    if (!(t > 0)) return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "actor: timeout %g s: it must be positive (0: no timeout)", t);
    if (t < DW_ACTOR_TIMEOUT_MIN_SECONDS)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "actor: timeout %g s is too small: the smallest is %g s (0: no timeout)",
                            t, DW_ACTOR_TIMEOUT_MIN_SECONDS);
    if (!(t <= DW_ACTOR_TIMEOUT_MAX_SECONDS))
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "actor: timeout %g s is too large: the largest is %g s (0: no timeout)",
                            t, DW_ACTOR_TIMEOUT_MAX_SECONDS);
    return DW_OK;
}

/* Bounds the store's resources besides linear-memory bytes (those the memory creator caps):
 * elements per table, and how many instances, tables and memories the store may hold. */
static void limit_store(dw_actor *a, size_t memory_limit) {
    int64_t table_elements = DW_ACTOR_MAX_TABLE_ELEMENTS;
    if (memory_limit && memory_limit / DW_ACTOR_TABLE_ELEMENT_BYTES < (size_t)table_elements)
        table_elements = (int64_t)(memory_limit / DW_ACTOR_TABLE_ELEMENT_BYTES);
    wasmtime_store_limiter(a->store, memory_limit ? (int64_t)memory_limit : -1, table_elements, DW_ACTOR_MAX_INSTANCES,
                           DW_ACTOR_MAX_TABLES, DW_ACTOR_MAX_MEMORIES);
}

static dw_status configure_wasi(dw_actor *a, const dw_actor_options *o, dw_error *err) {
    wasi_config_t *wasi = wasi_config_new();
    static const char *const default_argv[] = {"actor"};
    int argc = o->argc > 0 ? o->argc : 1;
    const char *const *argv = o->argc > 0 ? o->argv : default_argv;
    if (!wasi_config_set_argv(wasi, (size_t)argc, (const char **)argv)) {
        wasi_config_delete(wasi);
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "actor: invalid WASI arguments (not UTF-8?)");
    }
    if (o->inherit_stdio) {
        wasi_config_inherit_stdout(wasi);
        wasi_config_inherit_stderr(wasi);
    }
    if (o->n_env > 0) {
        const char **names = calloc((size_t)o->n_env, sizeof *names), **values = calloc((size_t)o->n_env, sizeof *values);
        char **copies = calloc((size_t)o->n_env, sizeof *copies);
        int ok = names && values && copies;
        for (int i = 0; ok && i < o->n_env; i++) {
            char *eq = strchr(o->env[i], '=');
            if (!eq || eq == o->env[i] || !(copies[i] = strdup(o->env[i]))) { ok = 0; break; }
            copies[i][eq - o->env[i]] = 0;
            names[i] = copies[i], values[i] = copies[i] + (eq - o->env[i]) + 1;
        }
        if (ok) ok = wasi_config_set_env(wasi, (size_t)o->n_env, names, values);
        for (int i = 0; i < o->n_env && copies; i++) free(copies[i]);
        free(names), free(values), free(copies);
        if (!ok) {
            wasi_config_delete(wasi);
            return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "actor: environment entries must be NAME=VALUE (UTF-8)");
        }
    }
    for (int i = 0; i < o->n_dirs; i++) {
        char host[4096];
        snprintf(host, sizeof host, "%s", o->dirs[i]);
        char *sep = strstr(host, "::");
        const char *guest = sep ? sep + 2 : host;
        if (sep) *sep = 0;
        if (!wasi_config_preopen_dir(wasi, host, guest, !o->dirs_read_only)) {
            wasi_config_delete(wasi);
            return dw_error_set(err, DW_ERR_IO, "actor: cannot open folder '%s' for the guest", host);
        }
    }
    wasmtime_error_t *e = wasmtime_context_set_wasi(a->context, wasi); /* takes ownership */
    return e ? dw__wasm_error_take(e, NULL, err) : DW_OK;
}

/* Wasmtime's wasmtime_memory_new does not go through the memory creator, so a memory the
 * module imports is made by instantiating a one-memory module in the actor's store (module
 * memories do go through it) and handing its export to the linker. Returns the module's bytes
 * for limits min..max (max < 0: none) in out (at least 32 bytes); their length. */
static size_t memory_module(uint64_t min, int64_t max, uint8_t *out) {
    uint8_t limits[24];
    size_t n = 0;
    limits[n++] = max >= 0 ? 1 : 0;
    for (uint64_t v = min;; v >>= 7) { limits[n++] = (uint8_t)((v & 0x7F) | (v >= 0x80 ? 0x80 : 0)); if (v < 0x80) break; }
    for (uint64_t v = (uint64_t)max; max >= 0; v >>= 7) { limits[n++] = (uint8_t)((v & 0x7F) | (v >= 0x80 ? 0x80 : 0)); if (v < 0x80) break; }
    static const uint8_t header[8] = {0x00, 'a', 's', 'm', 1, 0, 0, 0};
    static const uint8_t exports[12] = {0x07, 0x0a, 0x01, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00};
    size_t k = 0;
    memcpy(out + k, header, 8), k += 8;
    out[k++] = 0x05, out[k++] = (uint8_t)(n + 1), out[k++] = 0x01; /* memory section: one memory */
    memcpy(out + k, limits, n), k += n;
    memcpy(out + k, exports, sizeof exports), k += sizeof exports;
    return k;
}

static const char *extern_kind_name(wasmtime_extern_kind_t kind) {
    switch (kind) {
    case WASMTIME_EXTERN_FUNC: return "a function";
    case WASMTIME_EXTERN_GLOBAL: return "a global";
    case WASMTIME_EXTERN_TABLE: return "a table";
    case WASMTIME_EXTERN_MEMORY: return "a memory";
    case WASMTIME_EXTERN_SHAREDMEMORY: return "a shared memory";
    }
    return "something else";
}

static dw_status define_imported_memory(dw_actor *a, dw_error *err) {
    wasm_importtype_vec_t imports;
    wasmtime_module_imports(a->module->module, &imports);
    dw_status st = DW_OK;
    for (size_t i = 0; i < imports.size && st == DW_OK; i++) {
        const wasm_externtype_t *et = wasm_importtype_type(imports.data[i]);
        const wasm_memorytype_t *mt = wasm_externtype_as_memorytype_const(et);
        if (!mt) continue;
        const wasm_name_t *mod = wasm_importtype_module(imports.data[i]);
        const wasm_name_t *name = wasm_importtype_name(imports.data[i]);
        if (wasmtime_memorytype_is64(mt) || wasmtime_memorytype_isshared(mt)) {
            st = dw_error_set(err, DW_ERR_UNSUPPORTED, "%s: imports a 64-bit or shared memory", a->module->name);
            break;
        }
        wasmtime_extern_t host; /* a name the host defines already (dw::gemm, a WASI function) */
        if (wasmtime_linker_get(a->linker, a->context, mod->data, mod->size, name->data, name->size, &host)) {
            wasmtime_extern_kind_t kind = host.kind;
            wasmtime_extern_delete(&host);
            if (kind == WASMTIME_EXTERN_MEMORY) continue; /* imported again: the same memory */
            st = dw_error_set(err, DW_ERR_UNSUPPORTED, "%s: `%.*s::%.*s` is %s, the module imports it as a memory",
                              a->module->name, (int)mod->size, mod->data, (int)name->size, name->data, extern_kind_name(kind));
            break;
        }
        uint64_t max;
        int has_max = wasmtime_memorytype_maximum(mt, &max);
        uint8_t bytes[48];
        size_t len = memory_module(wasmtime_memorytype_minimum(mt), has_max ? (int64_t)max : -1, bytes);
        wasmtime_module_t *provider = NULL;
        wasmtime_instance_t instance;
        wasm_trap_t *trap = NULL;
        wasmtime_extern_t item;
        wasmtime_error_t *e = wasmtime_module_new(dw__wasm_engine(NULL), bytes, len, &provider);
        if (!e) e = wasmtime_instance_new(a->context, provider, NULL, 0, &instance, &trap);
        if (provider) wasmtime_module_delete(provider);
        if (e || trap) {
            st = dw__wasm_error_take(e, trap, err);
            break;
        }
        if (!wasmtime_instance_export_get(a->context, &instance, "memory", 6, &item)) {
            st = dw_error_set(err, DW_ERR_STATE, "actor: the memory provider exports no memory");
            break;
        }
        e = wasmtime_linker_define(a->linker, a->context, mod->data, mod->size, name->data, name->size, &item);
        if (!a->has_memory) a->memory = item.of.memory, a->has_memory = 1;
        wasmtime_extern_delete(&item);
        if (e) st = dw__wasm_error_take(e, NULL, err);
    }
    wasm_importtype_vec_delete(&imports);
    return st;
}

/* Finds the region behind the instance's exported "memory" (or the first memory made). */
static dw_status bind_memory(dw_actor *a, dw_error *err) {
    wasmtime_extern_t item;
    dw_region *found = NULL;
    if (wasmtime_instance_export_get(a->context, &a->instance, "memory", 6, &item)) {
        if (item.kind == WASMTIME_EXTERN_MEMORY) {
            a->memory = item.of.memory, a->has_memory = 1;
            uint8_t *base = wasmtime_memory_data(a->context, &item.of.memory);
            for (int i = 0; i < a->memory_context.created_count; i++)
                if (a->memory_context.created[i]->base == base) found = a->memory_context.created[i];
            if (!found)
                return dw_error_set(err, DW_ERR_STATE,
                                    "actor: the exported memory was not created by Driftwood's memory creator");
        }
        wasmtime_extern_delete(&item);
    } else if (a->memory_context.created_count > 0) {
        found = a->memory_context.created[0];
    }
    a->abi.memory = found; /* NULL: the module has no memory; pointer-taking host calls trap */
    return DW_OK;
}

/* dw__model_opener for the actor's host functions: only models the actor was allowed. */
static dw_status open_model(void *opener_ctx, const char *name, struct dw_model **model,
                            struct dw_tokenizer **tokenizer, int *kv_f32, dw_error *err) {
    dw_actor *a = opener_ctx;
    if (a->allowed_models) {
        int ok = 0;
        for (int i = 0; i < a->n_allowed_models; i++) ok |= !strcmp(a->allowed_models[i], name);
        if (!ok) return dw_error_set(err, DW_ERR_NOT_FOUND, "this actor may not use model '%s'", name);
    }
    const dw_model_use_options *o = dw_runtime_model_options(a->runtime, name);
    *kv_f32 = o ? o->kv_f32 : 0;
    return dw_runtime_model(a->runtime, name, a->backend_name, model, tokenizer, NULL, err);
}

static dw_status copy_allowed_models(dw_actor *a, const dw_actor_options *o, dw_error *err) {
    if (!o->models) return DW_OK;
    a->allowed_models = calloc((size_t)o->n_models + 1, sizeof *a->allowed_models);
    if (!a->allowed_models) return dw_error_set(err, DW_ERR_NO_MEMORY, "actor: out of memory");
    for (int i = 0; i < o->n_models; i++)
        if (!(a->allowed_models[i] = strdup(o->models[i]))) return dw_error_set(err, DW_ERR_NO_MEMORY, "actor: out of memory");
    a->n_allowed_models = o->n_models;
    return DW_OK;
}

dw_status dw_actor_create(dw_runtime *rt, dw_module *module, const dw_actor_options *options, dw_actor **out,
                          dw_error *err) {
    return dw__actor_create(rt, module, options, 1, out, err);
}

dw_status dw__actor_create(dw_runtime *rt, dw_module *module, const dw_actor_options *options, int initialize,
                           dw_actor **out, dw_error *err) {
    static const dw_actor_options defaults = {0};
    const dw_actor_options *o = options ? options : &defaults;
    *out = NULL;
    dw_status timeout_status = check_timeout(o->timeout_seconds, err);
    if (timeout_status != DW_OK) return timeout_status;
    dw_actor *a = calloc(1, sizeof *a);
    if (!a) return dw_error_set(err, DW_ERR_NO_MEMORY, "actor: out of memory");
    a->runtime = rt;
    a->module = module;
    dw_status st = dw_runtime_backend(rt, o->backend, &a->backend, err);
    if (st != DW_OK) goto fail;
    a->abi.backend = a->backend;
    snprintf(a->backend_name, sizeof a->backend_name, "%s", o->backend ? o->backend : "cpu");
    a->abi.open_model = open_model;
    a->abi.opener_ctx = a;
    a->abi.emit = o->output;
    a->abi.emit_user = o->output_user;
    if ((st = copy_allowed_models(a, o, err)) != DW_OK) goto fail;
    if (o->timeout_seconds > 0) {
        a->timeout_ticks = (uint64_t)ceil(o->timeout_seconds * 1000.0 / DW_EPOCH_TICK_MS);
        a->abi.timeout_s = o->timeout_seconds;
        dw__wasm_epoch_ticker_start();
    }
    a->store = wasmtime_store_new(dw__wasm_engine(NULL), a, NULL);
    a->context = wasmtime_store_context(a->store);
    limit_store(a, o->memory_limit);
    a->abi.kv_limit = o->kv_memory_limit ? o->kv_memory_limit : DW_ACTOR_DEFAULT_KV_MEMORY_LIMIT;
    a->linker = wasmtime_linker_new(dw__wasm_engine(NULL));
    wasmtime_error_t *e = wasmtime_linker_define_wasi(a->linker);
    if (e) {
        st = dw__wasm_error_take(e, NULL, err);
        goto fail;
    }
    if ((st = dw__abi_define(a->linker, &a->abi, err)) != DW_OK) goto fail;
    if ((st = configure_wasi(a, o, err)) != DW_OK) goto fail;

    a->memory_context.backend = a->backend;
    a->memory_context.limit = o->memory_limit;
    dw__memory_context_set(&a->memory_context);
    st = define_imported_memory(a, err);
    if (st == DW_OK) {
        wasm_trap_t *trap = NULL;
        dw__actor_arm_deadline(a); /* start functions run during instantiation */
        e = wasmtime_linker_instantiate(a->linker, a->context, module->module, &a->instance, &trap);
        if (e || trap) {
            st = dw__wasm_error_take(e, trap, err);
            if (a->memory_context.error.message[0] && st != DW_ERR_TRAP) *err = a->memory_context.error;
            dw_error_prefix(err, "%s: cannot instantiate", module->name);
        }
    }
    dw__memory_context_set(NULL);
    if (st != DW_OK) goto fail;
    if ((st = bind_memory(a, err)) != DW_OK) goto fail;
    /* WASI reactors expect _initialize once before any other export. */
    wasmtime_extern_t init;
    if (initialize && wasmtime_instance_export_get(a->context, &a->instance, "_initialize", 11, &init)) {
        wasmtime_extern_delete(&init);
        size_t nres;
        if ((st = dw_actor_invoke(a, "_initialize", NULL, 0, NULL, 0, &nres, err)) != DW_OK) {
            dw_error_prefix(err, "%s: _initialize", module->name);
            goto fail;
        }
    }
    *out = a;
    return DW_OK;
fail:
    dw_actor_free(a);
    return st;
}

void dw_actor_free(dw_actor *a) {
    if (!a) return;
    dw__abi_context_release(&a->abi);
    if (a->linker) wasmtime_linker_delete(a->linker);
    if (a->store) wasmtime_store_delete(a->store); /* frees the memories (region finalizers) */
    for (int i = 0; i < a->n_allowed_models; i++) free(a->allowed_models[i]);
    free(a->allowed_models);
    free(a);
}

uint8_t *dw_actor_memory(dw_actor *a, size_t *size) {
    if (!a->abi.memory) {
        if (size) *size = 0;
        return NULL;
    }
    if (size) *size = a->abi.memory->size;
    return a->abi.memory->base;
}

dw_backend *dw_actor_backend(dw_actor *a) { return a->backend; }

static dw_status lookup_func(dw_actor *a, const char *name, wasmtime_func_t *out, dw_error *err) {
    wasmtime_extern_t item;
    if (!wasmtime_instance_export_get(a->context, &a->instance, name, strlen(name), &item))
        return dw_error_set(err, DW_ERR_NOT_FOUND, "no export named '%s'", name);
    if (item.kind != WASMTIME_EXTERN_FUNC) {
        wasmtime_extern_delete(&item);
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "%s: export '%s' is not a function", a->module->name, name);
    }
    *out = item.of.func;
    return DW_OK;
}

static int kind_of(const wasm_valtype_t *t, dw_value_kind *k) {
    switch (wasm_valtype_kind(t)) {
    case WASM_I32: *k = DW_I32; return 1;
    case WASM_I64: *k = DW_I64; return 1;
    case WASM_F32: *k = DW_F32; return 1;
    case WASM_F64: *k = DW_F64; return 1;
    default: return 0;
    }
}

dw_status dw_actor_parse_args(dw_actor *a, const char *name, int argc, const char *const *argv, dw_value *out,
                              size_t cap, size_t *nargs, dw_error *err) {
    wasmtime_func_t f;
    dw_status st = lookup_func(a, name, &f, err);
    if (st != DW_OK) return st;
    wasm_functype_t *ty = wasmtime_func_type(a->context, &f);
    const wasm_valtype_vec_t *params = wasm_functype_params(ty);
    st = DW_OK;
    if (params->size > cap)
        st = dw_error_set(err, DW_ERR_LIMIT, "'%s' has %zu parameters; functions with more than %zu cannot be called",
                          name, params->size, cap);
    else if (params->size != (size_t)argc)
        st = dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "'%s' takes %zu arguments, %d given", name, params->size, argc);
    for (size_t i = 0; st == DW_OK && i < params->size; i++) {
        dw_value_kind k;
        char *end;
        errno = 0;
        if (!kind_of(params->data[i], &k)) {
            st = dw_error_set(err, DW_ERR_UNSUPPORTED, "'%s': parameter %zu has a type that cannot be given on the command line", name, i + 1);
            break;
        }
        out[i].kind = k;
        if (k == DW_I32 || k == DW_I64) {
            long long v = strtoll(argv[i], &end, 0);
            if (k == DW_I32 && (v < INT32_MIN || v > UINT32_MAX)) errno = ERANGE;
            if (k == DW_I32) out[i].of.i32 = (int32_t)v; else out[i].of.i64 = v;
        } else {
            double v = strtod(argv[i], &end);
            if (k == DW_F32) out[i].of.f32 = (float)v; else out[i].of.f64 = v;
        }
        if (!*argv[i] || *end || errno)
            st = dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "'%s': argument %zu '%s' is not a valid %s", name, i + 1,
                              argv[i], k == DW_I32 ? "i32" : k == DW_I64 ? "i64" : k == DW_F32 ? "f32" : "f64");
    }
    *nargs = params->size;
    wasm_functype_delete(ty);
    return st;
}

dw_status dw_actor_invoke(dw_actor *a, const char *name, const dw_value *args, size_t nargs, dw_value *results,
                          size_t results_cap, size_t *nresults, dw_error *err) {
    wasmtime_func_t f;
    dw_status st = lookup_func(a, name, &f, err);
    if (st != DW_OK) return st;
    wasm_functype_t *ty = wasmtime_func_type(a->context, &f);
    size_t nres = wasm_functype_results(ty)->size;
    size_t npar = wasm_functype_params(ty)->size;
    wasm_functype_delete(ty);
    if (npar != nargs)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "'%s' takes %zu arguments, %zu given", name, npar, nargs);
    if (nres > 16 || nargs > 16)
        return dw_error_set(err, DW_ERR_LIMIT,
                            "'%s' has %zu parameters and %zu results; functions with more than 16 of either cannot be called",
                            name, nargs, nres);
    if (nres > results_cap)
        return dw_error_set(err, DW_ERR_LIMIT, "'%s' returns %zu results, room was given for %zu", name, nres, results_cap);
    wasmtime_val_t in[16], outv[16];
    for (size_t i = 0; i < nargs; i++) {
        switch (args[i].kind) {
        case DW_I32: in[i] = (wasmtime_val_t){.kind = WASMTIME_I32, .of.i32 = args[i].of.i32}; break;
        case DW_I64: in[i] = (wasmtime_val_t){.kind = WASMTIME_I64, .of.i64 = args[i].of.i64}; break;
        case DW_F32: in[i] = (wasmtime_val_t){.kind = WASMTIME_F32, .of.f32 = args[i].of.f32}; break;
        case DW_F64: in[i] = (wasmtime_val_t){.kind = WASMTIME_F64, .of.f64 = args[i].of.f64}; break;
        }
    }
    wasm_trap_t *trap = NULL;
    dw__actor_arm_deadline(a);
    a->busy++;
    wasmtime_error_t *e = wasmtime_func_call(a->context, &f, in, nargs, outv, nres, &trap);
    a->busy--;
    if (e || trap) return dw__wasm_error_take(e, trap, err);
    for (size_t i = 0; i < nres; i++) {
        switch (outv[i].kind) {
        case WASMTIME_I32: results[i] = (dw_value){.kind = DW_I32, .of.i32 = outv[i].of.i32}; break;
        case WASMTIME_I64: results[i] = (dw_value){.kind = DW_I64, .of.i64 = outv[i].of.i64}; break;
        case WASMTIME_F32: results[i] = (dw_value){.kind = DW_F32, .of.f32 = outv[i].of.f32}; break;
        case WASMTIME_F64: results[i] = (dw_value){.kind = DW_F64, .of.f64 = outv[i].of.f64}; break;
        default: return dw_error_set(err, DW_ERR_UNSUPPORTED, "'%s' returns a type other than i32/i64/f32/f64", name);
        }
    }
    *nresults = nres;
    return DW_OK;
}

dw_status dw_actor_run_main(dw_actor *a, int *exit_code, dw_error *err) {
    wasmtime_func_t f;
    dw_status st = lookup_func(a, "_start", &f, err);
    if (st != DW_OK) return st;
    wasm_trap_t *trap = NULL;
    dw__actor_arm_deadline(a);
    a->busy++;
    wasmtime_error_t *e = wasmtime_func_call(a->context, &f, NULL, 0, NULL, 0, &trap);
    a->busy--;
    *exit_code = 0;
    if (e && !trap && wasmtime_error_exit_status(e, exit_code)) {
        wasmtime_error_delete(e);
        return DW_OK;
    }
    if (e || trap) return dw__wasm_error_take(e, trap, err);
    return DW_OK;
}

dw_status dw_actor_send(dw_actor *a, const void *message, size_t len, dw_error *err) {
    if (len > INT32_MAX) return dw_error_set(err, DW_ERR_LIMIT, "message of %zu bytes is too large", len);
    dw_value arg = {.kind = DW_I32, .of.i32 = (int32_t)len};
    size_t nres;
    dw_value res[2];
    a->abi.message = message;
    a->abi.message_len = len;
    dw_status st = dw_actor_invoke(a, "dw_on_message", &arg, 1, res, 2, &nres, err);
    a->abi.message = NULL;
    a->abi.message_len = 0;
    if (st == DW_OK && nres == 1 && res[0].kind == DW_I32 && res[0].of.i32 < 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", a->abi.last_error);
        st = dw_error_set(err, DW_ERR_STATE, "the actor failed to handle the message (code %d)%s%s", res[0].of.i32,
                          msg[0] ? ": " : "", msg);
    }
    return st;
}

void dw_actor_stats_get(const dw_actor *a, dw_actor_stats *out) {
    *out = (dw_actor_stats){a->abi.stats.prefill_calls, a->abi.stats.prefill_tokens, a->abi.stats.decode_tokens,
                            a->abi.stats.prefill_ms, a->abi.stats.decode_ms};
}

void dw_actor_stats_reset(dw_actor *a) { memset(&a->abi.stats, 0, sizeof a->abi.stats); }
