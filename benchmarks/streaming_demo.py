#!/usr/bin/env python3
"""Out-of-core demonstration: a two-level random-intercept model on parquet data that is
never held in memory (``ml.mixed(cmd, data="path")`` accumulates sufficient statistics
partition by partition; see multilevel.lmm.streaming).

Usage: .venv/bin/python benchmarks/streaming_demo.py ROWS [--dir DIR]
Writes the data in 2,000,000-row parquet files (seeded, generated chunk by chunk), fits
``mixed y x1 x2 x3 x4 x5 || g:`` and prints rows, time, peak RSS of this process and the table.
"""
from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

CHUNK = 2_000_000
GROUP_SIZE = 50


def write(rows: int, folder: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(20261125)
    n_groups = rows // GROUP_SIZE
    u = rng.normal(0, 1.0, n_groups)
    for i, start in enumerate(range(0, rows, CHUNK)):
        n = min(CHUNK, rows - start)
        g = (start + np.arange(n)) // GROUP_SIZE
        x = rng.standard_normal((n, 5))
        y = 1 + x @ np.array([0.5, -0.3, 0.2, 0.0, 0.1]) + u[g] + rng.normal(0, 2.0, n)
        table = pa.table({"y": y, **{f"x{j + 1}": x[:, j] for j in range(5)}, "g": g.astype(np.int64)})
        pq.write_table(table, os.path.join(folder, f"part-{i:05d}.parquet"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("rows", type=int)
    ap.add_argument("--dir", default=os.path.join(os.path.dirname(__file__), ".cache", "stream"))
    a = ap.parse_args()
    folder = os.path.join(a.dir, f"rows{a.rows}")
    if not os.path.isdir(folder):
        t = time.perf_counter()
        write(a.rows, folder)
        print(f"wrote {a.rows:,} rows in {time.perf_counter() - t:.1f} s")
    import multilevel as ml

    t = time.perf_counter()
    res = ml.mixed("y x1 x2 x3 x4 x5 || g:", data=folder, nolog=True)
    elapsed = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"rows {res.nobs:,}  groups {res.equations[0].n_groups:,}  fit {elapsed:.1f} s  peak RSS {peak:.2f} GiB")
    print(res)


if __name__ == "__main__":
    main()
