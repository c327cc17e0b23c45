/* The CUDA backend's context (cuda_context.h): open and destroy, the ops table, the errors its
 * ops record, synchronize, and what it tells about itself (describe, stats, memory bandwidth).
 * One context per opened device (device 0; CUDA_VISIBLE_DEVICES picks it), shared by every
 * model and session on it: one stream and one cuBLAS handle, ops serialized by a recursive lock.
 * An op cannot fail by itself; the first CUDA error is kept and returned by synchronize or
 * download. Design: docs/CUDA.md. */
#include "backend/cuda/cuda_context.h"
#include "backend/cuda/cuda_backend.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>

/* cuBLAS's own recommendation for Hopper; allocated once at open, so a GEMM never allocates
 * device memory (bench zerocopy measures device-memory growth). */
#define WORKSPACE_BYTES (32u << 20)

/* ---- errors ---------------------------------------------------------------------------------- */

dw_status dw__cuda_fail(dw_error *err, cudaError_t e, const char *what) {
    (void)cudaGetLastError();
    return dw_error_set(err, e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ? DW_ERR_UNSUPPORTED
                                                                                        : DW_ERR_BACKEND,
                        "backend 'cuda': %s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

void dw__cuda_record_error(dw__cuda_ctx *c, dw_status st, const char *message) {
    if (c->cap_slot) c->recording_failed = 1;
    if (c->err_status) return;
    c->err_status = st;
    snprintf(c->err_message, sizeof c->err_message, "%s", message);
}

void dw__cuda_check(dw__cuda_ctx *c, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return;
    (void)cudaGetLastError();
    char message[DW_ERROR_MESSAGE_MAX];
    snprintf(message, sizeof message, "backend 'cuda': %s failed: %s (%s)", what, cudaGetErrorString(e),
             cudaGetErrorName(e));
    dw__cuda_record_error(c, DW_ERR_BACKEND, message);
}

void dw__cuda_check_blas(dw__cuda_ctx *c, cublasStatus_t s, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    char message[DW_ERROR_MESSAGE_MAX];
    snprintf(message, sizeof message, "backend 'cuda': %s failed: %s", what, c->blas->status_string(s));
    dw__cuda_record_error(c, DW_ERR_BACKEND, message);
}

dw_status dw__cuda_take_error(dw__cuda_ctx *c, dw_error *err) {
    dw_status st = c->err_status;
    if (st) dw_error_set(err, st, "%s", c->err_message);
    c->err_status = DW_OK;
    c->err_message[0] = 0;
    return st;
}

int dw__cuda_wtype(dw_dtype d) { return d == DW_DTYPE_BF16 ? dwk::W_BF16 : d == DW_DTYPE_F16 ? dwk::W_F16 : dwk::W_F32; }

int dw__cuda_sb_wtype(dw_dtype sdt) { return sdt == DW_DTYPE_BF16 ? dwk::W_BF16 : dwk::W_F32; }

bool dw__cuda_grow(dw__cuda_ctx *c, void **buf, size_t *have, size_t bytes, const char *what) {
    if (*have >= bytes) return true;
    if (c->cap_slot) { /* no allocation inside a recording: the step falls back to direct runs */
        c->recording_failed = 1;
        return false;
    }
    dw__cuda_check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize before growing scratch");
    if (*buf) cudaFree(*buf);
    *buf = NULL;
    *have = 0;
    cudaError_t e = cudaMalloc(buf, bytes);
    if (e != cudaSuccess) {
        *buf = NULL;
        dw__cuda_check(c, e, what);
        return false;
    }
    *have = bytes;
    return true;
}

/* Waits for the stream; returns the first error recorded since the last call. */
dw_status dw__cuda_synchronize(void *ctx, dw_error *err) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    {
        dw__cuda_locked l(c);
        dw__cuda_flush(c);
    }
    cudaError_t e = cudaStreamSynchronize(c->stream); /* unlocked: other sessions may queue meanwhile */
    dw__cuda_locked l(c);
    dw__cuda_check(c, e, "cudaStreamSynchronize");
    dw__cuda_count_step_time(c);
    return dw__cuda_take_error(c, err);
}

/* ---- the device as a whole ------------------------------------------------------------------- */

/* Device-to-device copy bandwidth: a `bytes` buffer copied `reps` times, median time;
 * *gbs = (bytes read + bytes written) / time, in GB/s. */
static dw_status cuda_memory_bandwidth(void *ctx, size_t bytes, int reps, double *gbs, dw_error *err) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    dw__cuda_flush(c);
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    std::vector<float> ms;
    cudaError_t e = cudaMalloc(&a, bytes);
    if (e == cudaSuccess) e = cudaMalloc(&b, bytes);
    if (e == cudaSuccess) e = cudaMemsetAsync(a, 1, bytes, c->stream);
    if (e == cudaSuccess) e = cudaEventCreate(&e0);
    if (e == cudaSuccess) e = cudaEventCreate(&e1);
    for (int i = -1; i < reps && e == cudaSuccess; i++) { /* i == -1: warm-up */
        cudaEventRecord(e0, c->stream);
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, c->stream);
        cudaEventRecord(e1, c->stream);
        e = cudaEventSynchronize(e1);
        float t = 0;
        if (e == cudaSuccess) e = cudaEventElapsedTime(&t, e0, e1);
        if (i >= 0) ms.push_back(t);
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    if (e != cudaSuccess) return dw__cuda_fail(err, e, "copy bandwidth probe");
    std::sort(ms.begin(), ms.end());
    *gbs = ms.empty() ? 0.0 : 2.0 * (double)bytes / (ms[ms.size() / 2] * 1e-3) / 1e9;
    return DW_OK;
}

