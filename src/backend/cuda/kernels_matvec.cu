/* The decode matrix-vector kernel (compute_cuda_kernels.h: mv_args): bandwidth-bound
 * out = W·x for batch 1, with RMSNorm fused in front and residual-add / SwiGLU fused behind. */
#include "backend/cuda/compute_cuda_kernels.h"
#include "backend/cuda/kernels_matvec.cuh"

#include <stdint.h>

namespace dwk {
namespace {

template <int WT, bool VEC, bool NORM, bool PAIR>
__global__ void __launch_bounds__(MV_THREADS) matvec_kernel(const mv_args a) {
    extern __shared__ float xs[]; /* [K / E × XP]: x' by chunk, padded */
    __shared__ float red[MV_WARPS];
    /* Launched with programmatic stream serialization (the default; DW_CUDA_PDL=0 off), this
     * kernel starts while the previous one finishes: the first weight loads do not depend on it;
     * what the wait guards does. */
    matvec_rows<WT, VEC, NORM, PAIR>(a, xs, red, blockIdx.x * MV_WARPS + (threadIdx.x >> 5), gridDim.x * MV_WARPS, [] {
        pdl_wait();
        pdl_launch_dependents();
    });
}

template <int WT, bool VEC, bool NORM, bool PAIR>
cudaError_t launch_one(const mv_args &a, int n_sm, cudaStream_t stream) {
    const int total = PAIR ? a.row_start[1] : a.row_start[a.count];
    return launch_resident(matvec_kernel<WT, VEC, NORM, PAIR>, a, (total + MV_WARPS - 1) / MV_WARPS, MV_THREADS,
                           (size_t)a.K / chunk<WT, VEC>::E * x_stride(chunk<WT, VEC>::E) * sizeof(float), n_sm, stream);
}

template <int WT> cudaError_t launch_wt(const mv_args &a, int n_sm, cudaStream_t stream) {
    constexpr int E = 16 / wt<WT>::size;
    bool vec = a.K % E == 0;
    for (int j = 0; j < a.count; j++) vec = vec && ((uintptr_t)a.w[j] % 16 == 0);
    bool norm = a.norm_w != nullptr, pair = a.pair_swiglu != 0;
#define DWK_MV(V, N, P) \
    if (vec == V && norm == N && pair == P) return launch_one<WT, V, N, P>(a, n_sm, stream);
    DWK_MV(true, false, false) DWK_MV(true, true, false) DWK_MV(true, false, true) DWK_MV(true, true, true)
    DWK_MV(false, false, false) DWK_MV(false, true, false) DWK_MV(false, false, true) DWK_MV(false, true, true)
#undef DWK_MV
    return cudaErrorInvalidValue;
}

} // namespace

cudaError_t launch_matvec(const mv_args &a, int n_sm, cudaStream_t stream) {
    if (a.qbits) return launch_qmatvec(a, n_sm, stream);
    switch (a.wtype) {
    case W_BF16: return launch_wt<W_BF16>(a, n_sm, stream);
    case W_F16: return launch_wt<W_F16>(a, n_sm, stream);
    case W_F32: return launch_wt<W_F32>(a, n_sm, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace dwk
