/* The AVX2+FMA+F16C kernel set (dw__cpu_kernels_avx2): kernels_x86_body.h over 8-lane vectors.
 * The whole file is compiled for that target; the dispatcher (kernels_dispatch.c) runs it only
 * where the CPU has it. Compiles to nothing off x86-64. */
#if defined(__x86_64__)

#pragma GCC target("avx2,fma,f16c")

#define DW_VF_WIDTH 256
#define DW_KSUFFIX avx2
#include "backend/cpu/kernels_x86_body.h"

#endif
