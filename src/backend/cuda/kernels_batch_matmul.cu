/* The batched step's matrix product (kernels.h: launch_matmul_rows) on the tensor cores, and its
 * plain fallback and the rounding of x that feeds it.
 *
 * A block owns MT m-tiles (16 weight rows each) of one matrix and up to 64 tokens (blockIdx.y picks
 * which 64), as NT n-tiles of 8. Its 8 warps split K: the K axis is cut into chunks of KC values,
 * and warp w takes chunks w, w + 8, w + 16, ... in order, so each warp's share and order are
 * fixed by K alone. Inside a chunk, lane (g = lane / 4, t = lane % 4) loads 16 contiguous bytes of
 * weight rows g and g + 8 (V values at k = chunk·KC + V·t) and, for each n-tile, of token g's x
 * at the same k: one consistent permutation of k for W and x, which the dot product does not see.
 * V = 8 for bf16/f16 (16 bytes of values), 16 for 8-bit codes and 32 for 4-bit codes (16 bytes of
 * codes), dequantized in registers to bf16 (w = scale·code + bias in f32, rounded to nearest
 * even). Each 8 values (a sub-step) feed two mma.m16n8k16 with fp32 accumulators; the lanes'
 * register pairs (k0,k1), (k2,k3) serve as k slots (2t, 2t+1), (2t+8, 2t+9) of the first mma and
 * (k4,k5), (k6,k7) of the second. The 8 warps' accumulators are then added in warp order through
 * shared memory, the bias added, and the tile stored (rows past the matrix and padding tokens,
 * which were zero, are not). Nothing in an output element's arithmetic depends on n, on the
 * other tokens or on where its token sits: batch invariant. */
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels_device.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace dwk {
namespace {

constexpr int MMR_WARPS = 8;
constexpr int MMR_THREADS = MMR_WARPS * 32;
constexpr int MMR_TOKENS = 64; /* tokens per block (blockIdx.y) */

template <int KIND> struct mmr_shape {
    static constexpr int V = KIND == MMR_Q4 ? 32 : KIND == MMR_Q8 ? 16 : 8; /* values per lane and row */
    static constexpr int KC = 4 * V;                                        /* k per chunk */
    static constexpr int SUB = V / 8;                                       /* sub-steps per chunk */
    /* bytes of one row for K values */
    static __device__ __forceinline__ size_t row_bytes(int K) {
        return KIND == MMR_Q4 ? (size_t)K / 2 : KIND == MMR_Q8 ? (size_t)K : (size_t)K * 2;
    }
    static __device__ __forceinline__ size_t k_bytes(int k) {
        return KIND == MMR_Q4 ? (size_t)k / 2 : KIND == MMR_Q8 ? (size_t)k : (size_t)k * 2;
    }
};

__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void mma_f16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                        uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* Two weights w = scale·code + bias (f32, fused) as a bf16 pair (first in the low half). */
__device__ __forceinline__ uint32_t deq_pair(uint32_t c0, uint32_t c1, float2 sb) {
    /* 2^23 + code as a float, less 2^23: the code exactly, without an int-to-float conversion */
    const float f0 = __uint_as_float(0x4B000000u | c0) - 8388608.0f;
    const float f1 = __uint_as_float(0x4B000000u | c1) - 8388608.0f;
    const __nv_bfloat162 h = __floats2bfloat162_rn(fmaf(sb.x, f0, sb.y), fmaf(sb.x, f1, sb.y));
    return *reinterpret_cast<const uint32_t *>(&h);
}

/* A group's (scale, bias) as stored on the device (kernels_quant.cu): two bf16 in a word
 * (scale low) or an f32 pair. */
template <int ST> __device__ __forceinline__ float2 load_sb(const void *sb, size_t i) {
    if constexpr (ST == W_F32) return __ldg(reinterpret_cast<const float2 *>(sb) + i);
    const uint32_t v = __ldg(reinterpret_cast<const uint32_t *>(sb) + i);
    return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u));
}

/* The four A registers (k pairs 0-1, 2-3, 4-5, 6-7 of sub-step s) of one row from its 16 loaded
 * bytes. */
