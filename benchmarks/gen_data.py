#!/usr/bin/env python3
"""Seeded benchmark data for multilevel (numpy only; nothing is committed).

Usage::

    .venv/bin/python benchmarks/gen_data.py [--scale]   # writes benchmarks/.cache/*.npz

Data sets
---------
B4 (``gen_b4``): the simulated two-level LMM of the shared peer kit
(``shared/bench/gen_data.py``, copied here so this repo stands alone)::

    y = 1 + 0.5 x1 - 0.3 x2 + 0.2 x3 + 0 x4 + 0.1 x5 + u0[g] + u1[g] x1 + e
    x1..x5 ~ N(0,1) iid; (u0, u1) ~ N(0, Sigma), sd = (1.0, 0.5), corr = 0.3;
    e ~ N(0, 2^2); groups of 50 rows, g = 1..G (1-based int64), rows sorted by g.

  With the default seed 20261124 and 20,000 groups (1,000,000 rows) it is
  bit-identical to the peer kit's ``b4_large_lmm.csv`` (same numpy calls in
  the same order), so log-likelihoods compare with PEERS.md
  (ML loglik -2151505.6340).  Sizes 1e5 / 1e7 use the same seed with
  2,000 / 200,000 groups of 50.

B3 (``gen_b3``): an InstEval-sized crossed design (lme4::InstEval has
73,421 ratings of 1,128 lecturers ``d`` by 2,972 students ``s``; lecturers
belong to 14 departments; ``service`` = lecture held for another
department).  Simulated, seed 20261126:

* every student and lecturer appears at least once; the remaining rows draw
  students and lecturers with Zipf-like weights ``w_r = (r + 5)^-a``
  (a = 0.5 for s, 0.9 for d) over a random permutation of the levels, so
  a few levels are very frequent and many are rare (as in InstEval);
* each lecturer belongs to one department (department sizes Zipf-like,
  every department non-empty), so ``d`` is nested in ``dept``;
* ``service`` (0/1) is per row, P(service) = p_d ~ Beta(0.6, 0.9) per
  lecturer; every dept x service cell is non-empty (28 levels of
  ``dept:service``);
* y = 3.2 - 0.07 service + u_s + u_d + u_ds + e with sd(u_s) = 0.32,
  sd(u_d) = 0.51, sd(u_ds) = 0.09, sd(e) = 1.18 (close to the lme4 fit of
  InstEval); y is continuous (InstEval's is a 1-5 rating; this does not
  change the algebra or the timings).

Columns ``s``, ``d``, ``dept`` are 1-based int64 codes, ``service`` is
0/1 int64; rows are sorted by (s, d) like InstEval.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("MULTILEVEL_BENCH_CACHE", os.path.join(HERE, ".cache"))
FORMAT_VERSION = 1  # bump when a generator changes, so stale caches are not reused

B4_SEED = 20261124
B3_SEED = 20261126
B4_PER_GROUP = 50
B4_SIZES = {"1e5": 100_000, "1e6": 1_000_000, "1e7": 10_000_000}


# --------------------------------------------------------------------------- B4
def gen_b4(n_groups: int = 20_000, per_group: int = B4_PER_GROUP, seed: int = B4_SEED) -> pd.DataFrame:
    """B4: ``y ~ x1+...+x5 + (1 + x1 | g)`` truth; identical to the peer kit at the defaults."""
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    g = np.repeat(np.arange(1, n_groups + 1, dtype=np.int64), per_group)
    X = rng.standard_normal((n, 5))
    sd = np.array([1.0, 0.5])
    corr = 0.3
    Sigma = np.array([[sd[0] ** 2, corr * sd[0] * sd[1]],
                      [corr * sd[0] * sd[1], sd[1] ** 2]])
    U = rng.multivariate_normal(np.zeros(2), Sigma, size=n_groups, method="cholesky")
    e = rng.normal(0.0, 2.0, size=n)
    beta = np.array([0.5, -0.3, 0.2, 0.0, 0.1])
    gi = g - 1
    y = 1.0 + X @ beta + U[gi, 0] + U[gi, 1] * X[:, 0] + e
    return pd.DataFrame({"y": y, "x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2],
                         "x4": X[:, 3], "x5": X[:, 4], "g": g})


# --------------------------------------------------------------------------- B3
def _zipf_weights(k: int, a: float, rng: np.random.Generator, offset: float = 5.0) -> np.ndarray:
    """Zipf-like probabilities over k levels, assigned to levels in random order."""
    w = (np.arange(1, k + 1) + offset) ** (-a)
    w = w[rng.permutation(k)]
    return w / w.sum()


def _cover_then_sample(k: int, n: int, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """n 0-based codes: every level once, the rest drawn with probabilities p, shuffled."""
    codes = np.concatenate([np.arange(k), rng.choice(k, size=n - k, p=p)])
    return codes[rng.permutation(n)]


def gen_b3(n: int = 73_421, n_s: int = 2_972, n_d: int = 1_128, n_dept: int = 14,
           seed: int = B3_SEED) -> pd.DataFrame:
    """B3: InstEval-sized crossed data, ``y ~ 1 + service + (1|s) + (1|d) + (1|dept:service)``."""
    rng = np.random.default_rng(seed)
    s = _cover_then_sample(n_s, n, _zipf_weights(n_s, 0.5, rng), rng)
    d = _cover_then_sample(n_d, n, _zipf_weights(n_d, 0.9, rng), rng)
    # lecturer -> department (every department has a lecturer; sizes Zipf-like)
    dept_of_d = _cover_then_sample(n_dept, n_d, _zipf_weights(n_dept, 1.0, rng, offset=1.0), rng)
    dept = dept_of_d[d]
    # service: per-row Bernoulli with a lecturer-specific probability
    p_serv = rng.beta(0.6, 0.9, size=n_d)
    service = (rng.uniform(size=n) < p_serv[d]).astype(np.int64)
    # guarantee all dept x service cells (flip one row of each missing cell)
    for k in range(n_dept):
        for sv in (0, 1):
            if not np.any((dept == k) & (service == sv)):
                i = np.flatnonzero(dept == k)[0]
                service[i] = sv
    ds = dept * 2 + service
    u_s = rng.normal(0.0, 0.32, size=n_s)
    u_d = rng.normal(0.0, 0.51, size=n_d)
    u_ds = rng.normal(0.0, 0.09, size=2 * n_dept)
    e = rng.normal(0.0, 1.18, size=n)
    y = 3.2 - 0.07 * service + u_s[s] + u_d[d] + u_ds[ds] + e
    order = np.lexsort((d, s))
    return pd.DataFrame({"y": y[order], "s": s[order] + 1, "d": d[order] + 1,
                         "dept": dept[order] + 1, "service": service[order]})


# --------------------------------------------------------------------------- cache
def _path(name: str) -> str:
    return os.path.join(CACHE, f"{name}.v{FORMAT_VERSION}.npz")


def _save(df: pd.DataFrame, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **{c: df[c].to_numpy() for c in df.columns})
    os.replace(tmp, path)


def _load(path: str) -> pd.DataFrame:
    with np.load(path) as z:
        return pd.DataFrame({c: z[c] for c in z.files})


def dataset_names(scale: bool = False) -> list[str]:
    return ["b3"] + [f"b4_{k}" for k in B4_SIZES if scale or k != "1e7"]


def generate(name: str) -> pd.DataFrame:
    if name == "b3":
        return gen_b3()
    if name.startswith("b4_"):
        return gen_b4(n_groups=B4_SIZES[name[3:]] // B4_PER_GROUP)
    raise ValueError(f"unknown data set {name!r}")


def ensure(name: str, verbose: bool = True) -> str:
    """Path of the cached data set ``name`` (``b3``, ``b4_1e5``, ``b4_1e6``, ``b4_1e7``)."""
    path = _path(name)
    if not os.path.exists(path):
        t0 = time.perf_counter()
        df = generate(name)
        _save(df, path)
        if verbose:
            print(f"generated {name}: {len(df):,} rows -> {os.path.relpath(path)} "
                  f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return path


def load(name: str) -> pd.DataFrame:
    """The data set ``name`` as a DataFrame (generated and cached on first use)."""
    return _load(ensure(name))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", action="store_true", help="also the 10,000,000-row B4")
    ap.add_argument("--csv", metavar="DIR", help="also write CSV copies (for R / other peers)")
    args = ap.parse_args(argv)
    for name in dataset_names(args.scale):
        ensure(name)
        if args.csv:
            os.makedirs(args.csv, exist_ok=True)
            out = os.path.join(args.csv, f"{name}.csv")
            if not os.path.exists(out):
                load(name).to_csv(out, index=False, float_format="%.17g")
                print("wrote", out, file=sys.stderr)


if __name__ == "__main__":
    main()
