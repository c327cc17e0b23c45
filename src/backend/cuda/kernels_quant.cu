/* Kernels for quantized (MLX affine, src/engine/quant.h) matrices on CUDA
 * (compute_cuda_kernels.h): the decode matrix-vector product on packed 4- and 8-bit codes, with
 * the same fusions as kernels_matvec.cu (RMSNorm in front, residual add or SwiGLU behind); the
 * dequantization of row blocks to bf16 for the prefill GEMM; the embedding of a quantized table.
 *
 * Decode. A warp reads 1, 2 or 4 weight rows at once, so that with up to eight 16-byte loads in
 * flight per lane (as in the bf16 kernel) a whole row is in flight (K = 2048 at 4 bits: gate/up
 * two rows of each, two chunks per lane and row; single matrices two rows, so that narrow ones
 * spread over more warps; K = 8192: one row, eight chunks per lane); x' sits in shared memory
 * (padded against bank conflicts) with, per chunk, the sum of its inputs. A chunk (32 4-bit or 16 8-bit codes) lies
 * inside one group, so its contribution is scale·Σ code·x + bias·Σ x. Codes become f32 by byte
 * permutes (chunk_dot), not by int-to-float conversions, which run at quarter rate. */
#include "backend/cuda/compute_cuda_kernels.h"
#include "backend/cuda/kernels_device.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdlib.h>

namespace dwk {
namespace {

constexpr int THREADS = 256;
constexpr int WARPS = THREADS / 32;
constexpr int IN_FLIGHT = 8; /* 16-byte loads in flight per lane: streams × chunks per stream */

/* A group's (scale, bias) pair as stored on the device: two bf16 in one word, or two f32 (f16
 * pairs are widened to f32 at upload, exactly). */
template <int ST> struct sb_pair {
    using raw = uint32_t;
    static __device__ __forceinline__ float2 get(raw v) {
        return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xffff0000u));
    }
};
template <> struct sb_pair<W_F32> {
    using raw = float2;
    static __device__ __forceinline__ float2 get(raw v) { return v; }
};

/* Σ f·x over one 16-byte chunk of codes (x: the chunk's 128/BITS inputs), where f is the code
 * made an f32 by one byte permute: 8 bits: f = 2^23 + q, less 2^23 (exact); 4 bits: the code
 * goes into the top mantissa byte of 0.5, f = 0.5 + q/256 exactly, and the caller undoes the
 * offset and scale with the group's own coefficients (chunk_coeffs), saving a subtraction per
 * code. */
template <int BITS> __device__ __forceinline__ float chunk_dot(const uint4 &q, const float *x) {
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
    float d0 = 0.0f, d1 = 0.0f;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        if constexpr (BITS == 4) { /* word k: inputs 8k..8k+7, input 8k+t in bits [4t, 4t+4) */
            const uint32_t even = w[k] & 0x0F0F0F0Fu, odd = (w[k] >> 4) & 0x0F0F0F0Fu;
#pragma unroll
            for (int b = 0; b < 4; b++) {
                d0 = fmaf(__uint_as_float(__byte_perm(even, 0x3F000000u, 0x7054 | (b << 8))), x[8 * k + 2 * b], d0);
                d1 = fmaf(__uint_as_float(__byte_perm(odd, 0x3F000000u, 0x7054 | (b << 8))), x[8 * k + 2 * b + 1], d1);
            }
        } else { /* word k: inputs 4k..4k+3, one per byte */
#pragma unroll
            for (int b = 0; b < 4; b += 2) {
                d0 = fmaf(__uint_as_float(__byte_perm(w[k], 0x4B000000u, 0x7650 | b)) - 8388608.0f, x[4 * k + b], d0);
                d1 = fmaf(__uint_as_float(__byte_perm(w[k], 0x4B000000u, 0x7650 | (b + 1))) - 8388608.0f,
                          x[4 * k + b + 1], d1);
            }
        }
    }
    return d0 + d1;
}

/* The chunk's contribution is m·chunk_dot + c·Σx for the group's (scale s, bias b): 8 bits
 * m = s, c = b; 4 bits (f = 0.5 + q/256, so q = 256 f − 128) m = 256 s, c = b − 128 s. */
template <int BITS> __device__ __forceinline__ float2 chunk_coeffs(float2 sb) {
    if constexpr (BITS == 4) return make_float2(256.0f * sb.x, fmaf(-128.0f, sb.x, sb.y));
    else return sb;
}

