/* The decode matrix-vector kernel (compute_cuda_kernels.h: mv_args): bandwidth-bound
 * out = W·x for batch 1, with RMSNorm fused in front and residual-add / SwiGLU fused behind. */
#include "backend/cuda/compute_cuda_kernels.h"
#include "backend/cuda/kernels_matvec.cuh"

#include <stdint.h>
#include <stdlib.h>

namespace dwk {
namespace {

template <int WT, bool VEC, bool NORM, bool PAIR, int KS>
__global__ void __launch_bounds__(MV_THREADS) matvec_kernel(const mv_args a) {
    extern __shared__ float xs[]; /* [K / E × XP]: x' by chunk, padded */
    __shared__ float red[MV_WARPS];
    /* Launched with programmatic stream serialization (the default; DW_CUDA_PDL=0 off), this
     * kernel starts while the previous one finishes: the first weight loads do not depend on it;
     * what the wait guards does. */
    constexpr int ROWS = MV_WARPS / KS; /* rows a block works on at once */
    matvec_rows<WT, VEC, NORM, PAIR, MV_UNROLL, KS>(a, xs, red, blockIdx.x * ROWS + (threadIdx.x >> 5) / KS, gridDim.x * ROWS, [&a] {
        pdl_wait();
        if (!a.trigger_late) pdl_launch_dependents();
    });
}

template <int WT, bool VEC, bool NORM, bool PAIR, int KS = 1>
cudaError_t launch_one(const mv_args &a, int n_sm, cudaStream_t stream) {
    const int total = PAIR ? a.row_start[1] : a.row_start[a.count], rows = MV_WARPS / KS;
    return launch_resident(matvec_kernel<WT, VEC, NORM, PAIR, KS>, a, (total + rows - 1) / rows, MV_THREADS,
                           mv_smem_bytes<WT, VEC>(a.K), n_sm, stream);
}

/* Whether a single matrix's rows are better split between two warps (KS = 2): a warp's time is
 * its rows times the rounds of loads per row (UNROLL chunks per lane each); split, the rows
 * double and the rounds halve. It pays where the rows leave warps idle (1B down: 2048 rows of 4
 * rounds on ~4200 warps) or the last wave of rows is a part one (8B q/k/v: 6144 rows of 2).
 * DW_CUDA_MV_KSPLIT=0 turns it off (tuning). */
template <int WT, bool NORM> bool split_rows(const mv_args &a, int n_sm) {
    static int on = -1;
    if (on < 0) {
        const char *v = getenv("DW_CUDA_MV_KSPLIT");
        on = !(v && *v == '0');
    }
    if (!on) return false;
    constexpr int E = chunk<WT, true>::E;
    const long warps = (long)n_sm *
                       resident_per_sm((const void *)matvec_kernel<WT, true, NORM, false, 1>, MV_THREADS,
                                       mv_smem_bytes<WT, true>(a.K)) *
                       MV_WARPS;
    const long rows = a.row_start[a.count], rounds = (a.K / E + 32 * MV_UNROLL - 1) / (32 * MV_UNROLL);
    const long whole = (rows + warps - 1) / warps * rounds, split = (2 * rows + warps - 1) / warps * ((rounds + 1) / 2);
    return split < whole;
}

template <int WT> cudaError_t launch_wt(const mv_args &a, int n_sm, cudaStream_t stream) {
    const bool vec = mv_vector_path<WT>(a);
    bool norm = a.norm_w != nullptr, pair = a.pair_swiglu != 0;
    if (vec && !pair && (norm ? split_rows<WT, true>(a, n_sm) : split_rows<WT, false>(a, n_sm))) {
        if (norm) return launch_one<WT, true, true, false, 2>(a, n_sm, stream);
        return launch_one<WT, true, false, false, 2>(a, n_sm, stream);
    }
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
