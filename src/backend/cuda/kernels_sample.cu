/* Sampling on the device in the batched step (kernels.h: launch_sample_rows): each sampled row's
 * token drawn by the device sampler's rule (driftwood/pick.h), so a sampled actor's logits never
 * leave the GPU. One block a row:
 *   1. The K-th largest key (dw_pick_key) by radix selection: four passes over the row, one byte
 *      of the key each, from the top, each a 256-bin histogram of the keys that share the bytes
 *      chosen so far (shared-memory counts, lanes with the same bin added once by a warp vote);
 *      after the first pass K drops to the row's count of numbers when it has fewer.
 *   2. The candidates: every key above that threshold, and the lowest-index keys equal to it as
 *      many as are still needed. Each thread counts both kinds in its own contiguous stretch of
 *      the row, a block-wide prefix sum gives every thread its places, so the kept equal keys are
 *      the first ones in index order whatever the thread timing.
 *   3. One thread sorts the K candidates (larger key first, lower index first) and applies
 *      dw_pick_from_sorted, the rule's arithmetic shared with the host.
 * Counts are exact whatever the order of the atomic additions, so the token depends on the row,
 * its settings and u alone: batch invariant. */
#include "backend/cuda/kernels.h"

#include "driftwood/pick.h"

#include <stdint.h>

namespace dwk {
namespace {

constexpr int SAMPLE_THREADS = 512;
constexpr int SAMPLE_WARPS = SAMPLE_THREADS / 32;

/* Exclusive prefix sums over the block of two counts at once (a, b become the sums of the
 * threads before this one); sw holds 2 × SAMPLE_WARPS. */
__device__ void block_exclusive_scan2(unsigned &a, unsigned &b, unsigned *sw) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    unsigned ia = a, ib = b;
    for (int o = 1; o < 32; o <<= 1) {
        const unsigned ta = __shfl_up_sync(0xffffffffu, ia, o), tb = __shfl_up_sync(0xffffffffu, ib, o);
        if (lane >= o) ia += ta, ib += tb;
    }
    if (lane == 31) sw[warp] = ia, sw[SAMPLE_WARPS + warp] = ib;
    __syncthreads();
    if (warp == 0) {
        unsigned wa = lane < SAMPLE_WARPS ? sw[lane] : 0, wb = lane < SAMPLE_WARPS ? sw[SAMPLE_WARPS + lane] : 0;
        for (int o = 1; o < 32; o <<= 1) {
            const unsigned ta = __shfl_up_sync(0xffffffffu, wa, o), tb = __shfl_up_sync(0xffffffffu, wb, o);
            if (lane >= o) wa += ta, wb += tb;
        }
        if (lane < SAMPLE_WARPS) sw[lane] = wa, sw[SAMPLE_WARPS + lane] = wb;
    }
    __syncthreads();
    const unsigned base_a = warp ? sw[warp - 1] : 0, base_b = warp ? sw[SAMPLE_WARPS + warp - 1] : 0;
    a = base_a + ia - a, b = base_b + ib - b;
}

__global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_rows_kernel(const float *x, int width, const dw_pick_row *params, int32_t *out) {
    __shared__ unsigned hist[256];
    __shared__ unsigned scan[2 * SAMPLE_WARPS];
    __shared__ uint32_t s_prefix;
    __shared__ int s_need, s_k;
    __shared__ int32_t cand[DW_PICK_MAX_K];
    __shared__ float cand_v[DW_PICK_MAX_K];

    const dw_pick_row p = params[blockIdx.x];
    if (!(p.s.temperature > 0.0f)) return; /* not a sampled row: left as it is */
    const float *xr = x + (size_t)blockIdx.x * width;
    const int tid = threadIdx.x, lane = tid & 31;

    /* 1. the K-th largest key, a byte at a time */
    uint32_t prefix = 0, mask = 0;
    int need = dw_pick_k(&p.s);
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = tid; i < 256; i += SAMPLE_THREADS) hist[i] = 0;
        __syncthreads();
        for (int base = 0; base < width; base += SAMPLE_THREADS) { /* uniform trip count: the vote needs every lane */
            const int i = base + tid;
            const uint32_t key = i < width ? dw_pick_key(xr[i]) : 0;
            const int counted = key != 0 && (key & mask) == prefix;
            const unsigned bin = counted ? (key >> shift) & 255u : 256u;
            const unsigned peers = __match_any_sync(0xffffffffu, bin);
            if (counted && lane == __ffs(peers) - 1) atomicAdd(&hist[bin], (unsigned)__popc(peers));
        }
        __syncthreads();
        if (tid == 0) {
            if (shift == 24) { /* fewer numbers than K: take them all */
                unsigned total = 0;
                for (int b = 0; b < 256; b++) total += hist[b];
                if ((unsigned)need > total) need = (int)total;
                s_k = need;
            }
            int bin = 255;
            unsigned above = 0;
            if (need > 0)
                for (; bin > 0 && above + hist[bin] < (unsigned)need; bin--) above += hist[bin];
            s_prefix = prefix | ((uint32_t)bin << shift);
            s_need = need - (int)above;
        }
        __syncthreads();
        if (s_k == 0) { /* every logit NaN: token 0, as the argmax */
            if (tid == 0) out[blockIdx.x] = 0;
            return;
        }
        prefix = s_prefix, need = s_need, mask |= 255u << shift;
        __syncthreads(); /* everyone has read s_prefix / s_need before thread 0 writes them again */
    }
    const uint32_t threshold = prefix;
    const int k = s_k, from_equal = need, above_count = k - need;

    /* 2. the candidates: above the threshold, then the first `from_equal` equal to it */
    const int stretch = (width + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
    const int lo = tid * stretch < width ? tid * stretch : width, hi = lo + stretch < width ? lo + stretch : width;
    unsigned n_above = 0, n_equal = 0;
    for (int i = lo; i < hi; i++) {
        const uint32_t key = dw_pick_key(xr[i]);
        n_above += key > threshold;
        n_equal += key == threshold;
    }
    unsigned at_above = n_above, at_equal = n_equal;
    block_exclusive_scan2(at_above, at_equal, scan);
    if (n_above || (n_equal && at_equal < (unsigned)from_equal))
        for (int i = lo; i < hi; i++) {
            const uint32_t key = dw_pick_key(xr[i]);
            if (key > threshold) cand[at_above++] = i;
            else if (key == threshold && at_equal < (unsigned)from_equal) cand[above_count + at_equal++] = i;
        }
    __syncthreads();

    /* 3. in the rule's order, then the draw */
    if (tid == 0) {
        for (int i = 0; i < k; i++) cand_v[i] = xr[cand[i]];
        for (int i = 1; i < k; i++) {
            const int32_t id = cand[i];
            const float v = cand_v[i];
            const uint32_t key = dw_pick_key(v);
            int j = i;
            for (; j > 0; j--) {
                const uint32_t kj = dw_pick_key(cand_v[j - 1]);
                if (kj > key || (kj == key && cand[j - 1] < id)) break;
                cand[j] = cand[j - 1], cand_v[j] = cand_v[j - 1];
            }
            cand[j] = id, cand_v[j] = v;
        }
        out[blockIdx.x] = dw_pick_from_sorted(cand_v, cand, k, &p.s, p.u);
    }
}

} // namespace

cudaError_t launch_sample_rows(const float *x, int n, int width, const dw_pick_row *params, int32_t *out,
                               cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    sample_rows_kernel<<<n, SAMPLE_THREADS, 0, stream>>>(x, width, params, out);
    return cudaGetLastError();
}

} // namespace dwk