/* One warp task: S weight rows read at once (SwiGLU: S/2 rows each of gate and up), each lane
 * IN_FLIGHT / S chunks of each per round, so a row of up to 32·IN_FLIGHT/S chunks is in flight
 * whole. */
template <int BITS, int ST, bool PAIR, int S>
__global__ void __launch_bounds__(THREADS, 2) qmatvec_kernel(const mv_args a) {
    extern __shared__ float smem[];
    __shared__ float red[WARPS];
    using SB = sb_pair<ST>;
    using sb_raw = typename SB::raw;
    constexpr int CP = 128 / BITS;          /* codes per chunk */
    constexpr int U = IN_FLIGHT / S;        /* chunks per row and lane per round */
    constexpr int RPT = PAIR ? S / 2 : S;   /* output rows per warp task */
    const int K = a.K, NC = K / CP, groups = K / a.qgroup;
    const int gshift = __ffs(a.qgroup / CP) - 1; /* chunk -> group */
    /* x' by chunk, each chunk's CP inputs padded to XP floats: lanes read neighbouring chunks, and
     * unpadded those lie 64 or 128 bytes apart, in the same banks (8-way conflicts at 4 bits) */
    constexpr int XP = CP + 4;
    float *xs = smem, *xsum = smem + (size_t)NC * XP;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int total = PAIR ? a.row_start[1] : a.row_start[a.count];
    const int tasks = (total + RPT - 1) / RPT;
    const size_t row_bytes = (size_t)K * BITS / 8;
    const int stride = gridDim.x * WARPS;

    const char *wp[S];
    const sb_raw *sp[S];
    bool ok[S];
    int oj[RPT], orr[RPT]; /* output rows of the task: matrix, row there (-1: past the end) */
    uint4 v[S][U];
    sb_raw sv[S][U];
    auto locate = [&](int task) {
#pragma unroll
        for (int i = 0; i < RPT; i++) {
            const int r = task * RPT + i;
            const bool valid = r < total;
            int j = 0;
            if (!PAIR && valid)
                while (r >= a.row_start[j + 1]) j++;
            const int rr = valid ? r - a.row_start[j] : 0;
            oj[i] = j;
            orr[i] = valid ? rr : -1;
#pragma unroll
            for (int m = 0; m < (PAIR ? 2 : 1); m++) {
                const int s = PAIR ? 2 * i + m : i, jj = PAIR ? m : j;
                ok[s] = valid;
                wp[s] = (const char *)a.w[jj] + (size_t)rr * row_bytes;
                sp[s] = (const sb_raw *)a.sb[jj] + (size_t)rr * groups;
            }
        }
    };
    auto issue = [&](int base) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int c = base + u * 32 + lane;
#pragma unroll
            for (int s = 0; s < S; s++)
                if (ok[s] && c < NC) {
                    v[s][u] = ld_stream16(wp[s] + (size_t)c * 16);
                    sv[s][u] = __ldg(sp[s] + (c >> gshift));
                }
        }
    };

    int task = blockIdx.x * WARPS + warp;
    if (task < tasks) {
        locate(task);
        issue(0);
    }
    pdl_wait(); /* everything below reads what earlier kernels wrote */
    pdl_launch_dependents();

    stage_x<THREADS, CP, XP>(xs, red, a.x, K, a.norm_w, a.eps, a.norm_out);
    for (int c = tid; c < NC; c += THREADS) {
        float sum = 0.0f;
#pragma unroll
        for (int e = 0; e < CP; e++) sum += xs[c * XP + e];
        xsum[c] = sum;
    }
    __syncthreads();

    for (; task < tasks; task += stride) {
        float acc[S];
#pragma unroll
        for (int s = 0; s < S; s++) acc[s] = 0.0f;
        for (int base = 0; base < NC; base += 32 * U) {
            if (base) issue(base);
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int c = base + u * 32 + lane;
                if (c >= NC) continue;
                float xr[CP];
#pragma unroll
                for (int e = 0; e < CP; e += 4) {
                    const float4 x4 = *reinterpret_cast<const float4 *>(xs + c * XP + e);
                    xr[e] = x4.x, xr[e + 1] = x4.y, xr[e + 2] = x4.z, xr[e + 3] = x4.w;
                }
                const float xc = xsum[c];
#pragma unroll
                for (int s = 0; s < S; s++) {
                    const float d = chunk_dot<BITS>(v[s][u], xr);
                    const float2 m = chunk_coeffs<BITS>(SB::get(sv[s][u]));
                    acc[s] = fmaf(m.x, d, fmaf(m.y, xc, acc[s]));
                }
            }
        }
        int cj[RPT], cr[RPT];
