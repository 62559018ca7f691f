"""Prediction variances of the BLUPs, per group, from the blocked Cholesky factor.

Two quantities, both k×k per group and equation (Henderson's mixed-model
equations; McCulloch, Searle & Neuhaus 2008, *Generalized, Linear, and Mixed
Models*, §6.4):

* **conditional** — Var(b | y) with β treated as known,

  .. math:: G - G Z^T V^{-1} Z G = σ^2 Λ (Λ^T Z^T Z Λ + I)^{-1} Λ^T,

  lme4's ``condVar`` / ``ranef(condVar = TRUE)``;

* **comparative** — Var(b̂ − b), which also accounts for estimating β,

  .. math:: G - G Z^T P Z G, \\quad P = V^{-1} - V^{-1}X(X^TV^{-1}X)^{-1}X^TV^{-1},

  the random-effects block of the inverse of the whole penalized system
  [[ΛᵀZᵀZΛ + I, ΛᵀZᵀX], [XᵀZΛ, XᵀX]], times σ².

Stata's ``predict, reses`` reports the conditional one after ML and the
comparative one after REML ([ME] mixed postestimation, Methods and formulas:
"If estimation is done by REML, these standard errors account for
uncertainty in the estimate of β, while for ML the standard errors treat β
as known").  Checked against that rule with the Stata numbers of
stats.stackexchange.com/q/48254 (REML 2.13, ML 1.32), see
``tests/test_postestimation.py``.

How the blocks are found without forming any q×q inverse: the factor is
L = [[L₁₁, 0], [B, D]] with L₁₁ block diagonal (first term), B the r×q₁
rows below it and D the r×r dense factor of the other terms (and, for the
comparative variance, of X).  With T_g = Λ₁ L₁₁,g⁻ᵀ and K = D⁻¹B,

    Var(b_g)/σ² = T_g T_gᵀ + (K_g T_gᵀ)ᵀ (K_g T_gᵀ)        (first term)
    Var(b_h)/σ² = Λ_t (D⁻ᵀD⁻¹)_hh Λ_tᵀ                     (other terms)

which is vectorised over the groups.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ..spec.errors import DataError
from ._state import cached, model_and_factor


@dataclass(frozen=True)
class BlupVariance:
    """Per-equation (G, k, k) prediction covariance matrices of the BLUPs."""

    conditional: tuple[np.ndarray, ...]
    comparative: tuple[np.ndarray, ...]

    def se(self, kind: str) -> tuple[np.ndarray, ...]:
        """(G, k) standard errors of each equation's BLUPs."""
        blocks = self.conditional if kind == "conditional" else self.comparative
        return tuple(np.sqrt(np.clip(np.diagonal(b, axis1=1, axis2=2), 0.0, None)) for b in blocks)


def blup_variance(res) -> BlupVariance:
    """The conditional and comparative covariance blocks of every equation (cached)."""
    def build():
        model, f = model_and_factor(res)
        if getattr(model, "nesting", None) is not None:
            raise DataError("standard errors of the BLUPs are not available with weights above level 1 "
                            "in a model with more than two levels")
        cond = _term_blocks(model, f, model.q_rest)
        comp = _term_blocks(model, f, model.q_rest + model.p)
        order = model.design.equations
        out_c, out_p = [None] * len(order), [None] * len(order)
        for term, bc, bp in zip(model.terms, cond, comp):
            for eq, cs in zip(term.equations, term.col_slices):
                i = next(j for j, e in enumerate(order) if e is eq)
                out_c[i] = res.residual_var * bc[:, cs, cs]
                out_p[i] = res.residual_var * bp[:, cs, cs]
        return BlupVariance(tuple(out_c), tuple(out_p))
    return cached(res, "blup_variance", build)


def stata_kind(res) -> str:
    """Which variance Stata's ``reses`` reports: conditional after ML, comparative after REML."""
    return "comparative" if res.method == "reml" else "conditional"


def _term_blocks(model, f, r: int) -> list[np.ndarray]:
    """Diagonal blocks (per term, (G, k, k), σ² = 1) of the inverse of the leading system.

    ``r`` is the number of rows of the dense block kept: the other terms'
    columns (β known) or those and X (β estimated).
    """
    D = f.L22[:r, :r]
    Dinv = scipy.linalg.solve_triangular(D, np.eye(r), lower=True, check_finite=False)
    lams = model.lambdas(f.theta)
    first = model.terms[0]
    G, k = first.n_groups, first.k
    T = lams[0] @ np.linalg.inv(f.L11).transpose(0, 2, 1)         # T_g = Λ₁ L₁₁,g⁻ᵀ
    K = (Dinv @ _rows_below(f, r)).reshape(r, G, k)
    M = np.einsum("rgb,gab->rga", K, T)                              # K_g T_gᵀ
    out = [np.einsum("gab,gcb->gac", T, T) + np.einsum("rga,rgb->gab", M, M)]
    for term, lam, off in zip(model.terms[1:], lams[1:], model._rest_offsets):
        Q = Dinv[:, off].reshape(r, term.n_groups, term.k)
        out.append(np.einsum("ij,gjk,lk->gil", lam, np.einsum("rga,rgb->gab", Q, Q), lam))
    return out


def _rows_below(f, r: int) -> np.ndarray:
    """The first r rows of the factor below L₁₁ (other terms, then X), dense r×q₁."""
    if hasattr(f, "L21"):          # one sparse block over all rows
        return f.L21[:r].toarray()
    parts = [f.L21Z.toarray()] if f.L21Z is not None else []
    return np.vstack(parts + [f.L21D])[:r]
