/* The decode matrix-vector kernel (kernels.h: mv_args): bandwidth-bound
 * out = W·x for batch 1, with RMSNorm fused in front and residual-add / SwiGLU fused behind. */
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels_matvec.cuh"

#include <stdint.h>

namespace dwk {
namespace {

/* At least 4 blocks per SM for a single matrix (64 registers: the prologue's batched x loads
 * must not cost a block), 2 for a gate/up pair or U above MV_UNROLL. */
template <int WT, bool VEC, bool NORM, bool PAIR, int KS, int U = MV_UNROLL, bool LATE = false>
__global__ void __launch_bounds__(MV_THREADS, PAIR || U > MV_UNROLL ? 2 : 4) matvec_kernel(const mv_args a) {
    extern __shared__ float xs[]; /* [K / E × XP]: x' by chunk, padded */
    __shared__ float red[2 * MV_WARPS];
    /* Launched with programmatic stream serialization, this kernel starts while the previous one
     * finishes: the first weight loads do not depend on it; what the wait guards does. */
    constexpr int ROWS = MV_WARPS / KS; /* rows a block works on at once */
    matvec_rows<WT, VEC, NORM, PAIR, U, KS, LATE>(a, xs, red, blockIdx.x * ROWS + (threadIdx.x >> 5) / KS,
                                                    gridDim.x * ROWS, [&a] {
                                                        pdl_wait();
                                                        if (!a.trigger_late) pdl_launch_dependents();
                                                    });
}

template <int WT, bool VEC, bool NORM, bool PAIR, int KS = 1, int U = MV_UNROLL, bool LATE = false>
cudaError_t launch_one(const mv_args &a, int n_sm, cudaStream_t stream) {
    const int total = PAIR ? a.row_start[1] : a.row_start[a.count], rows = MV_WARPS / KS;
    return launch_resident(matvec_kernel<WT, VEC, NORM, PAIR, KS, U, LATE>, a, (total + rows - 1) / rows, MV_THREADS,
                           mv_smem_bytes<WT, VEC>(a), n_sm, stream);
}

/* Warps per row (KS). A single matrix runs 4 blocks of 8 warps per SM (64 registers) and keeps
 * one warp per row. The gate/up pair, at 2 blocks per SM (two rows' loads in flight per warp:
 * ~115 registers), splits its rows so that a warp's slice is about half a round of loads (128
 * chunks of 16 bytes), up to 4 warps per row: the rows' rounds then run side by side instead of
 * one after the other. Measured with bench/cuda/chain_probe.cu (the engine's matvecs chained as
 * in a decode step): single matrices are best with one warp per row, the gate/up pair with 4
 * (bench/cuda/README.md v15). */
template <int WT> int warps_per_row(const mv_args &a, bool pair) {
    if (!pair) return 1;
    const int slices = a.K / chunk<WT, true>::E / 128;
    return slices >= 4 ? 4 : slices >= 2 ? 2 : 1;
}

/* Whether a single matrix's rows are long enough (3 rounds of MV_UNROLL loads or more: the 1B's
 * down, K = 8192) to be read with twice the loads in flight per lane, at 2 blocks per SM: as many
 * warps as such a matrix has rows anyway, half the rounds. */
template <int WT> bool deep_rows(const mv_args &a) { return a.K / chunk<WT, true>::E >= 3 * 32 * MV_UNROLL; }

template <int WT, bool NORM, bool PAIR, bool LATE = false>
cudaError_t launch_split(const mv_args &a, int n_sm, cudaStream_t stream) {
    if constexpr (NORM && !LATE)
        if (a.norm_late) return launch_split<WT, NORM, PAIR, true>(a, n_sm, stream);
    if constexpr (!PAIR)
        if (deep_rows<WT>(a)) return launch_one<WT, true, NORM, PAIR, 1, 2 * MV_UNROLL, LATE>(a, n_sm, stream);
    switch (warps_per_row<WT>(a, PAIR)) {
    case 2: return launch_one<WT, true, NORM, PAIR, 2, MV_UNROLL, LATE>(a, n_sm, stream);
    case 4: return launch_one<WT, true, NORM, PAIR, 4, MV_UNROLL, LATE>(a, n_sm, stream);
    }
    return launch_one<WT, true, NORM, PAIR, 1, MV_UNROLL, LATE>(a, n_sm, stream);
}

template <int WT> cudaError_t launch_wt(const mv_args &a, int n_sm, cudaStream_t stream) {
    const bool vec = mv_vector_path<WT>(a);
    bool norm = a.norm_w != nullptr, pair = a.pair_swiglu != 0;
    if (vec) {
        if (norm) return pair ? launch_split<WT, true, true>(a, n_sm, stream)
                              : launch_split<WT, true, false>(a, n_sm, stream);
        return pair ? launch_split<WT, false, true>(a, n_sm, stream) : launch_split<WT, false, false>(a, n_sm, stream);
    }
#define DWK_MV(N, P) \
    if (norm == N && pair == P) return launch_one<WT, false, N, P>(a, n_sm, stream);
    DWK_MV(false, false) DWK_MV(true, false) DWK_MV(false, true) DWK_MV(true, true)
#undef DWK_MV
    return cudaErrorInvalidValue;
}

} // namespace

cudaError_t launch_matvec(const mv_args &args, int n_sm, cudaStream_t stream) {
    mv_args a = args;
    a.wide_x = a.K >= 4096;
    /* stage_x_late's needs: the staged norm weights, float4s of x, w and x' aligned */
    a.norm_late = norm_staged(a) && a.K % 4 == 0 &&
                  ((uintptr_t)a.x | (uintptr_t)a.norm_w | (uintptr_t)a.norm_out) % 16 == 0;
    if (a.qbits) return launch_qmatvec(a, n_sm, stream);
    switch (a.wtype) {
    case W_BF16: return launch_wt<W_BF16>(a, n_sm, stream);
    case W_F16: return launch_wt<W_F16>(a, n_sm, stream);
    case W_F32: return launch_wt<W_F32>(a, n_sm, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace dwk
