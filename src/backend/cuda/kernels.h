/* Launchers of the CUDA backend's kernels (kernels_*.cu), called by its ops (cuda_ops.cu,
 * cuda_fusion.cu, cuda_graphs.cu, cuda_memory.cu). Each queues its kernel(s) on `stream` and
 * returns the launch status (cudaGetLastError after the launch). Activations are f32 row-major;
 * weights bf16/f16/f32 row-major [rows × K]; the KV cache is [n_kv, capacity, head_dim] per layer
 * in bf16 or f32 (src/backend/backend.h).
 *
 * "dslot", where a launcher takes one, is the device-side step of a recorded decode graph:
 * dslot[0] = token id, dslot[1] = position. When non-NULL the kernel reads the id/position
 * there instead of the value passed by argument, so one recorded graph serves every step. */
#ifndef DW_BACKEND_CUDA_COMPUTE_CUDA_KERNELS_H
#define DW_BACKEND_CUDA_COMPUTE_CUDA_KERNELS_H

#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/cuda/cuda_tuning.h"
#include "driftwood/pick.h"

namespace dwk {

/* Element type of weights and caches (matches nothing outside this folder). */
enum wtype { W_F32 = 0, W_F16 = 1, W_BF16 = 2 };

/* ---- matrix-vector product (decode, n == 1): kernels_matvec.cu --------------------------
 * out[j][r] = Σ_k w[j][r, k] · x'[k] (+ bias[j][r]) for up to 4 matrices sharing x and K, where
 * x' = x, or with norm_w set x' = x / sqrt(mean(x²) + eps) · norm_w (RMSNorm fused in front;
 * norm_out, when set, also receives x'). Epilogues: res set (count == 1): res[r] += out[r]
 * (the residual add); pair_swiglu (count == 2, equal rows): out[0][r] = silu(g)·u, out[1][r] = u.
 * Rows are split over warps; each lane keeps 8 16-byte weight loads in flight; x' sits in
 * shared memory as f32 and accumulation is f32.
 * Quantized matrices (qbits 4 or 8; kernels_quant.cu): w[j] holds the packed MLX affine codes
 * [rows, K·qbits/32] (src/core/quant_layout.h) and sb[j] the (scale, bias) pair of each group of qgroup
 * inputs, interleaved: [rows, K/qgroup, 2] in sbtype (W_BF16 or W_F32); wtype is unused. */
struct mv_args {
    const void *w[4];
    float *out[4];
    const float *bias[4];
    int row_start[5]; /* prefix sums of the matrices' rows */
    int count, K, wtype;
    const float *x;
    const float *norm_w;
    float eps;
    float *norm_out;
    float *res;
    int pair_swiglu;
    int qbits, qgroup, sbtype;
    const void *sb[4];
    /* Launched with PDL, let the next kernel start only once each warp is on its last row, not at
     * once (that kernel's blocks would take SM room from this one's not yet started: the
     * attention after q/k/v, whose blocks all stay for long contexts). */
    int trigger_late;
    /* (With norm_w, the norm weights are copied into shared memory before the wait for the
     * kernel before: kernels_device.cuh, stage_norm_w, behind x' (with_norm_floats).) */
    /* Set by launch_matvec (not by callers): long rows (K ≥ 4096: the 1B's down) stage x 8
     * float4 per thread per L2 round trip instead of 2. */
    int wide_x;
    /* Set by launch_matvec, the one place that checks what stage_x_late needs (the norm weights,
     * float4s of x, norm_w and norm_out aligned): x ⊙ norm_w is staged and the norm's scale
     * applied to each row's sum (kernels_device.cuh). */
    int norm_late;
};
cudaError_t launch_matvec(const mv_args &a, int n_sm, cudaStream_t stream);
/* The quantized case of launch_matvec (called by it when qbits != 0). */
cudaError_t launch_qmatvec(const mv_args &a, int n_sm, cudaStream_t stream);

/* ---- quantized weights outside decode: kernels_quant.cu -------------------------------------
 * A quantized matrix on the device, as above: codes [rows, K·bits/32] u32, sb [rows, K/group, 2]. */
struct qmatrix {
    const uint32_t *codes;
    const void *sb;
    int sbtype, bits, group, K;
};
/* dst [cnt × K] bf16 = rows r0 .. r0 + cnt of m, each w = scale·code + bias computed in f32 and
 * rounded to nearest even (the prefill GEMM's operand). */
cudaError_t launch_dequant_bf16(void *dst, const qmatrix &m, int r0, int cnt, cudaStream_t stream);
/* out[i, :] = row ids[i] of m as f32 (the embedding of a quantized table; ids and dslot as
 * launch_embed). */
cudaError_t launch_embed_q(float *out, const qmatrix &m, const int32_t *ids_host, int n, const int *dslot,
                           cudaStream_t stream);

/* ---- attention: kernels_attention.cu -------------------------------------------------------
 * Causal attention of n_tokens queries at positions pos0.. over their cache (see backend.h),
 * flash-decoding style: grid (splits, n_kv × head tiles, n_tokens); each block reads its slice
 * of one KV head's keys/values once for all the query heads of the tile, keeps an online
 * softmax, and (splits > 1) writes a partial result; the last block of each (token, head tile)
 * to finish combines the partials (a counter per tile, reset by that block). */
struct attn_args {
    float *out;
    const float *q;
    const void *k, *v;
    int kv_f32;
    float *part;        /* [n_tokens, n_heads, splits, head_dim] partial sums (splits > 1) */
    float *part_ml;     /* [n_tokens, n_heads, splits, 2]: running max and sum */
    unsigned *counters; /* [n_tokens × n_kv × tiles], zero between launches */
    int n_heads, n_kv, hd, capacity, pos0, n_tokens, window, splits;
    float scale;
    const int *dslot;
    /* Fused RoPE + KV store (decode, n_tokens == 1; NULL when not fused): with inv_freq set, q
     * is rotated as it is read (rope_kv's rotation); with k_new set, the block whose keys hold
     * the token's position first stores k_new (rotated when inv_freq is set) and v_new, f32
     * [n_kv × hd], at that position of the cache, as rope_kv would, then reads it back. */
    const float *inv_freq;
    const float *k_new, *v_new;
    int one_split_max; /* set by launch_attention: lengths up to this use one split (no combine) */
    int min_keys;      /* set by launch_attention: keys per split at least */
};
/* 0 when head_dim is unsupported (odd, or over 256). */
int attention_supported(int head_dim);
/* Query heads per block and head tiles per KV head for this GQA group size, for n_tokens queries
 * at the end of len keys: at most 2 query heads per block, 1 for decode at short lengths
 * (t.attn_short_keys; a decode graph recorded at a short length replays only at short ones). */
void attention_tiles(const dw__cuda_tuning &t, int group, int len, int n_tokens, int *gt, int *tiles);
/* Splits for a decode step with `len` keys (len <= 0: the most ever used, for graphs). */
int attention_splits(const dw__cuda_tuning &t, int n_kv, int tiles, int n_sm, int len, int n_tokens);
cudaError_t launch_attention(const attn_args &a, const dw__cuda_tuning &t, cudaStream_t stream);

/* ---- the rest: kernels_elementwise.cu -------------------------------------------------------- */

#define DWK_EMBED_IDS 256 /* ids passed by value per embed launch */
cudaError_t launch_embed(float *out, const void *table, int wtype, int cols, const int32_t *ids_host, int n,
                         const int *dslot, cudaStream_t stream);
/* out[i, :] = x[i, :] / sqrt(mean(x[i, :]²) + eps) · w; out may be x. */
cudaError_t launch_rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps,
                           cudaStream_t stream);
