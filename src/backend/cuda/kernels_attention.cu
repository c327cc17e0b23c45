/* The attention kernel (compute_cuda_kernels.h: attn_args; the device code is in
 * kernels_attention.cuh), its launch (splits, head tiles) and its tuning knobs. */
#include "backend/cuda/compute_cuda_kernels.h"
#include "backend/cuda/kernels_attention_decode.cuh"

#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

namespace dwk {
namespace {

/* Tuning knobs, read once: DW_CUDA_ATTN_MIN_KEYS=N keys per split at least (default 64: with the
 * decode kernel fewer, longer splits pay at short contexts; H100 1B bf16 A/B/A/B 864 vs 858 tok/s
 * at 16 + 256, 4-bit 1515 vs 1498, 128 no better; prefill steps use one split anyway),
 * DW_CUDA_ATTN_BPS=N blocks per SM to aim for in decode (default 2; 1 and 3 slower at 4096). */
int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && atoi(v) > 0 ? atoi(v) : dflt;
}
int min_keys() {
    static int n = -1;
    if (n < 0) n = env_int("DW_CUDA_ATTN_MIN_KEYS", 64);
    return n;
}
int blocks_per_sm() {
    static int n = -1;
    if (n < 0) n = env_int("DW_CUDA_ATTN_BPS", 2);
    return n;
}

/* Decode lengths up to this many keys use one split per block: no partials, counter or combine
 * (DW_CUDA_ATTN_ONE=N; 0 = the min_keys rule at every length). By default the short lengths
 * (attention_short_keys). H100, 1B, greedy on the device, one call: bf16 958 -> 967 tok/s with
 * one split up to 300 keys, 4-bit 1810 -> 1837; at 4096 no change. */
int one_split_max() {
    static int n = -2;
    if (n == -2) {
        const char *v = getenv("DW_CUDA_ATTN_ONE");
        n = v ? (atoi(v) > 0 ? atoi(v) : 0) : attention_short_keys();
    }
    return n;
}

/* Dynamic shared memory that keeps a block of `smem` bytes to at most blocks_per_sm() blocks on an
 * SM. Launched with PDL, the blocks start while the kernel before drains; the SMs it frees first
 * would otherwise take three blocks each and others none, and at long contexts, where every block
 * has keys to read, those SMs finish last (H100, 1B bf16 at 4096 in context: 743 tok/s uncapped,
 * 766 capped, with the kernel before this one). The decode kernel's 128 registers per thread
 * allow only two blocks anyway; the cap keeps it so if that changes. DW_CUDA_ATTN_CAP=0 leaves
 * the size as it is. */
size_t capped_smem(size_t smem) {
    static int per_sm = -1, on = -1;
    if (per_sm < 0) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) != cudaSuccess)
            per_sm = 0, (void)cudaGetLastError();
        const char *v = getenv("DW_CUDA_ATTN_CAP");
        on = !(v && *v == '0');
    }
    const size_t reserved = 1024; /* per block, by the driver */
    const size_t need = (size_t)per_sm / (blocks_per_sm() + 1) + 1 - reserved;
    return on && per_sm > 0 && smem < need ? need : smem;
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
 * first keys while the q/k/v matvec before it finishes, and wait for it only then. H100, greedy on
 * the device, one call against attention_kernel: 1B bf16 858 vs 853 tok/s at 16 + 256, 810 vs 759
 * at 4096 in context; 4-bit 1499 vs 1463, 1364 vs 1272; 8B 164.9 vs 163.1. */
template <int GT, int B> __global__ void __launch_bounds__(DEC_THREADS, 2) attention_decode_kernel(const attn_args a) {
    extern __shared__ float sm[];
    __shared__ int is_last;
    pdl_launch_dependents(); /* (only once the blocks end: slower, 1B bf16 958 -> 948 tok/s, 4-bit 1809 -> 1761) */
    attention_decode_item<GT, B>(a, blockIdx.x, blockIdx.y, gridDim.y, sm, is_last, [] { pdl_wait(); });
}

