/* The batched step's small kernels (kernels.h): RoPE with each row at its own position, the KV
 * store into a paged pool, the gather of rows and the argmax of each row. Each thread's result
 * depends on its own row only. */
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels_device.cuh"

#include <math.h>
#include <stdint.h>

namespace dwk {
namespace {

constexpr int SMALL_THREADS = 256;

unsigned grid_for(size_t count) {
    size_t b = (count + SMALL_THREADS - 1) / SMALL_THREADS;
    if (b > 65535u * 8) b = 65535u * 8;
    return (unsigned)(b ? b : 1);
}

/* One thread per rotated pair (row, head among q's then k's, d < hd/2). */
__global__ void rope_rows_kernel(float *q, float *k, const rows_args r, int n_heads, int n_kv, int hd,
                                 const float *inv_freq) {
    const int half = hd / 2, heads = n_heads + n_kv;
    const size_t total = (size_t)r.n * heads * half;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int d = (int)(i % half);
        const int h = (int)(i / half % heads);
        const int row = (int)(i / ((size_t)half * heads));
        float *base = h < n_heads ? q + (size_t)row * n_heads * hd + (size_t)h * hd
                                  : k + (size_t)row * n_kv * hd + (size_t)(h - n_heads) * hd;
        float lo = base[d], hi = base[d + half];
        rope_pair(lo, hi, r.pos[row], inv_freq[d]);
        base[d] = lo, base[d + half] = hi;
    }
}

__global__ void kv_write_rows_kernel(void *kc, void *vc, int kv_f32, int n_kv, int hd, int bt, const float *k,
                                     const float *v, const rows_args r) {
    const int width = n_kv * hd;
    const size_t total = (size_t)r.n * width;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int row = (int)(i / width), e = (int)(i % width);
        const int h = e / hd, d = e % hd;
        const int slot = r.slot[row];
        const size_t at = (((size_t)(slot / bt) * n_kv + h) * bt + slot % bt) * hd + d;
        store_kv(kc, kv_f32, at, k[i]);
        store_kv(vc, kv_f32, at, v[i]);
    }
}

__global__ void gather_rows_kernel(float *dst, const float *src, const int32_t *idx, int n, int width) {
    const size_t total = (size_t)n * width;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int row = (int)(i / width), e = (int)(i % width);
        dst[i] = src[(size_t)idx[row] * width + e];
    }
}

/* (v, i) becomes the better of itself and (ov, oi): larger value, then smaller index; i < 0 is
 * "nothing yet" (NaN is never taken). A total order, so any reduction tree gives the same. */
__device__ __forceinline__ void take_better(float &v, int &i, float ov, int oi) {
    if (oi < 0) return;
    if (i < 0 || ov > v || (ov == v && oi < i)) v = ov, i = oi;
}

constexpr int ARGMAX_ROW_THREADS = 256;

__global__ void __launch_bounds__(ARGMAX_ROW_THREADS) argmax_rows_kernel(const float *x, int width, int32_t *out) {
    __shared__ float sv[ARGMAX_ROW_THREADS / 32];
    __shared__ int si[ARGMAX_ROW_THREADS / 32];
    const float *xr = x + (size_t)blockIdx.x * width;
    float v = 0.0f;
    int i = -1;
    for (int k = threadIdx.x; k < width; k += ARGMAX_ROW_THREADS) {
        const float e = xr[k];
        if (!isnan(e) && (i < 0 || e > v)) v = e, i = k; /* increasing k: ties keep the first */
    }
    for (int o = 16; o; o >>= 1) take_better(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) sv[warp] = v, si[warp] = i;
    __syncthreads();
    if (warp == 0) {
        v = lane < ARGMAX_ROW_THREADS / 32 ? sv[lane] : 0.0f;
        i = lane < ARGMAX_ROW_THREADS / 32 ? si[lane] : -1;
        for (int o = 16; o; o >>= 1)
            take_better(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
        if (lane == 0) out[blockIdx.x] = i < 0 ? 0 : i;
    }
}

} // namespace

cudaError_t launch_rope_rows(float *q, float *k, const rows_args &r, int n_heads, int n_kv, int hd,
                             const float *inv_freq, cudaStream_t stream) {
    const size_t total = (size_t)r.n * (n_heads + n_kv) * (hd / 2);
    if (!total) return cudaSuccess;
    rope_rows_kernel<<<grid_for(total), SMALL_THREADS, 0, stream>>>(q, k, r, n_heads, n_kv, hd, inv_freq);
    return cudaGetLastError();
}

cudaError_t launch_kv_write_rows(void *kc, void *vc, int kv_f32, int n_kv, int hd, int block_tokens, const float *k,
                                 const float *v, const rows_args &r, cudaStream_t stream) {
    const size_t total = (size_t)r.n * n_kv * hd;
    if (!total) return cudaSuccess;
    kv_write_rows_kernel<<<grid_for(total), SMALL_THREADS, 0, stream>>>(kc, vc, kv_f32, n_kv, hd, block_tokens, k, v,
                                                                        r);
    return cudaGetLastError();
}

cudaError_t launch_gather_rows(float *dst, const float *src, const int32_t *idx, int n, int width,
                               cudaStream_t stream) {
    const size_t total = (size_t)n * width;
    if (!total) return cudaSuccess;
    gather_rows_kernel<<<grid_for(total), SMALL_THREADS, 0, stream>>>(dst, src, idx, n, width);
    return cudaGetLastError();
}

cudaError_t launch_argmax_rows(const float *x, int n, int width, int32_t *out, cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    if (n > 0x7fffffff) return cudaErrorInvalidValue;
    argmax_rows_kernel<<<n, ARGMAX_ROW_THREADS, 0, stream>>>(x, width, out);
    return cudaGetLastError();
}

} // namespace dwk