/* RoPE (rotate_half) on q and k when rope is set, then, when kc is set, k (rotated) and v stored
 * at positions pos0.. of the cache (bf16 rounding to nearest even, or f32). */
struct ropekv_args {
    float *q, *k;
    const float *v;
    int n, n_heads, n_kv, hd, pos0;
    const float *inv_freq;
    int rope;
    void *kc, *vc;
    int kv_f32, capacity;
    const int *dslot;
};
cudaError_t launch_rope_kv(const ropekv_args &a, cudaStream_t stream);
cudaError_t launch_add(float *x, const float *y, size_t count, cudaStream_t stream);
cudaError_t launch_swiglu(float *out, const float *gate, const float *up, size_t count, cudaStream_t stream);
/* GEMM operands: x [n × K] f32 -> dst: passes == 2: [2n × K], rows 0..n the bf16/f16 rounding of
 * x ("hi") and rows n..2n the rounding of x − hi ("lo"); passes == 1: hi only. */
cudaError_t launch_split_act(void *dst, const float *x, int n, int K, int half, int passes, cudaStream_t stream);
/* out[t, r0 + r] = cs[t·rc + r] + cs[(n + t)·rc + r] (+ bias[r0 + r]) for r < rc, t < n; out's
 * row stride is rows. */
cudaError_t launch_combine_hilo(float *out, const float *cs, int n, int rc, int rows, int r0, const float *bias,
                                cudaStream_t stream);
