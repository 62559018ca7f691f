"""Residual structures in the LMM: whiten each group, then the usual algebra.

With Var(ε_j) = σ² R_j(φ), the transformed data C_j⁻¹[y_j X_j Z_j]
(C_j = chol(R_j)) follow an LMM with independent residuals, and

    ℓ(β, θ, σ², φ | y) = ℓ*(β, θ, σ² | C⁻¹y) − ½ Σ_j log|R_j|

(Pinheiro & Bates 2000, §5.1).  Groups with the same time pattern and by()
level share one factorization; the loop runs over patterns, not groups.
"""
from __future__ import annotations

import numpy as np

from ..covariance.residual import make
from ..design.residual import ResidualDesign


class ResidualModel:
    """φ ↦ whitened data for one ``residuals()`` specification.

    φ holds the structure's parameters for each by() level, then the log
    variance ratios of by() levels 2..L (level 1 is the scale σ²).
    """

    def __init__(self, rd: ResidualDesign):
        self.design = rd
        self.structure = make(rd.spec.kind, rd.spec.order, rd.t_levels)
        self.n_levels = len(rd.by_levels)
        k = self.structure.n_params
        self.n_params = k * self.n_levels + (self.n_levels - 1)
        self._patterns = _patterns(rd)

    @property
    def label(self) -> str:
        return self.structure.label

    def start(self) -> np.ndarray:
        return np.concatenate([np.tile(self.structure.start(), self.n_levels), np.zeros(self.n_levels - 1)])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.concatenate([np.tile(self.structure.lower, self.n_levels), np.full(self.n_levels - 1, -20.0)])
        hi = np.concatenate([np.tile(self.structure.upper, self.n_levels), np.full(self.n_levels - 1, 20.0)])
        return lo, hi

    def level_params(self, phi: np.ndarray, level: int) -> np.ndarray:
        k = self.structure.n_params
        return phi[level * k:(level + 1) * k]

    def log_ratios(self, phi: np.ndarray) -> np.ndarray:
        """log(var_level / var_level1) for every by() level."""
        return np.concatenate([[0.0], phi[self.structure.n_params * self.n_levels:]])

    def matrix(self, phi: np.ndarray, t: np.ndarray, by: np.ndarray) -> np.ndarray:
        """R for one group with time values t and by() codes by (per row)."""
        sd = np.exp(0.5 * self.log_ratios(phi)[by])
        corr = self.structure.matrix(self.level_params(phi, int(by[0])), t)
        return corr * np.outer(sd, sd)

    def whiten(self, phi: np.ndarray, A: np.ndarray) -> tuple[np.ndarray, float]:
        """C_j⁻¹ A_j for every group j, and Σ_j log|R_j|."""
        out = np.empty_like(A)
        log_det = 0.0
        for t, by, idx in self._patterns:
            R = self.matrix(phi, t, by)
            C = np.linalg.cholesky(R)
            W = np.linalg.inv(C)
            out[idx] = np.einsum("ij,mjc->mic", W, A[idx])
            log_det += idx.shape[0] * 2 * np.log(np.diag(C)).sum()
        return out, log_det

    def report(self, phi: np.ndarray, sigma2: float) -> list[tuple[str, float]]:
        """Stata's residual rows (``rho``, ``var(e)``, ...); by() levels prefix them (``1: var(e)``)."""
        rows = []
        ratios = np.exp(self.log_ratios(phi))
        for level, label in enumerate(self.design.by_levels):
            prefix = f"{label}: " if self.design.spec.by else ""
            for name, value in self.structure.report(self.level_params(phi, level), sigma2 * ratios[level]):
                rows.append((prefix + name, float(value)))
        return rows


def _patterns(rd: ResidualDesign) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(t, by, row indices (m, s)) for each distinct (time pattern, by pattern)."""
    order = np.argsort(rd.groups, kind="stable")
    bounds = np.flatnonzero(np.diff(rd.groups[order])) + 1
    keyed: dict[tuple, list[np.ndarray]] = {}
    for rows in np.split(order, bounds):  # once, at set-up: grouping rows by pattern
        key = (tuple(rd.t[rows]), tuple(rd.by[rows]))
        keyed.setdefault(key, []).append(rows)
    return [(np.array(k[0]), np.array(k[1], dtype=int), np.vstack(v)) for k, v in keyed.items()]


__all__ = ["ResidualModel"]
