/* The GEMM actor (the seed's zero-copy test): fills A and B in its own memory, asks the host
 * to multiply them on the actor's backend (dw.gemm works in place on these pages), reads C
 * back through the same pointer and checks it against its own reference product.
 * Usage: gemm [N] (default 128). Prints the error count; exits 1 if any. */
#include <driftwood/guest.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng = 0x9E3779B97F4A7C15u;
static float random_unit(void) { /* xorshift64*: fresh pseudo-random data, never zeros */
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (float)((rng * 2685821657736338717u) >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 128;
    if (n <= 0 || n > 2048) {
        fprintf(stderr, "gemm: size must be in [1, 2048]\n");
        return 2;
    }
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
    if (!a || !b || !c) return 2;
    for (int i = 0; i < n * n; i++) a[i] = random_unit(), b[i] = random_unit(), c[i] = NAN;

    int64_t t0 = dw_now();
    int32_t rc = dw_gemm(n, n, n, a, b, c);
    int64_t t1 = dw_now();
    if (rc != DW_E_OK) {
        char msg[256];
        dw_last_error(msg, sizeof msg);
        fprintf(stderr, "gemm: dw_gemm failed: %s\n", msg);
        return 1;
    }
    int errors = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double ref = 0;
            for (int p = 0; p < n; p++) ref += (double)a[i * n + p] * b[p * n + j];
            double got = c[i * n + j];
            if (!(fabs(got - ref) <= 1e-4 * (1.0 + fabs(ref)))) errors++;
        }
    printf("gemm %dx%d: %d errors, %.3f ms in dw_gemm\n", n, n, errors, (t1 - t0) / 1e6);
    free(a), free(b), free(c);
    return errors ? 1 : 0;
}
