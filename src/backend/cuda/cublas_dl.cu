/* Opens cuBLAS at run time and resolves the entry points in cublas_dl.h. */
#include "backend/cuda/cublas_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef DW_CUBLAS_DIR
#define DW_CUBLAS_DIR ""
#endif

#define DW_STR_(x) #x
#define DW_STR(x) DW_STR_(x)
#define CUBLAS_SONAME "libcublas.so." DW_STR(CUBLAS_VER_MAJOR)

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static dw__cublas_api api;
static bool api_ok;
static char load_error[DW_ERROR_MESSAGE_MAX];

/* dlsym into a typed pointer; records the first missing name. */
template <typename F> static bool resolve(void *lib, const char *name, F *out) {
    *out = reinterpret_cast<F>(dlsym(lib, name));
    if (*out) return true;
    snprintf(load_error, sizeof load_error, "backend 'cuda': %s has no symbol %s", CUBLAS_SONAME, name);
    return false;
}

static void load(void) {
    char tried[3][512];
    int n = 0;
    const char *env = getenv("DW_CUBLAS_LIB");
    if (env && *env) {
        snprintf(tried[n++], sizeof tried[0], "%s", env);
    } else {
        if (DW_CUBLAS_DIR[0]) snprintf(tried[n++], sizeof tried[0], "%s/%s", DW_CUBLAS_DIR, CUBLAS_SONAME);
        snprintf(tried[n++], sizeof tried[0], "%s", CUBLAS_SONAME);
    }
    void *lib = NULL;
    const char *why = "";
    for (int i = 0; i < n && !lib; i++) {
        lib = dlopen(tried[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib) why = dlerror();
    }
    if (!lib) {
        snprintf(load_error, sizeof load_error,
                 "backend 'cuda': cannot load cuBLAS (tried %.120s%s%.120s; set DW_CUBLAS_LIB to its path): %.180s", tried[0],
                 n > 1 ? ", " : "", n > 1 ? tried[1] : "", why ? why : "unknown reason");
        return;
    }
    api_ok = resolve(lib, "cublasCreate_v2", &api.create) && resolve(lib, "cublasDestroy_v2", &api.destroy) &&
             resolve(lib, "cublasSetStream_v2", &api.set_stream) &&
             resolve(lib, "cublasSetMathMode", &api.set_math_mode) &&
             resolve(lib, "cublasSetWorkspace_v2", &api.set_workspace) &&
             resolve(lib, "cublasSgemm_v2", &api.sgemm) && resolve(lib, "cublasGemmEx", &api.gemm_ex) &&
             resolve(lib, "cublasGetStatusString", &api.status_string);
    /* The library stays loaded for the process's life (handles may outlive any one user). */
}

const dw__cublas_api *dw__cublas_load(dw_error *err) {
    pthread_once(&load_once, load);
    if (api_ok) return &api;
    dw_error_set(err, DW_ERR_BACKEND, "%s", load_error);
    return NULL;
}
