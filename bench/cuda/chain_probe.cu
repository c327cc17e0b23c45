/* A measuring tool, not part of the build (tools/gpu-probe.sh builds and runs it on the GPU
 * machine): the engine's own decode matvec kernels (launch_matvec) chained as in a decode step
 * without attention (q/k/v with RMSNorm, o + residual, gate/up with RMSNorm + SwiGLU, down +
 * residual; distinct weights per layer, so nothing is L2-warm), against plain streaming reads of
 * the same buffers (4 KB per warp and round, the whole GPU reading each buffer front to back,
 * PDL between kernels), in one run. Also each kind alone as a matvec with the rest streamed.
 * Prints µs per layer and the bandwidth; `chain_probe 8b` for the Llama-3.1-8B shape, else 1B.
 * What the matvec chain loses against the streaming one is what the kernels themselves cost
 * beyond moving their weights. */
#include "backend/cuda/kernels.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <cuda_runtime.h>

__global__ void __launch_bounds__(256) stream_read(const uint4 *p, size_t n16, unsigned *sink) {
    unsigned acc = 0;
    const size_t warps = (size_t)gridDim.x * 8, w = (size_t)blockIdx.x * 8 + threadIdx.x / 32;
    const int lane = threadIdx.x & 31;
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    bool first = true;
    for (size_t c = w * 256; c < n16; c += warps * 256) {
        uint4 v[8];
#pragma unroll
        for (int u = 0; u < 8; u++) {
            size_t i = c + u * 32 + lane;
            v[u] = i < n16 ? __ldcs(p + i) : make_uint4(0, 0, 0, 0);
        }
        if (first) { asm volatile("griddepcontrol.wait;" ::: "memory"); first = false; }
#pragma unroll
        for (int u = 0; u < 8; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    if (first) asm volatile("griddepcontrol.wait;" ::: "memory");
    if (acc == 0x12345678u) sink[blockIdx.x] = acc;
}

__global__ void fill(unsigned short *p, size_t n, unsigned seed) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 13;
        p[i] = (unsigned short)(0x3c00 | (h & 0x3ff)) ^ (h & 0x8000); /* bf16 of about ±[0.008, 0.016) */
    }
}

struct matrix { void *w; int rows, K; };

int main(int argc, char **argv) {
    const bool big = argc > 1 && !strcmp(argv[1], "8b");
    const int layers = big ? 32 : 16, H = big ? 4096 : 2048, F = big ? 14336 : 8192, Q = H, KV = big ? 1024 : 512;
    int nsm = 0;
    cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, 0);
    auto mat = [&](int rows, int K) {
        matrix m{nullptr, rows, K};
        cudaMalloc(&m.w, (size_t)rows * K * 2);
        fill<<<1024, 256>>>((unsigned short *)m.w, (size_t)rows * K, rows * 31u + K);
        return m;
    };
    struct layer { matrix q, k, v, o, g, u, d; };
    std::vector<layer> L(layers);
    for (auto &l : L) l = {mat(Q, H), mat(KV, H), mat(KV, H), mat(H, Q), mat(F, H), mat(F, H), mat(H, F)};
    float *x, *nw, *qo, *ko, *vo, *att, *go, *uo, *tmp;
    cudaMalloc(&x, H * 4), cudaMalloc(&nw, H * 4), cudaMalloc(&qo, Q * 4), cudaMalloc(&ko, KV * 4);
    cudaMalloc(&vo, KV * 4), cudaMalloc(&att, Q * 4), cudaMalloc(&go, F * 4), cudaMalloc(&uo, F * 4), cudaMalloc(&tmp, F * 4);
    std::vector<float> ones(F, 0.01f);
    cudaMemcpy(x, ones.data(), H * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(nw, ones.data(), H * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(att, ones.data(), Q * 4, cudaMemcpyHostToDevice);
    unsigned *sink;
    cudaMalloc(&sink, 1 << 20);
    cudaStream_t s;
    cudaStreamCreate(&s);
    double bytes = 0;
    for (auto &l : L)
        for (matrix *m : {&l.q, &l.k, &l.v, &l.o, &l.g, &l.u, &l.d}) bytes += (double)m->rows * m->K * 2;
    auto mv = [&](std::vector<matrix> ms, const float *in, float *const *outs, const float *norm, float *res, int pair) {
        dwk::mv_args a = {};
        a.count = (int)ms.size(), a.K = ms[0].K, a.wtype = dwk::W_BF16, a.x = in, a.norm_w = norm, a.eps = 1e-5f;
        a.res = res, a.pair_swiglu = pair;
        a.row_start[0] = 0;
        for (int j = 0; j < a.count; j++) a.w[j] = ms[j].w, a.out[j] = outs[j], a.row_start[j + 1] = a.row_start[j] + ms[j].rows;
        if (pair) a.row_start[2] = a.row_start[1] * 2;
        dwk::launch_matvec(a, nsm, s);
    };
    /* which: 0 every matrix by launch_matvec; 1 every matrix streamed; 10 + k: launch_matvec for
     * kind k only (0 q/k/v, 1 o, 2 gate/up, 3 down), the rest streamed */
    auto stream = [&](const matrix &m) {
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = nsm * 4, cfg.blockDim = 256, cfg.stream = s;
        cudaLaunchAttribute at[1];
        at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = at, cfg.numAttrs = 1;
        cudaLaunchKernelEx(&cfg, stream_read, (const uint4 *)m.w, (size_t)m.rows * m.K * 2 / 16, sink);
    };
    auto chain = [&](int which) {
        for (auto &l : L) {
            float *o3[3] = {qo, ko, vo}, *o1[1] = {tmp}, *o2[2] = {go, uo};
            const bool all = which == 0;
            if (all || which == 10) mv({l.q, l.k, l.v}, x, o3, nw, nullptr, 0);
            else for (matrix *m : {&l.q, &l.k, &l.v}) stream(*m);
            if (all || which == 11) mv({l.o}, att, o1, nullptr, x, 0);
            else stream(l.o);
            if (all || which == 12) mv({l.g, l.u}, x, o2, nw, nullptr, 1);
            else for (matrix *m : {&l.g, &l.u}) stream(*m);
            if (all || which == 13) mv({l.d}, go, o1, nullptr, x, 0);
            else stream(l.d);
        }
    };
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    const char *names[] = {"matvec chain", "streaming reads"};
    for (int which : {0, 1, 10, 11, 12, 13, 0, 1}) {
        std::vector<float> t;
        for (int r = 0; r < 11; r++) {
            cudaEventRecord(e0, s);
            chain(which);
            cudaEventRecord(e1, s);
            cudaEventSynchronize(e1);
            float ms;
            cudaEventElapsedTime(&ms, e0, e1);
            t.push_back(ms);
        }
        std::sort(t.begin(), t.end());
        const float ms = t[t.size() / 2];
        const char *kinds[] = {"matvec q/k/v only", "matvec o only", "matvec gate/up only", "matvec down only"};
        printf("%s %-28s %7.1f us per layer, %.0f GB/s (%.1f MB per layer)\n", big ? "8B" : "1B",
               which >= 10 ? kinds[which - 10] : names[which], ms * 1e3 / layers, bytes / ms / 1e6,
               bytes / layers / 1e6);
    }
    printf("%s\n", cudaGetErrorString(cudaGetLastError()));
    return 0;
}
