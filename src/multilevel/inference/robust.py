"""Cluster-robust (sandwich) variance of a linear mixed model: ``vce(robust)``, ``vce(cluster v)``.

The log likelihood is a sum over independent clusters (top-level groups, or
coarser groups given by ``vce(cluster v)``), ℓ = Σ_c ℓ_c.  With the parameters
ψ = (β, σ) — σ the variances and covariances of every random-effects equation
and the residual variance, in which V is linear (V = Σ_k σ_k V_k) —

    ∂ℓ_c/∂β   = X_cᵀ V_c⁻¹ e_c
    ∂ℓ_c/∂σ_k = −½ tr(V_c⁻¹ V_ck) + ½ e_cᵀ V_c⁻¹ V_ck V_c⁻¹ e_c

and Var(ψ̂) = D [G/(G−1) Σ_c s_c s_cᵀ] D with D Stata's model-based e(V), block diagonal:
(XᵀV⁻¹X)⁻¹ for β and the variance-parameter block of (−H)⁻¹, H the observed Hessian
(Huber 1967, White 1980; [ME] mixed, Methods and formulas; [R] vce_option).  With the full
(−H)⁻¹ instead, the robust SEs of β differ from Stata's: the block-diagonal form reproduces
Stata's printed 3-level survey fit (tests/references/weights).
The covariance matrices are formed per cluster (dense n_c × n_c), once
after the fit.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..design.random import group_codes
from .results import FixedEffects
from .small_sample import _linear_basis
from .tests import wald_fixed


def top_level_codes(res) -> np.ndarray:
    """The highest-level groups of each observation (the default clusters)."""
    return _top_level(res.design).refs


def _top_level(design):
    top = min(design.equations, key=lambda eq: len(eq.group_key))
    if not top.group_key:
        raise ValueError("vce(robust) needs a highest level other than _all; use vce(cluster varname)")
    return top


def sandwich(res, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Robust covariance of (β, σ) and the order of σ: [(equation index, i, j)] + residual."""
    S, cw, H, labels = cluster_scores(res, clusters)
    w = res.design.weights
    p = len(res.fixed.coef)
    D = np.zeros_like(H)   # Stata's OIM e(V): block diagonal between β and the variance parameters
    D[:p, :p] = np.linalg.inv(-H[:p, :p])
    D[p:, p:] = -np.linalg.inv(H)[p:, p:]
    return D @ meat(S, cw, w is not None and w.kind == "fw") @ D, labels


def meat(S: np.ndarray, cw: np.ndarray | None = None, replicated: bool = False) -> np.ndarray:
    """G/(G−1) Σ_c s_c s_cᵀ for the clusters' scores S (rows): with ``replicated`` (frequency
    weights cw) each copy of a cluster counts as one, else the weights scale the scores."""
    cw = np.ones(len(S)) if cw is None else cw
    if replicated:
        B, G = (S * cw[:, None]).T @ S, cw.sum()
    else:
        B, G = (S * cw[:, None]).T @ (S * cw[:, None]), len(S)
    return G / (G - 1) * B


def cluster_codes(design, vce: str, data: pd.DataFrame | None) -> tuple[np.ndarray, str]:
    """The clusters of ``vce(robust)`` (the highest level) or ``vce(cluster var)`` per
    observation, and their variable's name."""
    words = vce.split()
    kind = words[0].lower()
    if kind not in ("robust", "cluster", "cl") or (kind != "robust" and len(words) != 2):
        raise ValueError(f"vce({vce}): use oim, robust or cluster varname")
    if kind == "robust":
        top = _top_level(design)
        return top.refs, top.label
    var = words[1]
    frame = data.iloc[design.sample.rows] if data is not None else None
    if frame is None or var not in frame:
        raise ValueError(f"cluster variable '{var}' not found in the data")
    clusters, _ = group_codes(frame.reset_index(drop=True), (var,))
    _check_nesting(design, clusters, var)
    return clusters, var


def cluster_scores(res, clusters: np.ndarray):
    """Per-cluster scores of the log likelihood in ψ = (β, σ) (rows in cluster-code order), the
    clusters' weights, the observed Hessian H and the order of σ."""
    design = res.design
    X, y = design.X, design.y
    beta = res.fixed.coef
    parts, labels = [], []
    for e_i, (eq, e) in enumerate(zip(design.equations, res.equations)):
        for basis, _ in _linear_basis(e):
            parts.append((eq, basis))
            i, j = np.argwhere(basis)[0]
            labels.append((e_i, int(max(i, j)), int(min(i, j))))
    sigmas = [v for e in res.equations for _, v in _linear_basis(e)] + [res.residual_var]
    p, m = X.shape[1], len(sigmas)
    w = design.weights
    if w is not None and w.higher:  # weights above level 1 in a model with more levels
        from ..lmm.pseudolikelihood import cluster_scores as multilevel_scores
        return (*multilevel_scores(res, clusters, parts, sigmas), labels)
    w1 = w.level1 if w is not None else np.ones(len(y))
    wc = w.cluster if w is not None and w.cluster is not None else np.ones(len(y))
    scores, cluster_w, H = [], [], np.zeros((p + m, p + m))
    order = np.argsort(clusters, kind="stable")
    for rows in np.split(order, np.flatnonzero(np.diff(clusters[order])) + 1):
        # pseudo-likelihood of the cluster: N(y; Xβ, ZGZᵀ + σ²W⁻¹) + Σ_i (1 − w_i)/2 log 2πσ²
        Vk = [_component(eq, basis, rows) for eq, basis in parts] + [np.diag(1 / w1[rows])]
        V = sum(s * M for s, M in zip(sigmas, Vk))
        Vinv = np.linalg.inv(V)
        Xc, ec = X[rows], y[rows] - X[rows] @ beta
        Ve = Vinv @ ec
        VkVinv = [M @ Vinv for M in Vk]
        extra = np.sum(1 - w1[rows]) / 2
        s_beta = Xc.T @ Ve
        s_sigma = [-0.5 * np.trace(Vinv @ M) + 0.5 * Ve @ M @ Ve for M in Vk]
        s_sigma[-1] += extra / sigmas[-1]
        scores.append(np.concatenate([s_beta, s_sigma]))
        wj = wc[rows[0]]
        cluster_w.append(wj)
        Hc = np.zeros_like(H)
        Hc[:p, :p] = -Xc.T @ Vinv @ Xc
        for k, M in enumerate(Vk):
            Hc[:p, p + k] = -Xc.T @ Vinv @ M @ Ve
            for l in range(k + 1):
                Hc[p + k, p + l] = 0.5 * np.trace(VkVinv[k] @ VkVinv[l]) - Ve @ Vk[k] @ Vinv @ Vk[l] @ Ve
        Hc[-1, -1] -= extra / sigmas[-1] ** 2
        H += wj * Hc
    H[p:, :p] = H[:p, p:].T
    H[p:, p:] = np.tril(H[p:, p:]) + np.tril(H[p:, p:], -1).T
    return np.array(scores), np.array(cluster_w), H, labels


