/* The quantized (MLX affine) decode matrix-vector product's device code, run by the kernel in
 * kernels_quant.cu.
 *
 * A warp reads 1, 2 or 4 weight rows at once, so that with up to eight 16-byte loads in flight
 * per lane (as in the bf16 kernel) a whole row is in flight (K = 2048 at 4 bits: gate/up two rows
 * of each, two chunks per lane and row; single matrices two rows, so that narrow ones spread over
 * more warps; K = 8192: one row, eight chunks per lane); x' sits in shared memory (padded against
 * bank conflicts) with, per chunk, the sum of its inputs. A chunk (32 4-bit or 16 8-bit codes)
 * lies inside one group, so its contribution is scale·Σ code·x + bias·Σ x. Codes become f32 by
 * byte permutes (half_dot), not by int-to-float conversions, which run at quarter rate. */
#ifndef DW_BACKEND_CUDA_KERNELS_QMATVEC_CUH
#define DW_BACKEND_CUDA_KERNELS_QMATVEC_CUH

#include "core/quant_layout.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels_device.cuh"

#include <stdint.h>

namespace dwk {
namespace {

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

/* Σ f·x over two code words of a chunk (half of its 16 bytes; x: their 64/BITS inputs), where f
 * is the code made an f32 by one byte permute: 8 bits: f = 2^23 + q, less 2^23 (exact); 4 bits:
 * the code goes into the top mantissa byte of 0.5, f = 0.5 + q/256 exactly, and the caller undoes
 * the offset and scale with the group's own coefficients (chunk_coeffs), saving a subtraction per
 * code. A chunk is done in two halves so that only half its inputs sit in registers. */
template <int BITS> __device__ __forceinline__ float half_dot(uint32_t w0, uint32_t w1, const float *x) {
    const uint32_t w[2] = {w0, w1};
    float d0 = 0.0f, d1 = 0.0f;
#pragma unroll
    for (int k = 0; k < 2; k++) {
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

/* The chunk's contribution is m·(its half_dots)  + c·Σx for the group's (scale s, bias b): 8 bits
 * m = s, c = b; 4 bits (f = 0.5 + q/256, so q = 256 f − 128) m = 256 s, c = b − 128 s. */
template <int BITS> __device__ __forceinline__ float2 chunk_coeffs(float2 sb) {
    if constexpr (BITS == 4) return make_float2(256.0f * sb.x, fmaf(-128.0f, sb.x, sb.y));
    else return sb;
}

/* Floats of qmatvec_tasks' padded x' and its chunks' sums (the staged norm weights go behind). */
__host__ __device__ constexpr size_t qmv_x_floats(int bits, int K) {
    return (size_t)K / (128 / bits) * (128 / bits + 4) + (size_t)K / (128 / bits);
}

/* The warp tasks of a (kernels.h: mv_args, quantized) from task `first`, every
 * `stride`, for a block of MV_THREADS threads: smem holds x' by chunk (padded) and the chunks'
 * sums (qmv_smem_floats), red MV_WARPS floats; wait() as matvec_rows' (kernels_matvec.cuh). One
 * warp task: S weight rows read at once (SwiGLU: S/2 rows each of gate and up), each lane
 * IN_FLIGHT / S chunks of each per round, so a row of up to 32·IN_FLIGHT/S chunks is in flight
 * whole. */
template <int BITS, int ST, bool PAIR, int S, typename Wait>
__device__ __forceinline__ void qmatvec_tasks(const mv_args &a, float *smem, float *red, int first, int stride,
                                              Wait wait) {
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
    const int tid = threadIdx.x, lane = tid & 31;
    const int total = PAIR ? a.row_start[1] : a.row_start[a.count];
    const int tasks = (total + RPT - 1) / RPT;
    const size_t row_bytes = DW_QUANT_ROW_BYTES(K, BITS);

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

    int task = first;
    if (task < tasks) {
        locate(task);
        issue(0);
    }
    float *gs = stage_norm_ahead<MV_THREADS>(smem, qmv_x_floats(BITS, K), a);
    wait(); /* everything below reads what earlier work wrote */
    /* the residuals of the first task's rows, asked for with x rather than after it (most warps
     * have one task: that round trip then overlaps x's) */
    float res_next[RPT];
#pragma unroll
    for (int i = 0; i < RPT; i++)
        res_next[i] = !PAIR && a.res && lane == 0 && task < tasks && orr[i] >= 0 ? __ldcg(a.res + orr[i]) : 0.0f;

    float scale = 1.0f; /* the RMSNorm's, where stage_x_late leaves it to the rows' sums */
    /* the chunks' sums by stage_x_late, as x arrives, where every thread has as many float4s */
    const bool sums_done = a.norm_late && (K / 4) % MV_THREADS == 0;
    if (a.norm_late) /* launch_matvec checked what stage_x_late needs */
        scale = stage_x_late<MV_THREADS, CP, XP>(xs, a.x, K, a.eps, a.norm_out, gs, sums_done ? xsum : nullptr);
    else if (S == 1 && a.wide_x) /* long rows: their x in 4 times fewer round trips */
        stage_x<MV_THREADS, CP, XP, 8>(xs, red, a.x, K, a.norm_w, a.eps, a.norm_out, gs);
    else
        stage_x<MV_THREADS, CP, XP>(xs, red, a.x, K, a.norm_w, a.eps, a.norm_out, gs);
    if (!sums_done) {
        for (int c = tid; c < NC; c += MV_THREADS) { /* four float4 sums side by side: a short chain */
            float4 s4[4];
#pragma unroll
            for (int e = 0; e < 4; e++) s4[e] = *reinterpret_cast<const float4 *>(xs + c * XP + 4 * e);
#pragma unroll
            for (int e = 4; e < CP / 4; e++) {
                const float4 v = *reinterpret_cast<const float4 *>(xs + c * XP + 4 * e);
                s4[e % 4].x += v.x, s4[e % 4].y += v.y, s4[e % 4].z += v.z, s4[e % 4].w += v.w;
            }
            float sum = 0.0f;
#pragma unroll
            for (int e = 0; e < 4; e++) sum += (s4[e].x + s4[e].y) + (s4[e].z + s4[e].w);
            xsum[c] = sum;
        }
        __syncthreads();
    }

    for (; task < tasks; task += stride) {
        if (a.trigger_late && task + stride >= tasks) pdl_launch_dependents(); /* the warp's last task */
        float acc[S];
#pragma unroll
        for (int s = 0; s < S; s++) acc[s] = 0.0f;
        /* the residuals these rows add to, asked for now rather than after the sums (as
         * matvec_rows does; L2: other blocks wrote them before this kernel) */
        float res0[RPT];
#pragma unroll
        for (int i = 0; i < RPT; i++)
            res0[i] = task == first ? res_next[i]
                    : !PAIR && a.res && lane == 0 && orr[i] >= 0 ? __ldcg(a.res + orr[i]) : 0.0f;
        for (int base = 0; base < NC; base += 32 * U) {
            if (base) issue(base);
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int c = base + u * 32 + lane;
                if (c >= NC) continue;
                float d[S];
#pragma unroll
                for (int s = 0; s < S; s++) d[s] = 0.0f;
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    float xr[CP / 2];
#pragma unroll
                    for (int e = 0; e < CP / 2; e += 4) {
                        const float4 x4 = *reinterpret_cast<const float4 *>(xs + c * XP + h * (CP / 2) + e);
                        xr[e] = x4.x, xr[e + 1] = x4.y, xr[e + 2] = x4.z, xr[e + 3] = x4.w;
                    }
#pragma unroll
                    for (int s = 0; s < S; s++)
                        d[s] += h ? half_dot<BITS>(v[s][u].z, v[s][u].w, xr) : half_dot<BITS>(v[s][u].x, v[s][u].y, xr);
                }
                const float xc = xsum[c];
#pragma unroll
                for (int s = 0; s < S; s++) {
                    const float2 m = chunk_coeffs<BITS>(SB::get(sv[s][u]));
                    acc[s] = fmaf(m.x, d[s], fmaf(m.y, xc, acc[s]));
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
        for (int s = 0; s < S; s++) acc[s] = warp_sum(acc[s]) * scale;
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
                    if (a.res) a.res[rr] = res0[i] + y;
                }
            }
        }
    }
}

/* Whether the decode kernel runs a's format: 4 or 8 bits, groups of whole chunks dividing K. */
inline bool qmv_supported(const mv_args &a) {
    const int cp = a.qbits == 4 ? 32 : 16;
    return (a.qbits == 4 || a.qbits == 8) && a.qgroup >= cp && a.qgroup % cp == 0 && a.K % a.qgroup == 0;
}

/* Rows per warp task for a K-input matrix at `bits` (pair: gate/up SwiGLU pairs): the fewest
 * chunks per lane that hold a whole row in flight. Single matrices take at most 2 rows per warp
 * (4-bit q/k/v and o at K = 2048 spread over twice the warps: faster, docs/PERFORMANCE.md);
 * gate/up pairs keep 2 rows of each (one was slower; 4 rows for the LM head too: no change). */
inline int qmv_rows_per_task(int bits, int K, bool pair) {
    const int nc = K / (128 / bits);
    int S = nc <= 64 ? 4 : nc <= 128 ? 2 : 1;
    if (!pair && S > 2) S = 2;
    if (pair && S < 2) S = 2;
    return S;
}

/* Floats of shared memory qmatvec_tasks needs for a: padded x', the chunks' sums, then the
 * staged norm weights. */
inline size_t qmv_smem_floats(const mv_args &a) {
    return with_norm_floats(qmv_x_floats(a.qbits, a.K), a);
}

} // namespace
} // namespace dwk

#endif
