/* The attention kernels (kernels.h: attn_args; the device code is in kernels_attention.cuh and,
 * for decode on a bf16 cache, kernels_attention_decode.cuh) and their launch: splits and head
 * tiles from the backend's tuning (cuda_tuning.h). */
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels_attention_decode.cuh"

#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

namespace dwk {
namespace {

/* Decode on a bf16 cache: keys per lane group and round (4: rounds of 128 keys for 64-element
 * rows, of 64 for 128; 2 and 8 were slower, docs/PERFORMANCE.md). */
constexpr int DEC_KEYS = 4;
/* Threads per block of the general kernel in decode (one query token): with 256 a split's scores
 * and values take half the rounds of ATTN_THREADS (128), which prefill keeps (256 was slower
 * there). */
constexpr int DECODE_THREADS = 256;

/* The attention arguments as launched: a with the split rule of the tuning t (decode lengths up
 * to t.attn_short_keys use one split per block: no partials, counter or combine; longer ones at
 * least t.attn_min_keys keys per split). */
attn_args with_split_rule(const attn_args &a, const dw__cuda_tuning &t) {
    attn_args b = a;
    b.one_split_max = t.attn_short_keys;
    b.min_keys = t.attn_min_keys;
    return b;
}

/* Dynamic shared memory that keeps a block of `smem` bytes to at most blocks_per_sm blocks on an
 * SM. Launched with PDL, the blocks start while the kernel before drains; the SMs it frees first
 * would otherwise take three blocks each and others none, and at long contexts, where every block
 * has keys to read, those SMs finish last (faster capped: docs/PERFORMANCE.md). The decode
 * kernel's 128 registers per thread allow only two blocks anyway; the cap keeps it so if that
 * changes. */
size_t capped_smem(size_t smem, int blocks_per_sm) {
    static int per_sm = -1;
    if (per_sm < 0) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) != cudaSuccess)
            per_sm = 0, (void)cudaGetLastError();
    }
    const size_t reserved = 1024; /* per block, by the driver */
    const size_t need = (size_t)per_sm / (blocks_per_sm + 1) + 1 - reserved;
    return per_sm > 0 && smem < need ? need : smem;
}

template <int THREADS, bool F32, int VEC, int GT>
__global__ void __launch_bounds__(THREADS) attention_kernel(const attn_args a) {
    extern __shared__ float sm[];
    __shared__ int is_last;
    /* A following matvec may start loading its weights. */
    pdl_launch_dependents();
    attention_item<THREADS, F32, VEC, GT>(a, blockIdx.x, blockIdx.y, blockIdx.z, gridDim.y, sm, is_last);
}

/* Decode on a bf16 cache (kernels_attention_decode.cuh), launched with PDL: its blocks load their
 * first keys while the q/k/v matvec before it finishes, and wait for it only then (faster than
 * attention_kernel there: docs/PERFORMANCE.md). It lets the next kernel start at once (letting it
 * start only once the blocks end was slower). */
template <int GT, int B> __global__ void __launch_bounds__(DEC_THREADS, 2) attention_decode_kernel(const attn_args a) {
    extern __shared__ float sm[];
    __shared__ int is_last;
    pdl_launch_dependents();
    attention_decode_item<GT, B>(a, blockIdx.x, blockIdx.y, gridDim.y, sm, is_last, [] { pdl_wait(); });
}

template <int GT> cudaError_t launch_decode(const attn_args &a, const dw__cuda_tuning &t, cudaStream_t stream) {
    const int group = a.n_heads / a.n_kv, tiles = (group + GT - 1) / GT;
    const size_t smem = capped_smem(sizeof(float) * attn_decode_smem_floats(GT, a.hd), t.attn_blocks_per_sm);
    void (*kernel)(attn_args) = attention_decode_kernel<GT, DEC_KEYS>;
    (void)resident_per_sm((const void *)kernel, DEC_THREADS, smem); /* allows the size */
    return launch_pdl(kernel, with_split_rule(a, t), dim3(a.splits, a.n_kv * tiles, 1), DEC_THREADS, smem, stream);
}

