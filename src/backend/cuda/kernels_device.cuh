/* Device helpers shared by the decode kernels (kernels_matvec.cu, kernels_quant.cu): streaming
 * loads, programmatic dependent launch, warp reductions, and the host-side launch of a matvec-
 * style kernel (grid sized to the blocks resident at once, with programmatic dependent launch). */
#ifndef DW_BACKEND_CUDA_KERNELS_DEVICE_CUH
#define DW_BACKEND_CUDA_KERNELS_DEVICE_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include <mutex>

#include "backend/cuda/kernels.h"

namespace dwk {

/* The block shape of every decode matrix-vector kernel (bf16 and quantized). */
constexpr int MV_THREADS = 256;
constexpr int MV_WARPS = MV_THREADS / 32;

/* 16 bytes of weights, read once: no L1 allocation, so x keeps the cache. */
__device__ __forceinline__ uint4 ld_stream16(const void *p) {
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}

/* Programmatic dependent launch (sm_90): wait for the previous grid / let the next one start. */
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* A KV cache's element: bf16 bits rounded to nearest even, or f32 (f32 set), stored at cache[i]. */
__device__ __forceinline__ unsigned short bf16_bits(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
__device__ __forceinline__ void store_kv(const void *cache, bool f32, size_t i, float v) {
    if (f32) ((float *)cache)[i] = v;
    else ((unsigned short *)cache)[i] = bf16_bits(v);
}

/* RoPE (rotate-half): elements d and d + head_dim/2 of a head, (lo, hi), turned by pos · inv_freq
 * (inv_freq[d]); the one rotation of the rope_kv kernel, the fused KV store and the CPU. */
__device__ __forceinline__ void rope_pair(float &lo, float &hi, int pos, float inv_freq) {
    float sn, cs;
    sincosf((float)pos * inv_freq, &sn, &cs);
    const float r0 = lo * cs - hi * sn, r1 = hi * cs + lo * sn;
    lo = r0, hi = r1;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* This thread's float4 indices i4 < n4 of a block of THREADS (tid, tid + THREADS, ...), SX at a
 * time: load(i4) for the whole batch first, then use(value, i4), so a batch's loads are in flight
 * together. */
template <int THREADS, int SX, typename Load, typename Use>
__device__ __forceinline__ void in_batches4(int n4, Load load, Use use) {
    for (int base = 0; base < n4; base += THREADS * SX) {
        float4 v[SX];
#pragma unroll
        for (int u = 0; u < SX; u++) {
            const int i4 = base + u * THREADS + (int)threadIdx.x;
            if (i4 < n4) v[u] = load(i4);
        }
#pragma unroll
        for (int u = 0; u < SX; u++) {
            const int i4 = base + u * THREADS + (int)threadIdx.x;
            if (i4 < n4) use(v[u], i4);
        }
    }
}

/* Where a matvec's staged norm weights (stage_norm_w: every matvec with a fused RMSNorm stages
 * them) sit in its shared memory: behind its xf floats of x' (and whatever else the kernel keeps
 * there), rounded up to a float4. */
__host__ __device__ constexpr size_t norm_smem_offset(size_t xf) { return (xf + 3) / 4 * 4; }
__host__ __device__ inline bool norm_staged(const mv_args &a) { return a.norm_w != nullptr; }

/* Floats of shared memory for a kernel with xf floats of its own: those, then the staged norm
 * weights when a has them. */
inline size_t with_norm_floats(size_t xf, const mv_args &a) { return norm_staged(a) ? norm_smem_offset(xf) + a.K : xf; }

/* Before the wait for the kernel before: the RMSNorm weights (K floats, constant) into shared
 * memory gs, so that stage_x, after the wait, finds them there instead of asking L2 for them
 * behind the sum of squares (a round trip on the critical path of each q/k/v and gate/up
 * product). stage_x's first barrier orders these stores before its reads. Measured: docs/PERFORMANCE.md
 * (the norm weights staged before the wait). */
template <int THREADS> __device__ __forceinline__ void stage_norm_w(float *gs, const float *norm_w, int K) {
    if (K % 4 == 0 && (uintptr_t)norm_w % 16 == 0) {
        in_batches4<THREADS, 2>(
            K / 4, [&](int i4) { return __ldg(reinterpret_cast<const float4 *>(norm_w) + i4); },
            [&](const float4 &g, int i4) { reinterpret_cast<float4 *>(gs)[i4] = g; });
    } else {
        for (int i = threadIdx.x; i < K; i += THREADS) gs[i] = __ldg(norm_w + i);
    }
}

/* Before the wait: a's norm weights copied behind xf floats of smem when a has them; their copy
 * for stage_x, or NULL (no norm). */
template <int THREADS> __device__ __forceinline__ float *stage_norm_ahead(float *smem, size_t xf, const mv_args &a) {
    if (!norm_staged(a)) return nullptr;
    float *gs = smem + norm_smem_offset(xf);
    stage_norm_w<THREADS>(gs, a.norm_w, a.K);
    return gs;
}

/* 1 / sqrt(mean(x²) + eps) over K inputs, from each thread's share ss of Σx²: added over the
 * block through scratch (THREADS/32 floats; one barrier), the same in every thread. */
template <int THREADS> __device__ __forceinline__ float rms_scale(float ss, float *scratch, int K, float eps) {
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = ss;
    __syncthreads();
    float tot = 0.0f;
#pragma unroll
    for (int w = 0; w < THREADS / 32; w++) tot += scratch[w];
    return 1.0f / sqrtf(tot / (float)K + eps);
}

/* The matvec kernels' prologue: x' into shared memory xs, each chunk of E inputs padded to XP
 * floats (bank conflicts), where x' = x, or with norm_w set x / sqrt(mean(x²) + eps) · norm_w
 * (RMSNorm fused in front; block 0 also writes it to norm_out when set); gs (or NULL): norm_w's
 * copy in shared memory (stage_norm_w), read instead of norm_w. red: THREADS/32 floats of shared
 * scratch. Ends with a barrier: xs is complete for the whole block.
 *
 * x (and norm_w) are read 2 float4 per thread at a time, a batch's loads in flight together: x
 * comes from L2 while the kernel's first weight loads fill the memory queues, and a loop that
 * waited for each load in turn (as this did before) paid that latency K / THREADS times
 * (measured with bench/cuda/chain_probe.cu: bench/cuda/README.md v15). 2, not more, keeps the
 * single-matrix kernels at 64 registers. Copying x by cp.async instead (no registers, one wait)
 * was slower (docs/PERFORMANCE.md). */
template <int THREADS, int E, int XP, int SX = 2>
__device__ __forceinline__ void stage_x(float *xs, float *red, const float *x, int K, const float *norm_w, float eps,
                                        float *norm_out, const float *gs) {
    auto at = [](int i) { return i / E * XP + i % E; };
    const int tid = threadIdx.x;
    constexpr bool VEC = E % 4 == 0 && XP % 4 == 0; /* a float4 of x stays in one padded chunk */
    const bool vec = VEC && K % 4 == 0 && ((uintptr_t)x | (uintptr_t)norm_w | (uintptr_t)norm_out | (uintptr_t)gs) % 16 == 0;
    float ss = 0.0f;
    if (vec) {
        in_batches4<THREADS, SX>(
            K / 4, [&](int i4) { return __ldcg(reinterpret_cast<const float4 *>(x) + i4); }, /* L2: other blocks wrote it */
            [&](const float4 &v, int i4) {
                *reinterpret_cast<float4 *>(xs + at(4 * i4)) = v;
                ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
            });
    } else {
        for (int i = tid; i < K; i += THREADS) {
            const float v = __ldcg(x + i);
            xs[at(i)] = v;
            ss += v * v;
        }
    }
    if (norm_w) {
        const float scale = rms_scale<THREADS>(ss, red, K, eps);
        if (vec) {
            in_batches4<THREADS, SX>(
                K / 4,
                [&](int i4) {
                    return gs ? reinterpret_cast<const float4 *>(gs)[i4] : __ldg(reinterpret_cast<const float4 *>(norm_w) + i4);
                },
                [&](const float4 &g, int i4) {
                    float4 *p = reinterpret_cast<float4 *>(xs + at(4 * i4));
                    float4 v = *p;
                    v.x = (v.x * scale) * g.x, v.y = (v.y * scale) * g.y;
                    v.z = (v.z * scale) * g.z, v.w = (v.w * scale) * g.w;
                    *p = v;
                    if (blockIdx.x == 0 && norm_out) reinterpret_cast<float4 *>(norm_out)[i4] = v;
                });
        } else {
            for (int i = tid; i < K; i += THREADS) {
                const float v = (xs[at(i)] * scale) * (gs ? gs[i] : norm_w[i]);
                xs[at(i)] = v;
                if (blockIdx.x == 0 && norm_out) norm_out[i] = v;
            }
        }
    }
    __syncthreads();
}

/* stage_x's RMSNorm with the scale left for later: xs = x ⊙ norm_w by chunk (padded), and the
 * return value s = 1 / sqrt(mean(x²) + eps), which the caller multiplies into each row's sum
 * (W·(x ⊙ w)·s = W·x'); norm_out (block 0), when set, gets x' itself. One barrier and one pass
 * over xs fewer between x's arrival and the first multiply-add than stage_x. Only where
 * mv_args.norm_late (launch_matvec checks the float4 path: K % 4 == 0, x, norm_w and norm_out
 * 16-byte aligned; gs is) and gs, the norm weights staged before the wait by stage_norm_w with
 * the same thread-to-float4 mapping, so that each thread reads only what it wrote itself. With
 * xsum set (every thread then has the same number of float4s: K / 4 a multiple of THREADS), also
 * xsum[c] = the sum of chunk c's E inputs of xs (the quantized matvec's per-chunk sums), added
 * across the E / 4 neighbouring lanes that hold the chunk. Ends with a barrier. */
template <int THREADS, int E, int XP, int SX = 2>
__device__ __forceinline__ float stage_x_late(float *xs, const float *x, int K, float eps, float *norm_out,
                                              const float *gs, float *xsum = nullptr) {
    static_assert(E % 4 == 0 && XP % 4 == 0, "a float4 of x stays in one padded chunk");
    static_assert(E / 4 <= 32 && ((E / 4) & (E / 4 - 1)) == 0, "a chunk is a power of two of float4s");
    __shared__ float wss[THREADS / 32];
    auto at4 = [](int i4) { return (4 * i4) / E * XP + (4 * i4) % E; };
    const int tid = threadIdx.x, n4 = K / 4;
    const float4 *g4 = reinterpret_cast<const float4 *>(gs);
    float ss = 0.0f;
    in_batches4<THREADS, SX>(
        n4, [&](int i4) { return __ldcg(reinterpret_cast<const float4 *>(x) + i4); }, /* L2: other blocks wrote it */
        [&](const float4 &v, int i4) {
            const float4 g = g4[i4]; /* from shared memory once x is here: no registers held for it */
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
            const float4 y = make_float4(v.x * g.x, v.y * g.y, v.z * g.z, v.w * g.w);
            *reinterpret_cast<float4 *>(xs + at4(i4)) = y;
            if (xsum) { /* the same in the whole block; every lane is here */
                float cs = (y.x + y.y) + (y.z + y.w);
#pragma unroll
                for (int o = 1; o < E / 4; o <<= 1) cs += __shfl_xor_sync(0xffffffffu, cs, o);
                if (i4 % (E / 4) == 0) xsum[4 * i4 / E] = cs;
            }
        });
    const float scale = rms_scale<THREADS>(ss, wss, K, eps); /* (its own scratch: no barrier after) */
    if (blockIdx.x == 0 && norm_out)
        for (int i4 = tid; i4 < n4; i4 += THREADS) { /* this thread's own float4s of xs */
            const float4 v = *reinterpret_cast<const float4 *>(xs + at4(i4));
            reinterpret_cast<float4 *>(norm_out)[i4] = make_float4(v.x * scale, v.y * scale, v.z * scale, v.w * scale);
        }
    return scale;
}

/* Blocks for a grid-stride loop over count items (at most 4096, at least 1). */
inline unsigned grid_for(size_t count, int threads) {
    size_t b = (count + threads - 1) / threads;
    return b > 4096 ? 4096u : b ? (unsigned)b : 1u;
}

/* Token ids passed by value to an embedding kernel (block i embeds v[i]). */
struct ids_chunk {
    int32_t v[DWK_EMBED_IDS];
};

/* Calls launch(done, count, ids) for the n host ids in chunks of DWK_EMBED_IDS (ids zero when a
 * graph's device slot dslot supplies the id), then returns the first launch error. */
template <typename Launch>
cudaError_t for_id_chunks(const int32_t *ids_host, int n, const int *dslot, Launch launch) {
    for (int done = 0; done < n; done += DWK_EMBED_IDS) {
        const int cnt = n - done < DWK_EMBED_IDS ? n - done : DWK_EMBED_IDS;
        ids_chunk ids;
        for (int i = 0; i < cnt; i++) ids.v[i] = dslot ? 0 : ids_host[done + i];
        launch(done, cnt, ids);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

/* Blocks of `kernel` resident at once per SM with `threads` threads and smem bytes of dynamic
 * shared memory (asked once per kernel and size; 1 when the query fails). Near 48 KB (static
 * shared memory comes on top) a kernel must be allowed its dynamic shared memory first: each kernel's allowance is raised to the
 * largest size asked for so far. */
inline int resident_per_sm(const void *kernel, int threads, size_t smem) {
    struct entry {
        const void *kernel;
        size_t smem;
        int n;
    };
    static entry seen[128];
    static int count;
    static std::mutex lock;
    std::lock_guard<std::mutex> g(lock);
    size_t allowed = 48 * 1024;
    for (int i = 0; i < count; i++) {
        if (seen[i].kernel != kernel) continue;
        if (seen[i].smem == smem) return seen[i].n;
        if (seen[i].smem > allowed) allowed = seen[i].smem;
    }
    if (smem + 1024 > allowed && cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess)
        (void)cudaGetLastError(); /* the launch reports it */
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem) != cudaSuccess || n < 1) {
        (void)cudaGetLastError();
        n = 1;
    }
    if (count < 128) seen[count++] = entry{kernel, smem, n};
    return n;
}

/* Launches kernel(args), grid × threads with smem bytes of dynamic shared memory on stream, with
 * programmatic stream serialization: the kernel may start before the one before it ends, so it
 * must call pdl_wait() before reading what that one writes. */
template <typename Args>
cudaError_t launch_pdl(void (*kernel)(Args), const Args &args, dim3 grid, int threads, size_t smem,
                       cudaStream_t stream) {
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(threads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, args);
    if (e != cudaSuccess) return e;
    return cudaGetLastError();
}

/* Launches kernel(args) with `threads` per block and smem dynamic shared memory on at most
 * `blocks` blocks, capped to what is resident at once on n_sm SMs, with programmatic stream
 * serialization (launch_pdl): the kernel must call pdl_wait() before reading what earlier
 * kernels write. */
template <typename Args>
cudaError_t launch_resident(void (*kernel)(Args), const Args &args, int blocks, int threads, size_t smem, int n_sm,
                            cudaStream_t stream) {
    const int per_sm = resident_per_sm((const void *)kernel, threads, smem);
    if (blocks > n_sm * per_sm) blocks = n_sm * per_sm;
    if (blocks < 1) blocks = 1;
    return launch_pdl(kernel, args, dim3(blocks), threads, smem, stream);
}

} // namespace dwk

#endif
