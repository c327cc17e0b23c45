/* Benchmark of the CPU backend's batched-step product (backend.h, matmul_rows) on the
 * Llama-3.2-1B shapes (hidden 2048, intermediate 8192, 8 KV heads of 64): one pass over the
 * matrices of LAYERS layers (q/k/v in one call, o, gate/up in one call, down; random weights,
 * more layers than the caches hold) with the existing matmul_multi at one token, then matmul_rows
 * at 1, 2, 3, 6, 7, 8 and 64 tokens (the engine's scheduler forms uneven batches), taking turns; the median of REPS passes each, in one run. Prints ms per pass, tokens/s
 * (tokens per pass / time), the speed-up of the aggregate over one token, and the fastest pass (the
 * least disturbed on a shared machine) and the median CPU time of the process's threads (all of
 * them together: about the thread count × the pass on an idle machine; not counting time that
 * other processes ran).
 *   bench/cpu_matmul_rows.sh [bf16|q4|q8] [LAYERS] [REPS] [THREADS]        (built and run by the script) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "driftwood/dtype.h"
#include "engine/quant.h"

enum { HIDDEN = 2048, INTER = 8192, KV = 512, N_MAT = 7 };
static const int mat_rows[N_MAT] = {HIDDEN, KV, KV, HIDDEN, INTER, INTER, HIDDEN};
static const int mat_cols[N_MAT] = {HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, HIDDEN, INTER};

static uint64_t rng = 0x243f6a8885a308d3ull;
static float frand(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xffffff) / (float)(1 << 23) - 1.0f;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void) { /* every thread of the process: unlike the wall clock, not counting time others ran */
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct layer {
    dw_cweight w[N_MAT];
} layer;

static dw_backend *be;
static layer *layers;
static int n_layers;
static float *x, *out[N_MAT];

/* One pass: every layer's matrices, as the forward pass groups them. */
static void pass(int rows_op, int n) {
    for (int l = 0; l < n_layers; l++) {
        const dw_cweight *w = layers[l].w;
        const dw_cweight *qkv[3] = {&w[0], &w[1], &w[2]}, *gu[2] = {&w[4], &w[5]}, *o[1] = {&w[3]}, *d[1] = {&w[6]};
        float *oqkv[3] = {out[0], out[1], out[2]}, *ogu[2] = {out[4], out[5]};
        if (rows_op) {
            be->ops->matmul_rows(be->ctx, 3, oqkv, x, n, qkv, NULL);
            be->ops->matmul_rows(be->ctx, 1, &out[3], x, n, o, NULL);
            be->ops->matmul_rows(be->ctx, 2, ogu, x, n, gu, NULL);
            be->ops->matmul_rows(be->ctx, 1, &out[6], x, n, d, NULL); /* x has room for [n, 8192] */
        } else {
            be->ops->matmul_multi(be->ctx, 3, oqkv, x, n, qkv, NULL);
            be->ops->matmul(be->ctx, out[3], x, n, o[0], NULL);
            be->ops->matmul_multi(be->ctx, 2, ogu, x, n, gu, NULL);
            be->ops->matmul(be->ctx, out[6], x, n, d[0], NULL);
        }
    }
}

static double median(double *t, int reps) {
    qsort(t, reps, sizeof t[0], cmp_double);
    return reps % 2 ? t[reps / 2] : (t[reps / 2 - 1] + t[reps / 2]) / 2;
}

