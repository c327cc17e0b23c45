/* The 4-bit decode matrix-vector product on tensor cores (compute_cuda_kernels.h: mv_args,
 * launch_qmma): opt-in (DW_CUDA_QMMA=1|2|3, compute_cuda.cu; mv_args.qmma) until measured on the
 * H100.
 *
 * Why: on the H100 every 4-bit matvec of a 1B-class model is one round of loads per warp, so after
 * each kernel boundary the SM spends the dequantizing arithmetic (~95 instructions per 32 codes
 * in kernels_qmatvec.cuh: a byte permute and an f32 FMA per code) before it can write; the 4-bit LM
 * head runs 15 µs over its bytes (docs/PERFORMANCE.md v16). Here a warp computes 16 rows at once
 * with mma.m16n8k16 (f16 inputs, f32 accumulation): a shift and a lop3 turn two codes into an f16
 * pair, the multiply-adds go to the tensor core, ~2 instructions per code.
 *
 * Layout of one mma (A 16×16 row-major, B 16×8, PTX ISA "mma.m16n8k16"): lane (g = lane / 4,
 * t = lane % 4) holds A at rows g and g + 8, k slots {2t, 2t+1} (a0, a1) and {2t+8, 2t+9} (a2, a3),
 * and B at those k slots for column g. The k order is ours to choose as long as A and B agree, so
 * lane t takes inputs 16t .. 16t+15 of a 64-input group: its 8 bytes of each row's codes (two
 * words). Word bits 4s and 4s+16 hold codes s and s+4, which (word << 6 >> 4s) & 0x03C003C0 |
 * 0x64006400 makes the f16 pair (1024 + 64 q_s, 1024 + 64 q_{s+4}); pair p of the lane (word p/4,
 * s = p%4) covers inputs 8(p/4) + s and that + 4. The mma of pairs (2j, 2j+1), j < 4, of every
 * lane covers the group. Every column of B is the same x, so every column of D holds the sums.
 *
 * Accuracy: x goes in as a hi + lo pair of f16 (two mmas), scaled per group by a power of two
 * that puts its largest element near 2^14 (no overflow, no f16 subnormals); with A = 1024 + 64 q
 * the offset does not swamp the f32 sum: Σ q·x = (D − 1024 X) / 64, X = Σ x. numpy emulation
 * (tools/qmma_precision.py): worst error 5e-6 of the mean |y| (1.2e-6 for the f32 path). The lane
 * and fragment index arithmetic below is emulated lane by lane in tools/qmma_emulate.py (1e-6). */
#include "backend/cuda/compute_cuda_kernels.h"
#include "backend/cuda/kernels_qmatvec.cuh"

#include <cuda_fp16.h>
#include <stdint.h>

