/* Kernels for quantized (MLX affine, src/core/quant_layout.h) matrices on CUDA
 * (kernels.h): the decode matrix-vector product on packed 4- and 8-bit codes, with
 * the same fusions as kernels_matvec.cu (RMSNorm in front, residual add or SwiGLU behind); the
 * dequantization of row blocks to bf16 for the prefill GEMM; the embedding of a quantized table.
 *
 * The decode matrix-vector code itself is in kernels_qmatvec.cuh. */
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels_qmatvec.cuh"
#include "core/quant_layout.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdlib.h>

namespace dwk {
namespace {

template <int BITS, int ST, bool PAIR, int S>
__global__ void __launch_bounds__(MV_THREADS, 2) qmatvec_kernel(const mv_args a) {
    extern __shared__ float smem[];
    __shared__ float red[MV_WARPS];
    qmatvec_tasks<BITS, ST, PAIR, S>(a, smem, red, blockIdx.x * MV_WARPS + (threadIdx.x >> 5), gridDim.x * MV_WARPS, [&a] {
        pdl_wait();
        if (!a.trigger_late) pdl_launch_dependents();
    });
}

template <int BITS, int ST>
cudaError_t launch_bits_st(const mv_args &a, int n_sm, cudaStream_t stream) {
    const bool pair = a.pair_swiglu != 0;
    const int S = qmv_rows_per_task(BITS, a.K, pair);
    const int total = pair ? a.row_start[1] : a.row_start[a.count];
    const int rpt = pair ? S / 2 : S;
    const int tasks = (total + rpt - 1) / rpt;
    const int blocks = (tasks + MV_WARPS - 1) / MV_WARPS;
    const size_t smem = qmv_smem_floats(a) * sizeof(float);
#define DWK_QMV(P, SS) \
    if (pair == P && S == SS) return launch_resident(qmatvec_kernel<BITS, ST, P, SS>, a, blocks, MV_THREADS, smem, n_sm, stream);
    DWK_QMV(false, 1) DWK_QMV(false, 2) DWK_QMV(false, 4) DWK_QMV(true, 2) DWK_QMV(true, 4)
#undef DWK_QMV
    return cudaErrorInvalidValue;
}

template <int BITS> cudaError_t launch_bits(const mv_args &a, int n_sm, cudaStream_t stream) {
    switch (a.sbtype) {
    case W_BF16: return launch_bits_st<BITS, W_BF16>(a, n_sm, stream);
    case W_F32: return launch_bits_st<BITS, W_F32>(a, n_sm, stream);
    }
    return cudaErrorInvalidValue;
}

/* (scale, bias) of group g of row r as f32. */
__device__ __forceinline__ float2 group_sb(const qmatrix &m, size_t r, int g) {
    const size_t i = r * (size_t)(m.K / m.group) + g;
    if (m.sbtype == W_F32) return reinterpret_cast<const float2 *>(m.sb)[i];
    return sb_pair<W_BF16>::get(reinterpret_cast<const uint32_t *>(m.sb)[i]);
}

/* The values of code word wi of row r (32/BITS of them) as f32, into f. */
template <int BITS> __device__ __forceinline__ void word_values(const qmatrix &m, size_t r, int wi, float *f) {
    constexpr int PER = DW_QUANT_CODES_PER_WORD(BITS);
    const uint32_t w = m.codes[r * (m.K / PER) + wi];
    const float2 p = group_sb(m, r, wi * PER / m.group);
#pragma unroll
    for (int t = 0; t < PER; t++) f[t] = fmaf(p.x, (float)((w >> (t * BITS)) & DW_QUANT_CODE_MASK(BITS)), p.y);
}

template <int BITS> __global__ void dequant_bf16_kernel(unsigned short *dst, const qmatrix m, int r0, int cnt) {
    constexpr int PER = DW_QUANT_CODES_PER_WORD(BITS);
    const int words = m.K / PER;
    const size_t total = (size_t)cnt * words;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / words;
        const int wi = (int)(i % words);
        float f[PER];
        word_values<BITS>(m, r0 + r, wi, f);
        uint32_t h[PER / 2]; /* the word's values as bf16 pairs, stored at once (16 or 8 bytes) */
#pragma unroll
        for (int t = 0; t < PER; t += 2)
            h[t / 2] = __bfloat16_as_ushort(__float2bfloat16_rn(f[t])) |
                       (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(f[t + 1])) << 16;
        unsigned short *o = dst + r * m.K + (size_t)wi * PER;
        if constexpr (PER == 8) *reinterpret_cast<uint4 *>(o) = make_uint4(h[0], h[1], h[2], h[3]);
        else *reinterpret_cast<uint2 *>(o) = make_uint2(h[0], h[1]);
    }
}

template <int BITS> __global__ void embed_q_kernel(float *out, const qmatrix m, ids_chunk ids, const int *dslot) {
    constexpr int PER = DW_QUANT_CODES_PER_WORD(BITS);
    pdl_launch_dependents();
    const int i = blockIdx.x, words = m.K / PER;
    const size_t id = (size_t)(dslot ? dslot[0] : ids.v[i]);
    for (int wi = threadIdx.x; wi < words; wi += blockDim.x) {
        float f[PER];
        word_values<BITS>(m, id, wi, f);
#pragma unroll
        for (int t = 0; t < PER; t++) out[(size_t)i * m.K + (size_t)wi * PER + t] = f[t];
    }
}

} // namespace

cudaError_t launch_qmatvec(const mv_args &a, int n_sm, cudaStream_t stream) {
    if (!qmv_supported(a)) return cudaErrorInvalidValue;
    return a.qbits == 4 ? launch_bits<4>(a, n_sm, stream) : launch_bits<8>(a, n_sm, stream);
}

cudaError_t launch_dequant_bf16(void *dst, const qmatrix &m, int r0, int cnt, cudaStream_t stream) {
    const size_t words = (size_t)cnt * DW_QUANT_ROW_WORDS(m.K, m.bits);
    if (m.bits == 4) dequant_bf16_kernel<4><<<grid_for(words, 256), 256, 0, stream>>>((unsigned short *)dst, m, r0, cnt);
    else dequant_bf16_kernel<8><<<grid_for(words, 256), 256, 0, stream>>>((unsigned short *)dst, m, r0, cnt);
    return cudaGetLastError();
}

cudaError_t launch_embed_q(float *out, const qmatrix &m, const int32_t *ids_host, int n, const int *dslot,
                           cudaStream_t stream) {
    return for_id_chunks(ids_host, n, dslot, [&](int done, int cnt, const ids_chunk &ids) {
        if (m.bits == 4) embed_q_kernel<4><<<cnt, 128, 0, stream>>>(out + (size_t)done * m.K, m, ids, dslot);
        else embed_q_kernel<8><<<cnt, 128, 0, stream>>>(out + (size_t)done * m.K, m, ids, dslot);
    });
}

} // namespace dwk
