#!/usr/bin/env python3
"""Reads the CSV that Nsight Compute wrote for a batched run (tools/gpu-profile-batch.sh: one
metric, gpu__time_duration.sum, per kernel launch) and prints where the GPU time of the last
batched steps went: the steps are cut at each argmax_rows kernel (the end of a step whose tokens
are chosen on the device), and for the last --steps of them each kernel's launches per step and
microseconds per step, largest first, with the step's total.

Usage: tools/ncu-steps.py NCU.csv [--steps 3] [--json]"""
import argparse
import csv
import json
import sys
from collections import OrderedDict

UNITS = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3, "second": 1e6, "s": 1e6}


def launches(path):
    """(kernel name, grid, block, microseconds) per launch, in launch order."""
    with open(path, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # ncu's own messages start otherwise
    out = []
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(row["Metric Value"].replace(",", ""))
        out.append((row["Kernel Name"], row.get("Grid Size", ""), row.get("Block Size", ""),
                    value * UNITS.get(row.get("Metric Unit", "nsecond"), 1e-3)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    ls = launches(a.csv)
    ends = [i for i, l in enumerate(ls) if "argmax_rows" in l[0]]
    if len(ends) < a.steps + 1:
        sys.exit(f"ncu-steps: {a.csv}: {len(ends)} step ends (argmax_rows launches) found, {a.steps + 1} needed")
    first, last = ends[-a.steps - 1] + 1, ends[-1] + 1
    per = OrderedDict()
    for name, grid, block, us in ls[first:last]:
        k = per.setdefault(name, {"launches": 0, "us": 0.0, "grids": set()})
        k["launches"] += 1
        k["us"] += us
        k["grids"].add(grid)
    total = sum(k["us"] for k in per.values()) / a.steps
    rows = sorted(per.items(), key=lambda kv: -kv[1]["us"])
    if a.json:
        print(json.dumps({"steps": a.steps, "kernel_launches": len(ls), "step_gpu_us": round(total, 1),
                          "kernels": [{"name": n, "launches_per_step": k["launches"] / a.steps,
                                       "us_per_step": round(k["us"] / a.steps, 1)} for n, k in rows]}))
        return
    print(f"{a.csv}: {len(ls)} launches; the last {a.steps} steps: {total:.1f} us of GPU time a step")
    print(f"  {'kernel':<44} {'launches':>8} {'us/step':>9} {'share':>6}  grids")
    for n, k in rows:
        grids = " ".join(sorted(k["grids"]))[:60]
        print(f"  {n[:44]:<44} {k['launches'] / a.steps:8.1f} {k['us'] / a.steps:9.1f} {100 * k['us'] / a.steps / total:5.1f}%  {grids}")


if __name__ == "__main__":
    main()
