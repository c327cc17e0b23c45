/* Run-time choice of the CPU kernel set (kernels.h): the best one this CPU supports,
 * capped by DW_CPU_ISA=ref|avx2|avx512|avx512bf16 for tests and comparisons. */
#include "backend/cpu/kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int dw__cpu_kernels_available(const dw__cpu_kernels **out, int max) {
    int n = 0;
    if (n < max) out[n++] = &dw__cpu_kernels_ref;
#if defined(__x86_64__)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    if (avx2 && n < max) out[n++] = &dw__cpu_kernels_avx2;
    /* AVX-512 BF16 comes before plain AVX-512, so it is not the default: its decode matvec
     * (vdpbf16ps on x split into hi + lo) measured 8-10% slower than the AVX-512 F one on the
     * 2-core Xeon, where decode is memory-bound. DW_CPU_ISA=avx512bf16 selects it. */
    if (avx512 && __builtin_cpu_supports("avx512bf16") && n < max) out[n++] = &dw__cpu_kernels_avx512bf16;
    if (avx512 && n < max) out[n++] = &dw__cpu_kernels_avx512;
#endif
    return n;
}

static const dw__cpu_kernels *best;
static pthread_once_t best_once = PTHREAD_ONCE_INIT;

static void choose(void) {
    const dw__cpu_kernels *sets[8];
    int n = dw__cpu_kernels_available(sets, 8);
    best = sets[n - 1];
    const char *cap = getenv("DW_CPU_ISA");
    if (cap && *cap)
        for (int i = 0; i < n; i++)
            if (!strcmp(sets[i]->isa, cap)) best = sets[i];
}

const dw__cpu_kernels *dw__cpu_kernels_best(void) {
    pthread_once(&best_once, choose);
    return best;
}
