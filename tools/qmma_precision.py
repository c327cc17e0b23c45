#!/usr/bin/env python3
"""Precision of a 4-bit matrix-vector product on tensor cores, emulated in numpy (a design check
for a planned CUDA kernel; docs/PERFORMANCE.md "v16 on the H100"): codes widened to f16 (A), x in
f16 (B) alone or as a hi + lo pair, f16 products summed in f32 per group of 64 inputs, the group's
scale and bias applied to the f32 sum. Prints each variant's worst error relative to the mean
|y|, against the exact product of the dequantized weights, beside today's f32 path.

Usage: python3 tools/qmma_precision.py [--k 2048] [--rows 64] [--seed 1]   (needs numpy)
"""
import argparse

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=2048)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    K, rows, G = args.k, args.rows, 64
    rng = np.random.default_rng(args.seed)
    q = rng.integers(0, 16, size=(rows, K)).astype(np.float64)
    s = rng.random((rows, K // G)) * 0.02 + 0.001
    b = -8 * s * (1 + 0.1 * rng.standard_normal((rows, K // G)))
    x = rng.standard_normal(K) * 1.5
    exact = (np.repeat(s, G, axis=1) * q + np.repeat(b, G, axis=1)) @ x
    xh = x.astype(np.float16).astype(np.float64)
    xl = (x - xh).astype(np.float16).astype(np.float64)

    def f32_sum(prods):  # sequential f32 accumulation, as an accumulator register would
        d = np.zeros(prods.shape[0], dtype=np.float32)
        for k in range(prods.shape[1]):
            d = (d + prods[:, k]).astype(np.float32)
        return d.astype(np.float64)

    def tensor_path(offset, mul, use_lo):
        """A = offset + mul·q in f16 (exact), D = Σ A·x in f32, Σ q·x = (D − offset·X) / mul."""
        out = np.zeros(rows)
        for g in range(K // G):
            sl = slice(g * G, (g + 1) * G)
            a = offset + mul * q[:, sl]
            prods = (a * xh[sl]).astype(np.float32)
            xs = xh[sl]
            if use_lo:
                prods = np.concatenate([prods, (a * xl[sl]).astype(np.float32)], axis=1)
                xs = xs + xl[sl]
            X = np.float64(np.float32(np.sum(xs)))
            out += s[:, g] * (f32_sum(prods) - offset * X) / mul + b[:, g] * np.sum(x[sl])
        return out

    cur = np.zeros(rows)
    for g in range(K // G):  # today's kernel: f32 codes times f32 x, f32 sums per chunk
        sl = slice(g * G, (g + 1) * G)
        cur += s[:, g] * f32_sum((q[:, sl] * x[sl].astype(np.float32)).astype(np.float32)) + b[:, g] * np.sum(x[sl])

    def rel(y):
        return np.abs(y - exact).max() / np.abs(exact).mean()

    print(f"{'f32 codes and x (today)':44s} {rel(cur):.3g}")
    for name, offset, mul in [("q (exact, an HSUB2 per pair)", 0, 1), ("1024 + q (lop3 only)", 1024, 1),
                              ("1024 + 64 q (shift + lop3)", 1024, 64)]:
        for lo in (False, True):
            label = f"A = {name}, x {'hi + lo' if lo else 'f16'}"
            print(f"{label:44s} {rel(tensor_path(offset, mul, lo)):.3g}")


if __name__ == "__main__":
    main()
