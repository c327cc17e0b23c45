/* Linking guest modules to the host: an export with more parameters than can be passed and a
 * memory import under a name the host defines as something else get messages that name the
 * cause; a memory imported twice under one name is one memory. Modules are written in WAT. */
#include <stdio.h>
#include <string.h>
#include <wasmtime.h>

#include "driftwood/actor.h"
#include "driftwood/runtime.h"
#include "test.h"

/* Compiles wat and loads it as a module of a fresh runtime (NULL module on failure). */
static dw_status load_wat(const char *wat, const char *name, dw_runtime **rt, dw_module **m, dw_error *err) {
    *rt = NULL, *m = NULL;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/link-error-modules", dw_test_tmp_dir());
    dw_runtime_options o = {.module_cache_dir = dir};
    dw_status st = dw_runtime_create(&o, rt, err);
    if (st) return st;
    wasm_byte_vec_t bytes;
    wasmtime_error_t *e = wasmtime_wat2wasm(wat, strlen(wat), &bytes);
    if (e) {
        wasmtime_error_delete(e);
        return dw_error_set(err, DW_ERR_FORMAT, "%s: the test's WAT does not compile", name);
    }
    st = dw_module_load_bytes(*rt, name, (const uint8_t *)bytes.data, bytes.size, m, err);
    wasm_byte_vec_delete(&bytes);
    return st;
}

TEST(actor_export_with_more_than_16_parameters_is_refused_saying_so) {
    dw_error err;
    dw_runtime *rt;
    dw_module *m;
    char wat[512] = "(module (func (export \"f\") (param";
    for (int i = 0; i < 20; i++) strcat(wat, " i32");
    strcat(wat, ")))");
    CHECK_OK(load_wat(wat, "twenty-params.wat", &rt, &m, &err));
    dw_actor *a;
    CHECK_OK(dw_actor_create(rt, m, NULL, &a, &err));
    const char *argv[20];
    dw_value args[20];
    for (int i = 0; i < 20; i++) argv[i] = "1";
    size_t nargs;
    dw_status parsed = dw_actor_parse_args(a, "f", 20, argv, args, 16, &nargs, &err);
    char parse_message[DW_ERROR_MESSAGE_MAX];
    snprintf(parse_message, sizeof parse_message, "%s", err.message);
    for (int i = 0; i < 20; i++) args[i] = (dw_value){.kind = DW_I32, .of.i32 = 1};
    size_t nres;
    dw_status invoked = dw_actor_invoke(a, "f", args, 20, NULL, 0, &nres, &err);
    dw_actor_free(a);
    dw_module_free(m);
    dw_runtime_free(rt);
    CHECK_MSG(parsed == DW_ERR_LIMIT && strstr(parse_message, "20 parameters") && strstr(parse_message, "more than 16"),
              "parse: %s", parse_message);
    CHECK_MSG(invoked == DW_ERR_LIMIT && strstr(err.message, "20 parameters") && strstr(err.message, "more than 16"),
              "invoke: %s", err.message);
}

TEST(actor_memory_import_named_like_a_host_function_is_refused_naming_the_kind) {
    dw_error err;
    dw_runtime *rt;
    dw_module *m;
    CHECK_OK(load_wat("(module (import \"dw\" \"gemm\" (memory 1)))", "memory-as-gemm.wat", &rt, &m, &err));
    dw_actor *a = NULL;
    dw_status st = dw_actor_create(rt, m, NULL, &a, &err);
    dw_actor_free(a);
    dw_module_free(m);
    dw_runtime_free(rt);
    CHECK_MSG(st == DW_ERR_UNSUPPORTED && strstr(err.message, "`dw::gemm`") && strstr(err.message, "is a function") &&
                  strstr(err.message, "imports it as a memory"),
              "%s", err.message);
}

TEST(actor_memory_imported_twice_under_one_name_is_one_memory) {
    dw_error err;
    dw_runtime *rt;
    dw_module *m;
    CHECK_OK(load_wat("(module (import \"env\" \"memory\" (memory $a 1)) (import \"env\" \"memory\" (memory $b 1))"
                      " (func (export \"through_b\") (param i32) (result i32)"
                      "  (i32.store $a (i32.const 64) (local.get 0)) (i32.load $b (i32.const 64))))",
                      "memory-twice.wat", &rt, &m, &err));
    dw_actor *a = NULL;
    dw_status st = dw_actor_create(rt, m, NULL, &a, &err);
    dw_value in = {.kind = DW_I32, .of.i32 = 1234567}, out = {0};
    size_t nres = 0;
    if (st == DW_OK) st = dw_actor_invoke(a, "through_b", &in, 1, &out, 1, &nres, &err);
    dw_actor_free(a);
    dw_module_free(m);
    dw_runtime_free(rt);
    CHECK_MSG(st == DW_OK, "%s", err.message);
    CHECK(nres == 1 && out.of.i32 == 1234567); /* written through one import, read through the other */
}