template <int THREADS, bool F32, int VEC, int GT>
cudaError_t launch4(const attn_args &a, const dw__cuda_tuning &t, cudaStream_t stream) {
    const int group = a.n_heads / a.n_kv, tiles = (group + GT - 1) / GT;
    const size_t smem = sizeof(float) * attn_smem_floats(THREADS, GT, a.hd);
    dim3 grid(a.splits, a.n_kv * tiles, a.n_tokens);
    attention_kernel<THREADS, F32, VEC, GT><<<grid, THREADS, smem, stream>>>(with_split_rule(a, t));
    return cudaGetLastError();
}

/* Decode (one query token) on a bf16 cache runs the decode kernel; otherwise the general kernel,
 * in blocks of DECODE_THREADS for decode and ATTN_THREADS for prefill. */
template <bool F32, int VEC, int GT> cudaError_t launch3(const attn_args &a, const dw__cuda_tuning &t, cudaStream_t stream) {
    if constexpr (!F32 && VEC == 8 && GT <= 4)
        if (a.n_tokens == 1) return launch_decode<GT>(a, t, stream);
    if (a.n_tokens == 1) return launch4<DECODE_THREADS, F32, VEC, GT>(a, t, stream);
    return launch4<ATTN_THREADS, F32, VEC, GT>(a, t, stream);
}

template <bool F32, int VEC> cudaError_t launch2(const attn_args &a, const dw__cuda_tuning &t, cudaStream_t stream) {
    int gt, tiles;
    attention_tiles(t, a.n_heads / a.n_kv, a.pos0 + a.n_tokens, a.n_tokens, &gt, &tiles);
    switch (gt) {
    case 1: return launch3<F32, VEC, 1>(a, t, stream);
    case 2: return launch3<F32, VEC, 2>(a, t, stream);
    case 4: return launch3<F32, VEC, 4>(a, t, stream);
    default: return launch3<F32, VEC, 8>(a, t, stream);
    }
}

int vec_for(int hd) {
    if (hd % 8 == 0 && hd / 8 <= 32) return 8;
    if (hd % 4 == 0 && hd / 4 <= 32) return 4;
    if (hd % 2 == 0 && hd / 2 <= 32) return 2;
    return 0;
}

template <bool F32> cudaError_t launch1(const attn_args &a, const dw__cuda_tuning &t, cudaStream_t stream) {
    switch (vec_for(a.hd)) {
    case 8: return launch2<F32, 8>(a, t, stream);
    case 4: return launch2<F32, 4>(a, t, stream);
    case 2: return launch2<F32, 2>(a, t, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace

int attention_supported(int head_dim) { return head_dim > 0 && head_dim <= MAX_HD && vec_for(head_dim) != 0; }

void attention_tiles(const dw__cuda_tuning &t, int group, int len, int n_tokens, int *gt, int *tiles) {
    /* At most 2 query heads per block, 1 for decode at short lengths: a GQA group of 4 in two
     * tiles halves each block's chain (dot products, shuffles, p·v) for twice the blocks, each
     * tile reading its KV head's keys again (from L2 mostly); with one split at short lengths, 1
     * there is faster, and 2 at long ones (docs/PERFORMANCE.md). */
    const int most = n_tokens == 1 && len <= t.attn_short_keys ? 1 : 2;
    *gt = group <= 1 ? 1 : group <= 2 ? 2 : group <= 4 ? 4 : 8;
    while (*gt > most && *gt > 1) *gt /= 2;
    *tiles = (group + *gt - 1) / *gt;
}

int attention_splits(const dw__cuda_tuning &t, int n_kv, int tiles, int n_sm, int len, int n_tokens) {
    /* enough blocks to cover the GPU t.attn_blocks_per_sm times, but at least t.attn_min_keys
     * keys per split */
    int most = (t.attn_blocks_per_sm * n_sm) / (n_kv * tiles * (n_tokens > 0 ? n_tokens : 1));
    if (most < 1) most = 1;
    if (most > 64) most = 64;
    if (len <= 0) return most;
    if (n_tokens == 1 && len <= t.attn_short_keys) return 1;
    int s = (len + t.attn_min_keys - 1) / t.attn_min_keys;
    return s < most ? s : most;
}

cudaError_t launch_attention(const attn_args &a, const dw__cuda_tuning &t, cudaStream_t stream) {
    return a.kv_f32 ? launch1<true>(a, t, stream) : launch1<false>(a, t, stream);
}

} // namespace dwk