template <int KIND> __device__ __forceinline__ void a_regs(const uint4 &w, int s, float2 sb, uint32_t (&r)[4]) {
    if constexpr (KIND == MMR_BF16 || KIND == MMR_F16) {
        r[0] = w.x, r[1] = w.y, r[2] = w.z, r[3] = w.w;
    } else if constexpr (KIND == MMR_Q4) { /* word s: codes of k 8s .. 8s+7, k 8s+j in bits [4j, 4j+4) */
        const uint32_t q = s == 0 ? w.x : s == 1 ? w.y : s == 2 ? w.z : w.w;
#pragma unroll
        for (int p = 0; p < 4; p++) r[p] = deq_pair((q >> (8 * p)) & 15u, (q >> (8 * p + 4)) & 15u, sb);
    } else { /* words 2s, 2s+1: codes of k 8s .. 8s+3 and 8s+4 .. 8s+7, one per byte */
        const uint32_t q0 = s == 0 ? w.x : w.z, q1 = s == 0 ? w.y : w.w;
        r[0] = deq_pair(q0 & 255u, (q0 >> 8) & 255u, sb);
        r[1] = deq_pair((q0 >> 16) & 255u, q0 >> 24, sb);
        r[2] = deq_pair(q1 & 255u, (q1 >> 8) & 255u, sb);
        r[3] = deq_pair((q1 >> 16) & 255u, q1 >> 24, sb);
    }
}

template <int KIND, int MT, int NT, int ST>
__global__ void __launch_bounds__(MMR_THREADS) matmul_rows_kernel(const mmr_args a) {
    using S = mmr_shape<KIND>;
    constexpr int V = S::V, KC = S::KC, SUB = S::SUB;
    constexpr bool Q = KIND == MMR_Q4 || KIND == MMR_Q8;
    /* chunks whose weights are in flight at once */
    constexpr int U = Q ? (NT <= 2 ? 2 : 1) : NT <= 1 ? 8 : NT <= 2 ? 4 : NT <= 4 ? 2 : 1;
    __shared__ float red[MMR_WARPS * NT * 4 * 32];

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int K = a.K;
    /* the matrix and rows of this block */
    int j = 0;
    while (j + 1 < a.count && (int)blockIdx.x >= a.tile_start[j + 1]) j++;
    const int rows = a.rows[j];
    const int row0 = ((int)blockIdx.x - a.tile_start[j]) * MT * 16;
    const int t0 = blockIdx.y * MMR_TOKENS;
    const char *wbase = (const char *)a.w[j];
    const int groups = (KIND == MMR_Q4 || KIND == MMR_Q8) ? K / a.qgroup : 1;
    const size_t rbytes = S::row_bytes(K);

    const char *wrow[MT][2];
    size_t sbrow[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int r = row0 + mt * 16 + g + 8 * h;
            if (r >= rows) r = rows - 1; /* loaded, never stored */
            wrow[mt][h] = wbase + (size_t)r * rbytes;
            sbrow[mt][h] = (size_t)r * groups;
        }
    const unsigned short *xrow[NT];
    bool xok[NT];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        const int tok = t0 + nt * 8 + g;
        xok[nt] = tok < a.n;
        xrow[nt] = (const unsigned short *)a.xh + (size_t)(xok[nt] ? tok : 0) * K;
    }

    float acc[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++) acc[mt][nt][0] = acc[mt][nt][1] = acc[mt][nt][2] = acc[mt][nt][3] = 0.0f;

    const int nch = (K + KC - 1) / KC;
    for (int c0 = warp; c0 < nch; c0 += MMR_WARPS * U) {
        uint4 wv[U][MT][2];
        float2 sbv[U][MT][2];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int k = (c0 + u * MMR_WARPS) * KC + V * t;
            const bool ok = c0 + u * MMR_WARPS < nch && k < K;
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    wv[u][mt][h] = ok ? ld_stream16(wrow[mt][h] + S::k_bytes(k)) : make_uint4(0, 0, 0, 0);
                    if constexpr (KIND == MMR_Q4 || KIND == MMR_Q8)
                        sbv[u][mt][h] = ok ? load_sb<ST>(a.sb[j], sbrow[mt][h] + k / a.qgroup) : make_float2(0, 0);
                    else
                        sbv[u][mt][h] = make_float2(0, 0);
                }
        }
        /* x of step i (chunk u = i / SUB, sub-step s = i % SUB), loaded one step ahead */
        auto load_x = [&](int i, uint4 (&xv)[NT]) {
            const int u = i / SUB, s = i % SUB;
            const int k = (c0 + u * MMR_WARPS) * KC + V * t;
            const bool ok = c0 + u * MMR_WARPS < nch && k < K;
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
                xv[nt] = xok[nt] && ok ? __ldg(reinterpret_cast<const uint4 *>(xrow[nt] + k + 8 * s))
                                       : make_uint4(0, 0, 0, 0);
        };
        uint4 xa[NT], xb[NT];
        load_x(0, xa);
