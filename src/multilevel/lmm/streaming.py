"""Fit from data larger than memory: sufficient statistics partition by partition.

``ml.mixed(cmd, data=dask_dataframe)`` (or a parquet path) never holds the
data: a first pass gives the sample size, the means of [X y] and the group
labels; a second pass accumulates the cross-product blocks of
:class:`~multilevel.lmm.model.Statistics` over the partitions, a few at a
time (memory: one partition plus O(groups)).  The fit, standard errors and
table are then computed from the statistics exactly as for in-memory data
(the results are identical, up to summation order).

Scope: one random-effects equation with a grouping variable (random
intercepts and slopes, any covariance), fixed effects given as plain numeric
variables, ML or REML, no weights or residuals().
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..design import Design
from ..design.fixed import FixedTerm, _independent_columns
from ..design.random import ReEquation
from ..design.sample import SampleInfo
from ..spec.errors import DataError, SpecError
from ..spec.model import ModelSpec
from .model import Statistics
from .terms import RandomTerm


def is_dask(data) -> bool:
    return type(data).__module__.startswith("dask") and hasattr(data, "npartitions")


def read(data):
    """A dask DataFrame from a dask DataFrame or a parquet path."""
    if isinstance(data, str):
        import dask.dataframe as dd

        return dd.read_parquet(data)
    return data


def build(spec: ModelSpec, ddf, batch: int = 2) -> tuple[Design, Statistics]:
    """The design (metadata only) and the sufficient statistics of ``spec`` on ``ddf``."""
    level, slopes, fixed_vars = _check(spec, ddf)
    group = level.group[0]
    used = list(dict.fromkeys([spec.response, *fixed_vars, *slopes, group]))
    n_data = int(ddf.shape[0].compute()) if hasattr(ddf.shape[0], "compute") else len(ddf)
    clean = ddf[used].dropna()
    first = _first_pass(clean, spec.response, fixed_vars, group, batch)
    labels = np.sort(first["labels"])
    names = tuple(fixed_vars) + (("_cons",) if spec.constant else ())
    eq = ReEquation(0, level.name, level.group, np.zeros(0, dtype=np.int32), tuple(labels),
                    np.zeros((0, len(slopes) + level.constant)), level.term_names, level.covariance)
    term = RandomTerm([eq])
    means = _means_with_cons(first["sums"] / first["n"], fixed_vars, spec.constant)
    acc = _second_pass(clean, spec, fixed_vars, slopes, level.constant, group, labels, term, means, batch)
    gram = acc["A22"]
    keep = _independent_columns_from_gram(gram[:-1, :-1], names, spec.constant)
    if not keep.all():
        raise DataError("collinear fixed effects in streamed data: "
                        + ", ".join(n for n, k in zip(names, keep) if not k) + "; remove them")
    eq = ReEquation(0, level.name, level.group, np.zeros(0, dtype=np.int32), tuple(labels),
                    np.zeros((0, term.k)), level.term_names, level.covariance, counts=acc["counts"])
    n = int(first["n"])
    fixed = FixedTerm(np.zeros((0, len(names))), names, (), None, names)
    sample = SampleInfo(n_data, 0, n_data - n, np.zeros(0, dtype=np.int64))
    design = Design(spec, np.zeros(0), fixed, (eq,), sample)
    return design, Statistics(float(n), means, acc["A11"], acc["A21D"], gram)


def _check(spec: ModelSpec, ddf):
    if len(spec.levels) != 1 or not spec.levels[0].group or len(spec.levels[0].group) != 1:
        raise SpecError("data from dask/parquet supports one random-effects equation with one grouping variable")
    if spec.options.get("residuals") or spec.options.get("weight") or spec.options.get("level_weights"):
        raise SpecError("data from dask/parquet does not support residuals() or weights yet")
    fixed_vars = [t.strip() for t in spec.fixed.split("+")] if spec.fixed.strip() else []
    if any(not v.isidentifier() for v in fixed_vars):
        raise SpecError("data from dask/parquet supports plain numeric fixed-effect variables only "
                        "(create factor indicators beforehand)")
    level = spec.levels[0]
    slopes = list(level.terms)
    missing = [v for v in [spec.response, *fixed_vars, *slopes, level.group[0]] if v not in ddf.columns]
    if missing:
        raise DataError(f"variables not found in the data: {', '.join(missing)}")
    return level, slopes, fixed_vars


def _batches(ddf, batch: int):
    import dask

    parts = ddf.to_delayed()
    for i in range(0, len(parts), batch):
        yield from dask.compute(*parts[i:i + batch])


def _first_pass(clean, response: str, fixed_vars: list[str], group: str, batch: int) -> dict:
    n, sums, labels = 0, None, set()
    for part in _batches(clean, batch):
        D = part[fixed_vars + [response]].to_numpy(dtype=float)
        n += len(part)
        sums = D.sum(axis=0) if sums is None else sums + D.sum(axis=0)
        labels.update(pd.unique(part[group]).tolist())
    if n == 0:
        raise DataError("no observations after dropping missing values")
    return {"n": n, "sums": sums, "labels": np.array(sorted(labels))}


def _means_with_cons(means: np.ndarray, fixed_vars: list[str], constant: bool) -> np.ndarray:
    """Means of [X y] in the column order of X (``_cons`` last, its mean unused)."""
    x_means, y_mean = means[:len(fixed_vars)], means[-1]
    return np.concatenate([x_means, [0.0] if constant else [], [y_mean]])


def _second_pass(clean, spec, fixed_vars, slopes, re_constant, group, labels, term, means, batch) -> dict:
    G, k = len(labels), term.k
    constant = spec.constant
    md = len(fixed_vars) + constant + 1
    acc = {"A11": np.zeros((G, k, k)), "A21D": np.zeros((md, G, k)), "A22": np.zeros((md, md)),
           "counts": np.zeros(G, dtype=np.int64)}
    for part in _batches(clean, batch):
        codes = pd.Categorical(part[group], categories=labels).codes.astype(np.int32)
        cols = [part[v].to_numpy(dtype=float) for v in fixed_vars]
        if constant:
            cols.append(np.ones(len(part)))
        D = np.column_stack(cols + [part[spec.response].to_numpy(dtype=float)])
        if constant:
            D = D - means
        z = np.column_stack([part[v].to_numpy(dtype=float) for v in slopes]
                            + ([np.ones(len(part))] if re_constant else []))
        eq = ReEquation(0, "", (), codes, tuple(labels), z, (), "independent")
        piece = RandomTerm([eq])
        A11, A21D = piece.cross_products(D)
        acc["A11"] += A11
        acc["A21D"] += A21D
        acc["A22"] += D.T @ D
        acc["counts"] += np.bincount(codes, minlength=G)
    return acc


def _independent_columns_from_gram(gram: np.ndarray, names, constant: bool) -> np.ndarray:
    """Collinearity check of the fixed effects from their (centred) Gram matrix."""
    # a square root of the Gram matrix has the same Gram matrix, so the column check applies
    vals, vecs = np.linalg.eigh(gram)
    root = (vecs * np.sqrt(np.clip(vals, 0, None))).T
    return _independent_columns(root, prefer_last=constant)