static void cuda_describe(void *ctx, dw_backend_info *out) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    snprintf(out->device, sizeof out->device, "%.*s", (int)sizeof out->device - 1, c->device_name);
    snprintf(out->kernels, sizeof out->kernels, "sm_%d%d", c->cc_major, c->cc_minor);
    out->n_threads = 0;
    out->graphs = c->graphs_on;
}

static void cuda_stats(void *ctx, dw_backend_stats *out) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    *out = c->stats;
}

extern "C" void dw__cuda_set_graphs(dw_backend *backend, int on) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)backend->ctx;
    dw__cuda_locked l(c);
    c->graphs_on = on;
}

/* ---- lifetime ------------------------------------------------------------------------------- */

/* Frees whatever open made (any prefix of it) and the context with its dw_backend record. */
static void cuda_destroy(void *ctx) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    if (!c) return;
    (void)cudaSetDevice(c->device);
    if (c->stream) {
        dw__cuda_flush(c);
        (void)cudaStreamSynchronize(c->stream);
    }
    if (c->graphs) dw__cuda_graphs_free(c);
    if (c->handle) c->blas->destroy(c->handle);
    for (cudaEvent_t e : c->ev_step)
        if (e) cudaEventDestroy(e);
    cudaFree(c->workspace);
    cudaFree(c->act);
    cudaFree(c->gout);
    cudaFree(c->deq);
    cudaFree(c->part);
    cudaFree(c->counters);
    cudaFree(c->xh);
    cudaFree(c->bpart);
    cudaFree(c->amax_v);
    cudaFree(c->amax_i);
    cudaFree(c->amax_counter);
    if (c->stream) cudaStreamDestroy(c->stream);
    /* registrations a memory's owner left behind would stay pinned for the process's life */
    dw__cuda_release_all_ranges(c);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static const dw_backend_ops cuda_ops = {
    /* .name              = */ "cuda",
    /* .range_register    = */ dw__cuda_range_register,
    /* .range_release     = */ dw__cuda_range_release,
    /* .device_pointer    = */ dw__cuda_device_pointer,
    /* .alloc             = */ dw__cuda_alloc,
    /* .free              = */ dw__cuda_free,
    /* .upload            = */ dw__cuda_upload,
    /* .download          = */ dw__cuda_download,
    /* .memory_used       = */ dw__cuda_memory_used,
    /* .memory_bandwidth  = */ cuda_memory_bandwidth,
    /* .gemm_f32          = */ dw__cuda_gemm_f32,
    /* .weight_load       = */ dw__cuda_weight_load,
    /* .weight_load_quant = */ dw__cuda_weight_load_quant,
    /* .weight_release    = */ dw__cuda_weight_release,
    /* .embed             = */ dw__cuda_embed,
    /* .rmsnorm           = */ dw__cuda_rmsnorm,
    /* .matmul            = */ dw__cuda_matmul,
    /* .matmul_multi      = */ dw__cuda_matmul_multi,
    /* .rope              = */ dw__cuda_rope,
    /* .kv_write          = */ dw__cuda_kv_write,
    /* .attention         = */ dw__cuda_attention,
    /* .swiglu            = */ dw__cuda_swiglu,
    /* .add               = */ dw__cuda_add,
    /* .argmax            = */ dw__cuda_argmax,
    /* .matmul_rows       = */ dw__cuda_matmul_rows,
    /* .rope_rows         = */ dw__cuda_rope_rows,
    /* .kv_write_rows     = */ dw__cuda_kv_write_rows,
    /* .attention_rows    = */ dw__cuda_attention_rows,
    /* .gather_rows       = */ dw__cuda_gather_rows,
    /* .argmax_rows       = */ dw__cuda_argmax_rows,
    /* .sample_rows       = */ dw__cuda_sample_rows,
    /* .copy              = */ dw__cuda_copy,
    /* .decode_step       = */ dw__cuda_decode_step,
    /* .decode_step_from  = */ dw__cuda_decode_step_from,
    /* .decode_forget     = */ dw__cuda_decode_forget,
    /* .synchronize       = */ dw__cuda_synchronize,
    /* .describe          = */ cuda_describe,
    /* .stats             = */ cuda_stats,
    /* .destroy           = */ cuda_destroy,
};

/* Checks that the device exists and can do zero-copy; DW_ERR_UNSUPPORTED when there is no
 * usable GPU (no driver, no device, or a device without host-pointer registration). Fills the
 * context's device name, compute capability and SM count. */
