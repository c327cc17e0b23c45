/* The CUDA backend (Link 2 of the zero-copy chain, shared/DESIGN.md): regions are registered
 * with cudaHostRegister(mapped) so the GPU computes on the guest's own pages over the bus,
 * with the device pointer equal to the host pointer; f32 GEMM runs through cuBLAS.
 * One device, one stream and one cuBLAS handle per backend; a mutex serializes callers,
 * since every actor thread shares the backend. Every operation is finished when it returns. */
extern "C" {
#include "backend/backend.h"
}
#include "backend/cuda/cublas_dl.h"
#include "backend/cuda/host_ranges.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* cuBLAS's own recommendation for Hopper; allocated once at open, so a GEMM never allocates
 * device memory (bench zerocopy measures device-memory growth). */
#define WORKSPACE_BYTES (32u << 20)

struct cuda_ctx {
    dw_backend backend; /* the record handed to the caller; freed with the context */
    pthread_mutex_t lock;
    int device;
    char device_name[256];
    cudaStream_t stream;
    const dw__cublas_api *blas;
    cublasHandle_t handle;
    void *workspace; /* WORKSPACE_BYTES of device memory, cuBLAS's scratch */
    dw__host_ranges ranges; /* what region_register registered, for copies and operand checks */
};

/* ------------------------------------------------------------------------------------------
 * Errors: every CUDA and cuBLAS status becomes a DW_ERR_BACKEND message naming the call. */

static dw_status cuda_fail(dw_error *err, cudaError_t e, const char *what) {
    (void)cudaGetLastError(); /* clear a non-sticky error so the next call starts clean */
    return dw_error_set(err, DW_ERR_BACKEND, "backend 'cuda': %s failed: %s (%s)", what, cudaGetErrorString(e),
                        cudaGetErrorName(e));
}

static dw_status blas_fail(cuda_ctx *c, dw_error *err, cublasStatus_t s, const char *what) {
    return dw_error_set(err, DW_ERR_BACKEND, "backend 'cuda': %s failed: %s (status %d)", what,
                        c->blas->status_string(s), (int)s);
}

#define CUDA_TRY(call, what)                                                                                \
    do {                                                                                                    \
        cudaError_t e_ = (call);                                                                            \
        if (e_ != cudaSuccess) return cuda_fail(err, e_, what);                                             \
    } while (0)

/* Holds the backend's lock for a scope and makes its device current on this thread (the
 * current device is per thread, and actors call from many threads). */
struct locked {
    cuda_ctx *c;
    explicit locked(cuda_ctx *ctx) : c(ctx) { pthread_mutex_lock(&c->lock); }
    ~locked() { pthread_mutex_unlock(&c->lock); }
    dw_status enter(dw_error *err) {
        CUDA_TRY(cudaSetDevice(c->device), "cudaSetDevice");
        return DW_OK;
    }
};

static size_t page_size(void) {
    static size_t page;
    if (!page) page = (size_t)sysconf(_SC_PAGESIZE);
    return page;
}

/* ------------------------------------------------------------------------------------------
 * Regions */

static dw_status cuda_region_register(void *ctx, void *base, size_t len, dw_error *err) {
    cuda_ctx *c = (cuda_ctx *)ctx;
    if (!base || len == 0 || (uintptr_t)base % page_size() || len % page_size())
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT,
                            "backend 'cuda': region [%p, +%zu) is not a non-empty page-aligned range", base, len);
    locked l(c);
    dw_status st = l.enter(err);
    if (st) return st;
    st = dw__host_ranges_add(&c->ranges, (uintptr_t)base, len, err); /* refuses overlaps */
    if (st) return st;
    cudaError_t e = cudaHostRegister(base, len, cudaHostRegisterMapped);
    if (e != cudaSuccess) {
        (void)dw__host_ranges_remove(&c->ranges, (uintptr_t)base, len, NULL);
        return cuda_fail(err, e, "cudaHostRegister(mapped)");
    }
    /* Zero-copy needs the device to address the pages at their host addresses (UVA with
     * cudaDevAttrCanUseHostPointerForRegisteredMem, checked at open): verify both ends. */
    char *last = (char *)base + len - 1;
    void *dev_first = NULL, *dev_last = NULL;
    e = cudaHostGetDevicePointer(&dev_first, base, 0);
    if (e == cudaSuccess) e = cudaHostGetDevicePointer(&dev_last, last, 0);
    if (e != cudaSuccess || dev_first != base || dev_last != last) {
        (void)cudaHostUnregister(base);
        (void)dw__host_ranges_remove(&c->ranges, (uintptr_t)base, len, NULL);
    }
    if (e != cudaSuccess) return cuda_fail(err, e, "cudaHostGetDevicePointer on a registered region");
    if (dev_first != base || dev_last != last) {
        return dw_error_set(err, DW_ERR_BACKEND,
                            "backend 'cuda': registered region [%p, +%zu) has device address %p, not its host "
                            "address (zero-copy needs them equal)",
                            base, len, dev_first);
    }
    return DW_OK;
}

