/* The persistent decode kernel (compute_cuda_kernels.h: fused_phase): a decode step's matrix-
 * vector products and attentions run as the phases of one resident grid, a grid-wide barrier
 * between phases. The phase bodies are the standalone kernels' own (kernels_matvec.cuh,
 * kernels_qmatvec.cuh, kernels_attention.cuh); what changes is the wait in front of each: not the
 * end of the previous kernel but a counter in global memory, and a block issues its first weight
 * loads of the next phase before it waits there. Why our own: a layer as five kernels paid, five
 * times, a launch, a prologue and a DRAM round trip with nothing in flight (bench/cuda/README.md).
 * Status: opt-in (DW_CUDA_PERSIST=1) because on the H100 it is slower than the separate kernels so
 * far: a barrier costs about what a kernel boundary did, and one block per SM streams single
 * matrices at ~2 TB/s (the phase profile and what would make it pay: bench/cuda/README.md v11). */
#include "backend/cuda/compute_cuda_kernels.h"
#include "backend/cuda/kernels_attention.cuh"
#include "backend/cuda/kernels_matvec.cuh"
#include "backend/cuda/kernels_qmatvec.cuh"

#include <stdint.h>
#include <stdlib.h>

namespace dwk {
namespace {

constexpr int F_THREADS = 256;
static_assert(F_THREADS == MV_THREADS && F_THREADS == QMV_THREADS, "one block shape for every phase");

__device__ __forceinline__ unsigned ld_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

/* The block is done with its phase: its writes are made visible (a release at GPU scope, which
 * covers the block's other threads through the barrier before it), then counted. */
__device__ __forceinline__ void grid_arrive(unsigned *bar) {
    __syncthreads();
    if (threadIdx.x == 0) asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(bar) : "memory");
}

/* Until `target` arrivals are counted (every block done with the phases before). */
__device__ __forceinline__ void grid_wait(const unsigned *bar, unsigned target) {
    if (threadIdx.x == 0) {
        while (ld_acquire(bar) < target) {
        }
    }
    __syncthreads();
}

__device__ __forceinline__ unsigned long long globaltimer() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
    return t;
}

/* The weight formats of a family: bf16, or 4/8-bit codes with bf16 or f32 (scale, bias) pairs. */
template <int FAM> struct family;
template <> struct family<FF_BF16> { static constexpr int bits = 0; };
template <> struct family<FF_Q4B> { static constexpr int bits = 4, st = W_BF16; };
template <> struct family<FF_Q4F> { static constexpr int bits = 4, st = W_F32; };
template <> struct family<FF_Q8B> { static constexpr int bits = 8, st = W_BF16; };
template <> struct family<FF_Q8F> { static constexpr int bits = 8, st = W_F32; };

/* Phase i's wait: phase 0 waits for the kernel before (programmatic launch), the others for
 * every block to be done with the phases before. */
struct phase_wait {
    const unsigned *bar;
    int i;
    __device__ __forceinline__ void operator()() const {
        if (i == 0) pdl_wait();
        else grid_wait(bar, (unsigned)i * gridDim.x);
    }
};

/* Tried for single matrices, with MINB 1's half the warps, and slower (H100, 1B bf16): 16 loads
 * per lane in flight (q/k/v 6.4 -> 8.4 us, lm_head 180 -> 218 us) and two neighbouring rows per
 * warp (step 1.36 -> 1.71 ms). */
template <int WT, bool VEC, bool NORM, bool PAIR>
__device__ __forceinline__ void mv_rows(const mv_args &a, float *smem, float *red, int first, int stride, phase_wait wait) {
    matvec_rows<WT, VEC, NORM, PAIR>(a, smem, red, first, stride, wait);
}
template <int B, int ST, bool PAIR, int S>
__device__ __forceinline__ void qmv_tasks(const mv_args &a, float *smem, float *red, int first, int stride, phase_wait wait) {
    qmatvec_tasks<B, ST, PAIR, S>(a, smem, red, first, stride, wait);
}

