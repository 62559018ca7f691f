"""Residual structures in the LMM: whiten each group, then the usual algebra.

With Var(ε_j) = σ² R_j(φ), the transformed data C_j⁻¹[y_j X_j Z_j]
(C_j = chol(R_j)) follow an LMM with independent residuals, and

    ℓ(β, θ, σ², φ | y) = ℓ*(β, θ, σ² | C⁻¹y) − ½ Σ_j log|R_j|

(Pinheiro & Bates 2000, §5.1).  Groups with the same time pattern and by()
level share one factorization; the loop runs over patterns, not groups.
"""
from __future__ import annotations

import functools

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

    @functools.cached_property
    def _patterns(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return _patterns(self.design)

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


class MarkovStatistics:
    """Sufficient statistics for AR(1)-type residuals (``ar 1``, ``exponential``).

    With corr(e_s, e_t) = ρ^|t−s| the whitened rows are a_first and
    (a_t − ρ^d a_prev)/√(1 − ρ^{2d}) for a row whose predecessor in time is d
    earlier, so each group's whitened Gram matrix is

        M_g = F_g + Σ_d [P0_gd − ρ^d (P1_gd + P1_gdᵀ) + ρ^{2d} P2_gd] / (1 − ρ^{2d})

    with F = a_first a_firstᵀ, P0 = Σ a_t a_tᵀ, P1 = Σ a_t a_prevᵀ, P2 = Σ a_prev a_prevᵀ over
    the rows with gap d, all formed once.  Only the random-effects columns (the last k of
    a = [X y z]) are kept per group; the [X y] block is kept summed over the groups of each
    by() level.  Each evaluation then costs O(G·c·k), not O(n).
    """

    MAX_GAPS = 8

    def __init__(self, rm: "ResidualModel", A: np.ndarray, k: int):
        rd = rm.design
        order = np.lexsort((rd.t, rd.groups))
        g, t = rd.groups[order], rd.t[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = g[1:] != g[:-1]
        gaps = np.where(first, 0.0, np.diff(t, prepend=t[0]))
        self.gaps = np.unique(gaps[~first])
        self.k = k
        self.n_groups = int(rd.groups.max()) + 1
        self.by_of_group = np.zeros(self.n_groups, dtype=int)
        self.by_of_group[rd.groups] = rd.by
        self.n_levels = len(rd.by_levels)
        self.rows_per_group = np.bincount(rd.groups, minlength=self.n_groups)
        a = A[order]
        prev = np.roll(a, 1, axis=0)
        self.F = self._blocks(a[first], a[first], g[first])
        last = np.ones(len(order), dtype=bool)
        last[:-1] = g[:-1] != g[1:]
        self.parts = []
        for d in self.gaps:
            m = (~first) & (gaps == d)
            P1 = self._blocks(a[m], prev[m], g[m], symmetric=False)
            P1t = self._transposed(P1)
            P1s = (P1[0] + P1t[0], P1[1] + P1t[1], None)
            P0 = self._blocks(a[m], a[m], g[m])
            if len(self.gaps) == 1:  # predecessors are all rows but each group's last: P2 = P0 + F − L
                L = self._blocks(a[last], a[last], g[last])
                P2 = (P0[0] + self.F[0] - L[0], P0[1] + self.F[1] - L[1], None)
            else:
                P2 = self._blocks(prev[m], prev[m], g[m])
            self.parts.append((d, P0, P1s, P2, np.bincount(g[m], minlength=self.n_groups)))

    def _blocks(self, a: np.ndarray, b: np.ndarray, g: np.ndarray, symmetric: bool = True):
        """(Σ_level aᵀb over [X y], per-group aᵀb in the columns of z (G, c, k), and b's z
        rows against a's [X y] (G, k, md)) for the rows given (sorted by group)."""
        k, c = self.k, a.shape[1]
        md = c - k
        by_row = self.by_of_group[g]
        full = np.zeros((self.n_levels, md, md))
        for level in range(self.n_levels):
            rows = by_row == level
            full[level] = a[rows, :md].T @ b[rows, :md]
        zcols = _group_gram(a, b[:, md:], g, self.n_groups) if k else np.zeros((self.n_groups, c, 0))
        zrows = _group_gram(a[:, md:], b[:, :md], g, self.n_groups) if (k and not symmetric) else None
        return full, zcols, zrows

    @staticmethod
    def _transposed(blocks):
        full, zcols, zrows = blocks
        md = full.shape[1]
        # (aᵀb)ᵀ = bᵀa: its z columns are the z rows of aᵀb (transposed) plus the zz block
        zt = np.concatenate([zrows.transpose(0, 2, 1), zcols[:, md:, :].transpose(0, 2, 1)], axis=1) \
            if zrows is not None else zcols
        return full.transpose(0, 2, 1), zt, None

    @staticmethod
    def applies(rm: "ResidualModel") -> bool:
        spec = rm.design.spec
        if not ((spec.kind == "ar" and (spec.order or 1) == 1) or spec.kind == "exponential"):
            return False
        t, g = rm.design.t, rm.design.groups
        order = np.lexsort((t, g))
        gaps = np.diff(t[order])[np.diff(g[order]) == 0]
        return len(np.unique(gaps)) <= MarkovStatistics.MAX_GAPS

    def gram(self, rm: "ResidualModel", phi: np.ndarray):
        """A22 (md × md), the z columns of every group's whitened Gram (G, c, k), and Σ log|R_j|."""
        rho_level = np.array([_markov_rho(rm, rm.level_params(phi, lv)) for lv in range(self.n_levels)])
        scale_level = np.exp(rm.log_ratios(phi))
        rho, scale = rho_level[self.by_of_group], scale_level[self.by_of_group]
        full = self.F[0].copy()
        zcols = self.F[1].copy()
        log_det = float(np.sum(self.rows_per_group * np.log(scale)))
        for d, P0, P1s, P2, count in self.parts:
            r_level = rho_level ** d
            w0, w1, w2 = 1 / (1 - r_level ** 2), r_level / (1 - r_level ** 2), r_level ** 2 / (1 - r_level ** 2)
            full += w0[:, None, None] * P0[0] - w1[:, None, None] * P1s[0] + w2[:, None, None] * P2[0]
            r = rho ** d
            denom = 1 - r * r
            zcols += ((P0[1] - r[:, None, None] * P1s[1] + (r * r)[:, None, None] * P2[1])
                      / denom[:, None, None])
            log_det += float(np.sum(count * np.log(denom)))
        A22 = np.einsum("l,lij->ij", 1 / scale_level, full)
        return A22, zcols / scale[:, None, None], log_det


def _markov_rho(rm: "ResidualModel", params: np.ndarray) -> float:
    if rm.design.spec.kind == "exponential":
        return float(rm.structure.rho(params))
    return float(np.tanh(params[0]))


def _group_gram(a: np.ndarray, b: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Σ_{i in g} a_i b_iᵀ for every group (rows sorted by group), one column of b at a time."""
    out = np.zeros((n_groups, a.shape[1], b.shape[1]))
    if not len(groups):
        return out
    present, starts = np.unique(groups, return_index=True)
    for j in range(b.shape[1]):
        out[present, :, j] = np.add.reduceat(a * b[:, j:j + 1], starts, axis=0)
    return out
