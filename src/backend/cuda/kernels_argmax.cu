/* Greedy token choice on the device (compute_cuda_kernels.h: launch_argmax): the first index of
 * the largest of n floats, so a decode step can follow the previous one without the host
 * reading the logits. Each block reduces a slice to (value, index) and the last block to finish
 * reduces the blocks' pairs (a counter it resets, as the attention kernel's combine does). */
#include "backend/cuda/compute_cuda_kernels.h"

#include <math.h>

namespace dwk {
namespace {

constexpr int THREADS = 256;

/* The better of two candidates: the larger value, on ties the smaller index (NaN never wins). */
__device__ __forceinline__ void better(float &v, int &i, float v2, int i2) {
    if (v2 > v || (v2 == v && i2 < i)) v = v2, i = i2;
}

__device__ __forceinline__ void block_best(float &v, int &i, float *sv, int *si) {
    for (int o = 16; o; o >>= 1) better(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) sv[warp] = v, si[warp] = i;
    __syncthreads();
    if (warp == 0) {
        v = lane < THREADS / 32 ? sv[lane] : -INFINITY;
        i = lane < THREADS / 32 ? si[lane] : 0x7fffffff;
        for (int o = 16; o; o >>= 1) better(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    }
}

__global__ void __launch_bounds__(THREADS) argmax_kernel(const float *x, int n, float *part_v, int *part_i,
                                                         unsigned *counter, int32_t *out, int *slot, int next_pos) {
    __shared__ float sv[THREADS / 32];
    __shared__ int si[THREADS / 32];
    __shared__ bool last;
    float v = -INFINITY;
    int i = 0x7fffffff;
    for (int k = blockIdx.x * THREADS + threadIdx.x; k < n; k += gridDim.x * THREADS) better(v, i, __ldcg(x + k), k);
    block_best(v, i, sv, si);
    if (threadIdx.x == 0) {
        part_v[blockIdx.x] = v, part_i[blockIdx.x] = i;
        __threadfence();
        last = atomicAdd(counter, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    v = -INFINITY, i = 0x7fffffff;
    for (int b = threadIdx.x; b < (int)gridDim.x; b += THREADS) better(v, i, __ldcg(part_v + b), __ldcg(part_i + b));
    __syncthreads(); /* sv/si reused */
    block_best(v, i, sv, si);
    if (threadIdx.x == 0) {
        const int id = i == 0x7fffffff ? 0 : i; /* all NaN: 0 */
        *out = id;
        if (slot) slot[0] = id, slot[1] = next_pos;
        *counter = 0;
    }
}

} // namespace

cudaError_t launch_argmax(const float *x, int n, float *part_v, int *part_i, unsigned *counter, int32_t *out,
                          int *slot, int next_pos, cudaStream_t stream) {
    int blocks = (n + THREADS * 4 - 1) / (THREADS * 4);
    if (blocks > DWK_ARGMAX_BLOCKS) blocks = DWK_ARGMAX_BLOCKS;
    if (blocks < 1) blocks = 1;
    argmax_kernel<<<blocks, THREADS, 0, stream>>>(x, n, part_v, part_i, counter, out, slot, next_pos);
    return cudaGetLastError();
}

} // namespace dwk