template <int FAM>
__device__ __forceinline__ void mv_phase(const fused_phase &p, float *smem, float *red, phase_wait wait) {
    const mv_args &a = p.mv;
    const int first = blockIdx.x * MV_WARPS + (threadIdx.x >> 5), stride = gridDim.x * MV_WARPS;
    if constexpr (family<FAM>::bits == 0) {
        const bool norm = a.norm_w != nullptr, pair = a.pair_swiglu != 0;
        if (pair) {
            if (norm) mv_rows<W_BF16, true, true, true>(a, smem, red, first, stride, wait);
            else mv_rows<W_BF16, true, false, true>(a, smem, red, first, stride, wait);
        } else {
            if (norm) mv_rows<W_BF16, true, true, false>(a, smem, red, first, stride, wait);
            else mv_rows<W_BF16, true, false, false>(a, smem, red, first, stride, wait);
        }
    } else {
        constexpr int B = family<FAM>::bits, ST = family<FAM>::st;
        if (a.pair_swiglu) {
            if (p.sub == 4) qmv_tasks<B, ST, true, 4>(a, smem, red, first, stride, wait);
            else qmv_tasks<B, ST, true, 2>(a, smem, red, first, stride, wait);
        } else {
            if (p.sub == 1) qmv_tasks<B, ST, false, 1>(a, smem, red, first, stride, wait);
            else if (p.sub == 2) qmv_tasks<B, ST, false, 2>(a, smem, red, first, stride, wait);
            else qmv_tasks<B, ST, false, 4>(a, smem, red, first, stride, wait);
        }
    }
}

/* The attention items (split, head tile, token) of the grid the standalone kernel would launch,
 * item i on block i mod gridDim.x. */
template <int GT> __device__ __forceinline__ void attn_items(const attn_args &a, float *smem, int &is_last) {
    const int tiles = (a.n_heads / a.n_kv + GT - 1) / GT;
    const int ny = a.n_kv * tiles, items = a.splits * ny * a.n_tokens;
    for (int i = blockIdx.x; i < items; i += gridDim.x) {
        const int split = i % a.splits, y = (i / a.splits) % ny, t = i / (a.splits * ny);
        attention_item<F_THREADS, false, 8, GT>(a, split, y, t, ny, smem, is_last);
        __syncthreads(); /* the next item reuses the shared memory */
    }
}

/* MINB: blocks per SM the registers are budgeted for (2: at most 128 per thread). */
template <int FAM, int MINB>
__global__ void __launch_bounds__(F_THREADS, MINB) fused_kernel(const __grid_constant__ fused_table table, unsigned *sync,
                                                             unsigned long long *trace) {
    extern __shared__ float smem[];
    __shared__ float red[MV_WARPS];
    __shared__ int is_last;
    const unsigned blocks = gridDim.x;
    const int n = table.n;
    if (trace && blockIdx.x == 0 && threadIdx.x == 0) trace[0] = blocks;
    for (int i = 0; i < n; i++) {
        const fused_phase &p = table.ph[i];
        const phase_wait wait{sync, i};
        if (trace && i > 0 && blockIdx.x == 0 && threadIdx.x == 0) { /* when the grid passed barrier i */
            while (ld_acquire(sync) < (unsigned)i * blocks) {
            }
            trace[2 * i] = globaltimer();
        }
        if (p.kind == FK_MV) {
            mv_phase<FAM>(p, smem, red, wait);
        } else {
            wait();
            switch (p.sub) {
            case 1: attn_items<1>(p.at, smem, is_last); break;
            case 2: attn_items<2>(p.at, smem, is_last); break;
            case 4: attn_items<4>(p.at, smem, is_last); break;
            default: attn_items<8>(p.at, smem, is_last); break;
            }
        }
        if (trace) {
            __syncthreads();
            if (threadIdx.x == 0) atomicMax(trace + 2 * i + 1, globaltimer()); /* the last block done */
        }
        if (i + 1 < n) grid_arrive(sync);
    }
    /* the last block out leaves the counters zero for the next launch (every block is past its
     * last wait by then) */
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd(sync + 1, 1u) == blocks - 1) {
            sync[0] = 0;
            sync[1] = 0;
            __threadfence();
        }
    }
}

