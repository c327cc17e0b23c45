/* The decode attention's device code (one query token, bf16 KV cache, rows of a multiple of 8
 * elements; kernels.h: attn_args), used by the standalone kernel for decode steps.
 *
 * Unlike attention_item (kernels_attention.cuh, prefill and the other shapes), a round covers
 * up to DEC_B keys per group of L lanes at once (lane li holds 8 elements of their K and V rows
 * and of the tile's query heads, in registers): scores, one block-wide max per head (shuffles,
 * then one barrier), probabilities against that max, p·v. The block shares its running max, so
 * nothing is rescaled when the sums of the lane groups and warps are added at the end (in
 * log2 units: exp2f is one instruction). The item's first keys and q's rotation are loaded before
 * wait(), i.e. while the q/k/v matvec before it finishes (the rows before this step's are written
 * by earlier steps); this step's own row is read only once this block has stored it. */
#ifndef DW_BACKEND_CUDA_KERNELS_ATTENTION_DECODE_CUH
#define DW_BACKEND_CUDA_KERNELS_ATTENTION_DECODE_CUH

#include "backend/cuda/kernels_attention.cuh"

namespace dwk {
namespace {

constexpr int DEC_THREADS = 256;
constexpr int DEC_WARPS = DEC_THREADS / 32;

/* Floats of shared memory attention_decode_item needs: [warps][GT][hd] sums, [warps][GT] sums
 * of p, [2][warps][GT] round maxima, [GT][hd] query heads, this step's K and V rows (bf16, hd
 * floats); GT × 64 split weights fit in the first. */
__host__ __device__ constexpr size_t attn_decode_smem_floats(int gt, int hd) {
    return (size_t)DEC_WARPS * gt * hd + 3 * DEC_WARPS * gt + (size_t)gt * hd + hd;
}

/* 8 bf16 of a cache row as floats. */
__device__ __forceinline__ void bf16x8(const uint4 &u, float *f) {
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[2 * i] = __uint_as_float(w[i] << 16);
        f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}

__device__ __forceinline__ uint4 ld_row16(const void *p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

/* One block of DEC_THREADS threads computes the item (split, y = KV head × head tile) of a grid
 * of ny items along y, DEC_B keys per lane group and round; sm: attn_decode_smem_floats, is_last
 * one shared int. wait() runs before anything the kernel before writes (q, k_new, v_new) is
 * read. */
template <int GT, int DEC_B, typename Wait>
__device__ __forceinline__ void attention_decode_item(const attn_args &a, int split, int y, int ny, float *sm,
                                                      int &is_last, Wait wait) {
    const attn_span sp = attn_span_of<GT>(a, split, y, 0);
    if (split >= sp.nsplit) return;
    const int hd = a.hd, NG = hd / 8, half = hd / 2;
    int L = 1;
    while (L < NG) L <<= 1; /* lanes per key (power of two, <= 32) */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int li = lane & (L - 1), NS = DEC_WARPS * (32 / L); /* key slots of the block */
    const int slot = warp * (32 / L) + lane / L;
    const bool has = li < NG; /* the lane holds 8 elements of the row */
    const size_t row = (size_t)hd * 2;
    const char *kb = (const char *)a.k + (size_t)sp.kvh * a.capacity * row + li * 16;
    const char *vb = (const char *)a.v + (size_t)sp.kvh * a.capacity * row + li * 16;
    const int fresh = a.k_new ? sp.pos : -1; /* this step's key: not in the cache before wait() */

    uint4 kc[DEC_B], vc[DEC_B];
    auto load = [&](int base) {
#pragma unroll
        for (int b = 0; b < DEC_B; b++) {
            const int j = base + b * NS + slot;
            if (has && j < sp.k1 && j != fresh) {
                kc[b] = ld_row16(kb + (size_t)j * row);
                vc[b] = ld_row16(vb + (size_t)j * row);
            } else { /* no key (or this step's, filled in by load_fresh): zeros, never NaN */
                kc[b] = vc[b] = make_uint4(0u, 0u, 0u, 0u);
            }
        }
    };
    float *red = sm;                                 /* [warps][GT][hd] */
    float *lsum = red + (size_t)DEC_WARPS * GT * hd; /* [warps][GT] */
    float *rmax = lsum + DEC_WARPS * GT;             /* [2][warps][GT] */
    float *qs = rmax + 2 * DEC_WARPS * GT;           /* [GT][hd] */
    unsigned short *fresh_row = (unsigned short *)(qs + GT * hd); /* [K, V][hd] bf16, 16-byte aligned */
    /* this step's key and value rows, as this block stored them after wait() (only the block
     * whose keys hold it: a slot past k1 of another block may reach the same index) */
    auto load_fresh = [&](int base) {
#pragma unroll
        for (int b = 0; b < DEC_B; b++) {
            if (has && base + b * NS + slot == fresh && fresh < sp.k1) {
                kc[b] = *(const uint4 *)(fresh_row + li * 8);
                vc[b] = *(const uint4 *)(fresh_row + hd + li * 8);
            }
        }
    };

    load(sp.k0);
    /* the rotation of this thread's elements of q, also before wait(): when hd divides the block
     * they all sit at d = tid % hd */
    const bool one_d = DEC_THREADS % hd == 0;
    float cs0 = 1.0f, sn0 = 0.0f;
    if (a.inv_freq && one_d) {
        const int d = tid % hd;
        sincosf((float)sp.pos * a.inv_freq[d < half ? d : d - half], &sn0, &cs0);
    }
    wait();
    /* q's elements of this thread, asked for before this step's K/V row is stored (the stores
     * would otherwise keep the compiler from issuing them first: one L2 round trip, not two) */
    constexpr int QPT = (GT * MAX_HD + DEC_THREADS - 1) / DEC_THREADS; /* q elements per thread at most */
    float qlo[QPT], qhi[QPT];
#pragma unroll
    for (int k = 0; k < QPT; k++) {
        const int i = tid + k * DEC_THREADS, g = i / hd, d = i % hd, dd = d < half ? d : d - half;
        qlo[k] = qhi[k] = 0.0f;
        if (i < GT * hd && g < sp.gc) {
            const float *qr = a.q + (size_t)(sp.h0 + g) * hd;
            if (a.inv_freq) qlo[k] = __ldcg(qr + dd), qhi[k] = __ldcg(qr + dd + half);
            else qlo[k] = __ldcg(qr + d);
        }
    }
    if (fresh >= sp.k0 && fresh < sp.k1) /* the same for the whole block; the barrier after q's
                                          * staging below makes fresh_row whole for load_fresh */
        store_fresh_row<DEC_THREADS>(a, sp.kvh, sp.pos, fresh_row);
    /* the tile's query heads, rotated as rope_kv would, scaled so that scores come out in log2 units */
#pragma unroll
    for (int k = 0; k < QPT; k++) {
        const int i = tid + k * DEC_THREADS, g = i / hd, d = i % hd, dd = d < half ? d : d - half;
        if (i >= GT * hd) break;
        float v = qlo[k];
        if (a.inv_freq && g < sp.gc) {
            float sn = sn0, cs = cs0;
            if (!one_d) sincosf((float)sp.pos * a.inv_freq[dd], &sn, &cs);
            v = d < half ? qlo[k] * cs - qhi[k] * sn : qhi[k] * cs + qlo[k] * sn;
        }
        qs[i] = v * (a.scale * 1.44269504088896341f);
    }
    __syncthreads();

    /* the block's running max per head (the same in every thread), this lane group's sum of p
     * and p·v over its keys */
    float M[GT], l[GT], acc[GT][8];
#pragma unroll
    for (int g = 0; g < GT; g++) {
        M[g] = -1e30f, l[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++) acc[g][e] = 0.0f;
    }
    int parity = 0;
    for (int base = sp.k0; base < sp.k1; base += DEC_B * NS, parity ^= 1) {
        if (base != sp.k0) load(base);
        load_fresh(base);
        float s[DEC_B][GT];
#pragma unroll
        for (int g = 0; g < GT; g++) {
            float q[8];
            const float *qg = qs + g * hd + (has ? li * 8 : 0);
            const float4 q0 = *(const float4 *)qg, q1 = *(const float4 *)(qg + 4);
            q[0] = q0.x, q[1] = q0.y, q[2] = q0.z, q[3] = q0.w, q[4] = q1.x, q[5] = q1.y, q[6] = q1.z, q[7] = q1.w;
#pragma unroll
            for (int b = 0; b < DEC_B; b++) {
                float kf[8];
                bf16x8(kc[b], kf);
                float d = 0.0f;
#pragma unroll
                for (int e = 0; e < 8; e++) d = fmaf(q[e], kf[e], d);
                s[b][g] = has ? d : 0.0f;
            }
        }
        for (int o = L >> 1; o; o >>= 1)
#pragma unroll
            for (int b = 0; b < DEC_B; b++)
#pragma unroll
                for (int g = 0; g < GT; g++) s[b][g] += __shfl_xor_sync(0xffffffffu, s[b][g], o);
        /* the round's max per head: this group's keys, the warp's groups, then the warps */
        float mx[GT];
#pragma unroll
        for (int g = 0; g < GT; g++) {
            mx[g] = -1e30f;
#pragma unroll
            for (int b = 0; b < DEC_B; b++)
                if (base + b * NS + slot < sp.k1) mx[g] = fmaxf(mx[g], s[b][g]);
        }
        for (int o = L; o < 32; o <<= 1)
#pragma unroll
            for (int g = 0; g < GT; g++) mx[g] = fmaxf(mx[g], __shfl_xor_sync(0xffffffffu, mx[g], o));
        if (lane == 0)
#pragma unroll
            for (int g = 0; g < GT; g++) rmax[(parity * DEC_WARPS + warp) * GT + g] = mx[g];
        __syncthreads(); /* (the buffer written next round was last read before this barrier) */
#pragma unroll
        for (int g = 0; g < GT; g++) {
            float nm = M[g];
#pragma unroll
            for (int w = 0; w < DEC_WARPS; w++) nm = fmaxf(nm, rmax[(parity * DEC_WARPS + w) * GT + g]);
            if (nm > M[g]) { /* the same in every thread */
                const float sc = exp2f(M[g] - nm);
                l[g] *= sc;
#pragma unroll
                for (int e = 0; e < 8; e++) acc[g][e] *= sc;
                M[g] = nm;
            }
#pragma unroll
            for (int b = 0; b < DEC_B; b++) {
                const float p = base + b * NS + slot < sp.k1 ? exp2f(s[b][g] - M[g]) : 0.0f;
                s[b][g] = p;
                l[g] += p;
            }
        }
#pragma unroll
        for (int b = 0; b < DEC_B; b++) {
            float vf[8];
            bf16x8(vc[b], vf);
#pragma unroll
            for (int g = 0; g < GT; g++)
#pragma unroll
                for (int e = 0; e < 8; e++) acc[g][e] = fmaf(s[b][g], vf[e], acc[g][e]);
        }
    }

    /* add up the lane groups of a warp, then the warps */
    for (int o = L; o < 32; o <<= 1)
#pragma unroll
        for (int g = 0; g < GT; g++) {
            l[g] += __shfl_xor_sync(0xffffffffu, l[g], o);
#pragma unroll
            for (int e = 0; e < 8; e++) acc[g][e] += __shfl_xor_sync(0xffffffffu, acc[g][e], o);
        }
    if (lane < L && has)
#pragma unroll
        for (int g = 0; g < GT; g++)
#pragma unroll
            for (int e = 0; e < 8; e++) red[(warp * GT + g) * hd + li * 8 + e] = acc[g][e];
    if (lane == 0)
#pragma unroll
        for (int g = 0; g < GT; g++) lsum[warp * GT + g] = l[g];
    __syncthreads();
    for (int i = tid; i < sp.gc * hd; i += DEC_THREADS) {
        const int g = i / hd, d = i % hd;
        float num = 0.0f, den = 0.0f;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) num += red[(w * GT + g) * hd + d], den += lsum[w * GT + g];
        const size_t r = (size_t)sp.h0 + g;
        if (sp.nsplit == 1) {
            a.out[r * hd + d] = num / den;
        } else {
            a.part[(r * a.splits + split) * hd + d] = num;
            if (d == 0) { /* (max, sum) as attention_item keeps them: the max in natural units */
                a.part_ml[(r * a.splits + split) * 2] = M[g] * 0.693147180559945309f;
                a.part_ml[(r * a.splits + split) * 2 + 1] = den;
            }
        }
    }
    if (sp.nsplit == 1) return;
    combine_splits<DEC_THREADS, GT>(a, 0, y, ny, sp.h0, sp.gc, sp.nsplit, red, is_last);
}

} // namespace
} // namespace dwk

#endif
