/* The attention's device code (kernels.h: attn_args), run by the general attention kernel
 * (kernels_attention.cu): flash-decoding over the KV cache. An item owns one (key split, KV head, head tile, query
 * token); it walks its keys in tiles of TILE with an online softmax, each key and value row read
 * once for every query head of the tile. Warps first compute scores (a key per `L` lanes, 16-byte
 * loads), then every thread accumulates p·v for a slice of head_dim over a subset of the tile's
 * keys; the last item of a (token, head tile) to finish combines the splits' partials. */
#ifndef DW_BACKEND_CUDA_KERNELS_ATTENTION_CUH
#define DW_BACKEND_CUDA_KERNELS_ATTENTION_CUH

#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels_device.cuh"

#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

namespace dwk {
namespace {

constexpr int ATTN_THREADS = 128;
constexpr int TILE = 64;
constexpr int MAX_HD = 256;


/* Read-only path, or (cg: rows this block wrote itself) an L2 load that sees the block's stores. */
template <typename T> __device__ __forceinline__ T ld(const T *p, bool cg) { return cg ? __ldcg(p) : __ldg(p); }

/* VEC consecutive cache elements (bf16 bits or f32) as floats; p is VEC-aligned. */
template <bool F32, int VEC> __device__ __forceinline__ void load_kv(const void *p, float *f, bool cg) {
    if constexpr (F32) {
        if constexpr (VEC == 8) {
            float4 a = ld((const float4 *)p, cg), b = ld((const float4 *)p + 1, cg);
            f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
        } else if constexpr (VEC == 4) {
            float4 a = ld((const float4 *)p, cg);
            f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w;
        } else {
            float2 a = ld((const float2 *)p, cg);
            f[0] = a.x, f[1] = a.y;
        }
    } else {
        constexpr int W = VEC / 2;
        uint32_t w[W];
        if constexpr (W == 4) {
            uint4 u = ld((const uint4 *)p, cg);
            w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w;
        } else if constexpr (W == 2) {
            uint2 u = ld((const uint2 *)p, cg);
            w[0] = u.x, w[1] = u.y;
        } else {
            w[0] = ld((const unsigned int *)p, cg);
        }
#pragma unroll
        for (int i = 0; i < W; i++) {
            f[2 * i] = __uint_as_float(w[i] << 16);
            f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    }
}

/* Floats of the reduction area for a block of `threads`: [warps][GT][hd], later [GT][64]. */
__host__ __device__ constexpr int red_floats(int threads, int gt, int hd) {
    return threads / 32 * gt * hd > gt * 64 ? threads / 32 * gt * hd : gt * 64;
}

/* Floats of shared memory attention_item needs. */
__host__ __device__ constexpr size_t attn_smem_floats(int threads, int gt, int hd) {
    return (size_t)gt * hd + (size_t)gt * TILE + (size_t)red_floats(threads, gt, hd) + 3 * gt;
}

/* What one item (split, y = KV head × head tile, t = query token) covers: the query heads h0 ..
 * h0 + gc of KV head kvh, the token at pos, keys k0 .. k1 of the nsplit splits in use. A recorded
 * graph is launched with the most splits; the splits this length uses are those the direct path
 * would pick (at least min_keys keys each), and the items past them have nothing to do (split >=
 * nsplit; they leave before the counter, which counts only the splits in use). Reads only the
 * arguments and the graph's step slot, never what the kernel before writes. */
struct attn_span {
    int kvh, h0, gc, pos, k0, k1, nsplit;
};
template <int GT> __device__ __forceinline__ attn_span attn_span_of(const attn_args &a, int split, int y, int t) {
    attn_span s;
    const int group = a.n_heads / a.n_kv, tiles = (group + GT - 1) / GT;
    const int tile = y % tiles;
    s.kvh = y / tiles;
    s.h0 = s.kvh * group + tile * GT;
    s.gc = group - tile * GT < GT ? group - tile * GT : GT;
    s.pos = (a.dslot ? a.dslot[1] : a.pos0) + t;
    const int end = s.pos + 1;
    const int start = a.window > 0 && s.pos - a.window + 1 > 0 ? s.pos - a.window + 1 : 0;
    const int len = end - start;
    s.nsplit = a.dslot && a.n_tokens == 1
                   ? (len <= a.one_split_max ? 1 : min(a.splits, (len + a.min_keys - 1) / a.min_keys))
                   : a.splits;
    const int chunk = (len + s.nsplit - 1) / s.nsplit;
    s.k0 = start + split * chunk;
    s.k1 = s.k0 + chunk < end ? s.k0 + chunk : end;
    return s;
}

/* The fused KV store (a.k_new set): the item whose keys hold pos stores this token's key
 * (rotated when a.inv_freq is set, as rope_kv does) and value rows in the cache, with the block's
 * THREADS threads; a bf16 cache's rows also into copy[0, hd) and copy[hd, 2 hd) when set. Every
 * load comes before the first store (the compiler cannot move a load above a store that may
 * alias it): one L2 round trip on the attention's critical path, not two. */
template <int THREADS>
__device__ __forceinline__ void store_fresh_row(const attn_args &a, int kvh, int pos, unsigned short *copy = nullptr) {
    static_assert(THREADS >= MAX_HD / 2, "a thread rotates at most one pair of the key");
    constexpr int VPT = (MAX_HD + THREADS - 1) / THREADS; /* value elements per thread, at most */
    const int hd = a.hd, half = hd / 2, tid = threadIdx.x;
    const size_t dst = ((size_t)kvh * a.capacity + pos) * hd;
    const float *kr = a.k_new + (size_t)kvh * hd, *vr = a.v_new + (size_t)kvh * hd;
    if (a.kv_f32) copy = nullptr;
    float lo = 0.0f, hi = 0.0f, v[VPT];
    if (tid < half) lo = __ldcg(kr + tid), hi = __ldcg(kr + tid + half);
#pragma unroll
    for (int u = 0; u < VPT; u++) v[u] = tid + u * THREADS < hd ? __ldcg(vr + tid + u * THREADS) : 0.0f;
    if (tid < half) {
        if (a.inv_freq) rope_pair(lo, hi, pos, a.inv_freq[tid]);
        store_kv(a.k, a.kv_f32, dst + tid, lo);
        store_kv(a.k, a.kv_f32, dst + tid + half, hi);
        if (copy) copy[tid] = bf16_bits(lo), copy[tid + half] = bf16_bits(hi);
    }
#pragma unroll
    for (int u = 0; u < VPT; u++) {
        const int d = tid + u * THREADS;
        if (d >= hd) break;
        store_kv(a.v, a.kv_f32, dst + d, v[u]);
        if (copy) copy[hd + d] = bf16_bits(v[u]);
    }
}

/* After an item of a split step wrote its partial sums and (max, sum) pairs: the last item of
 * its (token, KV head, head tile) to finish combines the splits into a.out. wsp: GT × 64 floats
 * of shared scratch, is_last one shared int. */
template <int THREADS, int GT>
__device__ __forceinline__ void combine_splits(const attn_args &a, int t, int y, int ny, int h0, int gc, int nsplit,
                                               float *wsp, int &is_last) {
    constexpr int WARPS = THREADS / 32;
    const int hd = a.hd, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    __threadfence();
    __syncthreads();
    unsigned *counter = a.counters + (size_t)t * ny + y;
    if (tid == 0) is_last = atomicAdd(counter, 1u) == (unsigned)nsplit - 1;
    __syncthreads();
    if (!is_last) return;
    __threadfence();
    /* Warp g first turns head g's (max, sum) pairs into one weight per split (lanes over
     * splits, no serial chain of loads), then every thread sums its outputs over the splits
     * with independent loads. */
    for (int g = warp; g < gc; g += WARPS) {
        const size_t row = (size_t)t * a.n_heads + h0 + g;
        const float *ml = a.part_ml + row * a.splits * 2;
        float M = -INFINITY;
        for (int s = lane; s < nsplit; s += 32) M = fmaxf(M, __ldcg(ml + 2 * s));
#pragma unroll
        for (int o = 16; o; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
        float den = 0.0f;
        for (int s = lane; s < nsplit; s += 32) {
            const float w = expf(__ldcg(ml + 2 * s) - M);
            wsp[g * 64 + s] = w;
            den += w * __ldcg(ml + 2 * s + 1);
        }
#pragma unroll
        for (int o = 16; o; o >>= 1) den += __shfl_xor_sync(0xffffffffu, den, o);
        __syncwarp();
        for (int s = lane; s < nsplit; s += 32) wsp[g * 64 + s] *= 1.0f / den;
    }
    __syncthreads();
    for (int i = tid; i < gc * hd; i += THREADS) {
        const int g = i / hd, d = i % hd;
        const size_t row = (size_t)t * a.n_heads + h0 + g;
        const float *pp = a.part + row * a.splits * hd + d;
        float num = 0.0f;
#pragma unroll 8
        for (int s = 0; s < nsplit; s++) num += wsp[g * 64 + s] * __ldcg(pp + (size_t)s * hd);
        a.out[row * hd + d] = num;
    }
    if (tid == 0) *counter = 0;
}

/* One block of THREADS threads computes the item (split, y = KV head × head tile, t = query
 * token) of a grid of ny items along y; sm: attn_smem_floats of shared memory, is_last one
 * shared int. q, k_new and v_new are read through L2. */
template <int THREADS, bool F32, int VEC, int GT>
__device__ __forceinline__ void attention_item(const attn_args &a, int split, int y, int t, int ny, float *sm,
                                               int &is_last) {
    constexpr int WARPS = THREADS / 32;
    const int hd = a.hd, NG = hd / VEC;
    int L = 1;
    while (L < NG) L <<= 1; /* lanes per key row (power of two, <= 32) */
    const attn_span sp = attn_span_of<GT>(a, split, y, t);
    if (split >= sp.nsplit) return;
    const int kvh = sp.kvh, h0 = sp.h0, gc = sp.gc, pos = sp.pos, k0 = sp.k0, k1 = sp.k1, nsplit = sp.nsplit;

    float *qs = sm;                      /* [GT][hd] */
    float *ss = qs + GT * hd;            /* [GT][TILE] scores, then probabilities */
    float *red = ss + GT * TILE;         /* [WARPS][GT][hd], later [GT][64] combine weights */
    float *m_s = red + red_floats(THREADS, GT, hd); /* [GT] running max */
    float *l_s = m_s + GT;               /* [GT] running sum */
    float *al_s = l_s + GT;              /* [GT] rescale of this tile */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int half = hd / 2;
    for (int i = tid; i < GT * hd; i += THREADS) {
        const int g = i / hd, d = i % hd;
        float v = 0.0f;
        if (g < gc) {
            const float *qr = a.q + ((size_t)t * a.n_heads + h0 + g) * hd;
            if (a.inv_freq) { /* RoPE as rope_kv does it */
                const int dd = d < half ? d : d - half;
                float sn, cs;
                sincosf((float)pos * a.inv_freq[dd], &sn, &cs);
                const float lo = __ldcg(qr + dd), hi = __ldcg(qr + dd + half);
                v = d < half ? lo * cs - hi * sn : hi * cs + lo * sn;
            } else {
                v = __ldcg(qr + d);
            }
        }
        qs[i] = v;
    }
    /* the fused KV store: the block whose keys hold pos writes that cache row first */
    const bool fresh = a.k_new && pos >= k0 && pos < k1;
    if (fresh) {
        store_fresh_row<THREADS>(a, kvh, pos);
        __threadfence_block();
    }
    if (tid < GT) {
        m_s[tid] = -INFINITY;
        l_s[tid] = 0.0f;
        al_s[tid] = 1.0f;
    }
    const size_t esz = F32 ? 4 : 2;
    const char *kb = (const char *)a.k + (size_t)kvh * a.capacity * hd * esz;
    const char *vb = (const char *)a.v + (size_t)kvh * a.capacity * hd * esz;
    const int li = lane & (L - 1), ks = lane / L, KPW = 32 / L; /* score phase */
    const int kl = tid / L, KL = THREADS / L;                   /* value phase */
    float acc[GT][VEC];
#pragma unroll
    for (int g = 0; g < GT; g++)
#pragma unroll
        for (int e = 0; e < VEC; e++) acc[g][e] = 0.0f;
    __syncthreads();

    for (int t0 = k0; t0 < k1; t0 += TILE) {
        const int nt = k1 - t0 < TILE ? k1 - t0 : TILE;
        /* scores: key j of the tile by the L lanes of slot ks */
#pragma unroll 4
        for (int base = warp * KPW; base < nt; base += WARPS * KPW) {
            const int j = base + ks;
            float dot[GT];
#pragma unroll
            for (int g = 0; g < GT; g++) dot[g] = 0.0f;
            if (j < nt && li < NG) {
                float kf[VEC];
                load_kv<F32, VEC>(kb + ((size_t)(t0 + j) * hd + li * VEC) * esz, kf, fresh);
#pragma unroll
                for (int g = 0; g < GT; g++)
#pragma unroll
                    for (int e = 0; e < VEC; e++) dot[g] = fmaf(qs[g * hd + li * VEC + e], kf[e], dot[g]);
            }
            for (int o = L >> 1; o; o >>= 1)
#pragma unroll
                for (int g = 0; g < GT; g++) dot[g] += __shfl_xor_sync(0xffffffffu, dot[g], o);
            if (li == 0 && j < nt)
#pragma unroll
                for (int g = 0; g < GT; g++) ss[g * TILE + j] = dot[g] * a.scale;
        }
        __syncthreads();
        /* online softmax: warp w updates heads w, w + WARPS, ... */
        for (int g = warp; g < gc; g += WARPS) {
            float mx = -INFINITY;
            for (int i = lane; i < nt; i += 32) mx = fmaxf(mx, ss[g * TILE + i]);
#pragma unroll
            for (int o = 16; o; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            const float m_old = m_s[g], m_new = fmaxf(m_old, mx);
            float sum = 0.0f;
            for (int i = lane; i < nt; i += 32) {
                float p = expf(ss[g * TILE + i] - m_new);
                ss[g * TILE + i] = p;
                sum += p;
            }
#pragma unroll
            for (int o = 16; o; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            if (lane == 0) {
                const float al = expf(m_old - m_new); /* 0 for the first tile */
                al_s[g] = al;
                l_s[g] = l_s[g] * al + sum;
                m_s[g] = m_new;
            }
        }
        __syncthreads();
        /* values: slice li of head_dim, keys kl, kl + KL, ... */
        if (li < NG) {
#pragma unroll
            for (int g = 0; g < GT; g++) {
                const float al = g < gc ? al_s[g] : 0.0f;
#pragma unroll
                for (int e = 0; e < VEC; e++) acc[g][e] *= al;
            }
#pragma unroll 4
            for (int j = kl; j < nt; j += KL) {
                float vf[VEC];
                load_kv<F32, VEC>(vb + ((size_t)(t0 + j) * hd + li * VEC) * esz, vf, fresh);
#pragma unroll
                for (int g = 0; g < GT; g++) {
                    const float p = g < gc ? ss[g * TILE + j] : 0.0f;
#pragma unroll
                    for (int e = 0; e < VEC; e++) acc[g][e] = fmaf(p, vf[e], acc[g][e]);
                }
            }
        }
        __syncthreads();
    }

    /* sum the value accumulators over the threads of one slice: lanes L apart in a warp, then warps */
    for (int o = L; o < 32; o <<= 1)
#pragma unroll
        for (int g = 0; g < GT; g++)
#pragma unroll
            for (int e = 0; e < VEC; e++) acc[g][e] += __shfl_xor_sync(0xffffffffu, acc[g][e], o);
    if (lane < L && li < NG)
#pragma unroll
        for (int g = 0; g < GT; g++)
#pragma unroll
            for (int e = 0; e < VEC; e++) red[(warp * GT + g) * hd + li * VEC + e] = acc[g][e];
    __syncthreads();
    for (int i = tid; i < gc * hd; i += THREADS) {
        const int g = i / hd, d = i % hd;
        float v = 0.0f;
#pragma unroll
        for (int w = 0; w < WARPS; w++) v += red[(w * GT + g) * hd + d];
        const size_t row = (size_t)t * a.n_heads + h0 + g;
        if (nsplit == 1) a.out[row * hd + d] = v * (1.0f / l_s[g]);
        else a.part[(row * a.splits + split) * hd + d] = v;
    }
    if (nsplit == 1) return;
    if (tid < gc) {
        const size_t row = (size_t)t * a.n_heads + h0 + tid;
        a.part_ml[(row * a.splits + split) * 2] = m_s[tid];
        a.part_ml[(row * a.splits + split) * 2 + 1] = l_s[tid];
    }
    combine_splits<THREADS, GT>(a, t, y, ny, h0, gc, nsplit, red, is_last); /* red is free now */
}

} // namespace
} // namespace dwk

#endif
