/* The CUDA backend's memory: guest ranges made device-accessible without copying (Link 2 of
 * the zero-copy chain: cudaHostRegister(mapped), the device pointer equal to the host pointer),
 * device buffers, copies between them, downloads written straight into a guest by a kernel, and
 * the guest's own f32 GEMM (cuBLAS) on registered pages or buffers. The registered-range set
 * (host_ranges.h) is the one record of which host memory the device may touch. */
#include "backend/cuda/cuda_context.h"

#include <stdint.h>
#include <unistd.h>

static size_t page_size(void) {
    static size_t page;
    if (!page) page = (size_t)sysconf(_SC_PAGESIZE);
    return page;
}

/* ---- guest ranges ---------------------------------------------------------------------------- */

dw_status dw__cuda_range_register(void *ctx, void *base, size_t len, dw_error *err) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    if (!base || len == 0 || (uintptr_t)base % page_size() || len % page_size())
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT,
                            "backend 'cuda': range [%p, +%zu) is not a non-empty page-aligned range", base, len);
    dw__cuda_locked l(c);
    if (l.device_status) return dw__cuda_fail(err, l.device_status, "cudaSetDevice");
    dw_status st = dw__host_ranges_add(&c->ranges, (uintptr_t)base, len, err); /* refuses overlaps */
    if (st) return st;
    cudaError_t e = cudaHostRegister(base, len, cudaHostRegisterMapped);
    if (e != cudaSuccess) {
        (void)dw__host_ranges_remove(&c->ranges, (uintptr_t)base, len, NULL);
        return dw__cuda_fail(err, e, "cudaHostRegister(mapped)");
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
    if (e != cudaSuccess) return dw__cuda_fail(err, e, "cudaHostGetDevicePointer on a registered range");
    if (dev_first != base || dev_last != last)
        return dw_error_set(err, DW_ERR_BACKEND,
                            "backend 'cuda': registered range [%p, +%zu) has device address %p, not its host "
                            "address (zero-copy needs them equal)",
                            base, len, dev_first);
    return DW_OK;
}

static void unregister_range(void *arg, dw__host_range r) {
    (void)arg;
    if (cudaHostUnregister((void *)r.base) != cudaSuccess) (void)cudaGetLastError();
}

void dw__cuda_range_release(void *ctx, void *base, size_t len) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    /* queued work may still read or write the pages (a download into the guest) */
    dw__cuda_flush(c);
    dw__cuda_check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize before releasing a range");
    (void)dw__host_ranges_remove_within(&c->ranges, (uintptr_t)base, len, unregister_range, NULL);
}

void dw__cuda_release_all_ranges(dw__cuda_ctx *c) {
    (void)dw__host_ranges_remove_within(&c->ranges, 0, UINTPTR_MAX, unregister_range, NULL);
    dw__host_ranges_free(&c->ranges);
}

void *dw__cuda_device_pointer(void *ctx, const void *host, size_t bytes) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    return dw__host_ranges_covers(&c->ranges, (uintptr_t)host, bytes ? bytes : 1) ? (void *)host : NULL;
}

/* True when the device can address all of [p, p+bytes) at the same address: it lies in the
 * registered ranges, or starts and ends in device memory. A kernel touching anything else faults
 * (no pageable-memory access on the H100) and the fault would poison the context for every
 * actor, so GEMM operands are checked before launch. Caller holds the lock. */
static bool device_accessible(dw__cuda_ctx *c, const void *p, size_t bytes) {
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
        if ((attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged) || attr.devicePointer != q)
            return false;
    }
    return true;
}

/* ---- device buffers and copies --------------------------------------------------------------- */

dw_status dw__cuda_alloc(void *ctx, size_t bytes, void **out, dw_error *err) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    *out = NULL;
    cudaError_t e = cudaMalloc(out, bytes ? bytes : 64);
    if (e != cudaSuccess) {
        *out = NULL;
        (void)cudaGetLastError();
        return dw_error_set(err, e == cudaErrorMemoryAllocation ? DW_ERR_NO_MEMORY : DW_ERR_BACKEND,
                            "backend 'cuda': cudaMalloc(%zu bytes) failed: %s (%s)", bytes, cudaGetErrorString(e),
                            cudaGetErrorName(e));
    }
    return DW_OK;
}

void dw__cuda_free(void *ctx, void *buf) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    if (!buf) return;
    dw__cuda_locked l(c);
    dw__cuda_flush(c);
    dw__cuda_check(c, cudaStreamSynchronize(c->stream), "cudaStreamSynchronize before cudaFree");
    dw__cuda_check(c, cudaFree(buf), "cudaFree");
}