#pragma unroll
        for (int i = 0; i < U * SUB; i++) {
            uint4(&xv)[NT] = (i & 1) ? xb : xa;
            if (i + 1 < U * SUB) load_x(i + 1, (i & 1) ? xa : xb);
            const int u = i / SUB, s = i % SUB;
            if (c0 + u * MMR_WARPS >= nch) continue; /* the same for the whole warp */
            const bool kok = (c0 + u * MMR_WARPS) * KC + V * t < K;
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                uint32_t lo[4], hi[4]; /* rows g and g + 8 */
                a_regs<KIND>(wv[u][mt][0], s, sbv[u][mt][0], lo);
                a_regs<KIND>(wv[u][mt][1], s, sbv[u][mt][1], hi);
                if constexpr (KIND == MMR_Q4 || KIND == MMR_Q8) {
                    if (!kok) lo[0] = lo[1] = lo[2] = lo[3] = hi[0] = hi[1] = hi[2] = hi[3] = 0;
                }
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    if constexpr (KIND == MMR_F16) {
                        mma_f16(acc[mt][nt], lo[0], hi[0], lo[1], hi[1], xv[nt].x, xv[nt].y);
                        mma_f16(acc[mt][nt], lo[2], hi[2], lo[3], hi[3], xv[nt].z, xv[nt].w);
                    } else {
                        mma_bf16(acc[mt][nt], lo[0], hi[0], lo[1], hi[1], xv[nt].x, xv[nt].y);
                        mma_bf16(acc[mt][nt], lo[2], hi[2], lo[3], hi[3], xv[nt].z, xv[nt].w);
                    }
                }
            }
        }
    }

    /* the warps' sums in warp order, then bias and store, one m-tile at a time */
    float *out = a.out[j];
    const float *bias = a.bias[j];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) red[((warp * NT + nt) * 4 + e) * 32 + lane] = acc[mt][nt][e];
        __syncthreads();
        for (int i = threadIdx.x; i < NT * 4 * 32; i += MMR_THREADS) {
            float sum = red[i];
#pragma unroll
            for (int w = 1; w < MMR_WARPS; w++) sum += red[w * NT * 4 * 32 + i];
            const int l = i & 31, e = (i >> 5) & 3, nt = i >> 7;
            const int r = row0 + mt * 16 + (l >> 2) + (e >= 2 ? 8 : 0);
            const int tok = t0 + nt * 8 + 2 * (l & 3) + (e & 1);
            if (r < rows && tok < a.n) out[(size_t)tok * rows + r] = bias ? sum + bias[r] : sum;
        }
        __syncthreads();
    }
}

/* m-tiles per block: 2 from 32 tokens on for bf16/f16 (x is read once per 32 rows), 1 for the
 * quantized kinds (their registers go to the dequantization). No result depends on it. */
template <int KIND> constexpr int mmr_mt(int nt) { return KIND == MMR_Q4 || KIND == MMR_Q8 ? 1 : nt >= 4 ? 2 : 1; }

template <int KIND, int ST>
cudaError_t launch_kind(const mmr_args &a, int nt, dim3 grid_y, cudaStream_t stream) {
    const int mt = mmr_mt<KIND>(nt);
    int tiles = 0;
    mmr_args b = a;
    b.tile_start[0] = 0;
    for (int j = 0; j < a.count; j++) {
        tiles += (a.rows[j] + 16 * mt - 1) / (16 * mt);
        b.tile_start[j + 1] = tiles;
    }
    const dim3 grid(tiles, grid_y.y);
#define DWK_MMR(NT)                                                                                     \
    case NT:                                                                                            \
        matmul_rows_kernel<KIND, mmr_mt<KIND>(NT), NT, ST><<<grid, MMR_THREADS, 0, stream>>>(b);      \
        break;
    switch (nt) {
        DWK_MMR(1)
        DWK_MMR(2)
        DWK_MMR(4)
        DWK_MMR(8)
    default: return cudaErrorInvalidValue;
    }
#undef DWK_MMR
    return cudaGetLastError();
}

