/* CPU kernels for quantized (MLX affine) matrices, src/engine/quant.h: the decode
 * matrix-vector product on packed 4- and 8-bit codes, and row dequantization for the prefill
 * GEMM (which then runs the f32 GEMM of kernels.h on a dequantized block of rows). Scalar
 * references (kernels_quant_ref.c) and AVX2 / AVX-512 versions (kernels_quant_x86.c; the 4-bit
 * decode with AVX512_VNNI in kernels_quant_vnni.c), chosen at run time with the same ISA names
 * as kernels.h. kernels_quant_ops.c wraps the CPU compute
 * ops with them for quantized models. */
#ifndef DW_BACKEND_CPU_KERNELS_QUANT_H
#define DW_BACKEND_CPU_KERNELS_QUANT_H

#include "backend/compute.h"

/* out[r] = Σ_i x[i]·w[r][i] for r in [r0, r1), computed as Σ_g scale·(Σ_{i∈g} code_i·x_i) +
 * bias·xsum[g]; xsum[g] = Σ_{i∈g} x[i] (the caller computes it once per vector). */
typedef void (*dw__qmatvec_fn)(float *out, const float *x, const float *xsum, const dw_cweight *w, int r0, int r1);

/* dst[(r - r0)·cols + i] = w[r][i] as f32 for r in [r0, r1). */
typedef void (*dw__qdequant_fn)(float *dst, const dw_cweight *w, int r0, int r1);

typedef struct dw__cpu_qkernels {
    const char *isa; /* as kernels.h */
    dw__qmatvec_fn matvec;
    dw__qdequant_fn dequant;
    /* (optional) 4-bit decode: the matvec reads x in its own layout, made once per vector by
     * prep4(xp, x, k, gs) into DW_QPREP4_FLOATS(k) floats (k a multiple of 32 and of the group
     * size gs, gs dividing 128; matvec4p is used only on matrices of that group size); NULL: the
     * matvec reads x as it is. */
    void (*prep4)(float *xp, const float *x, int k, int gs);
    dw__qmatvec_fn matvec4p; /* with prep4: the 4-bit matvec on xp */
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
#endif

/* The set for a kernels.h ISA name ("ref", "avx2", "avx512", ...): the matching one, else ref;
 * for the AVX-512 names, the VNNI set where the CPU has AVX512_VNNI (DW_CPU_QISA=avx512 in the
 * environment keeps the plain AVX-512 set, for comparisons). */
const dw__cpu_qkernels *dw__cpu_qkernels_for(const char *isa);

/* Wraps a freshly opened compute (c) for a quantized model: on the CPU the wrapper runs matmul,
 * matmul_multi and embed on quantized weights with these kernels and passes everything else
 * through. A backend whose ops have weight_load_quant (CUDA: kernels_quant.cu) runs quantized
 * weights itself and is left as it is; any other is refused with DW_ERR_UNSUPPORTED. On failure
 * c is left as it was. */
dw_status dw__quant_compute_wrap(dw_compute *c, const char *backend_name, dw_error *err);

/* The kernels a wrapped compute uses (tests switch them, as with dw__cpu_compute_set_kernels). */
void dw__quant_compute_set_kernels(dw_compute *c, const dw__cpu_qkernels *qk);

/* 1 when c was wrapped by dw__quant_compute_wrap. */
int dw__quant_compute_is_wrapped(const dw_compute *c);

#endif
