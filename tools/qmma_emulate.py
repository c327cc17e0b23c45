#!/usr/bin/env python3
"""Lane-by-lane numpy emulation of src/backend/cuda/kernels_qmma.cu's index arithmetic (a check of
the kernel's layout, not of the GPU): x' into per-group scaled hi/lo f16 pairs in the lanes'
order, each lane's 8 bytes of codes per row and group, codes widened to 1024 + 64q f16 pairs, the
A/B/D fragments of mma.m16n8k16 as the PTX ISA lays them out, and the per-group scale and bias on
the sums. Prints the worst error against the exact product of the dequantized weights, relative
to the mean |y| (the D sums are exact here, so this checks indices, not the accumulator).

Usage: python3 tools/qmma_emulate.py [--k 640] [--rows 40] [--group 64]   (needs numpy)
"""
import argparse

import numpy as np

QG = 64  # inputs per mma group


def f16_bits(v):
    return int(np.float16(v).view(np.uint16))


def halves(u):
    lo = np.array([u & 0xFFFF], np.uint16).view(np.float16)[0]
    hi = np.array([u >> 16], np.uint16).view(np.float16)[0]
    return float(lo), float(hi)


def code_pair(word, s):
    v = {0: word << 6, 1: word << 2, 2: word >> 2, 3: word >> 6}[s] & 0xFFFFFFFF
    return (v & 0x03C003C0) | 0x64006400


def stage_pairs(x, K):
    """qmma_stage_pairs: pair i = (group, lane t, p) holds inputs 64·group + 16t + 8(p/4) + p%4, +4."""
    xh, xl = np.zeros(K // 2, np.int64), np.zeros(K // 2, np.int64)
    scale, gsum = np.zeros(K // QG, np.float32), np.zeros(K // QG, np.float32)
    for gi in range(K // QG):
        ks = [gi * QG + k for k in range(QG)]
        mx = float(np.max(np.abs(x[ks])))
        e = max(-100, min(100, 14 - int(np.frexp(mx)[1]))) if mx > 0 else 0
        f = np.float32(2.0**e)
        scale[gi], gsum[gi] = np.float32(2.0**-e), np.float32(np.sum(x[ks]))
        for i in range(gi * 32, gi * 32 + 32):
            t, p = (i >> 3) & 3, i & 7
            k = gi * QG + 16 * t + 8 * (p >> 2) + (p & 3)
            y0, y1 = np.float32(x[k] * f), np.float32(x[k + 4] * f)
            h0, h1 = np.float32(np.float16(y0)), np.float32(np.float16(y1))
            xh[i] = f16_bits(h0) | f16_bits(h1) << 16
            xl[i] = f16_bits(y0 - h0) | f16_bits(y1 - h1) << 16
    return xh, xl, scale, gsum


def mma(c, regs_a, regs_b):
    """D += A·B with A (16×16) and B (16×8) assembled from the lanes' registers per the PTX ISA."""
    A, B = np.zeros((16, 16)), np.zeros((16, 8))
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        a0, a1, a2, a3 = regs_a[lane]
        A[g, 2 * t:2 * t + 2], A[g + 8, 2 * t:2 * t + 2] = halves(a0), halves(a1)
        A[g, 2 * t + 8:2 * t + 10], A[g + 8, 2 * t + 8:2 * t + 10] = halves(a2), halves(a3)
        b0, b1 = regs_b[lane]
        B[2 * t:2 * t + 2, g], B[2 * t + 8:2 * t + 10, g] = halves(b0), halves(b1)
    D = A @ B
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        c[lane] += np.array([D[g, 2 * t], D[g, 2 * t + 1], D[g + 8, 2 * t], D[g + 8, 2 * t + 1]])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=640)
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--group", type=int, default=64)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    K, rows, group = args.k, args.rows, args.group
    rng = np.random.default_rng(args.seed)
    q = rng.integers(0, 16, size=(rows, K)).astype(np.uint32)
    s = (rng.random((rows, K // group)) * 0.02 + 0.001).astype(np.float32)
    b = (-8 * s * (1 + 0.1 * rng.standard_normal((rows, K // group)))).astype(np.float32)
    x = (rng.standard_normal(K) * 1.5).astype(np.float32)
    exact = (np.repeat(s, group, axis=1).astype(np.float64) * q + np.repeat(b, group, axis=1)) @ x.astype(np.float64)
    words = np.zeros((rows, K // 8), np.uint32)  # MLX packing: 8 codes per word, lowest bits first
    for i in range(8):
        words |= q[:, i::8] << (4 * i)
    row_bytes = words.view(np.uint8).reshape(rows, K // 2)
    xh, xl, scale, gsum = stage_pairs(x, K)

    out = np.zeros(rows)
    for task in range((rows + 15) // 16):
        for gi in range(K // QG):
            c = np.zeros((32, 4))
            code = {}
            for lane in range(32):
                g, t = lane >> 2, lane & 3
                for n in range(2):  # rows g and g + 8
                    r = task * 16 + g + 8 * n
                    raw = row_bytes[r, gi * 32 + t * 8:gi * 32 + t * 8 + 8] if r < rows else np.zeros(8, np.uint8)
                    code[lane, n] = [int(v) for v in raw.view(np.uint32)]
            for half in range(2):  # word 0: pairs 0-3, word 1: pairs 4-7
                for j in range(2):
                    s0, s1, p = 2 * j, 2 * j + 1, 4 * half + 2 * j
                    regs_a, regs_h, regs_l = [], [], []
                    for lane in range(32):
                        t = lane & 3
                        ug, u8 = code[lane, 0][half], code[lane, 1][half]
                        regs_a.append((code_pair(ug, s0), code_pair(u8, s0), code_pair(ug, s1), code_pair(u8, s1)))
                        base = (gi * 4 + t) * 8
                        regs_h.append((int(xh[base + p]), int(xh[base + p + 1])))
                        regs_l.append((int(xl[base + p]), int(xl[base + p + 1])))
                    mma(c, regs_a, regs_h)
                    mma(c, regs_a, regs_l)
            for lane in range(0, 32, 4):  # t == 0 lanes, as the kernel's reduction reads them
                g = lane >> 2
                for n, ci in ((0, 0), (1, 2)):
                    r = task * 16 + g + 8 * n
                    if r < rows:
                        sg, bg = s[r, gi * QG // group], b[r, gi * QG // group]
                        out[r] += sg / 64 * scale[gi] * c[lane, ci] + (bg - 16 * sg) * gsum[gi]
    print(f"K {K}, {rows} rows, groups of {group}: worst error / mean |y| = "
          f"{np.abs(out - exact).max() / np.abs(exact).mean():.3g}")


if __name__ == "__main__":
    main()