static dw_status probe_device(dw__cuda_ctx *c, dw_error *err) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        /* cudart reports a missing driver as an old one; say which it is. */
        void *driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
        if (driver) dlclose(driver);
        if (!driver && e == cudaErrorInsufficientDriver)
            return dw_error_set(err, DW_ERR_UNSUPPORTED,
                                "backend 'cuda': no usable GPU: no NVIDIA driver (libcuda.so.1 not found)");
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "backend 'cuda': no usable GPU: %s (%s)", cudaGetErrorString(e),
                            cudaGetErrorName(e));
    }
    if (count <= c->device)
        return dw_error_set(err, DW_ERR_UNSUPPORTED, "backend 'cuda': no usable GPU: no CUDA device");
    cudaDeviceProp prop;
    if ((e = cudaGetDeviceProperties(&prop, c->device)) != cudaSuccess)
        return dw__cuda_fail(err, e, "cudaGetDeviceProperties");
    snprintf(c->device_name, sizeof c->device_name, "%s", prop.name);
    c->cc_major = prop.major;
    c->cc_minor = prop.minor;
    c->n_sm = prop.multiProcessorCount;
    int map_host = 0, host_ptr = 0;
    if ((e = cudaDeviceGetAttribute(&map_host, cudaDevAttrCanMapHostMemory, c->device)) != cudaSuccess ||
        (e = cudaDeviceGetAttribute(&host_ptr, cudaDevAttrCanUseHostPointerForRegisteredMem, c->device)) !=
            cudaSuccess)
        return dw__cuda_fail(err, e, "cudaDeviceGetAttribute");
    if (!map_host || !host_ptr)
        return dw_error_set(err, DW_ERR_UNSUPPORTED,
                            "backend 'cuda': device %d (%s) cannot %s, which zero-copy ranges need", c->device,
                            c->device_name, !map_host ? "map host memory" : "use host pointers for registered memory");
    return DW_OK;
}

static dw_status cuda_init(dw__cuda_ctx *c, dw_error *err) {
    dw_status st = probe_device(c, err);
    if (st) return st;
    c->blas = dw__cublas_load(err);
    if (!c->blas) return err ? err->status : DW_ERR_BACKEND;
    cudaError_t e;
    if ((e = cudaSetDevice(c->device)) != cudaSuccess) return dw__cuda_fail(err, e, "cudaSetDevice");
    if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess)
        return dw__cuda_fail(err, e, "cudaStreamCreateWithFlags");
    if ((e = cudaMalloc(&c->workspace, WORKSPACE_BYTES)) != cudaSuccess)
        return dw__cuda_fail(err, e, "cudaMalloc(cuBLAS workspace)");
    if ((e = cudaMalloc((void **)&c->amax_v, DWK_ARGMAX_BLOCKS * sizeof(float))) != cudaSuccess ||
        (e = cudaMalloc((void **)&c->amax_i, DWK_ARGMAX_BLOCKS * sizeof(int))) != cudaSuccess ||
        (e = cudaMalloc((void **)&c->amax_counter, sizeof(unsigned))) != cudaSuccess ||
        (e = cudaMemset(c->amax_counter, 0, sizeof(unsigned))) != cudaSuccess)
        return dw__cuda_fail(err, e, "cudaMalloc(argmax scratch)");
    cublasStatus_t s = c->blas->create(&c->handle);
    if (s != CUBLAS_STATUS_SUCCESS) {
        c->handle = NULL;
        return dw_error_set(err, DW_ERR_BACKEND, "backend 'cuda': cublasCreate failed: %s", c->blas->status_string(s));
    }
    /* Full f32 arithmetic for f32 GEMMs: no TF32 tensor-core shortcut (the guest's GEMM matches a
     * CPU reference to ~1e-6). */
    if ((s = c->blas->set_stream(c->handle, c->stream)) != CUBLAS_STATUS_SUCCESS ||
        (s = c->blas->set_workspace(c->handle, c->workspace, WORKSPACE_BYTES)) != CUBLAS_STATUS_SUCCESS ||
        (s = c->blas->set_math_mode(c->handle, CUBLAS_DEFAULT_MATH)) != CUBLAS_STATUS_SUCCESS)
        return dw_error_set(err, DW_ERR_BACKEND, "backend 'cuda': cuBLAS set-up failed: %s", c->blas->status_string(s));
    for (cudaEvent_t &ev : c->ev_step)
        if ((e = cudaEventCreate(&ev)) != cudaSuccess) return dw__cuda_fail(err, e, "cudaEventCreate");
    return DW_OK;
}

extern "C" dw_status dw__cuda_backend_open(const dw_backend_options *opts, dw_backend **out, dw_error *err) {
    *out = NULL;
    dw__cuda_ctx *c = (dw__cuda_ctx *)calloc(1, sizeof *c);
    if (!c) return dw_error_set(err, DW_ERR_NO_MEMORY, "backend 'cuda': out of memory");
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&c->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    c->device = 0; /* CUDA_VISIBLE_DEVICES chooses which GPU that is */
    dw__cuda_tuning_init(&c->tuning, opts);
    c->graphs_on = c->tuning.graphs;
    c->graphs = new std::vector<dw__cuda_graph>();
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
