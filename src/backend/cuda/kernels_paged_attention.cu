/* The batched step's attention over a paged KV pool (kernels.h: launch_paged_attention).
 *
 * Row i (a query token at position pos[i]) attends to its sequence's keys [lo, pos[i]] (lo =
 * pos − window + 1 with a sliding window, else 0), found through its block table. The keys are
 * cut into fixed chunks of DWK_PAGED_CHUNK (chunk c: keys [c·CHUNK, (c+1)·CHUNK)), so which chunks
 * a row has depends on its pos alone. Kernel 1, grid (chunk, head group, row), one thread per key
 * of the chunk: the scores q·k·scale of HG query heads that share one KV head (each a sequential
 * sum over d), the chunk's max and Σ exp(s − max) (fixed trees: lane 0's butterfly, then the
 * warps in order), and Σ p·v per (head, d) over the keys in order; all into part. Kernel 2, one
 * block per (row, head): the chunks combined in chunk order. No result depends on n, on the
 * other rows, on max_chunks or on HG. */
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels_device.cuh"

#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

namespace dwk {
namespace {

constexpr int CH = DWK_PAGED_CHUNK; /* keys per chunk = threads per block of kernel 1 */
constexpr int WARPS = CH / 32;

__device__ __forceinline__ int row_lo(int pos, int window) {
    const int lo = window > 0 ? pos - window + 1 : 0;
    return lo > 0 ? lo : 0;
}

template <bool F32> __device__ __forceinline__ float kv_at(const void *p, size_t i) {
    if constexpr (F32) return reinterpret_cast<const float *>(p)[i];
    else return __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(p)[i]);
}

/* 8 consecutive elements at element index i (16- or 32-byte aligned). */
template <bool F32> __device__ __forceinline__ void kv_at8(const void *p, size_t i, float (&f)[8]) {
    if constexpr (F32) {
        const float4 a = __ldg(reinterpret_cast<const float4 *>((const float *)p + i));
        const float4 b = __ldg(reinterpret_cast<const float4 *>((const float *)p + i) + 1);
        f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
    } else {
        const uint4 v = __ldg(reinterpret_cast<const uint4 *>((const unsigned short *)p + i));
        const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int e = 0; e < 4; e++) f[2 * e] = __uint_as_float(w[e] << 16), f[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
    }
}

template <bool F32, int HG>
__global__ void __launch_bounds__(CH) paged_chunk_kernel(const paged_attn_args a) {
    extern __shared__ float sm[];
    float *qs = sm;                 /* [HG][hd] */
    float *ps = sm + HG * a.hd;     /* [HG][CH]: scores, then weights */
    __shared__ int blk[CH];         /* each key's block id */
    __shared__ float red[HG][WARPS];
    __shared__ float stat[HG][2];   /* max, sum */

    const int c = blockIdx.x, row = blockIdx.z, hd = a.hd;
    const int pos = a.r.pos[row], lo = row_lo(pos, a.window);
    if (c < lo / CH || c > pos / CH) return;
    const int h0 = blockIdx.y * HG, G = a.n_heads / a.n_kv, kh = h0 / G;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int32_t *table = a.r.tables + a.r.table_at[row];
    const float *q = a.q + (size_t)row * a.n_heads * hd + (size_t)h0 * hd;
    for (int e = tid; e < HG * hd; e += CH) qs[e] = q[e];

    const int p = c * CH + tid;
    const bool valid = p >= lo && p <= pos;
    int b = 0;
    if (valid) b = table[p / a.block_tokens];
    blk[tid] = b;
    __syncthreads();

    float s[HG];
#pragma unroll
    for (int hh = 0; hh < HG; hh++) s[hh] = 0.0f;
    if (valid) {
        const size_t kb = (((size_t)b * a.n_kv + kh) * a.block_tokens + p % a.block_tokens) * hd;
        if (hd % 8 == 0) {
            for (int d = 0; d < hd; d += 8) {
                float kf[8];
                kv_at8<F32>(a.k, kb + d, kf);
#pragma unroll
                for (int e = 0; e < 8; e++)
#pragma unroll
                    for (int hh = 0; hh < HG; hh++) s[hh] = fmaf(qs[hh * hd + d + e], kf[e], s[hh]);
            }
        } else {
            for (int d = 0; d < hd; d++) {
                const float kf = kv_at<F32>(a.k, kb + d);
#pragma unroll
                for (int hh = 0; hh < HG; hh++) s[hh] = fmaf(qs[hh * hd + d], kf, s[hh]);
            }
        }
    }
#pragma unroll
    for (int hh = 0; hh < HG; hh++) s[hh] = valid ? s[hh] * a.scale : -INFINITY;

    /* the chunk's max per head (exact in any order) */
#pragma unroll
    for (int hh = 0; hh < HG; hh++) {
        float m = s[hh];
        for (int o = 16; o; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        if (lane == 0) red[hh][warp] = m;
    }
    __syncthreads();
    if (tid < HG) {
        float m = red[tid][0];
        for (int w = 1; w < WARPS; w++) m = fmaxf(m, red[tid][w]);
        stat[tid][0] = m;
    }
    __syncthreads();
    /* the weights and their sum: lane 0's butterfly per warp, then the warps in order */
#pragma unroll
    for (int hh = 0; hh < HG; hh++) {
        const float e = valid ? expf(s[hh] - stat[hh][0]) : 0.0f;
        ps[hh * CH + tid] = e;
        float sum = e;
        for (int o = 16; o; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (lane == 0) red[hh][warp] = sum;
    }
    __syncthreads();
    if (tid < HG) {
        float l = red[tid][0];
        for (int w = 1; w < WARPS; w++) l += red[tid][w];
        stat[tid][1] = l;
    }
    __syncthreads();

    /* Σ p·v over the chunk's keys in order, per (head, d) */
    const int j0 = lo > c * CH ? lo - c * CH : 0;
    const int j1 = pos - c * CH < CH - 1 ? pos - c * CH : CH - 1;
    for (int o = tid; o < HG * hd; o += CH) {
        const int hh = o / hd, d = o % hd;
        float acc = 0.0f;
        for (int jj = j0; jj <= j1; jj++) {
            const int pp = c * CH + jj;
            const size_t vb = (((size_t)blk[jj] * a.n_kv + kh) * a.block_tokens + pp % a.block_tokens) * hd;
            acc = fmaf(ps[hh * CH + jj], kv_at<F32>(a.v, vb + d), acc);
        }
        float *part = a.part + (((size_t)row * a.n_heads + h0 + hh) * a.max_chunks + c) * (hd + 2);
        part[d] = acc;
        if (d == 0) part[hd] = stat[hh][0], part[hd + 1] = stat[hh][1];
    }
}

/* One block per (head, row): the row's chunks combined in chunk order. */
__global__ void paged_combine_kernel(const paged_attn_args a) {
    const int h = blockIdx.x, row = blockIdx.y, hd = a.hd;
    const int pos = a.r.pos[row], lo = row_lo(pos, a.window);
    const int c0 = lo / CH, c1 = min(pos / CH, a.max_chunks - 1); /* (max_pos honest: pos / CH) */
    const float *part = a.part + ((size_t)row * a.n_heads + h) * a.max_chunks * (hd + 2);
    float M = -INFINITY;
    for (int c = c0; c <= c1; c++) M = fmaxf(M, part[(size_t)c * (hd + 2) + hd]);
    float L = 0.0f;
    for (int c = c0; c <= c1; c++) {
        const float *pc = part + (size_t)c * (hd + 2);
        L = fmaf(pc[hd + 1], expf(pc[hd] - M), L);
    }
    float *out = a.out + (size_t)row * a.n_heads * hd + (size_t)h * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int c = c0; c <= c1; c++) {
            const float *pc = part + (size_t)c * (hd + 2);
            acc = fmaf(pc[d], expf(pc[hd] - M), acc);
        }
        out[d] = acc / L;
    }
}

template <bool F32> cudaError_t launch_f(const paged_attn_args &a, cudaStream_t stream) {
    const int G = a.n_heads / a.n_kv;
    const int hg = G % 8 == 0 ? 8 : G % 4 == 0 ? 4 : G % 2 == 0 ? 2 : 1;
    const dim3 grid(a.max_chunks, a.n_heads / hg, a.r.n);
    const size_t smem = (size_t)hg * (a.hd + CH) * sizeof(float);
    switch (hg) {
    case 8: paged_chunk_kernel<F32, 8><<<grid, CH, smem, stream>>>(a); break;
    case 4: paged_chunk_kernel<F32, 4><<<grid, CH, smem, stream>>>(a); break;
    case 2: paged_chunk_kernel<F32, 2><<<grid, CH, smem, stream>>>(a); break;
    default: paged_chunk_kernel<F32, 1><<<grid, CH, smem, stream>>>(a); break;
    }
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    paged_combine_kernel<<<dim3(a.n_heads, a.r.n), a.hd < 128 ? 64 : 128, 0, stream>>>(a);
    return cudaGetLastError();
}

} // namespace

size_t paged_attention_part_floats(int n, int n_heads, int hd, int max_chunks) {
    return (size_t)n * n_heads * max_chunks * (hd + 2);
}

cudaError_t launch_paged_attention(const paged_attn_args &a, cudaStream_t stream) {
    if (a.r.n <= 0) return cudaSuccess;
    if (a.r.n > 65535 || a.max_chunks <= 0) return cudaErrorInvalidValue;
    return a.kv_f32 ? launch_f<true>(a, stream) : launch_f<false>(a, stream);
}

} // namespace dwk