/* DW_CUDA_ATTN_DECODE=0: decode runs attention_kernel too (tuning, comparison). */
bool decode_kernel_enabled() {
    static int on = -1;
    if (on < 0) {
        const char *v = getenv("DW_CUDA_ATTN_DECODE");
        on = !(v && *v == '0');
    }
    return on != 0;
}

template <int GT> cudaError_t launch_decode(const attn_args &a, cudaStream_t stream) {
    const int group = a.n_heads / a.n_kv, tiles = (group + GT - 1) / GT;
    const size_t smem = capped_smem(sizeof(float) * attn_decode_smem_floats(GT, a.hd));
    /* keys per lane group and round: 4 (rounds of 128 keys for 64-element rows, of 64 for 128), or
     * 2 with DW_CUDA_ATTN_DEC_B=2 (tuning). H100, 1B, one call: with one split at short lengths 4
     * against 2, bf16 977 -> 986 tok/s, 4-bit 1860 -> 1890, at 4096 890 -> 897 (when splits held
     * at least 64 keys at every length, 2 was better for 64-element rows: 867 vs 859); 8: no
     * better at short lengths, 3 % slower at 4096. */
    static int keys = -1;
    if (keys < 0) keys = env_int("DW_CUDA_ATTN_DEC_B", 4);
    void (*kernel)(attn_args) = keys == 2 ? attention_decode_kernel<GT, 2> : attention_decode_kernel<GT, 4>;
    (void)resident_per_sm((const void *)kernel, DEC_THREADS, smem); /* allows the size */
    attn_args b = a;
    b.one_split_max = one_split_max();
    b.min_keys = min_keys();
    return launch_pdl(kernel, b, dim3(a.splits, a.n_kv * tiles, 1), DEC_THREADS, smem, stream);
}

template <int THREADS, bool F32, int VEC, int GT> cudaError_t launch4(const attn_args &a, cudaStream_t stream) {
    const int group = a.n_heads / a.n_kv, tiles = (group + GT - 1) / GT;
    const size_t smem = sizeof(float) * attn_smem_floats(THREADS, GT, a.hd);
    dim3 grid(a.splits, a.n_kv * tiles, a.n_tokens);
    attn_args b = a;
    b.one_split_max = one_split_max();
    b.min_keys = min_keys();
    attention_kernel<THREADS, F32, VEC, GT><<<grid, THREADS, smem, stream>>>(b);
    return cudaGetLastError();
}

/* Decode (one query token) runs blocks of 256 threads, prefill of ATTN_THREADS (128): with 256 a
 * split's scores and values take half the rounds (H100, 1B, one run A/B/A/B: bf16 decode 808 ->
 * 829-830 tok/s, at 4096 in context 647 -> 693; 4-bit 1373 -> 1444-1462), while prefill was 6 %
 * slower. DW_CUDA_ATTN_THREADS=128 keeps decode at 128 (tuning). */
template <bool F32, int VEC, int GT> cudaError_t launch3(const attn_args &a, cudaStream_t stream) {
    if constexpr (!F32 && VEC == 8 && GT <= 4)
        if (a.n_tokens == 1 && decode_kernel_enabled()) return launch_decode<GT>(a, stream);
    static int threads = -1;
    if (threads < 0) threads = env_int("DW_CUDA_ATTN_THREADS", 256);
    if (a.n_tokens == 1 && threads == 256) return launch4<256, F32, VEC, GT>(a, stream);
    return launch4<ATTN_THREADS, F32, VEC, GT>(a, stream);
}

