/* The AVX2+FMA quantized kernel set (dw__cpu_qkernels_avx2): kernels_quant_x86_body.h over
 * 8-lane vectors. Compiles to nothing off x86-64. */
#if defined(__x86_64__)

#pragma GCC target("avx2,fma,f16c")

#define DW_VF_WIDTH 256
#define DW_KSUFFIX avx2
#include "backend/cpu/kernels_quant_x86_body.h"

const dw__cpu_qkernels dw__cpu_qkernels_avx2 = {
    /* .isa      = */ "avx2",
    /* .matvec   = */ qmatvec_avx2,
    /* .dequant  = */ qdequant_avx2,
    /* .prep4    = */ NULL,
    /* .matvec4p = */ NULL,
    /* .rows     = */ NULL, /* the matvec token by token */
    /* .rows4p   = */ NULL,
};

#endif
