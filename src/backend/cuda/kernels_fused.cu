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

/* (Tried for single matrices, with one block per SM's half the warps, and slower on the H100, 1B
 * bf16: 16 loads per lane in flight, q/k/v 6.4 -> 8.4 us, lm_head 180 -> 218 us; two neighbouring
 * rows per warp, step 1.36 -> 1.71 ms.) */
template <int FAM>
__device__ __forceinline__ void mv_phase(const fused_phase &p, float *smem, float *red, phase_wait wait) {
    const mv_args &a = p.mv;
    const int first = blockIdx.x * MV_WARPS + (threadIdx.x >> 5), stride = gridDim.x * MV_WARPS;
    if constexpr (family<FAM>::bits == 0) {
        const bool norm = a.norm_w != nullptr, pair = a.pair_swiglu != 0;
        if (pair) {
            if (norm) matvec_rows<W_BF16, true, true, true>(a, smem, red, first, stride, wait);
            else matvec_rows<W_BF16, true, false, true>(a, smem, red, first, stride, wait);
        } else {
            if (norm) matvec_rows<W_BF16, true, true, false>(a, smem, red, first, stride, wait);
            else matvec_rows<W_BF16, true, false, false>(a, smem, red, first, stride, wait);
        }
    } else {
        constexpr int B = family<FAM>::bits, ST = family<FAM>::st;
        if (a.pair_swiglu) {
            if (p.sub == 4) qmatvec_tasks<B, ST, true, 4>(a, smem, red, first, stride, wait);
            else qmatvec_tasks<B, ST, true, 2>(a, smem, red, first, stride, wait);
        } else {
            if (p.sub == 1) qmatvec_tasks<B, ST, false, 1>(a, smem, red, first, stride, wait);
            else if (p.sub == 2) qmatvec_tasks<B, ST, false, 2>(a, smem, red, first, stride, wait);
            else qmatvec_tasks<B, ST, false, 4>(a, smem, red, first, stride, wait);
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
        attention_item<MV_THREADS, false, 8, GT>(a, split, y, t, ny, smem, is_last);
        __syncthreads(); /* the next item reuses the shared memory */
    }
}

/* One block per SM, registers unbounded: budgeted for two (128 per thread) the phases spilled
 * 2-3.5 KB per thread and the step was slower (H100 1B bf16 1.77 vs 1.36 ms; 4-bit 1.47 vs 1.12). */
template <int FAM>
__global__ void __launch_bounds__(MV_THREADS, 1) fused_kernel(const __grid_constant__ fused_table table, unsigned *sync,
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

template <int FAM>
cudaError_t launch_family(const fused_table &table, size_t smem, unsigned *sync, unsigned long long *trace, int n_sm,
                          cudaStream_t stream) {
    auto kernel = fused_kernel<FAM>;
    /* all the shared memory the SM has may go to blocks (the occupancy query assumes it) */
    static bool carveout = false;
    if (!carveout) {
        carveout = true;
        if (cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 100) != cudaSuccess)
            (void)cudaGetLastError();
    }
    int per_sm = resident_per_sm((const void *)kernel, MV_THREADS, smem);
    /* every block must be resident at once (the barriers): a cooperative launch checks it */
    cudaLaunchAttribute attr[2];
    cudaLaunchConfig_t cfg = launch_config(dim3(n_sm * per_sm), MV_THREADS, smem, stream, true, attr);
    cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, table, sync, trace);
    while (e == cudaErrorCooperativeLaunchTooLarge && per_sm > 1) { /* the query was optimistic */
        (void)cudaGetLastError();
        cfg.gridDim = dim3(n_sm * --per_sm);
        e = cudaLaunchKernelEx(&cfg, kernel, table, sync, trace);
    }
    if (e != cudaSuccess) return e;
    return cudaGetLastError();
}

static_assert(sizeof(fused_table) + 2 * sizeof(void *) <= 32764, "kernel parameters are at most 32 KB");

} // namespace

int fused_prepare(fused_phase &p) {
    if (p.kind == FK_ATTN) {
        p.sub = attention_fused_gt(p.at);
        return p.sub ? FF_ANY : FF_NONE;
    }
    if (p.kind != FK_MV) return FF_NONE;
    /* no norm weights staged before a phase's wait: the block's other warps may still be on the
     * phase before, reading its x' where they would go */
    p.mv.norm_staged = 0;
    const mv_args &a = p.mv;
    if (!a.qbits) return a.wtype == W_BF16 && mv_vector_path<W_BF16>(a) ? FF_BF16 : FF_NONE;
    if (!qmv_supported(a) || (a.sbtype != W_BF16 && a.sbtype != W_F32)) return FF_NONE;
    p.sub = qmv_rows_per_task(a.qbits, a.K, a.pair_swiglu != 0);
    if (a.qbits == 4) return a.sbtype == W_BF16 ? FF_Q4B : FF_Q4F;
    return a.sbtype == W_BF16 ? FF_Q8B : FF_Q8F;
}

size_t fused_smem(const fused_phase &p) {
    if (p.kind == FK_ATTN) return attn_smem_floats(MV_THREADS, p.sub, p.at.hd) * sizeof(float);
    const mv_args &a = p.mv;
    if (a.qbits) return qmv_smem_floats(a) * sizeof(float);
    return mv_smem_bytes<W_BF16, true>(a);
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
