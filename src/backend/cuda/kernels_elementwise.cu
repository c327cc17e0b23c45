/* The small CUDA engine kernels (kernels.h): embedding rows, RMSNorm, RoPE with the
 * KV-cache store, residual add, SwiGLU, and the GEMM helpers (activation split, hi+lo combine,
 * bias), plus the graph step slot. */
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels_device.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

namespace dwk {
namespace {

__device__ __forceinline__ float load_w(const void *p, int wtype, size_t i) {
    if (wtype == W_BF16) return __uint_as_float((uint32_t)((const unsigned short *)p)[i] << 16);
    if (wtype == W_F16) return __half2float(((const __half *)p)[i]);
    return ((const float *)p)[i];
}

__global__ void embed_kernel(float *out, const void *table, int wtype, int cols, ids_chunk ids, const int *dslot) {
    pdl_launch_dependents(); /* a following matvec may start loading its weights */
    const int i = blockIdx.x;
    const int id = dslot ? dslot[0] : ids.v[i];
    const size_t base = (size_t)id * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out[(size_t)i * cols + c] = load_w(table, wtype, base + c);
}

__global__ void rmsnorm_kernel(float *out, const float *x, const float *w, int dim, float eps) {
    pdl_launch_dependents(); /* a following matvec may start loading its weights */
    __shared__ float red[32];
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *orow = out + (size_t)blockIdx.x * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
    for (int o = 16; o; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    float tot = 0.0f;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) tot += red[i];
    const float scale = 1.0f / sqrtf(tot / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) orow[i] = (xr[i] * scale) * w[i];
}

/* grid (n_heads + n_kv, n): block x < n_heads is query head x, else KV head x - n_heads. */
__global__ void rope_kv_kernel(const ropekv_args a) {
    pdl_launch_dependents(); /* a following matvec may start loading its weights */
    const int hh = blockIdx.x, t = blockIdx.y, hd = a.hd, half = hd / 2;
    const bool is_k = hh >= a.n_heads;
    const int kh = hh - a.n_heads;
    const int pos = (a.dslot ? a.dslot[1] : a.pos0) + t;
    float *x = is_k ? a.k + ((size_t)t * a.n_kv + kh) * hd : a.q + ((size_t)t * a.n_heads + hh) * hd;
    const bool store = is_k && a.kc;
    const size_t dst = ((size_t)kh * a.capacity + pos) * hd;
    if (!a.rope && !is_k) return;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float lo = x[i], hi = x[i + half];
        if (a.rope) {
            rope_pair(lo, hi, pos, a.inv_freq[i]);
            x[i] = lo;
            x[i + half] = hi;
        }
        if (store) {
            store_kv(a.kc, a.kv_f32, dst + i, lo);
            store_kv(a.kc, a.kv_f32, dst + i + half, hi);
        }
    }
    if (store) {
        const float *v = a.v + ((size_t)t * a.n_kv + kh) * hd;
        for (int d = threadIdx.x; d < hd; d += blockDim.x) store_kv(a.vc, a.kv_f32, dst + d, v[d]);
    }
}

__global__ void add_kernel(float *x, const float *y, size_t count) {
    pdl_launch_dependents(); /* a following matvec may start loading its weights */
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
        x[i] += y[i];
}

__global__ void swiglu_kernel(float *out, const float *gate, const float *up, size_t count) {
    pdl_launch_dependents(); /* a following matvec may start loading its weights */
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

__global__ void split_act_kernel(void *dst, const float *x, size_t count, int half, int passes) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        float v = x[i];
        if (half) {
            __half h = __float2half_rn(v);
            ((__half *)dst)[i] = h;
            if (passes == 2) ((__half *)dst)[count + i] = __float2half_rn(v - __half2float(h));
        } else {
            __nv_bfloat16 h = __float2bfloat16_rn(v);
            ((__nv_bfloat16 *)dst)[i] = h;
            if (passes == 2) ((__nv_bfloat16 *)dst)[count + i] = __float2bfloat16_rn(v - __bfloat162float(h));
        }
    }
}

__global__ void combine_hilo_kernel(float *out, const float *cs, int n, int rc, int rows, int r0, const float *bias) {
    const size_t total = (size_t)n * rc;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int t = (int)(i / rc), r = (int)(i % rc);
        float v = cs[(size_t)t * rc + r] + cs[(size_t)(n + t) * rc + r];
        if (bias) v += bias[r0 + r];
        out[(size_t)t * rows + r0 + r] = v;
    }
}