static dw_status cuda_region_unregister(void *ctx, void *base, size_t len, dw_error *err) {
    cuda_ctx *c = (cuda_ctx *)ctx;
    locked l(c);
    dw_status st = l.enter(err);
    if (st) return st;
    st = dw__host_ranges_remove(&c->ranges, (uintptr_t)base, len, err); /* exactly a registered range */
    if (st) return st;
    cudaError_t e = cudaHostUnregister(base);
    if (e != cudaSuccess) {
        (void)dw__host_ranges_add(&c->ranges, (uintptr_t)base, len, NULL);
        return cuda_fail(err, e, "cudaHostUnregister");
    }
    return DW_OK;
}

static void *cuda_device_pointer(void *ctx, void *host) {
    cuda_ctx *c = (cuda_ctx *)ctx;
    locked l(c);
    if (l.enter(NULL)) return NULL;
    cudaPointerAttributes attr;
    if (cudaPointerGetAttributes(&attr, host) != cudaSuccess) {
        (void)cudaGetLastError();
        return NULL;
    }
    return attr.type == cudaMemoryTypeUnregistered ? NULL : attr.devicePointer;
}

/* True when the device can address all of [p, p+bytes) at the same address: it lies in
 * ranges this backend registered, or starts and ends in device memory (or in host memory
 * registered elsewhere in the process). A kernel touching anything else faults (no
 * pageable-memory access on the H100) and the fault would poison the context for every
 * actor, so GEMM operands are checked before launch. Caller holds the lock. */
static bool device_accessible(cuda_ctx *c, const void *p, size_t bytes) {
    int inside;
    dw__host_ranges_segment(&c->ranges, (uintptr_t)p, bytes, &inside);
    if (inside) return dw__host_ranges_covers(&c->ranges, (uintptr_t)p, bytes);
    const char *ends[2] = {(const char *)p, (const char *)p + bytes - 1};
    for (const char *q : ends) {
        cudaPointerAttributes attr;
        if (cudaPointerGetAttributes(&attr, q) != cudaSuccess) {
            (void)cudaGetLastError();
            return false;
        }
        if (attr.type == cudaMemoryTypeUnregistered || attr.devicePointer != q) return false;
    }
    return true;
}

/* ------------------------------------------------------------------------------------------
 * Compute */

static dw_status cuda_gemm_f32(void *ctx, int m, int n, int k, const float *a, const float *b, float *c_out,
                               dw_error *err) {
    cuda_ctx *c = (cuda_ctx *)ctx;
    if (m < 0 || n < 0 || k < 0)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "backend 'cuda': gemm with negative size %d×%d×%d", m,
                            n, k);
    if (m == 0 || n == 0) return DW_OK;
    locked l(c);
    dw_status st = l.enter(err);
    if (st) return st;
    struct {
        const void *p;
        size_t bytes;
        const char *name;
    } ops[3] = {{a, (size_t)m * k * sizeof(float), "A"},
                {b, (size_t)k * n * sizeof(float), "B"},
                {c_out, (size_t)m * n * sizeof(float), "C"}};
    for (auto &op : ops) {
        if (op.bytes && !device_accessible(c, op.p, op.bytes))
            return dw_error_set(err, DW_ERR_INVALID_ARGUMENT,
                                "backend 'cuda': gemm operand %s [%p, +%zu) is not in a registered region or "
                                "device buffer",
                                op.name, op.p, op.bytes);
    }
    /* Row-major C = A×B is column-major Cᵀ = Bᵀ×Aᵀ: the same bytes, operands swapped. */
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t s = c->blas->sgemm(c->handle, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, b, n, a, k, &zero,
                                      c_out, n);
    if (s != CUBLAS_STATUS_SUCCESS) return blas_fail(c, err, s, "cublasSgemm");
    CUDA_TRY(cudaStreamSynchronize(c->stream), "cudaStreamSynchronize after cublasSgemm");
    return DW_OK;
}

