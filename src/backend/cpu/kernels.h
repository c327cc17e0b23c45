/* Single-threaded CPU kernels behind the CPU compute ops (compute_cpu.c splits work over
 * the thread pool and calls these on slices). Every kernel has a scalar reference
 * (kernels_ref.c); x86 SIMD versions (kernels_avx2.c, kernels_avx512.c: one body,
 * kernels_x86_body.h, over the vector-width layer simd_x86.h) are picked at run time. */
#ifndef DW_BACKEND_CPU_KERNELS_H
#define DW_BACKEND_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* out[t*ldo + r] = dot(x[t*ldx .. t*ldx+k), w[r*k .. r*k+k)) for t in [0, n), r in [r0, r1).
 * w is a row-major [rows × k] matrix (the Hugging Face nn.Linear layout [out, in]) in the
 * kernel's dtype; x and out are f32. Products and sums are f32. Tiles several tokens per
 * weight row so that a row is read from memory once per call, not once per token. */
typedef void (*dw__matmul_fn)(float *out, int ldo, const float *x, int ldx, int n, const void *w, int k,
                              int r0, int r1);

/* The prefill GEMM on a transposed activation block: out[t*ldo + r] = Σ_i xt[i*ldt + t] · w[r*k + i]
 * for t in [0, n), r in [r0, r1). xt is x transposed, [k × ldt] with ldt >= n a multiple of 16
 * (padding columns are ignored). The SIMD versions convert a block of weight rows to f32 once
 * and broadcast its elements against vectors of 16 tokens (register tiles of rows × tokens). */
/* The batched step's product on activations already rounded to bf16 (xb: [n × ldx] bf16 bits, ldx
 * >= k) and bf16 weights, the rows_* contract otherwise: each out[t, r] is one f32 accumulator
 * taking the pairwise bf16 dot products of 32 elements at a time in k order (the last group
 * zero-padded), then one horizontal sum: batch invariant. */
typedef void (*dw__rows_bx_fn)(float *out, int ldo, const uint16_t *xb, int ldx, int n, const void *w, int k, int r0,
                               int r1);

typedef void (*dw__gemm_fn)(float *out, int ldo, const float *xt, int ldt, int n, const void *w, int k, int r0,
                            int r1);

typedef struct dw__cpu_kernels {
    const char *isa; /* "ref", "avx2", "avx512", "avx512bf16" */

    dw__matmul_fn matmul_bf16;
    dw__matmul_fn matmul_f16;
    dw__matmul_fn matmul_f32;
    dw__gemm_fn gemm_bf16;
    dw__gemm_fn gemm_f16;
    dw__gemm_fn gemm_f32;
    /* The batched step's product (backend.h, matmul_rows), the same contract as dw__matmul_fn and
     * batch invariant: each out[t, r] is accumulated in one fixed order that depends on k alone
     * (SIMD: one vector accumulator per (row, token), FMAs in k order, then one horizontal sum),
     * never on n, on t's place in a register tile, on r0 / r1 or on the other tokens. */
    dw__matmul_fn rows_bf16;
    dw__matmul_fn rows_f16;
    dw__matmul_fn rows_f32;

    /* dot(a, b) over n f32 / (f32, bf16) elements. */
    float (*dot_f32)(const float *a, const float *b, int n);
    float (*dot_bf16)(const float *a, const uint16_t *b, int n);
    /* y[i] += a * x[i] */
    void (*axpy_f32)(float *y, float a, const float *x, int n);
    void (*axpy_bf16)(float *y, float a, const uint16_t *x, int n);

    /* Attention over a block of n cached rows of hd elements (K or V, f32 or bf16):
     * scores[i] = dot(q, rows[i]) * scale;  acc[:] += Σ_i p[i] * rows[i]. */
    void (*attn_dot_f32)(float *scores, const float *q, const float *rows, int n, int hd, float scale);
    void (*attn_dot_bf16)(float *scores, const float *q, const uint16_t *rows, int n, int hd, float scale);
    void (*attn_acc_f32)(float *acc, const float *p, const float *rows, int n, int hd);
    void (*attn_acc_bf16)(float *acc, const float *p, const uint16_t *rows, int n, int hd);
    /* Several queries at once (prefill tiles): acc[q*ldacc + d] += Σ_j p[q*ldp + j] * rows[j*hd + d]
     * for q < nq (nq <= 4), j < n, d < hd. Each row is loaded once for all the queries. */
    void (*attn_acc_multi)(float *acc, int ldacc, const float *p, int ldp, int nq, const float *rows, int n, int hd);
    /* The same scores against a transposed f32 block (prefill tiles): scores[j] =
     * scale * Σ_d q[d] * kt[d*ldk + j] for j < n, with n <= ldk and ldk a multiple of 16. */
    void (*attn_dot_t)(float *scores, const float *q, const float *kt, int ldk, int n, int hd, float scale);

    /* Conversions of n elements (f32 -> bf16 rounds to nearest even). */
    void (*bf16_to_f32)(float *dst, const uint16_t *src, int n);
    void (*f16_to_f32)(float *dst, const uint16_t *src, int n);
    void (*f32_to_bf16)(uint16_t *dst, const float *src, int n);

    /* Sum of x[i]^2. */
    float (*sum_squares)(const float *x, int n);
    /* out[i] = (x[i] * scale) * w[i] (RMSNorm's last step, in the order HF computes it). */
    void (*scale_mul)(float *out, const float *x, float scale, const float *w, int n);
    /* out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)). */
    void (*swiglu)(float *out, const float *gate, const float *up, int n);
    /* x[i] += y[i] */
    void (*add)(float *x, const float *y, int n);
    /* The largest of x[0..n), n >= 1. */
    float (*max_f32)(const float *x, int n);
    /* x[i] = exp(x[i] - max), returns the sum (the softmax numerator pass). */
    float (*exp_sum)(float *x, float max, int n);
    /* Streams n bytes and returns a value that depends on all of them (bandwidth probe). */
    uint64_t (*read_bytes)(const void *p, size_t n);
    /* (NULL where the set has none) matmul_rows on bf16 weights with the activations rounded to
     * bf16 once per op (round to nearest even, f32_to_bf16): the CPUs with AVX-512 BF16. */
    dw__rows_bx_fn rows_bf16_bx;
} dw__cpu_kernels;

/* The scalar reference kernels (any CPU). */
extern const dw__cpu_kernels dw__cpu_kernels_ref;

/* Choosing a set: kernels_dispatch.h. */

#if defined(__x86_64__)
extern const dw__cpu_kernels dw__cpu_kernels_avx2;
extern const dw__cpu_kernels dw__cpu_kernels_avx512;
extern const dw__cpu_kernels dw__cpu_kernels_avx512bf16;
extern const dw__cpu_kernels dw__cpu_kernels_avx512dp; /* the AVX-512 set with rows_bf16_bx */
#endif

#endif