__global__ void add_bias_kernel(float *out, const float *bias, int n, int ld, int r0, int cnt) {
    const size_t total = (size_t)n * cnt;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int t = (int)(i / cnt), r = r0 + (int)(i % cnt);
        out[(size_t)t * ld + r] += bias[r];
    }
}

__global__ void set_step_kernel(int *slot, int id, const int32_t *id_dev, int pos) {
    slot[0] = id_dev ? *id_dev : id;
    slot[1] = pos;
}

__global__ void copy16_kernel(uint4 *dst, const uint4 *src, size_t n16) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n16; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __ldcg(src + i);
}

__global__ void copy1_kernel(unsigned char *dst, const unsigned char *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = src[i];
}

} // namespace

cudaError_t launch_embed(float *out, const void *table, int wtype, int cols, const int32_t *ids_host, int n,
                         const int *dslot, cudaStream_t stream) {
    return for_id_chunks(ids_host, n, dslot, [&](int done, int cnt, const ids_chunk &ids) {
        embed_kernel<<<cnt, 256, 0, stream>>>(out + (size_t)done * cols, table, wtype, cols, ids, dslot);
    });
}

cudaError_t launch_rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps, cudaStream_t stream) {
    rmsnorm_kernel<<<n, dim >= 1024 ? 1024 : 256, 0, stream>>>(out, x, w, dim, eps);
    return cudaGetLastError();
}

cudaError_t launch_rope_kv(const ropekv_args &a, cudaStream_t stream) {
    dim3 grid(a.n_heads + a.n_kv, a.n);
    int threads = a.hd / 2 >= 64 ? 64 : 32;
    rope_kv_kernel<<<grid, threads, 0, stream>>>(a);
    return cudaGetLastError();
}

cudaError_t launch_add(float *x, const float *y, size_t count, cudaStream_t stream) {
    add_kernel<<<grid_for(count, 256), 256, 0, stream>>>(x, y, count);
    return cudaGetLastError();
}

cudaError_t launch_swiglu(float *out, const float *gate, const float *up, size_t count, cudaStream_t stream) {
    swiglu_kernel<<<grid_for(count, 256), 256, 0, stream>>>(out, gate, up, count);
    return cudaGetLastError();
}

cudaError_t launch_split_act(void *dst, const float *x, int n, int K, int half, int passes, cudaStream_t stream) {
    size_t count = (size_t)n * K;
    split_act_kernel<<<grid_for(count, 256), 256, 0, stream>>>(dst, x, count, half, passes);
    return cudaGetLastError();
}

cudaError_t launch_combine_hilo(float *out, const float *cs, int n, int rc, int rows, int r0, const float *bias,
                                cudaStream_t stream) {
    combine_hilo_kernel<<<grid_for((size_t)n * rc, 256), 256, 0, stream>>>(out, cs, n, rc, rows, r0, bias);
    return cudaGetLastError();
}

cudaError_t launch_add_bias(float *out, const float *bias, int n, int ld, int r0, int cnt, cudaStream_t stream) {
    add_bias_kernel<<<grid_for((size_t)n * cnt, 256), 256, 0, stream>>>(out, bias, n, ld, r0, cnt);
    return cudaGetLastError();
}

cudaError_t launch_copy(void *dst, const void *src, size_t bytes, cudaStream_t stream) {
    if (!bytes) return cudaSuccess;
    size_t n16 = ((uintptr_t)dst % 16 == 0 && (uintptr_t)src % 16 == 0) ? bytes / 16 : 0;
    if (n16) copy16_kernel<<<grid_for(n16, 256) < 264 ? grid_for(n16, 256) : 264, 256, 0, stream>>>(
        (uint4 *)dst, (const uint4 *)src, n16);
    size_t rest = bytes - n16 * 16;
    if (rest)
        copy1_kernel<<<grid_for(rest, 256), 256, 0, stream>>>((unsigned char *)dst + n16 * 16,
                                                             (const unsigned char *)src + n16 * 16, rest);
    return cudaGetLastError();
}

cudaError_t launch_set_step(int *slot, int id, const int32_t *id_dev, int pos, cudaStream_t stream) {
    set_step_kernel<<<1, 1, 0, stream>>>(slot, id, id_dev, pos);
    return cudaGetLastError();
}

} // namespace dwk