#pragma unroll
        for (int i = 0; i < RPT; i++) cj[i] = oj[i], cr[i] = orr[i];
        if (task + stride < tasks) { /* the next task's first loads, before this one's reduction */
            locate(task + stride);
            issue(0);
        }
#pragma unroll
        for (int s = 0; s < S; s++) acc[s] = warp_sum(acc[s]);
        if (lane == 0) {
#pragma unroll
            for (int i = 0; i < RPT; i++) {
                const int rr = cr[i], j = cj[i];
                if (rr < 0) continue;
                if constexpr (PAIR) {
                    const float g = acc[2 * i] + (a.bias[0] ? a.bias[0][rr] : 0.0f);
                    const float u = acc[2 * i + 1] + (a.bias[1] ? a.bias[1][rr] : 0.0f);
                    a.out[1][rr] = u;
                    a.out[0][rr] = g / (1.0f + expf(-g)) * u;
                } else {
                    const float y = acc[i] + (a.bias[j] ? a.bias[j][rr] : 0.0f);
                    a.out[j][rr] = y;
                    if (a.res) a.res[rr] += y;
                }
            }
        }
    }
}

/* Streams per warp: the fewest chunks per lane that hold a whole row in flight at once (rows of
 * up to 32·IN_FLIGHT chunks), so narrow matrices still spread over many warps. */
template <int BITS, int ST>
cudaError_t launch_bits_st(const mv_args &a, int n_sm, cudaStream_t stream) {
    const bool pair = a.pair_swiglu != 0;
    const int nc = a.K / (128 / BITS);
    /* Single matrices take at most 2 rows per warp (4-bit q/k/v and o at K = 2048 spread over
     * twice the warps: H100, 1B 4-bit decode +3 %); gate/up pairs keep 2 rows of each (one was
     * slower). DW_CUDA_QMV_MAXS=1|2|4 caps it otherwise (tuning). */
    int S = nc <= 64 ? 4 : nc <= 128 ? 2 : 1;
    static int max_s = -1;
    if (max_s < 0) {
        const char *v = getenv("DW_CUDA_QMV_MAXS");
        max_s = v && atoi(v) > 0 ? atoi(v) : 0;
    }
    if (!pair && S > 2 && !max_s) S = 2;
    if (max_s && S > max_s) S = max_s;
    if (pair && S < 2) S = 2;
    const int total = pair ? a.row_start[1] : a.row_start[a.count];
    const int rpt = pair ? S / 2 : S;
    const int tasks = (total + rpt - 1) / rpt;
    const int blocks = (tasks + WARPS - 1) / WARPS;
    const size_t smem = ((size_t)nc * (128 / BITS + 4) + nc) * sizeof(float); /* padded x' and sums */
#define DWK_QMV(P, SS) \
    if (pair == P && S == SS) return launch_resident(qmatvec_kernel<BITS, ST, P, SS>, a, blocks, THREADS, smem, n_sm, stream);
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
    constexpr int PER = 32 / BITS;
    const uint32_t w = m.codes[r * (m.K / PER) + wi];
    const float2 p = group_sb(m, r, wi * PER / m.group);
#pragma unroll
    for (int t = 0; t < PER; t++) f[t] = fmaf(p.x, (float)((w >> (t * BITS)) & ((1u << BITS) - 1u)), p.y);
}

template <int BITS> __global__ void dequant_bf16_kernel(unsigned short *dst, const qmatrix m, int r0, int cnt) {
    constexpr int PER = 32 / BITS;
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
    constexpr int PER = 32 / BITS;
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
    const int cp = a.qbits == 4 ? 32 : 16;
    if ((a.qbits != 4 && a.qbits != 8) || a.qgroup < cp || a.qgroup % cp || a.K % a.qgroup) return cudaErrorInvalidValue;
    return a.qbits == 4 ? launch_bits<4>(a, n_sm, stream) : launch_bits<8>(a, n_sm, stream);
}

cudaError_t launch_dequant_bf16(void *dst, const qmatrix &m, int r0, int cnt, cudaStream_t stream) {
    const size_t words = (size_t)cnt * (m.K * m.bits / 32);
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
