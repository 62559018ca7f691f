"""Weights: level-1 ``[fw=]``/``[pw=]`` (GLMMs also ``[iw=]``) and higher-level ``fweight()``/``pweight()``
(``iweight()``).

Pseudo-likelihood (Rabe-Hesketh & Skrondal 2006, JRSS A 169; Pfeffermann et
al. 1998, JRSS B 60; [ME] mixed, Survey data), for two levels

    ℓ = Σ_j w_j log ∫ Π_i f(y_ij | u_j)^{w_i|j} φ(u_j) du_j

with level-1 weights w_i|j (conditional on the cluster being sampled) and
cluster weights w_j, and recursively for more nested levels, each level's
weights conditional on its parent being sampled (``lmm.pseudolikelihood``).
Frequency weights are the special case of integer weights (replicated
observations or groups).  ``pwscale()`` (two-level models only, as Stata)
rescales the level-1 weights within each cluster:

- ``size``: w*_i|j = w_i|j n_j / Σ_i w_i|j (sum to the cluster size);
- ``effective``: w*_i|j = w_i|j Σ_i w_i|j / Σ_i w_i|j² (sum to the effective size);
- ``gk`` (Graubard & Korn 1996): w*_j = mean_i(w_i|j w_j) and w*_i|j = 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..spec.errors import DataError


@dataclass(frozen=True)
class Weights:
    """Per-observation level-1 weights and the weight of each observation's cluster."""

    kind: str                      # "fw" or "pw"
    level1: np.ndarray             # w_i|j (ones when only cluster weights are given)
    cluster: np.ndarray | None     # two-level model: w_j of the observation's cluster, or None
    cluster_level: str | None      # label of the level the cluster weights belong to
    higher: tuple = ()             # more levels: (group key, w of the observation's group) per weighted level

    @property
    def total(self) -> np.ndarray:
        """Product of the observation's weights at every level: what it counts for in ℓ."""
        out = self.level1 if self.cluster is None else self.level1 * self.cluster
        for _, w in self.higher:
            out = out * w
        return out


def variables(spec) -> list[str]:
    """Data columns named by the weights (they take part in listwise deletion)."""
    out = []
    if spec.options.get("weight"):
        out.append(spec.options["weight"][1])
    for opts in (spec.options.get("level_weights") or {}).values():
        out.extend(opts.values())
    return out


def build(spec, frame: pd.DataFrame, equations: tuple, kinds: tuple[str, ...] = ("fw", "pw")) -> Weights | None:
    """The :class:`Weights` of ``spec`` on the estimation sample (random-effects ``equations``), or None.
    ``kinds``: the weight types the command takes (``mixed``: fw, pw; the GLMM commands also iw)."""
    level1 = spec.options.get("weight")
    levels = spec.options.get("level_weights") or {}
    if not level1 and not levels:
        return None
    if spec.method == "reml":
        raise DataError("weights are not allowed with reml, as in Stata")
    if spec.options.get("dfmethod"):
        raise DataError("weights are not allowed with dfmethod(), as in Stata")
    given = {level1[0]} if level1 else set()
    given |= {k[0] + "w" for opts in levels.values() for k in opts}
    if len(given) > 1:
        raise DataError("weights of different types (" + ", ".join(sorted(given)) + ") cannot be combined")
    kind = given.pop()
    if kind not in kinds:
        raise DataError(f"[{kind}=] weights are not supported; use " + " or ".join(f"[{k}=]" for k in kinds))
    n = len(frame)
    w1 = _values(frame, level1[1], kind) if level1 else np.ones(n)
    top = equations[0] if len({eq.group_key for eq in equations}) == 1 and equations[0].group_key else None
    higher = []
    for label, opts in levels.items():
        eq = next((e for e in equations if e.label == label and e.group_key), None)
        if eq is None:
            raise DataError(f"weights for level '{label}': no such level with groups")
        values = _values(frame, next(iter(opts.values())), kind)
        if pd.Series(values).groupby(eq.refs).nunique().max() > 1:
            raise DataError(f"weights for level '{label}' must be constant within its groups")
        higher.append((eq.group_key, values))
    cluster = higher.pop()[1] if top is not None and higher else None
    scale = spec.options.get("pwscale")
    if scale:
        if top is None:
            raise DataError("pwscale() is allowed only with two-level models, as in Stata")
        w1, cluster = _pwscale(str(scale).strip().lower(), w1, cluster, top.refs)
    return Weights(kind, w1, cluster, top.label if cluster is not None else None, tuple(higher))


def _values(frame: pd.DataFrame, expr: str, kind: str) -> np.ndarray:
    if expr in frame.columns:
        w = frame[expr].to_numpy(dtype=float)
    else:
        try:
            w = np.asarray(frame.eval(expr), dtype=float)
        except Exception:  # pandas raises many kinds for a bad expression
            raise DataError(f"weight variable '{expr}' not found in the data") from None
    if np.any(~np.isfinite(w)):
        raise DataError(f"weight '{expr}' has missing values")
    if np.any(w < 0):
        raise DataError(f"weight '{expr}' has negative values")
    if kind == "fw" and np.any(w != np.round(w)):
        raise DataError(f"frequency weights must be integers; '{expr}' is not")
    return w


def _pwscale(method: str, w1: np.ndarray, cluster: np.ndarray | None, refs: np.ndarray):
    sums = np.bincount(refs, weights=w1)
    if method.startswith("size"):
        return w1 * (np.bincount(refs) / sums)[refs], cluster
    if method.startswith("eff"):
        return w1 * (sums / np.bincount(refs, weights=w1 * w1))[refs], cluster
    if method == "gk":
        wj = cluster if cluster is not None else np.ones(len(w1))
        mean = np.bincount(refs, weights=w1 * wj) / np.bincount(refs)
        return np.ones(len(w1)), mean[refs]
    raise DataError(f"pwscale({method}): use size, effective or gk")