template <int FAM, int MINB>
cudaError_t launch_family(const fused_table &table, size_t smem, unsigned *sync, unsigned long long *trace, int n_sm,
                          cudaStream_t stream) {
    auto kernel = fused_kernel<FAM, MINB>;
    /* all the shared memory the SM has may go to blocks (the occupancy query assumes it) */
    static bool carveout = false;
    if (!carveout) {
        carveout = true;
        if (cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 100) != cudaSuccess)
            (void)cudaGetLastError();
    }
    int per_sm = resident_per_sm((const void *)kernel, F_THREADS, smem);
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(n_sm * per_sm);
    cfg.blockDim = dim3(F_THREADS);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    /* every block must be resident at once (the barriers): a cooperative launch checks it */
    cudaLaunchAttribute attr[2];
    attr[0].id = cudaLaunchAttributeCooperative;
    attr[0].val.cooperative = 1;
    attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[1].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl_enabled() ? 2 : 1;
    cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, table, sync, trace);
    while (e == cudaErrorCooperativeLaunchTooLarge && per_sm > 1) { /* the query was optimistic */
        (void)cudaGetLastError();
        cfg.gridDim = dim3(n_sm * --per_sm);
        e = cudaLaunchKernelEx(&cfg, kernel, table, sync, trace);
    }
    if (e != cudaSuccess) return e;
    return cudaGetLastError();
}

/* DW_CUDA_PERSIST_MINB=1|2 (tuning): the register budget, as fused_kernel's MINB (default 1). */
int persist_minb() {
    static int n = -1;
    if (n < 0) {
        const char *v = getenv("DW_CUDA_PERSIST_MINB");
        n = v && *v == '2' ? 2 : 1;
    }
    return n;
}

template <int FAM>
cudaError_t launch_family(const fused_table &table, size_t smem, unsigned *sync, unsigned long long *trace, int n_sm,
                          cudaStream_t stream) {
    if (persist_minb() == 2) return launch_family<FAM, 2>(table, smem, sync, trace, n_sm, stream);
    return launch_family<FAM, 1>(table, smem, sync, trace, n_sm, stream);
}

static_assert(sizeof(fused_table) + 2 * sizeof(void *) <= 32764, "kernel parameters are at most 32 KB");

} // namespace

int fused_prepare(fused_phase &p) {
    if (p.kind == FK_ATTN) {
        p.sub = attention_fused_gt(p.at);
        return p.sub ? FF_ANY : FF_NONE;
    }
    if (p.kind != FK_MV) return FF_NONE;
    const mv_args &a = p.mv;
    if (!a.qbits) {
        if (a.wtype != W_BF16 || a.K % 8) return FF_NONE;
        for (int j = 0; j < a.count; j++)
            if ((uintptr_t)a.w[j] % 16) return FF_NONE;
        return FF_BF16;
    }
    const int cp = a.qbits == 4 ? 32 : 16;
    if ((a.qbits != 4 && a.qbits != 8) || a.qgroup < cp || a.qgroup % cp || a.K % a.qgroup) return FF_NONE;
    if (a.sbtype != W_BF16 && a.sbtype != W_F32) return FF_NONE;
    static int max_s = -1;
    if (max_s < 0) {
        const char *v = getenv("DW_CUDA_QMV_MAXS");
        max_s = v && atoi(v) > 0 ? atoi(v) : 0;
    }
    p.sub = qmv_rows_per_task(a.qbits, a.K, a.pair_swiglu != 0, max_s);
    if (a.qbits == 4) return a.sbtype == W_BF16 ? FF_Q4B : FF_Q4F;
    return a.sbtype == W_BF16 ? FF_Q8B : FF_Q8F;
}

size_t fused_smem(const fused_phase &p) {
    if (p.kind == FK_ATTN) return attn_smem_floats(F_THREADS, p.sub, p.at.hd) * sizeof(float);
    const mv_args &a = p.mv;
    if (a.qbits) return qmv_smem_floats(a.qbits, a.K) * sizeof(float);
    return (size_t)a.K / 8 * x_stride(8) * sizeof(float);
}

cudaError_t launch_fused(int family, const fused_table &table, size_t smem, unsigned *sync, unsigned long long *trace,
                         int n_sm, cudaStream_t stream) {
    switch (family) {
    case FF_BF16: return launch_family<FF_BF16>(table, smem, sync, trace, n_sm, stream);
    case FF_Q4B: return launch_family<FF_Q4B>(table, smem, sync, trace, n_sm, stream);
    case FF_Q4F: return launch_family<FF_Q4F>(table, smem, sync, trace, n_sm, stream);
    case FF_Q8B: return launch_family<FF_Q8B>(table, smem, sync, trace, n_sm, stream);
    case FF_Q8F: return launch_family<FF_Q8F>(table, smem, sync, trace, n_sm, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace dwk
