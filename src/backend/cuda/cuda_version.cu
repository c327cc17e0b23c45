/* What dw_cuda_version() (include/driftwood/version.h, answered by the registry in backend.c)
 * says in builds with CUDA: which CUDA runtime is linked in, which driver is installed and
 * whether a device answers. No backend is opened. */
#include "backend/backend.h"

#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stdio.h>

static pthread_once_t described_once = PTHREAD_ONCE_INIT;
static char description[96];

/* CUDA encodes versions as 1000 * major + 10 * minor. */
static void format_version(int version, char *out, size_t size) {
    snprintf(out, size, "%d.%d", version / 1000, version % 1000 / 10);
}

static void describe(void) {
    int runtime = 0, driver = 0, devices = 0;
    char runtime_text[16], driver_text[16];
    cudaRuntimeGetVersion(&runtime); /* the linked runtime's own number: needs no driver */
    format_version(runtime, runtime_text, sizeof runtime_text);
    /* With no driver installed, cudaDriverGetVersion succeeds and reports 0. */
    if (cudaDriverGetVersion(&driver) != cudaSuccess || driver == 0) {
        (void)cudaGetLastError();
        snprintf(description, sizeof description, "cuda runtime %s, no driver", runtime_text);
        return;
    }
    format_version(driver, driver_text, sizeof driver_text);
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        (void)cudaGetLastError();
        snprintf(description, sizeof description, "cuda runtime %s driver %s, no device", runtime_text, driver_text);
        return;
    }
    snprintf(description, sizeof description, "cuda runtime %s driver %s", runtime_text, driver_text);
}

extern "C" const char *dw__cuda_version(void) {
    pthread_once(&described_once, describe);
    return description;
}