int main(int argc, char **argv) {
    const char *kind = argc > 1 ? argv[1] : "bf16";
    n_layers = argc > 2 ? atoi(argv[2]) : 4;
    int reps = argc > 3 ? atoi(argv[3]) : 7, threads = argc > 4 ? atoi(argv[4]) : 0;
    int bits = !strcmp(kind, "q4") ? 4 : !strcmp(kind, "q8") ? 8 : 0;
    if (n_layers < 1 || reps < 1 || reps > 64 || (!bits && strcmp(kind, "bf16"))) {
        fprintf(stderr, "usage: cpu_matmul_rows [bf16|q4|q8] [LAYERS] [REPS 1..64] [THREADS]\n");
        return 2;
    }
    dw_error err = {0};
    dw_backend_options opts = {.n_threads = threads};
    if (dw_backend_open_with("cpu", &opts, &be, &err)) {
        fprintf(stderr, "cpu backend: %s\n", err.message);
        return 1;
    }
    layers = calloc((size_t)n_layers, sizeof *layers);
    size_t bytes = 0;
    for (int l = 0; l < n_layers; l++)
        for (int m = 0; m < N_MAT; m++) {
            size_t count = (size_t)mat_rows[m] * mat_cols[m];
            uint16_t *src = malloc(count * sizeof(uint16_t));
            for (size_t i = 0; i < count; i++) src[i] = dw_f32_to_bf16(frand() * 0.05f);
            dw_cweight host = {.rows = mat_rows[m], .cols = mat_cols[m]};
            if (!bits) {
                be->ops->weight_load(be->ctx, src, DW_DTYPE_BF16, mat_rows[m], mat_cols[m], &layers[l].w[m], &err);
                bytes += count * 2;
                continue;
            }
            size_t groups = count / 64;
            uint32_t *q = malloc(count * bits / 8);
            uint16_t *s = malloc(groups * 2), *b = malloc(groups * 2);
            dw__quantize(src, DW_DTYPE_BF16, mat_rows[m], mat_cols[m], bits, 64, q, s, b, DW_DTYPE_BF16);
            free(src);
            host.data = q;
            host.dtype = DW_DTYPE_U32;
            host.qbits = bits;
            host.qgroup = 64;
            host.qscales = s;
            host.qbiases = b;
            host.qsdtype = DW_DTYPE_BF16;
            be->ops->weight_load_quant(be->ctx, &host, &layers[l].w[m], &err);
            bytes += count * bits / 8 + groups * 4;
        }
    x = malloc(sizeof(float) * 64 * INTER);
    for (int i = 0; i < 64 * INTER; i++) x[i] = frand();
    for (int m = 0; m < N_MAT; m++) out[m] = malloc(sizeof(float) * 64 * mat_rows[m]);

    dw_backend_info info;
    be->ops->describe(be->ctx, &info);
    printf("matmul_rows bench: %s weights, %d layers of the Llama-3.2-1B shape (%.0f MB a pass), %s kernels, "
           "%d threads, median of %d passes\n",
           kind, n_layers, bytes / 1e6, info.kernels, info.n_threads, reps);
    /* the configurations take turns in each round, so that all see the same machine (a shared one) */
    enum { CONFIGS = 8 };
    const int rows_op[CONFIGS] = {0, 1, 1, 1, 1, 1, 1, 1}, ns[CONFIGS] = {1, 1, 2, 3, 6, 7, 8, 64};
    double t[CONFIGS][64], ms[CONFIGS], best[CONFIGS], cpu[CONFIGS][64];
    for (int c = 0; c < CONFIGS; c++) pass(rows_op[c], ns[c]); /* warm */
    for (int r = 0; r < reps; r++)
        for (int c = 0; c < CONFIGS; c++) {
            double t0 = now(), c0 = cpu_now();
            pass(rows_op[c], ns[c]);
            t[c][r] = (now() - t0) * 1e3;
            cpu[c][r] = (cpu_now() - c0) * 1e3;
        }
    for (int c = 0; c < CONFIGS; c++) ms[c] = median(t[c], reps), best[c] = t[c][0]; /* sorted */
    printf("  matmul      n=1 : %8.2f ms/pass  %8.1f tok/s  (%.1f GB/s of weights)  best %.2f ms  cpu %.2f ms\n",
           ms[0], 1e3 / ms[0], bytes / ms[0] / 1e6, best[0], median(cpu[0], reps));
    for (int c = 1; c < CONFIGS; c++)
        printf("  matmul_rows n=%-2d: %8.2f ms/pass  %8.1f tok/s  aggregate %.2fx matmul n=1  best %.2f ms  cpu %.2f ms\n",
               ns[c], ms[c], ns[c] * 1e3 / ms[c], ns[c] * ms[0] / ms[c], best[c], median(cpu[c], reps));
    dw_backend_close(be);
    return 0;
}