static dw_status cuda_synchronize(void *ctx, dw_error *err) {
    cuda_ctx *c = (cuda_ctx *)ctx;
    locked l(c);
    dw_status st = l.enter(err);
    if (st) return st;
    CUDA_TRY(cudaStreamSynchronize(c->stream), "cudaStreamSynchronize");
    return DW_OK;
}

static dw_status cuda_device_memory_used(void *ctx, size_t *bytes_out, dw_error *err) {
    cuda_ctx *c = (cuda_ctx *)ctx;
    locked l(c);
    dw_status st = l.enter(err);
    if (st) return st;
    size_t free_bytes = 0, total = 0;
    CUDA_TRY(cudaMemGetInfo(&free_bytes, &total), "cudaMemGetInfo");
    *bytes_out = total - free_bytes;
    return DW_OK;
}

/* ------------------------------------------------------------------------------------------
 * Device buffers: the copy-path baseline of `bench zerocopy`. */

static dw_status cuda_buffer_alloc(void *ctx, size_t bytes, void **out, dw_error *err) {
    cuda_ctx *c = (cuda_ctx *)ctx;
    *out = NULL;
    locked l(c);
    dw_status st = l.enter(err);
    if (st) return st;
    cudaError_t e = cudaMalloc(out, bytes);
    if (e != cudaSuccess) {
        *out = NULL;
        (void)cudaGetLastError();
        return dw_error_set(err, e == cudaErrorMemoryAllocation ? DW_ERR_NO_MEMORY : DW_ERR_BACKEND,
                            "backend 'cuda': cudaMalloc(%zu bytes) failed: %s (%s)", bytes, cudaGetErrorString(e),
                            cudaGetErrorName(e));
    }
    return DW_OK;
}

static void cuda_buffer_free(void *ctx, void *buf) {
    cuda_ctx *c = (cuda_ctx *)ctx;
    if (!buf) return;
    locked l(c);
    if (l.enter(NULL)) return;
    (void)cudaFree(buf);
}

/* One copy between a device buffer and host memory, split where the host side crosses from
 * one registered range into the next (or into unregistered memory): cudaMemcpy refuses a
 * host range spanning two registrations (host_ranges.h). */
static dw_status cuda_copy(cuda_ctx *c, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                           const char *what, dw_error *err) {
    locked l(c);
    dw_status st = l.enter(err);
    if (st) return st;
    uintptr_t host = (uintptr_t)(kind == cudaMemcpyHostToDevice ? src : dst);
    for (size_t done = 0; done < bytes;) {
        int inside;
        size_t n = dw__host_ranges_segment(&c->ranges, host + done, bytes - done, &inside);
        CUDA_TRY(cudaMemcpyAsync((char *)dst + done, (const char *)src + done, n, kind, c->stream), what);
        done += n;
    }
    CUDA_TRY(cudaStreamSynchronize(c->stream), what);
    return DW_OK;
}

static dw_status cuda_copy_to_device(void *ctx, void *dst, const void *src, size_t bytes, dw_error *err) {
    return cuda_copy((cuda_ctx *)ctx, dst, src, bytes, cudaMemcpyHostToDevice, "cudaMemcpy host to device", err);
}

static dw_status cuda_copy_to_host(void *ctx, void *dst, const void *src, size_t bytes, dw_error *err) {
    return cuda_copy((cuda_ctx *)ctx, dst, src, bytes, cudaMemcpyDeviceToHost, "cudaMemcpy device to host", err);
}

/* ------------------------------------------------------------------------------------------
 * Lifetime */