def scores(res) -> pd.DataFrame:
    """Scores of the log likelihood per highest-level group (Stata's ``predict, scores`` for
    ``mixed``): derivatives with respect to the fixed effects, the variances and covariances of
    each random-effects equation, and the residual variance.  They sum to ≈ 0 at the ML estimates."""
    if res.residual_rows:
        raise ValueError("scores are not available with residuals() structures")
    top = min(res.design.equations, key=lambda eq: len(eq.group_key))
    S, cw, _, labels = cluster_scores(res, top_level_codes(res))
    names = list(res.fixed.names)
    for k, i, j in labels:
        e = res.equations[k]
        a, b = e.names[min(i, j)], e.names[max(i, j)]
        names.append(f"{e.label}:var({a})" if i == j else f"{e.label}:cov({a},{b})")
    names.append("var(Residual)")
    return pd.DataFrame(S * cw[:, None], index=pd.Index(top.groups, name=top.label), columns=names)


def _component(eq, basis: np.ndarray, rows: np.ndarray) -> np.ndarray:
    z, refs = eq.z[rows], eq.refs[rows]
    return ((z @ basis) @ z.T) * (refs[:, None] == refs[None, :])


def apply_vce(res, vce: str, data: pd.DataFrame | None = None):
    """Results with robust standard errors (``robust`` or ``cluster varname``)."""
    words = vce.split()
    kind = words[0].lower()
    if kind in ("oim",):
        if needs_robust(res):
            raise ValueError("sampling weights require vce(robust) or vce(cluster), as in Stata")
        return res
    if kind not in ("robust", "cluster", "cl") or (kind != "robust" and len(words) != 2):
        raise ValueError(f"vce({vce}): use oim, robust or cluster varname")
    if res.method == "reml":
        raise ValueError("vce(robust) and vce(cluster) are not allowed with REML, as in Stata")
    if res.residual_rows:
        raise ValueError("vce(robust) is not available with residuals() structures")
    clusters, var = cluster_codes(res.design, vce, data)
    label = "Robust"
    V, labels = sandwich(res, clusters)
    p = len(res.fixed.names)
    fixed = FixedEffects(res.fixed.names, res.fixed.coef, V[:p, :p], res.fixed.omitted)
    se = np.sqrt(np.diag(V))[p:]
    equations = []
    for e_i, e in enumerate(res.equations):
        mat = np.full(e.cov.shape, np.nan)
        for (k, i, j), s in zip(labels, se):
            if k == e_i:
                mat[i, j] = mat[j, i] = s
        phi_se = _phi_se(e, mat)
        equations.append(replace(e, se=mat, phi_se=phi_se))
    resid_se = float(se[-1])
    wald = wald_fixed(res.fixed.names, res.fixed.coef, fixed.vcov)
    return replace(res, fixed=fixed, equations=tuple(equations), residual_se=resid_se,
                   residual_phi_se=resid_se / (2 * res.residual_var), vce=label,
                   clusters=(int(clusters.max() + 1), var), wald=wald)


def needs_robust(res) -> bool:
    """Sampling weights imply robust standard errors, as in Stata."""
    w = res.design.weights
    return w is not None and w.kind == "pw"


def _phi_se(e, se: np.ndarray) -> np.ndarray:
    """Delta method back to the log-SD metric (for the CIs of variances)."""
    k = len(e.names)
    diag = np.diag(se) / (2 * np.diag(e.cov))
    out = e.phi_se.copy()
    if e.structure in ("Identity", "Exchangeable"):
        out[0] = diag[0]
    else:
        out[:k] = diag
    return out


def _check_nesting(design, clusters: np.ndarray, var: str) -> None:
    """Every top-level group must lie within one cluster, as Stata requires."""
    top = min(design.equations, key=lambda eq: len(eq.group_key))
    per_group = pd.Series(clusters).groupby(top.refs).nunique()
    if (per_group > 1).any():
        raise ValueError(f"highest-level groups are not nested within {var}")
