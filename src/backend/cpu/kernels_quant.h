/* CPU kernels for quantized (MLX affine) matrices, whose packed layout core/quant_layout.h
 * describes: the decode matrix-vector product on packed 4- and 8-bit codes, and row
 * dequantization for the prefill GEMM (which then runs the f32 GEMM of kernels.h on a dequantized
 * block of rows). Scalar references (kernels_quant_ref.c) and AVX2 / AVX-512 versions
 * (kernels_quant_avx2.c and kernels_quant_avx512.c over one body, kernels_quant_x86_body.h; the
 * 4-bit decode with AVX512_VNNI in kernels_quant_vnni.c). The CPU
 * backend picks a set with its float kernels (kernels_dispatch.c) and runs them in matmul_cpu.c,
 * and the batched step's product (rows, rows4p: the matvec over a tile of tokens) in batch_cpu.c. */
#ifndef DW_BACKEND_CPU_KERNELS_QUANT_H
#define DW_BACKEND_CPU_KERNELS_QUANT_H

#include "backend/backend.h"
#include "core/quant_layout.h"

/* out[r] = Σ_i x[i]·w[r][i] for r in [r0, r1), computed as Σ_g scale·(Σ_{i∈g} code_i·x_i) +
 * bias·xsum[g]; xsum[g] = Σ_{i∈g} x[i] (the caller computes it once per vector). */
typedef void (*dw__qmatvec_fn)(float *out, const float *x, const float *xsum, const dw_cweight *w, int r0, int r1);

/* dst[(r - r0)·cols + i] = w[r][i] as f32 for r in [r0, r1). */
typedef void (*dw__qdequant_fn)(float *dst, const dw_cweight *w, int r0, int r1);

/* The batched product (matmul_rows): out[t·ldo + r] for tokens t < n and rows r in [r0, r1), token
 * t's inputs at x + t·ldx (matvec's x, or prep4's xp for the 4-bit one) and group sums at
 * xsum + t·lds. Each output is computed exactly as the set's matvec (or matvec4p) computes it for
 * that token alone: the same operations in the same order, whatever n, the tile or the rows. */
typedef void (*dw__qrows_fn)(float *out, int ldo, const float *x, size_t ldx, const float *xsum, size_t lds, int n,
                             const dw_cweight *w, int r0, int r1);

typedef struct dw__cpu_qkernels {
    const char *isa; /* "ref", "avx2", "avx512", "avx512vnni" */
    dw__qmatvec_fn matvec;
    dw__qdequant_fn dequant;
    /* (optional) 4-bit decode: the matvec reads x in its own layout, made once per vector by
     * prep4(xp, x, k, gs) into DW_QPREP4_FLOATS(k) floats (k a multiple of 32 and of the group
     * size gs, gs dividing 128; matvec4p is used only on matrices of that group size); NULL: the
     * matvec reads x as it is. */
    void (*prep4)(float *xp, const float *x, int k, int gs);
    dw__qmatvec_fn matvec4p; /* with prep4: the 4-bit matvec on xp */
    /* (optional) matvec and matvec4p on a tile of tokens at once, reading each code once for
     * all of them (dw__qrows_fn); NULL: the caller runs the matvec token by token (the same bits). */
    dw__qrows_fn rows;
    dw__qrows_fn rows4p;
} dw__cpu_qkernels;

/* Room for prep4's layout of k inputs. */
#define DW_QPREP4_FLOATS(k) ((size_t)(k) + 128)

extern const dw__cpu_qkernels dw__cpu_qkernels_ref;
#if defined(__x86_64__)
extern const dw__cpu_qkernels dw__cpu_qkernels_avx2;
extern const dw__cpu_qkernels dw__cpu_qkernels_avx512;
/* AVX-512 with the VNNI 4-bit decode path (kernels_quant_vnni.c); the rest as the AVX-512 set. */
extern const dw__cpu_qkernels dw__cpu_qkernels_avx512vnni;
void dw__qprep4_vnni(float *xp, const float *x, int k, int gs);
void dw__qmatvec4_vnni(float *out, const float *xp, const float *xsum, const dw_cweight *w, int r0, int r1);
void dw__qrows4_vnni(float *out, int ldo, const float *xp, size_t ldx, const float *xsum, size_t lds, int n,
                     const dw_cweight *w, int r0, int r1);
#endif

/* Every quantized set this CPU can run, reference first, the default last; returns the count. */
int dw__cpu_qkernels_available(const dw__cpu_qkernels **out, int max);

#endif
