/* Run-time choice of the CPU kernel sets (kernels.h, kernels_quant.h): the widest this CPU runs,
 * capped by the backend option cpu_kernels (an ISA name; the registry fills it from DW_CPU_ISA). */
#include "backend/cpu/kernels_dispatch.h"

#include <string.h>

#if defined(__x86_64__)
typedef struct cpu_features {
    int avx2, avx512, avx512bf16, avx512vnni;
} cpu_features;

static cpu_features features(void) {
    __builtin_cpu_init();
    cpu_features f = {0};
    f.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    f.avx512 = f.avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    f.avx512bf16 = f.avx512 && __builtin_cpu_supports("avx512bf16");
    f.avx512vnni = f.avx512 && __builtin_cpu_supports("avx512vnni");
    return f;
}
#endif

int dw__cpu_kernels_available(const dw__cpu_kernels **out, int max) {
    int n = 0;
    if (n < max) out[n++] = &dw__cpu_kernels_ref;
#if defined(__x86_64__)
    cpu_features f = features();
    if (f.avx2 && n < max) out[n++] = &dw__cpu_kernels_avx2;
    /* AVX-512 BF16 comes before plain AVX-512, so it is not the default: its decode matvec
     * measured slower than the AVX-512 F one where decode is memory-bound (docs/PERFORMANCE.md);
     * cpu_kernels = "avx512bf16" selects it. */
    if (f.avx512bf16 && n < max) out[n++] = &dw__cpu_kernels_avx512bf16;
    if (f.avx512 && n < max) out[n++] = &dw__cpu_kernels_avx512;
    if (f.avx512bf16 && n < max) out[n++] = &dw__cpu_kernels_avx512dp; /* the default there */
#endif
    return n;
}

int dw__cpu_qkernels_available(const dw__cpu_qkernels **out, int max) {
    int n = 0;
    if (n < max) out[n++] = &dw__cpu_qkernels_ref;
#if defined(__x86_64__)
    cpu_features f = features();
    if (f.avx2 && n < max) out[n++] = &dw__cpu_qkernels_avx2;
    if (f.avx512 && n < max) out[n++] = &dw__cpu_qkernels_avx512;
    if (f.avx512vnni && n < max) out[n++] = &dw__cpu_qkernels_avx512vnni;
#endif
    return n;
}

/* The names, narrowest first: a cap allows its own rung and those below it. "avx512bf16" is the
 * "avx512vnni" rung with the BF16 float kernels. */
static const char *const rungs[] = {"ref", "avx2", "avx512", "avx512vnni", "avx512bf16"};
enum { RUNG_REF, RUNG_AVX2, RUNG_AVX512, RUNG_AVX512VNNI, RUNG_AVX512BF16, RUNG_COUNT };

dw_status dw__cpu_kernels_choose(const char *cap, dw__cpu_kernel_choice *out, dw_error *err) {
    int top = RUNG_AVX512VNNI;
    if (cap && *cap) {
        top = -1;
        for (int i = 0; i < RUNG_COUNT; i++)
            if (!strcmp(cap, rungs[i])) top = i;
        if (top < 0)
            return dw_error_set(err, DW_ERR_INVALID_ARGUMENT,
                                "cpu: unknown kernel set '%s' (expected avx512bf16, avx512vnni, avx512, avx2 or ref)",
                                cap);
    }
    *out = (dw__cpu_kernel_choice){"ref", &dw__cpu_kernels_ref, &dw__cpu_qkernels_ref};
#if defined(__x86_64__)
    cpu_features f = features();
    if (top >= RUNG_AVX2 && f.avx2)
        *out = (dw__cpu_kernel_choice){"avx2", &dw__cpu_kernels_avx2, &dw__cpu_qkernels_avx2};
    if (top >= RUNG_AVX512 && f.avx512)
        *out = (dw__cpu_kernel_choice){"avx512", &dw__cpu_kernels_avx512, &dw__cpu_qkernels_avx512};
    if (top >= RUNG_AVX512VNNI && f.avx512vnni)
        *out = (dw__cpu_kernel_choice){"avx512vnni", &dw__cpu_kernels_avx512, &dw__cpu_qkernels_avx512vnni};
    /* the batched step's product on bf16 activations (vdpbf16ps) where the CPU has it: several
     * times the f32 FMA kernel's speed where batches make it compute-bound */
    if (top >= RUNG_AVX512VNNI && f.avx512vnni && f.avx512bf16) out->k = &dw__cpu_kernels_avx512dp;
    if (top == RUNG_AVX512BF16 && f.avx512bf16) {
        out->name = "avx512bf16";
        out->k = &dw__cpu_kernels_avx512bf16;
    }
#endif
    return DW_OK;
}

const dw__cpu_kernels *dw__cpu_kernels_best(void) {
    dw__cpu_kernel_choice c;
    dw__cpu_kernels_choose(NULL, &c, NULL);
    return c.k;
}
