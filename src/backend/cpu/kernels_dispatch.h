/* Which CPU kernel sets a CPU backend runs (kernels_dispatch.c): the float set (kernels.h) and
 * the quantized set (kernels_quant.h), chosen together by one ISA name. */
#ifndef DW_BACKEND_CPU_KERNELS_DISPATCH_H
#define DW_BACKEND_CPU_KERNELS_DISPATCH_H

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels_quant.h"
#include "driftwood/error.h"

typedef struct dw__cpu_kernel_choice {
    const char *name; /* "avx512vnni", "avx512bf16", "avx512", "avx2" or "ref" (static) */
    const dw__cpu_kernels *k;
    const dw__cpu_qkernels *qk;
} dw__cpu_kernel_choice;

/* The widest sets this CPU runs that are not wider than cap (NULL or "": no cap): "avx512vnni"
 * (the AVX-512 float set, the VNNI 4-bit decode), "avx512" (both AVX-512), "avx2", "ref", and
 * "avx512bf16" (the AVX-512 BF16 float set, the VNNI quantized set). An unknown name is
 * DW_ERR_INVALID_ARGUMENT; a name wider than the CPU runs gives the widest it runs. */
dw_status dw__cpu_kernels_choose(const char *cap, dw__cpu_kernel_choice *out /* OUT */, dw_error *err);

/* The float set of dw__cpu_kernels_choose(NULL) (for tools that convert data outside a backend). */
const dw__cpu_kernels *dw__cpu_kernels_best(void);

/* Every set this CPU can run, reference first, the default last; return the count. */
int dw__cpu_kernels_available(const dw__cpu_kernels **out, int max);
int dw__cpu_qkernels_available(const dw__cpu_qkernels **out, int max);

#endif
