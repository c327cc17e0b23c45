/* A measuring tool, not part of the build: the batched step's matrix product (kernels.h:
 * launch_matmul_rows, with the rounding of x in front, as matmul_rows issues them) on the
 * Llama-3.2-1B and Llama-3.1-8B shapes, bf16 and 4-bit (MLX affine, group 64, bf16 scales), for
 * n = 1, 4, 16, 64 tokens, against the device-to-device copy bandwidth measured in the same run.
 * Each matrix set (q/k/v in one launch, o, gate/up in one launch, down, the LM head) rotates
 * over enough copies of its weights that they are read from DRAM, not L2. Prints µs, the weight
 * GB/s and its share of the copy bandwidth, and the matrix products' part of a decode step (all
 * layers + LM head) as tok/s for n tokens. Build and run on the GPU machine:
 *   nvcc -std=c++17 -O3 -arch=sm_90 -Iinclude -Isrc bench/cuda/batch_matmul_bench.cu \
 *        src/backend/cuda/kernels_batch_matmul.cu -o /tmp/batch_matmul_bench && /tmp/batch_matmul_bench */
#include "backend/cuda/kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CK(x)                                                                                    \
    do {                                                                                         \
        cudaError_t e_ = (x);                                                                    \
        if (e_ != cudaSuccess) {                                                                 \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

__global__ void fill_random(uint32_t *p, size_t words, uint32_t seed, uint32_t mask, uint32_t add) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < words; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
        p[i] = (h & mask) + add;
    }
}

static void fill(void *p, size_t bytes, uint32_t seed, uint32_t mask = 0xffffffffu, uint32_t add = 0) {
    fill_random<<<1024, 256>>>((uint32_t *)p, bytes / 4, seed, mask, add);
    CK(cudaGetLastError());
}

static double copy_bandwidth() {
    const size_t bytes = (size_t)1 << 30;
    void *a, *b;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMemset(a, 1, bytes));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    std::vector<float> ms;
    for (int i = -1; i < 10; i++) {
        cudaEventRecord(e0);
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        float t;
        cudaEventElapsedTime(&t, e0, e1);
        if (i >= 0) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    cudaFree(a), cudaFree(b);
    return 2.0 * bytes / (ms[ms.size() / 2] * 1e-3) / 1e9;
}

struct mset {
    const char *name;
    int count, rows[4], K;
};

/* Median µs of one matmul_rows (x rounding + product) of set s at n tokens. */
static double time_set(const mset &s, int q4, int n, double *bytes_out) {
    size_t bytes = 0, sb_bytes[4] = {0}, w_bytes[4];
    for (int j = 0; j < s.count; j++) {
        w_bytes[j] = q4 ? (size_t)s.rows[j] * s.K / 2 : (size_t)s.rows[j] * s.K * 2;
        if (q4) sb_bytes[j] = (size_t)s.rows[j] * (s.K / 64) * 4;
        bytes += w_bytes[j] + sb_bytes[j];
    }
    *bytes_out = (double)bytes;
    int copies = (int)std::min<size_t>(64, std::max<size_t>(1, ((size_t)300 << 20) / bytes + 1));
    std::vector<void *> bufs;
    std::vector<dwk::mmr_args> args(copies);
    float *x, *outs[4];
    void *xh;
    CK(cudaMalloc(&x, (size_t)n * s.K * 4));
    CK(cudaMalloc(&xh, (size_t)n * s.K * 2));
    fill(x, (size_t)n * s.K * 4, 7, 0x3fffffffu, 0); /* finite floats */
    for (int j = 0; j < s.count; j++) CK(cudaMalloc(&outs[j], (size_t)n * s.rows[j] * 4));
    for (int c = 0; c < copies; c++) {
        dwk::mmr_args &a = args[c];
        memset(&a, 0, sizeof a);
        a.count = s.count, a.K = s.K, a.n = n, a.kind = q4 ? dwk::MMR_Q4 : dwk::MMR_BF16;
        a.qgroup = 64, a.sbtype = dwk::W_BF16, a.xh = xh;
        for (int j = 0; j < s.count; j++) {
            void *w, *sb = nullptr;
            CK(cudaMalloc(&w, w_bytes[j]));
            fill(w, w_bytes[j], 11 + c * 8 + j, q4 ? 0xffffffffu : 0x3f7f3f7fu, 0);
            bufs.push_back(w);
            if (q4) {
                CK(cudaMalloc(&sb, sb_bytes[j]));
                fill(sb, sb_bytes[j], 99 + c, 0x007f007fu, 0x3c003c00u);
                bufs.push_back(sb);
            }
            a.w[j] = w, a.sb[j] = sb, a.out[j] = outs[j], a.rows[j] = s.rows[j];
        }
    }
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    std::vector<float> ms;
    const int reps = std::max(copies, 20);
    for (int i = -3; i < reps; i++) {
        dwk::mmr_args &a = args[(i + 3) % copies];
        cudaEventRecord(e0);
        CK(dwk::launch_round_x(xh, x, (size_t)n * s.K, 0, 0));
        CK(dwk::launch_matmul_rows(a, 0));
        cudaEventRecord(e1);
        CK(cudaEventSynchronize(e1));
        float t;
        cudaEventElapsedTime(&t, e0, e1);
        if (i >= 0) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    for (void *p : bufs) cudaFree(p);
    for (int j = 0; j < s.count; j++) cudaFree(outs[j]);
    cudaFree(x), cudaFree(xh);
    return ms[ms.size() / 2] * 1e3;
}

int main() {
    const double bw = copy_bandwidth();
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device %s, copy bandwidth %.0f GB/s (read + write)\n", prop.name, bw);
    struct model {
        const char *name;
        int layers;
        std::vector<mset> sets;
    } models[] = {
        {"Llama-3.2-1B", 16,
         {{"q/k/v", 3, {2048, 512, 512}, 2048},
          {"o", 1, {2048}, 2048},
          {"gate/up", 2, {8192, 8192}, 2048},
          {"down", 1, {2048}, 8192},
          {"lm_head", 1, {128256}, 2048}}},
        {"Llama-3.1-8B", 32,
         {{"q/k/v", 3, {4096, 1024, 1024}, 4096},
          {"o", 1, {4096}, 4096},
          {"gate/up", 2, {14336, 14336}, 4096},
          {"down", 1, {4096}, 14336},
          {"lm_head", 1, {128256}, 4096}}},
    };
    const int ns[] = {1, 4, 16, 64};
    for (const model &m : models)
        for (int q4 = 0; q4 < 2; q4++) {
            printf("\n%s %s\n", m.name, q4 ? "4-bit g64" : "bf16");
            printf("%-8s", "n");
            for (const mset &s : m.sets) printf(" | %-22s", s.name);
            printf(" | step (products only)\n");
            for (int n : ns) {
                printf("%-8d", n);
                double step_us = 0, step_bytes = 0;
                for (const mset &s : m.sets) {
                    double bytes;
                    const double us = time_set(s, q4, n, &bytes);
                    const double gbs = bytes / (us * 1e-6) / 1e9;
                    printf(" | %7.1f us %5.0f GB/s %3.0f%%", us, gbs, 100.0 * gbs / bw);
                    const int times = strcmp(s.name, "lm_head") ? m.layers : 1;
                    step_us += us * times, step_bytes += bytes * times;
                }
                printf(" | %.3f ms, %.0f GB/s, %.0f tok/s\n", step_us / 1e3, step_bytes / (step_us * 1e-6) / 1e9,
                       n / (step_us * 1e-6));
            }
        }
    return 0;
}
