/* The bf16/f16/f32 decode matrix-vector product's device code (kernels.h: mv_args), run by the
 * kernel in kernels_matvec.cu: out = W·x for batch 1, RMSNorm fused in front, residual add /
 * SwiGLU behind. */
#ifndef DW_BACKEND_CUDA_KERNELS_MATVEC_CUH
#define DW_BACKEND_CUDA_KERNELS_MATVEC_CUH

#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels_device.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include <type_traits>

namespace dwk {
namespace {

constexpr int MV_UNROLL = 8; /* weight loads in flight per lane per matrix (the standalone kernel) */

__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ float f16_lo(uint32_t w) { return __half2float(__ushort_as_half((unsigned short)(w & 0xffffu))); }
__device__ __forceinline__ float f16_hi(uint32_t w) { return __half2float(__ushort_as_half((unsigned short)(w >> 16))); }

template <int WT> struct wt;
template <> struct wt<W_BF16> { static constexpr int size = 2; };
template <> struct wt<W_F16> { static constexpr int size = 2; };
template <> struct wt<W_F32> { static constexpr int size = 4; };

/* Floats of shared memory per chunk of E inputs of x': chunks of 8 (bf16/f16) are padded to 12,
 * because lanes read neighbouring chunks and 8 floats apart those would share banks (2-way
 * conflicts); 4 (f32) and 1 (scalar path) are conflict-free as they are. */
__host__ __device__ constexpr int x_stride(int e) { return e == 8 ? 12 : e; }

/* A chunk of E weights: E = 16 bytes' worth on the vector path, 1 on the scalar path. */
template <int WT, bool VEC> struct chunk {
    static constexpr int E = VEC ? 16 / wt<WT>::size : 1;
    using raw = typename std::conditional<VEC, uint4, typename std::conditional<WT == W_F32, float, unsigned short>::type>::type;
    static __device__ __forceinline__ raw load(const char *row, int c) {
        if constexpr (VEC) return ld_stream16(row + (size_t)c * 16);
        else return reinterpret_cast<const raw *>(row)[c];
    }
    static __device__ __forceinline__ void to_f32(const raw &v, float *f) {
        if constexpr (VEC) {
            const uint32_t w[4] = {v.x, v.y, v.z, v.w};
            if constexpr (WT == W_F32) {
#pragma unroll
                for (int i = 0; i < 4; i++) f[i] = __uint_as_float(w[i]);
            } else {
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    f[2 * i] = WT == W_BF16 ? bf16_lo(w[i]) : f16_lo(w[i]);
                    f[2 * i + 1] = WT == W_BF16 ? bf16_hi(w[i]) : f16_hi(w[i]);
                }
            }
        } else if constexpr (WT == W_F32) {
            f[0] = v;
        } else if constexpr (WT == W_BF16) {
            f[0] = __uint_as_float((uint32_t)v << 16);
        } else {
            f[0] = __half2float(__ushort_as_half(v));
        }
    }
};

/* Floats of x' by chunk (padded) for K inputs. */
template <int WT, bool VEC> __host__ __device__ constexpr size_t mv_x_floats(int K) {
    return (size_t)K / chunk<WT, VEC>::E * x_stride(chunk<WT, VEC>::E);
}

/* Bytes of dynamic shared memory matvec_rows needs for a: x' and the staged norm weights. */
template <int WT, bool VEC> size_t mv_smem_bytes(const mv_args &a) {
    return with_norm_floats(mv_x_floats<WT, VEC>(a.K), a) * sizeof(float);
}

/* Whether a's matrices take the 16-byte vector path: K a whole number of 16-byte chunks, every
 * matrix 16-byte aligned. */
template <int WT> bool mv_vector_path(const mv_args &a) {
    bool vec = a.K % chunk<WT, true>::E == 0;
    for (int j = 0; j < a.count; j++) vec = vec && (uintptr_t)a.w[j] % 16 == 0;
    return vec;
}

/* Row r of the concatenated matrices: its matrix j, its row rr there, and its weights. */
__device__ __forceinline__ void row_of(const mv_args &a, int r, size_t row_bytes, bool pair, int *j, int *rr,
                                       const char **w0, const char **w1) {
    int jj = 0;
    if (!pair)
        while (r >= a.row_start[jj + 1]) jj++;
    *j = jj;
    *rr = r - a.row_start[jj];
    *w0 = (const char *)a.w[jj] + (size_t)*rr * row_bytes;
    *w1 = pair ? (const char *)a.w[1] + (size_t)*rr * row_bytes : nullptr;
}

/* The rows of a (one warp per row) from row `first`, every `stride` rows, for a block of
 * MV_THREADS threads: xs is mv_smem_bytes of shared memory (x' by chunk, padded, then the
 * staged norm weights), red
 * MV_WARPS floats (2 × MV_WARPS with KS > 1). wait() runs once the first row's loads are in
 * flight and before anything earlier work writes is read (x, res): the kernel waits there for
 * the kernel before it (PDL). The loads of a warp's next row are issued before the current row's reduction,
 * so no warp waits on memory with nothing in flight. UNROLL: 16-byte loads in flight per lane and
 * matrix. KS > 1 (2 or 4): each row is read by a group of KS neighbouring warps of the block
 * (given the same `first`), warp p of the group summing the p-th of KS contiguous slices of the
 * inputs, so the group reads the row front to back at once; the slices' sums are added in order
 * through shared memory (red) behind a barrier of the group's warps. LATE (with NORM, where
 * a.norm_late): the prologue is stage_x_late, the norm's scale applied to each row's sum. */
template <int WT, bool VEC, bool NORM, bool PAIR, int UNROLL = MV_UNROLL, int KS = 1, bool LATE = false,
          typename Wait>
__device__ __forceinline__ void matvec_rows(const mv_args &a, float *xs, float *red, int first, int stride, Wait wait) {
    using C = chunk<WT, VEC>;
    constexpr int E = C::E;
    static_assert(KS == 1 || KS == 2 || KS == 4, "rows split 1, 2 or 4 ways");
    const int K = a.K, tid = threadIdx.x, lane = tid & 31;
    const int nchunks = K / E;
    const int part = (tid >> 5) % KS, group = (tid >> 5) / KS; /* this warp's slice, its group */
    const int c_begin = part * nchunks / KS, c_end = (part + 1) * nchunks / KS;
    constexpr int XP = x_stride(E);
    const int total = PAIR ? a.row_start[1] : a.row_start[a.count];
    const size_t row_bytes = (size_t)K * wt<WT>::size;
    typename C::raw v0[UNROLL], v1[UNROLL];
    auto issue = [&](const char *w0, const char *w1, int base) {
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int c = base + u * 32 + lane;
            if (c < c_end) {
                v0[u] = C::load(w0, c);
                if constexpr (PAIR) v1[u] = C::load(w1, c);
            }
        }
    };
    int r = first, j, rr;
    const char *w0 = nullptr, *w1 = nullptr;
    if (r < total) {
        row_of(a, r, row_bytes, PAIR, &j, &rr, &w0, &w1);
        issue(w0, w1, c_begin);
    }
    float *gs = NORM ? stage_norm_ahead<MV_THREADS>(xs, mv_x_floats<WT, VEC>(K), a) : nullptr;
    wait();
    /* the residual the first row adds to, asked for with x rather than after it (most warps
     * have one row: its round trip then overlaps x's instead of following it) */
    constexpr bool EARLY_RES = !PAIR && !NORM;
    float res_next = EARLY_RES && a.res && lane == 0 && part == 0 && r < total ? __ldcg(a.res + rr) : 0.0f;
    float scale = 1.0f; /* the RMSNorm's, where stage_x_late leaves it to the rows' sums */
    if constexpr (NORM && LATE) /* a.norm_late: launch_matvec checked what stage_x_late needs */
        scale = stage_x_late<MV_THREADS, E, XP>(xs, a.x, K, a.eps, a.norm_out, gs);
    else if (UNROLL > MV_UNROLL && a.wide_x) /* long rows (deep_rows): their x in 4 times fewer round trips */
        stage_x<MV_THREADS, E, XP, 8>(xs, red, a.x, K, NORM ? a.norm_w : nullptr, a.eps, a.norm_out, gs);
    else
        stage_x<MV_THREADS, E, XP>(xs, red, a.x, K, NORM ? a.norm_w : nullptr, a.eps, a.norm_out, gs); /* loads in flight */