template <bool F32, int VEC> cudaError_t launch2(const attn_args &a, cudaStream_t stream) {
    int gt, tiles;
    attention_tiles(a.n_heads / a.n_kv, a.pos0 + a.n_tokens, a.n_tokens, &gt, &tiles);
    switch (gt) {
    case 1: return launch3<F32, VEC, 1>(a, stream);
    case 2: return launch3<F32, VEC, 2>(a, stream);
    case 4: return launch3<F32, VEC, 4>(a, stream);
    default: return launch3<F32, VEC, 8>(a, stream);
    }
}

int vec_for(int hd) {
    if (hd % 8 == 0 && hd / 8 <= 32) return 8;
    if (hd % 4 == 0 && hd / 4 <= 32) return 4;
    if (hd % 2 == 0 && hd / 2 <= 32) return 2;
    return 0;
}

template <bool F32> cudaError_t launch1(const attn_args &a, cudaStream_t stream) {
    switch (vec_for(a.hd)) {
    case 8: return launch2<F32, 8>(a, stream);
    case 4: return launch2<F32, 4>(a, stream);
    case 2: return launch2<F32, 2>(a, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace

int attention_supported(int head_dim) { return head_dim > 0 && head_dim <= MAX_HD && vec_for(head_dim) != 0; }

int attention_short_keys() {
    static int n = -1;
    if (n < 0) n = env_int("DW_CUDA_ATTN_SHORT", 320);
    return n;
}

void attention_tiles(int group, int len, int n_tokens, int *gt, int *tiles) {
    /* At most 2 query heads per block, 1 for decode at short lengths (DW_CUDA_ATTN_GT=N sets N
     * everywhere; tuning): a GQA group of 4 in two tiles halves each block's chain (dot products,
     * shuffles, p·v) for twice the blocks, each tile reading its KV head's keys again (from L2
     * mostly). H100, greedy on the device, one call A/B/A/B: 1B bf16 931.8 / 929.6 -> 938.8 tok/s
     * with 2, 943.0 with 1 (at 4096: 874.6 -> 875.7, 851.2 with 1); 8B 179.6 / 179.4 -> 181.5,
     * 182.6 with 1 (at 4096 171.9 -> 173.3, 171.7). With one split at short lengths (one_split_max),
     * 1 there: 1B bf16 967 -> 977, 4-bit 1837 -> 1879 (at 4096, 1 costs 3 %: 891 -> 864). */
    static int forced = -1;
    if (forced < 0) forced = env_int("DW_CUDA_ATTN_GT", 0);
    const int most = forced ? forced : n_tokens == 1 && len <= attention_short_keys() ? 1 : 2;
    *gt = group <= 1 ? 1 : group <= 2 ? 2 : group <= 4 ? 4 : 8;
    while (*gt > most && *gt > 1) *gt /= 2;
    *tiles = (group + *gt - 1) / *gt;
}

int attention_splits(int n_kv, int tiles, int n_sm, int len, int n_tokens) {
    /* enough blocks to cover the GPU twice (DW_CUDA_ATTN_BPS), but at least min_keys keys per split */
    int most = (blocks_per_sm() * n_sm) / (n_kv * tiles * (n_tokens > 0 ? n_tokens : 1));
    if (most < 1) most = 1;
    if (most > 64) most = 64;
    if (len <= 0) return most;
    if (n_tokens == 1 && len <= one_split_max()) return 1;
    int s = (len + min_keys() - 1) / min_keys();
    return s < most ? s : most;
}

int attention_fused_gt(attn_args &a) {
    a.one_split_max = one_split_max();
    a.min_keys = min_keys();
    if (a.kv_f32 || !attention_supported(a.hd) || vec_for(a.hd) != 8 || a.n_heads % a.n_kv) return 0;
    int gt, tiles;
    attention_tiles(a.n_heads / a.n_kv, a.pos0 + a.n_tokens, a.n_tokens, &gt, &tiles);
    return gt;
}

cudaError_t launch_attention(const attn_args &a, cudaStream_t stream) {
    return a.kv_f32 ? launch1<true>(a, stream) : launch1<false>(a, stream);
}

} // namespace dwk