/* out[t·ld + r0 + r] += bias[r0 + r] for r < cnt, t < n. */
cudaError_t launch_add_bias(float *out, const float *bias, int n, int ld, int r0, int cnt, cudaStream_t stream);
/* dst[0, bytes) = src[0, bytes); dst may be registered host memory (16-byte stores when both
 * are 16-byte aligned, so the writes cross PCIe in full lines). */
cudaError_t launch_copy(void *dst, const void *src, size_t bytes, cudaStream_t stream);
/* slot[0] = id, slot[1] = pos (before a graph replay); with id_dev set, slot[0] = *id_dev. */
cudaError_t launch_set_step(int *slot, int id, const int32_t *id_dev, int pos, cudaStream_t stream);

/* ---- greedy choice: kernels_argmax.cu -------------------------------------------------------
 * ring[pos % ring_n] = the first index of the largest of x[0, n) (NaN never wins; all NaN: 0).
 * part_v/part_i hold DWK_ARGMAX_BLOCKS partial results and counter (zero between launches) one
 * unsigned. With slot set (a decode graph's {id, pos}, the argmax recorded in its step), pos is
 * read from slot[1] when it runs, and the kernel then writes the next step there: slot[0] = the
 * index, slot[1] = pos + 1 (as launch_set_step would), so that the graph's next replay needs no
 * set-up kernel. Launched with
 * programmatic stream serialization: it waits for the kernel before. */
#define DWK_ARGMAX_BLOCKS 128
cudaError_t launch_argmax(const float *x, int n, float *part_v, int *part_i, unsigned *counter, int32_t *ring,
                          int ring_n, int pos, int *slot, cudaStream_t stream);


/* ---- the batched step (backend.h: matmul_rows and the other *_rows ops) -------------------
 * Batch invariant: every output element's arithmetic depends on its own row's inputs and the
 * shapes (k, head_dim, ...) only, never on n or on the other rows (docs/CUDA.md, "Batched step").
 *
 * matmul_rows (kernels_batch_matmul.cu): out[j][t, r] = Σ_k w[j][r, k] · x[t, k] (+ bias[j][r]) on
 * the tensor cores (mma.m16n8k16, fp32 accumulation): 16 weight rows per m-tile, 8 tokens per
 * n-tile, x already rounded to bf16 (f16 for f16 weights) in xh [n, K]; quantized weights are
 * dequantized to bf16 in registers (w = scale·code + bias in f32, rounded to nearest even). K
 * is split over the 8 warps of a block by a rule of K alone and the warps' sums are added in a
 * fixed order. Needs K % 8 == 0 (bf16, f16) and the matrices of one launch of one kind. */