    for (; r < total; r += stride) {
        if (a.trigger_late && r + stride >= total) pdl_launch_dependents(); /* the warp's last row */
        float acc0 = 0.0f, acc1 = 0.0f;
        /* the residual this row adds to, asked for now rather than after the sums (L2: other
         * blocks wrote it before this kernel; only this warp writes it here): faster in
         * bench/cuda/chain_probe.cu. Not with the norm (q/k/v: no residual there, and the
         * register would spill). (Asking L2 for the first row's later rounds before the wait,
         * cp.async.bulk.prefetch.L2, made the chain slower.) */
        const float res0 = r == first ? res_next
                         : EARLY_RES && a.res && lane == 0 && part == 0 ? __ldcg(a.res + rr) : 0.0f;
        for (int base = c_begin; base < c_end; base += 32 * UNROLL) {
            if (base != c_begin) issue(w0, w1, base);
#pragma unroll
            for (int u = 0; u < UNROLL; u++) {
                int c = base + u * 32 + lane;
                if (c < c_end) {
                    float f[E];
                    const float *xp = xs + c * XP;
                    C::to_f32(v0[u], f);
#pragma unroll
                    for (int e = 0; e < E; e++) acc0 = fmaf(f[e], xp[e], acc0);
                    if constexpr (PAIR) {
                        C::to_f32(v1[u], f);
#pragma unroll
                        for (int e = 0; e < E; e++) acc1 = fmaf(f[e], xp[e], acc1);
                    }
                }
            }
        }
        const int jc = j, rc = rr;
        if (r + stride < total) { /* the next row's first loads, before this row's reduction */
            row_of(a, r + stride, row_bytes, PAIR, &j, &rr, &w0, &w1);
            issue(w0, w1, c_begin);
        }
        acc0 = warp_sum(acc0) * scale;
        if constexpr (PAIR) acc1 = warp_sum(acc1) * scale;
        if constexpr (KS > 1) { /* the other slices' sums join the first's, in order */
            float *rg = red + 2 * group * KS;
            if (part && lane == 0) {
                rg[2 * part] = acc0;
                if constexpr (PAIR) rg[2 * part + 1] = acc1;
            }
            asm volatile("bar.sync %0, %1;" ::"r"(1 + group), "r"(32 * KS) : "memory");
            if (!part)
#pragma unroll
                for (int p = 1; p < KS; p++) {
                    acc0 += rg[2 * p];
                    if constexpr (PAIR) acc1 += rg[2 * p + 1];
                }
            asm volatile("bar.sync %0, %1;" ::"r"(1 + group), "r"(32 * KS) : "memory"); /* rg free again */
            if (part) continue;
        }
        if (lane == 0) {
            if constexpr (PAIR) {
                float g = acc0 + (a.bias[0] ? a.bias[0][rc] : 0.0f);
                float u = acc1 + (a.bias[1] ? a.bias[1][rc] : 0.0f);
                a.out[1][rc] = u;
                a.out[0][rc] = g / (1.0f + expf(-g)) * u;
            } else {
                float v = acc0 + (a.bias[jc] ? a.bias[jc][rc] : 0.0f);
                a.out[jc][rc] = v;
                if (a.res) a.res[rc] = (EARLY_RES ? res0 : __ldcg(a.res + rc)) + v;
            }
        }
    }
}


} // namespace
} // namespace dwk

#endif
