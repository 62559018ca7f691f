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

B5b (``gen_b5b``): the simulated 200,000-row logistic model of the peer kit
(``b5_large_logit.csv``, bit-identical: same seed 20261125 and numpy calls)::

    logit P(y = 1) = -0.5 + 0.5 x1 - 0.3 x2 + 0.2 x3 + u[g],  u ~ N(0, 1),
    x1..x3 ~ N(0,1); 2,000 groups of 100 rows, g = 1..G, rows sorted by g.

B3 (``gen_b3``): an InstEval-sized crossed design (lme4::InstEval has
73,421 ratings of 1,128 lecturers ``d`` by 2,972 students ``s``; lecturers
belong to 14 departments ``dept``; ``service`` = the lecture is held for
another department).  Simulated, seed 20261126, with InstEval's block
structure (it decides the fill-in of a sparse Cholesky, so peers such as
lme4 see a realistic problem):

* each lecturer belongs to one department (sizes Zipf-like, none empty) and
  has a popularity ``w_d`` (Zipf-like, ``(r + 5)^-0.9`` over a random order
  of the lecturers) and a service propensity ``p_d ~ Beta(0.6, 0.9)``;
* each student has a home department and an activity (Zipf-like,
  ``(r + 5)^-0.5``); every student and lecturer appears at least once;
* a rating is a service lecture with probability 0.4: then the lecture is
  given by one of two partner departments of the student's home department
  (probabilities 0.7 / 0.3; the first partners form a random cycle, so every
  department gives service lectures), else by the home department; the lecturer is
  drawn within that department with weights ``w_d p_d`` (service) or
  ``w_d (1 - p_d)`` (home);
* so ``d`` is nested in ``dept`` and all 28 ``dept:service`` cells occur;
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
FORMAT_VERSION = 2  # bump when a generator changes, so stale caches are not reused

B4_SEED = 20261124
B3_SEED = 20261126
B5B_SEED = 20261125
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


# --------------------------------------------------------------------------- B5b
def gen_b5b(n_groups: int = 2_000, per_group: int = 100, seed: int = B5B_SEED) -> pd.DataFrame:
    """B5b: ``y ~ x1 + x2 + x3 + (1 | g)`` logistic truth; identical to the peer kit."""
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    g = np.repeat(np.arange(1, n_groups + 1, dtype=np.int64), per_group)
    X = rng.standard_normal((n, 3))
    u = rng.normal(0.0, 1.0, size=n_groups)
    eta = -0.5 + X @ np.array([0.5, -0.3, 0.2]) + u[g - 1]
    p = 1.0 / (1.0 + np.exp(-eta))
    y = (rng.uniform(size=n) < p).astype(np.int64)
    return pd.DataFrame({"y": y, "x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2], "g": g})


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
           p_service: float = 0.4, seed: int = B3_SEED) -> pd.DataFrame:
    """B3: InstEval-sized crossed data, ``y ~ 1 + service + (1|s) + (1|d) + (1|dept:service)``."""
    rng = np.random.default_rng(seed)
    # lecturers: department (Zipf-like sizes, none empty), popularity, service propensity
    dept_of_d = _cover_then_sample(n_dept, n_d, _zipf_weights(n_dept, 1.0, rng, offset=1.0), rng)
    w_d = _zipf_weights(n_d, 0.9, rng)
    p_serv = rng.beta(0.6, 0.9, size=n_d)
    # students: home department (in proportion to its lecturers' popularity), activity
    dept_w = np.bincount(dept_of_d, weights=w_d, minlength=n_dept)
    home = rng.choice(n_dept, size=n_s, p=dept_w / dept_w.sum())
    s = _cover_then_sample(n_s, n, _zipf_weights(n_s, 0.5, rng), rng)
    # each department takes service lectures from two partner departments (0.7 / 0.3)
    # (the first partner follows k in a random cycle, so every department gives service lectures)
    cyc = rng.permutation(n_dept)
    nxt = np.empty(n_dept, dtype=np.int64)
    nxt[cyc] = np.roll(cyc, -1)
    partners = np.array([[nxt[k], rng.choice(np.setdiff1d(np.arange(n_dept), [k, nxt[k]]))]
                         for k in range(n_dept)])
    service = (rng.uniform(size=n) < p_service).astype(np.int64)
    pick2 = (rng.uniform(size=n) < 0.3).astype(np.int64)
    dept = np.where(service == 1, partners[home[s], pick2], home[s])
    # lecturer within the target department: popularity x (service propensity | home propensity)
    d = np.empty(n, dtype=np.int64)
    for k in range(n_dept):
        lect = np.flatnonzero(dept_of_d == k)
        for sv, w in ((0, w_d[lect] * (1 - p_serv[lect])), (1, w_d[lect] * p_serv[lect])):
            rows = np.flatnonzero((dept == k) & (service == sv))
            if len(rows) == 0:
                raise RuntimeError(f"dept {k} service {sv} is empty; change the seed")
            d[rows] = lect[rng.choice(len(lect), size=len(rows), p=w / w.sum())]
    # every lecturer at least once: take over a row of the same (dept, service) cell
    counts = np.bincount(d, minlength=n_d)
    for j in np.flatnonzero(counts == 0):
        sv = int(rng.uniform() < p_serv[j])
        cand = np.flatnonzero((dept == dept_of_d[j]) & (service == sv) & (counts[d] > 1))
        i = cand[rng.integers(len(cand))]
        counts[d[i]] -= 1
        d[i] = j
        counts[j] += 1
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
    return ["b3", "b5b"] + [f"b4_{k}" for k in B4_SIZES if scale or k != "1e7"]


def generate(name: str) -> pd.DataFrame:
    if name == "b3":
        return gen_b3()
    if name == "b5b":
        return gen_b5b()
    if name.startswith("b4_"):
        return gen_b4(n_groups=B4_SIZES[name[3:]] // B4_PER_GROUP)
    raise ValueError(f"unknown data set {name!r}")


def ensure(name: str, verbose: bool = True) -> str:
    """Path of the cached data set ``name`` (``b3``, ``b5b``, ``b4_1e5``, ``b4_1e6``, ``b4_1e7``)."""
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