enum mmr_kind { MMR_BF16 = 0, MMR_F16 = 1, MMR_Q4 = 2, MMR_Q8 = 3 };
struct mmr_args {
    const void *w[4];
    const void *sb[4]; /* quantized: the interleaved (scale, bias) pairs (qmatrix's sb) */
    float *out[4];
    const float *bias[4];
    int rows[4];
    int tile_start[5]; /* prefix sums of the matrices' row tiles (filled by launch_matmul_rows) */
    int count, K, n;
    int kind, qgroup, sbtype;
    const void *xh; /* x rounded to bf16 or f16, [n, K] */
};
cudaError_t launch_matmul_rows(mmr_args &a, cudaStream_t stream);
/* dst [n × K] bf16 (half == 0) or f16 = x rounded to nearest even. */
cudaError_t launch_round_x(void *dst, const float *x, size_t count, int half, cudaStream_t stream);
/* The plain path for what the tensor-core one does not take (f32 weights, K % 8 != 0): one warp
 * per output element, f32 products of the unrounded x, lane l summing k ≡ l mod 32 in order, then
 * a fixed butterfly. w is wtype (W_F32, W_F16, W_BF16) [rows × K]. */
cudaError_t launch_matmul_rows_plain(float *out, const float *x, int n, const void *w, int wtype, int rows, int K,
                                     const float *bias, cudaStream_t stream);

/* The paged KV pool of one layer and the step's rows (backend.h: dw_kv_pages, dw_rows). */
struct rows_args {
    int n;
    const int32_t *pos, *slot, *table_at, *tables;
};
/* rope() with row i at pos[i] (kernels_batch.cu). */
cudaError_t launch_rope_rows(float *q, float *k, const rows_args &r, int n_heads, int n_kv, int hd,
                             const float *inv_freq, cudaStream_t stream);
/* k, v [n, n_kv·hd] f32 stored at entry slot[i] of the pool (kv_f32: f32, else bf16 RNE). */
cudaError_t launch_kv_write_rows(void *kc, void *vc, int kv_f32, int n_kv, int hd, int block_tokens, const float *k,
                                 const float *v, const rows_args &r, cudaStream_t stream);
cudaError_t launch_gather_rows(float *dst, const float *src, const int32_t *idx, int n, int width,
                               cudaStream_t stream);
/* out[i] = first index of the largest of x[i, 0..width) (NaN never wins; all NaN: 0). */
cudaError_t launch_argmax_rows(const float *x, int n, int width, int32_t *out, cudaStream_t stream);
/* out[i] = the token the device sampler's rule (driftwood/pick.h) draws from x[i, 0..width) with
 * params[i] (device), for the rows with params[i].s.temperature > 0; the others are left as they
 * are (kernels_sample.cu). */
cudaError_t launch_sample_rows(const float *x, int n, int width, const dw_pick_row *params, int32_t *out,
                               cudaStream_t stream);

/* attention_rows (kernels_paged_attention.cu): row i's query heads over its keys [lo, pos[i]]
 * (lo = pos − window + 1 with a window, else 0) through its block table, in chunks of
 * DWK_PAGED_CHUNK keys (chunk c: keys [c·CHUNK, c·CHUNK + CHUNK)): each chunk's max, sum and
 * weighted values go to part, then one combine per (row, head) adds the chunks in order. */
#define DWK_PAGED_CHUNK 256
struct paged_attn_args {
    float *out;
    const float *q;
    const void *k, *v;
    int kv_f32, n_heads, n_kv, hd, block_tokens, window;
    float scale;
    rows_args r;
    int max_chunks; /* chunks of the longest row (sizes the grid and part's layout only) */
    float *part;    /* [n, n_heads, max_chunks, hd + 2]: acc, then max and sum */
};
/* Floats of part for these arguments. */
size_t paged_attention_part_floats(int n, int n_heads, int hd, int max_chunks);
cudaError_t launch_paged_attention(const paged_attn_args &a, cudaStream_t stream);

} // namespace dwk

#endif