__global__ void round_x_kernel(unsigned short *dst, const float *x, size_t count, int half) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = half ? __half_as_ushort(__float2half_rn(x[i])) : __bfloat16_as_ushort(__float2bfloat16_rn(x[i]));
}

template <int WT> __device__ __forceinline__ float load_w(const void *w, size_t i) {
    if constexpr (WT == W_F32) return reinterpret_cast<const float *>(w)[i];
    else if constexpr (WT == W_F16) return __half2float(reinterpret_cast<const __half *>(w)[i]);
    else return __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(w)[i]);
}

/* One warp per (row, token): lane l sums k = l, l + 32, ... in order, then a fixed butterfly. */
template <int WT>
__global__ void __launch_bounds__(256) matmul_rows_plain_kernel(float *out, const float *x, int n, const void *w,
                                                                int rows, int K, const float *bias) {
    const int r = blockIdx.x * 8 + (threadIdx.x >> 5), tok = blockIdx.y, lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float *xr = x + (size_t)tok * K;
    float s = 0.0f;
    for (int k = lane; k < K; k += 32) s = fmaf(load_w<WT>(w, (size_t)r * K + k), xr[k], s);
    s = warp_sum(s);
    if (lane == 0) out[(size_t)tok * rows + r] = bias ? s + bias[r] : s;
}

} // namespace

cudaError_t launch_matmul_rows(mmr_args &a, cudaStream_t stream) {
    if (a.n <= 0 || a.count <= 0 || a.count > 4) return cudaErrorInvalidValue;
    const int per = a.n < MMR_TOKENS ? a.n : MMR_TOKENS;
    const int nt = per <= 8 ? 1 : per <= 16 ? 2 : per <= 32 ? 4 : 8;
    const int chunks = (a.n + MMR_TOKENS - 1) / MMR_TOKENS;
    if (chunks > 65535) return cudaErrorInvalidValue;
    const dim3 gy(1, chunks);
    switch (a.kind) {
    case MMR_BF16: return launch_kind<MMR_BF16, W_BF16>(a, nt, gy, stream);
    case MMR_F16: return launch_kind<MMR_F16, W_BF16>(a, nt, gy, stream);
    case MMR_Q4: return a.sbtype == W_F32 ? launch_kind<MMR_Q4, W_F32>(a, nt, gy, stream)
                                          : launch_kind<MMR_Q4, W_BF16>(a, nt, gy, stream);
    case MMR_Q8: return a.sbtype == W_F32 ? launch_kind<MMR_Q8, W_F32>(a, nt, gy, stream)
                                          : launch_kind<MMR_Q8, W_BF16>(a, nt, gy, stream);
    }
    return cudaErrorInvalidValue;
}

cudaError_t launch_round_x(void *dst, const float *x, size_t count, int half, cudaStream_t stream) {
    if (!count) return cudaSuccess;
    size_t blocks = (count + 255) / 256;
    if (blocks > 4096) blocks = 4096;
    round_x_kernel<<<(unsigned)blocks, 256, 0, stream>>>((unsigned short *)dst, x, count, half);
    return cudaGetLastError();
}

cudaError_t launch_matmul_rows_plain(float *out, const float *x, int n, const void *w, int wtype, int rows, int K,
                                     const float *bias, cudaStream_t stream) {
    if (n <= 0 || n > 65535) return cudaErrorInvalidValue;
    const dim3 grid((rows + 7) / 8, n);
    switch (wtype) {
    case W_F32: matmul_rows_plain_kernel<W_F32><<<grid, 256, 0, stream>>>(out, x, n, w, rows, K, bias); break;
    case W_F16: matmul_rows_plain_kernel<W_F16><<<grid, 256, 0, stream>>>(out, x, n, w, rows, K, bias); break;
    default: matmul_rows_plain_kernel<W_BF16><<<grid, 256, 0, stream>>>(out, x, n, w, rows, K, bias); break;
    }
    return cudaGetLastError();
}

} // namespace dwk
