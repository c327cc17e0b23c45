/* Greedy token choice on the device (kernels.h: launch_argmax): the first index of
 * the largest of n floats, so a decode step can follow the previous one without the host
 * reading the logits. Each block reduces a slice to (value, index) and the last block to finish
 * reduces the blocks' pairs (a counter it resets, as the attention kernel's combine does). */
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels_device.cuh"

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

struct argmax_args {
    const float *x;
    int n;
    float *part_v;
    int *part_i;
    unsigned *counter;
    int32_t *ring;
    int ring_n, pos;
    int *slot;
};

__global__ void __launch_bounds__(THREADS) argmax_kernel(const argmax_args a) {
    __shared__ float sv[THREADS / 32];
    __shared__ int si[THREADS / 32];
    __shared__ bool last;
    pdl_wait(); /* the logits, and in a decode graph every kernel of the step before it (each waits in turn) */
    float v = -INFINITY;
    int i = 0x7fffffff;
    for (int k = blockIdx.x * THREADS + threadIdx.x; k < a.n; k += gridDim.x * THREADS) better(v, i, __ldcg(a.x + k), k);
    block_best(v, i, sv, si);
    if (threadIdx.x == 0) {
        a.part_v[blockIdx.x] = v, a.part_i[blockIdx.x] = i;
        __threadfence();
        last = atomicAdd(a.counter, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    v = -INFINITY, i = 0x7fffffff;
    for (int b = threadIdx.x; b < (int)gridDim.x; b += THREADS) better(v, i, __ldcg(a.part_v + b), __ldcg(a.part_i + b));
    __syncthreads(); /* sv/si reused */
    block_best(v, i, sv, si);
    if (threadIdx.x == 0) {
        const int id = i == 0x7fffffff ? 0 : i; /* all NaN: 0 */
        const int pos = a.slot ? a.slot[1] : a.pos; /* every kernel that reads the slot is done */
        a.ring[pos % a.ring_n] = id;
        if (a.slot) a.slot[0] = id, a.slot[1] = pos + 1;
        *a.counter = 0;
    }
}

} // namespace

cudaError_t launch_argmax(const float *x, int n, float *part_v, int *part_i, unsigned *counter, int32_t *ring,
                          int ring_n, int pos, int *slot, cudaStream_t stream) {
    int blocks = (n + THREADS * 4 - 1) / (THREADS * 4);
    if (blocks > DWK_ARGMAX_BLOCKS) blocks = DWK_ARGMAX_BLOCKS;
    if (blocks < 1) blocks = 1;
    const argmax_args a = {x, n, part_v, part_i, counter, ring, ring_n, pos, slot};
    return launch_pdl(argmax_kernel, a, dim3(blocks), THREADS, 0, stream);
}

} // namespace dwk