dw_status dw__cuda_memory_used(void *ctx, size_t *bytes_out, dw_error *err) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    dw__cuda_locked l(c);
    if (l.device_status) return dw__cuda_fail(err, l.device_status, "cudaSetDevice");
    size_t free_bytes = 0, total = 0;
    cudaError_t e = cudaMemGetInfo(&free_bytes, &total);
    if (e != cudaSuccess) return dw__cuda_fail(err, e, "cudaMemGetInfo");
    *bytes_out = total - free_bytes;
    return DW_OK;
}

/* One copy between a device buffer and host memory, queued on the stream after the work already
 * there (held ops are launched first), then one wait; returns the copy's error or the first one
 * the queued work recorded. Split where the host side crosses from one registered range into the
 * next (or into unregistered memory): cudaMemcpy refuses a host range spanning two registrations
 * (host_ranges.h). The copy engine reads or writes a guest's pages directly. */
static dw_status copy(dw__cuda_ctx *c, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                      const char *what, dw_error *err) {
    dw__cuda_locked l(c);
    if (l.device_status) return dw__cuda_fail(err, l.device_status, "cudaSetDevice");
    dw__cuda_flush(c);
    uintptr_t host = (uintptr_t)(kind == cudaMemcpyHostToDevice ? src : dst);
    for (size_t done = 0; done < bytes;) {
        int inside;
        size_t n = dw__host_ranges_segment(&c->ranges, host + done, bytes - done, &inside);
        cudaError_t e = cudaMemcpyAsync((char *)dst + done, (const char *)src + done, n, kind, c->stream);
        if (e != cudaSuccess) return dw__cuda_fail(err, e, what);
        done += n;
    }
    cudaError_t e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) return dw__cuda_fail(err, e, what);
    dw__cuda_count_step_time(c);
    return dw__cuda_take_error(c, err);
}

dw_status dw__cuda_upload(void *ctx, void *dst, const void *host_src, size_t bytes, dw_error *err) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    if (!bytes) return dw__cuda_synchronize(ctx, err);
    return copy(c, dst, host_src, bytes, cudaMemcpyHostToDevice, "cudaMemcpy host to device", err);
}

/* Device -> host. When the host side lies in registered ranges (an actor's memory), a kernel on
 * the stream writes it directly after the queued work, and one wait covers both; otherwise the
 * copy engine, queued after that work (split at registrations). */
dw_status dw__cuda_download(void *ctx, void *host_dst, const void *src, size_t bytes, dw_error *err) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    double t0 = dw__now_s();
    bool direct = false;
    if (bytes) {
        dw__cuda_locked l(c);
        direct = dw__host_ranges_covers(&c->ranges, (uintptr_t)host_dst, bytes);
        if (direct) {
            dw__cuda_flush(c);
            dw__cuda_check(c, dwk::launch_copy(host_dst, src, bytes, c->stream), "download kernel");
        }
    }
    dw_status st = direct || !bytes
                       ? dw__cuda_synchronize(ctx, err)
                       : copy(c, host_dst, src, bytes, cudaMemcpyDeviceToHost, "cudaMemcpy device to host", err);
    dw__cuda_locked l(c);
    if (direct) c->stats.direct_downloads++;
    c->stats.download_s += dw__now_s() - t0;
    return st;
}

/* ---- the guest's GEMM ------------------------------------------------------------------------ */

dw_status dw__cuda_gemm_f32(void *ctx, int m, int n, int k, const float *a, const float *b, float *c_out,
                            dw_error *err) {
    dw__cuda_ctx *c = (dw__cuda_ctx *)ctx;
    if (m < 0 || n < 0 || k < 0)
        return dw_error_set(err, DW_ERR_INVALID_ARGUMENT, "backend 'cuda': gemm with negative size %d×%d×%d", m,
                            n, k);
    if (m == 0 || n == 0) return DW_OK;
    dw__cuda_locked l(c);
    if (l.device_status) return dw__cuda_fail(err, l.device_status, "cudaSetDevice");
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
                                "backend 'cuda': gemm operand %s [%p, +%zu) is not in a registered range or "
                                "device buffer",
                                op.name, op.p, op.bytes);
    }
    dw__cuda_flush(c); /* the stream's order is the order of the calls */
    /* Row-major C = A×B is column-major Cᵀ = Bᵀ×Aᵀ: the same bytes, operands swapped. */
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t s = c->blas->sgemm(c->handle, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, b, n, a, k, &zero,
                                      c_out, n);
    if (s != CUBLAS_STATUS_SUCCESS)
        return dw_error_set(err, DW_ERR_BACKEND, "backend 'cuda': cublasSgemm failed: %s (status %d)",
                            c->blas->status_string(s), (int)s);
    cudaError_t e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) return dw__cuda_fail(err, e, "cudaStreamSynchronize after cublasSgemm");
    return DW_OK;
}