/* Frees whatever init made (any prefix of it) and the context with its dw_backend record. */
static void cuda_destroy(void *ctx) {
    cuda_ctx *c = (cuda_ctx *)ctx;
    if (!c) return;
    (void)cudaSetDevice(c->device);
    if (c->stream) (void)cudaStreamSynchronize(c->stream);
    if (c->handle) c->blas->destroy(c->handle);
    if (c->workspace) (void)cudaFree(c->workspace);
    if (c->stream) (void)cudaStreamDestroy(c->stream);
    /* Registrations a region owner left behind would stay pinned for the process's life. */
    for (size_t i = 0; i < c->ranges.count; i++) (void)cudaHostUnregister((void *)c->ranges.v[i].base);
    dw__host_ranges_free(&c->ranges);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static const dw_backend_ops cuda_ops = {
    /* .name               = */ "cuda",
    /* .region_register    = */ cuda_region_register,
    /* .region_unregister  = */ cuda_region_unregister,
    /* .device_pointer     = */ cuda_device_pointer,
    /* .gemm_f32           = */ cuda_gemm_f32,
    /* .synchronize        = */ cuda_synchronize,
    /* .device_memory_used = */ cuda_device_memory_used,
    /* .buffer_alloc       = */ cuda_buffer_alloc,
    /* .buffer_free        = */ cuda_buffer_free,
    /* .copy_to_device     = */ cuda_copy_to_device,
    /* .copy_to_host       = */ cuda_copy_to_host,
    /* .destroy            = */ cuda_destroy,
};

/* Checks that device 0 exists and can do zero-copy; DW_ERR_UNSUPPORTED when there is no
 * usable GPU (no driver, no device, or a device without host-pointer registration). */
static dw_status probe_device(int device, char *name, size_t name_size, dw_error *err) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        /* cudart reports a missing driver as an old one; say which it is. */
        void *driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
        if (driver) dlclose(driver);
        if (!driver && e == cudaErrorInsufficientDriver)
            return dw_error_set(err, DW_ERR_UNSUPPORTED, "backend 'cuda': no usable GPU: no NVIDIA driver (libcuda.so.1 not found)");
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "backend 'cuda': no usable GPU: %s (%s)", cudaGetErrorString(e),
                            cudaGetErrorName(e));
    }
    if (count <= device) return dw_error_set(err, DW_ERR_UNSUPPORTED, "backend 'cuda': no usable GPU: no CUDA device");
    cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    snprintf(name, name_size, "%s", prop.name);
    int map_host = 0, host_ptr = 0;
    CUDA_TRY(cudaDeviceGetAttribute(&map_host, cudaDevAttrCanMapHostMemory, device), "cudaDeviceGetAttribute");
    CUDA_TRY(cudaDeviceGetAttribute(&host_ptr, cudaDevAttrCanUseHostPointerForRegisteredMem, device),
             "cudaDeviceGetAttribute");
    if (!map_host || !host_ptr)
        return dw_error_set(err, DW_ERR_UNSUPPORTED,
                            "backend 'cuda': device %d (%s) cannot %s, which zero-copy regions need", device, name,
                            !map_host ? "map host memory" : "use host pointers for registered memory");
    return DW_OK;
}

static dw_status cuda_init(cuda_ctx *c, dw_error *err) {
    dw_status st = probe_device(c->device, c->device_name, sizeof c->device_name, err);
    if (st) return st;
    c->blas = dw__cublas_load(err);
    if (!c->blas) return err ? err->status : DW_ERR_BACKEND;
    CUDA_TRY(cudaSetDevice(c->device), "cudaSetDevice");
    CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    CUDA_TRY(cudaMalloc(&c->workspace, WORKSPACE_BYTES), "cudaMalloc(cuBLAS workspace)");
    cublasStatus_t s = c->blas->create(&c->handle);
    if (s != CUBLAS_STATUS_SUCCESS) {
        c->handle = NULL;
        return blas_fail(c, err, s, "cublasCreate");
    }
    if ((s = c->blas->set_stream(c->handle, c->stream)) != CUBLAS_STATUS_SUCCESS)
        return blas_fail(c, err, s, "cublasSetStream");
    if ((s = c->blas->set_workspace(c->handle, c->workspace, WORKSPACE_BYTES)) != CUBLAS_STATUS_SUCCESS)
        return blas_fail(c, err, s, "cublasSetWorkspace");
    /* Full f32 arithmetic: no TF32 tensor-core shortcut (results match a CPU reference to ~1e-6). */
    if ((s = c->blas->set_math_mode(c->handle, CUBLAS_DEFAULT_MATH)) != CUBLAS_STATUS_SUCCESS)
        return blas_fail(c, err, s, "cublasSetMathMode");
    return DW_OK;
}

extern "C" dw_status dw__cuda_backend_create(dw_backend **out, dw_error *err) {
    *out = NULL;
    cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
    if (!c) return dw_error_set(err, DW_ERR_NO_MEMORY, "backend 'cuda': out of memory");
    pthread_mutex_init(&c->lock, NULL);
    c->device = 0; /* CUDA_VISIBLE_DEVICES chooses which GPU that is */
    dw_status st = cuda_init(c, err);
    if (st) {
        cuda_destroy(c);
        return st;
    }
    c->backend.ops = &cuda_ops;
    c->backend.ctx = c;
    *out = &c->backend;
    return DW_OK;
}