namespace dwk {
namespace {

constexpr int QG = 64; /* inputs per mma group: 4 lanes × 16 */

/* Codes s and s + 4 of word w as the f16 pair (1024 + 64 q_s, 1024 + 64 q_{s+4}). */
template <int S> __device__ __forceinline__ uint32_t code_pair(uint32_t w) {
    const uint32_t v = S == 0 ? w << 6 : S == 1 ? w << 2 : S == 2 ? w >> 2 : w >> 6;
    return (v & 0x03C003C0u) | 0x64006400u;
}

__device__ __forceinline__ void mma16816(float *c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}

/* The f16 pair (lo, hi) as one word. */
__device__ __forceinline__ uint32_t half_pair(float lo, float hi) {
    return (uint32_t)__half_as_ushort(__float2half_rn(lo)) | (uint32_t)__half_as_ushort(__float2half_rn(hi)) << 16;
}

/* Shared memory, in floats: x' [K], x's hi and lo f16 pairs [K/2] each (in the lanes' pair
 * order), per group its scale 2^e and Σx' [2 × K/64]; then the staged norm weights
 * (with_norm_floats). */
struct qmma_smem {
    float *xs, *scale, *sum;
    uint32_t *xh, *xl;
    __host__ __device__ static constexpr size_t own_floats(int K) { return (size_t)K * 2 + (size_t)K / QG * 2; }
    __device__ qmma_smem(float *base, int K) {
        xs = base;
        xh = (uint32_t *)(base + K);
        xl = xh + K / 2;
        scale = (float *)(xl + K / 2);
        sum = scale + K / QG;
    }
};

/* x' (stage_x) into the lanes' f16 pairs: pair i = (group, lane t, p) = ((group·4 + t)·8 + p)
 * holds inputs 64·group + 16t + 8(p/4) + p%4 and that + 4, times the group's 2^e, as hi and lo.
 * A warp's 32 consecutive pairs are one group: its max and sum come from shuffles. */
__device__ __forceinline__ void qmma_stage_pairs(const qmma_smem &s, int K) {
    const int lane = threadIdx.x & 31;
    for (int i = threadIdx.x; i < K / 2; i += MV_THREADS) { /* the loop's trip count is the same in a warp */
        const int gi = i >> 5, t = (i >> 3) & 3, p = i & 7;
        const int k = gi * QG + 16 * t + 8 * (p >> 2) + (p & 3);
        const float x0 = s.xs[k], x1 = s.xs[k + 4];
        float mx = fmaxf(fabsf(x0), fabsf(x1)), sm = x0 + x1;
#pragma unroll
        for (int o = 16; o; o >>= 1) {
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            sm += __shfl_xor_sync(0xffffffffu, sm, o);
        }
        int e = 0;
        if (mx > 0.0f) {
            frexpf(mx, &e);                       /* mx = m·2^e, m in [0.5, 1) */
            e = max(-100, min(100, 14 - e));      /* mx·2^e in [2^13, 2^14) */
        } else {
            e = 0;
        }
        const float f = ldexpf(1.0f, e);
        const float y0 = x0 * f, y1 = x1 * f;
        const float h0 = __half2float(__float2half_rn(y0)), h1 = __half2float(__float2half_rn(y1));
        s.xh[i] = half_pair(h0, h1);
        s.xl[i] = half_pair(y0 - h0, y1 - h1);
        if (lane == 0) s.scale[gi] = ldexpf(1.0f, -e), s.sum[gi] = sm;
    }
}

/* The 16-row tasks of a (4-bit, groups a multiple of 64, K a multiple of 64) from task
 * blockIdx.x, every gridDim.x; the block's 8 warps split each task's groups and add their sums
 * through shared memory (red: 2 × 8 × 32 floats). PAIR: 16 rows each of gate and up. Each step
 * (a task's round of R groups) is asked for before the one before it is computed. */
template <int ST, bool PAIR, typename Wait>
__device__ __forceinline__ void qmma_tasks(const mv_args &a, float *smem, float *red, Wait wait) {
    using SB = sb_pair<ST>;
    using sb_raw = typename SB::raw;
    constexpr int NM = PAIR ? 2 : 1; /* matrices per task */
    constexpr int NR = 2 * NM;       /* rows a lane reads per group: g and g + 8 of each */
    constexpr int R = PAIR ? 2 : 4;  /* groups per warp and round */
    const int K = a.K, ngroups = K / QG, sb_row = K / a.qgroup, gshift = __ffs(a.qgroup / QG) - 1;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int total = PAIR ? a.row_start[1] : a.row_start[a.count];
    const int ntasks = (total + 15) / 16;
    const int gw0 = warp * ngroups / MV_WARPS, gw1 = (warp + 1) * ngroups / MV_WARPS; /* this warp's groups */
    const int rounds = ((ngroups + MV_WARPS - 1) / MV_WARPS + R - 1) / R; /* the same for every warp */
    const size_t row_bytes = (size_t)K / 2;
    qmma_smem s(smem, K);

    struct step {
        uint2 code[R][NR];
        sb_raw sb[R][NR];
    };
    /* the codes and (scale, bias) pairs of round `round` of task `task` (zeros past the ends) */
    auto load = [&](step &d, int task, int round) {
        const char *wrow[NR];
        const sb_raw *srow[NR];
        bool ok[NR];
#pragma unroll
        for (int n = 0; n < NR; n++) {
            const int r = task * 16 + g + 8 * (n & 1);
            int j = PAIR ? n >> 1 : 0;
            ok[n] = r < total;
            if (!PAIR && ok[n])
                while (r >= a.row_start[j + 1]) j++;
            const int rr = ok[n] ? r - a.row_start[PAIR ? 0 : j] : 0;
            wrow[n] = (const char *)a.w[j] + (size_t)rr * row_bytes + t * 8;
            srow[n] = (const sb_raw *)a.sb[j] + (size_t)rr * sb_row;
        }
#pragma unroll
        for (int q = 0; q < R; q++) {
            const int gi = gw0 + round * R + q;
#pragma unroll
            for (int n = 0; n < NR; n++) {
                if (ok[n] && gi < gw1) {
                    d.code[q][n] = __ldcs(reinterpret_cast<const uint2 *>(wrow[n] + (size_t)gi * 32));
                    d.sb[q][n] = __ldg(srow[n] + (gi >> gshift));
                } else {
                    d.code[q][n] = make_uint2(0u, 0u);
                    d.sb[q][n] = sb_raw{};
                }
            }
        }
    };

    step cur, nxt;
    int task = blockIdx.x;
    if (task < ntasks) load(cur, task, 0);
    float *gs = stage_norm_ahead<MV_THREADS>(smem, qmma_smem::own_floats(K), a);
    wait(); /* everything below reads what earlier work wrote */
    stage_x<MV_THREADS, 4, 4>(s.xs, red, a.x, K, a.norm_w, a.eps, a.norm_out, gs);
    qmma_stage_pairs(s, K);
    __syncthreads();

    for (int parity = 0; task < ntasks; task += gridDim.x, parity ^= 1) {
        if (a.trigger_late && task + (int)gridDim.x >= ntasks) pdl_launch_dependents(); /* the block's last task */
        float acc[NR];
#pragma unroll
        for (int n = 0; n < NR; n++) acc[n] = 0.0f;
        for (int round = 0; round < rounds; round++) {
            if (round + 1 < rounds) load(nxt, task, round + 1);
            else if (task + (int)gridDim.x < ntasks) load(nxt, task + gridDim.x, 0);
#pragma unroll
            for (int q = 0; q < R; q++) {
                const int gi = gw0 + round * R + q;
                if (gi >= gw1) continue; /* the same for the whole warp */
                const uint4 *hp = reinterpret_cast<const uint4 *>(s.xh + (size_t)(gi * 4 + t) * 8);
                const uint4 *lp = reinterpret_cast<const uint4 *>(s.xl + (size_t)(gi * 4 + t) * 8);
                const uint4 h0 = hp[0], h1 = hp[1], l0 = lp[0], l1 = lp[1];
                const uint32_t xh[8] = {h0.x, h0.y, h0.z, h0.w, h1.x, h1.y, h1.z, h1.w};
                const uint32_t xl[8] = {l0.x, l0.y, l0.z, l0.w, l1.x, l1.y, l1.z, l1.w};
                const float unscale = s.scale[gi], X = s.sum[gi];
#pragma unroll
                for (int m = 0; m < NM; m++) {
                    const uint2 wg = cur.code[q][2 * m], w8 = cur.code[q][2 * m + 1]; /* rows g, g + 8 */
                    float c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                    for (int half = 0; half < 2; half++) { /* word 0: pairs 0-3, word 1: pairs 4-7 */
                        const uint32_t ug = half ? wg.y : wg.x, u8 = half ? w8.y : w8.x;
                        const uint32_t g0 = code_pair<0>(ug), g1 = code_pair<1>(ug), g2 = code_pair<2>(ug),
                                       g3 = code_pair<3>(ug);
                        const uint32_t e0 = code_pair<0>(u8), e1 = code_pair<1>(u8), e2 = code_pair<2>(u8),
                                       e3 = code_pair<3>(u8);
                        const int p = 4 * half;
                        mma16816(c, g0, e0, g1, e1, xh[p], xh[p + 1]);
                        mma16816(c, g0, e0, g1, e1, xl[p], xl[p + 1]);
                        mma16816(c, g2, e2, g3, e3, xh[p + 2], xh[p + 3]);
                        mma16816(c, g2, e2, g3, e3, xl[p + 2], xl[p + 3]);
                    }
                    /* Σ (s q + b) x = s (D·2^-e − 1024 X) / 64 + b X */
                    const float2 sg = SB::get(cur.sb[q][2 * m]), s8 = SB::get(cur.sb[q][2 * m + 1]);
                    acc[2 * m] = fmaf(sg.x * (1.0f / 64.0f) * unscale, c[0], fmaf(fmaf(-16.0f, sg.x, sg.y), X, acc[2 * m]));
                    acc[2 * m + 1] =
                        fmaf(s8.x * (1.0f / 64.0f) * unscale, c[2], fmaf(fmaf(-16.0f, s8.x, s8.y), X, acc[2 * m + 1]));
                }
            }
            cur = nxt;
        }
        /* the warps' sums of the task's rows, added in warp order by the first 16 (32) lanes */
        float *rd = red + parity * (MV_WARPS * 32);
        if (t == 0)
#pragma unroll
            for (int m = 0; m < NM; m++) rd[warp * 32 + m * 16 + g] = acc[2 * m], rd[warp * 32 + m * 16 + g + 8] = acc[2 * m + 1];
        __syncthreads();
        if (tid < 16) {
            const int r = task * 16 + tid;
            if (r < total) {
                float y[NM];
#pragma unroll
                for (int m = 0; m < NM; m++) {
                    y[m] = 0.0f;
#pragma unroll
                    for (int w = 0; w < MV_WARPS; w++) y[m] += rd[w * 32 + m * 16 + tid];
                }
                if constexpr (PAIR) {
                    const float gv = y[0] + (a.bias[0] ? a.bias[0][r] : 0.0f);
                    const float uv = y[1] + (a.bias[1] ? a.bias[1][r] : 0.0f);
                    a.out[1][r] = uv;
                    a.out[0][r] = gv / (1.0f + expf(-gv)) * uv;
                } else {
                    int j = 0;
                    while (r >= a.row_start[j + 1]) j++;
                    const int rr = r - a.row_start[j];
                    const float v = y[0] + (a.bias[j] ? a.bias[j][rr] : 0.0f);
                    a.out[j][rr] = v;
                    if (a.res) a.res[rr] = __ldcg(a.res + rr) + v;
                }
            }
        }
        /* (red is double-buffered by task parity: the next task's writes go to the other half) */
    }
}

template <int ST, bool PAIR> __global__ void __launch_bounds__(MV_THREADS, 2) qmma_kernel(const mv_args a) {
    extern __shared__ float smem[];
    __shared__ float red[2 * MV_WARPS * 32];
    qmma_tasks<ST, PAIR>(a, smem, red, [&a] {
        pdl_wait();
        if (!a.trigger_late) pdl_launch_dependents();
    });
}

} // namespace

bool qmma_chosen(const mv_args &a) {
    const int per = a.qgroup / QG; /* 64-input groups per scale group: a power of two */
    const bool supported = a.qbits == 4 && a.qgroup % QG == 0 && (per & (per - 1)) == 0 && a.K % a.qgroup == 0 &&
                           (a.sbtype == W_BF16 || a.sbtype == W_F32) && (!a.pair_swiglu || a.count == 2);
    const int rows = a.pair_swiglu ? a.row_start[1] : a.row_start[a.count];
    const int least = a.qmma == 1 ? 0 : a.qmma == 2 ? 4096 : 16384;
    return a.qmma > 0 && supported && rows >= least;
}

cudaError_t launch_qmma(const mv_args &a, int n_sm, cudaStream_t stream) {
    if (!qmma_chosen(a)) return cudaErrorInvalidValue;
    const bool pair = a.pair_swiglu != 0;
    const int total = pair ? a.row_start[1] : a.row_start[a.count];
    const int tasks = (total + 15) / 16;
    const size_t smem = with_norm_floats(qmma_smem::own_floats(a.K), a) * sizeof(float);
    if (a.sbtype == W_BF16)
        return pair ? launch_resident(qmma_kernel<W_BF16, true>, a, tasks, MV_THREADS, smem, n_sm, stream)
                    : launch_resident(qmma_kernel<W_BF16, false>, a, tasks, MV_THREADS, smem, n_sm, stream);
    return pair ? launch_resident(qmma_kernel<W_F32, true>, a, tasks, MV_THREADS, smem, n_sm, stream)
                : launch_resident(qmma_kernel<W_F32, false>, a, tasks, MV_THREADS, smem, n_sm, stream);
}

} // namespace dwk
