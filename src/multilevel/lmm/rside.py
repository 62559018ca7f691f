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
from scipy import sparse

from ..covariance.residual import make
from ..design.residual import ResidualDesign


class ResidualModel:
    """φ ↦ whitened data for one ``residuals()`` specification.

    φ holds the structure's parameters for each by() level, then the log
    variance ratios of by() levels 2..L (level 1 is the scale σ²; none for menl's
    ``rescorrelation(..., by())``, whose levels share σ²), then the
    parameters δ of a variance function g (menl's ``resvariance()``), if any:
    R_j = G_j Corr_j G_j with G_j = diag(g(δ, v_ij)), so C_j⁻¹ = chol(Corr_j)⁻¹ G_j⁻¹ and
    log|R_j| = log|Corr_j| + 2 Σ_i log g(δ, v_ij).
    """

    def __init__(self, rd: ResidualDesign):
        self.design = rd
        self.structure = make(rd.spec.kind, rd.spec.order, rd.t_levels, rd.spec.correlation_only)
        self.n_levels = len(rd.by_levels)
        self.variance = rd.variance.function() if rd.variance is not None else None
        k = self.structure.n_params
        self._n_ratios = (self.n_levels - 1) if rd.spec.by_variances else 0
        self._n_corr = k * self.n_levels + self._n_ratios
        self.n_params = self._n_corr + (self.variance.n_params if self.variance else 0)

    @functools.cached_property
    def _patterns(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return _patterns(self.design)

    @functools.cached_property
    def time_order(self) -> np.ndarray | None:
        """Row order by group, then time; None when the rows are already in that order."""
        g, t = self.design.groups, self.design.t
        step = np.diff(g)
        if np.all((step > 0) | ((step == 0) & (np.diff(t) > 0))):
            return None
        return np.lexsort((t, g))

    @functools.cached_property
    def time_gaps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """In :attr:`time_order`: group codes, whether each row starts its group, and its time
        gap to the previous row (0 for a group's first row)."""
        order = self.time_order
        g = self.design.groups if order is None else self.design.groups[order]
        t = self.design.t if order is None else self.design.t[order]
        first = np.ones(len(g), dtype=bool)
        first[1:] = g[1:] != g[:-1]
        gaps = np.zeros(len(t))
        gaps[1:] = np.diff(t)
        gaps[first] = 0.0
        return g, first, gaps

    @functools.cached_property
    def gap_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct time gaps between consecutive rows of a group, and how often each occurs."""
        _, first, gaps = self.time_gaps
        return np.unique(gaps[~first], return_counts=True)

    @property
    def label(self) -> str:
        if self.variance is None:
            return self.structure.label
        vd = self.design.variance
        head = self.variance.label + ("" if vd.kind == "distinct" else f" {vd.covariate}")
        head += "" if self.structure.n_params == 0 else f", {self.structure.label}"
        return head + (f", by {vd.covariate}" if vd.kind == "distinct" else "")

    def start(self) -> np.ndarray:
        return np.concatenate([np.tile(self.structure.start(), self.n_levels), np.zeros(self._n_ratios)]
                              + ([self.variance.start()] if self.variance else []))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = [np.tile(self.structure.lower, self.n_levels), np.full(self._n_ratios, -20.0)]
        hi = [np.tile(self.structure.upper, self.n_levels), np.full(self._n_ratios, 20.0)]
        if self.variance:
            vlo, vhi = self.variance.bounds(self.design.variance.v)
            lo, hi = lo + [vlo], hi + [vhi]
        return np.concatenate(lo), np.concatenate(hi)

    def log_sd(self, phi: np.ndarray) -> np.ndarray | None:
        """log g(δ, v) per row of the variance function (None without one)."""
        if self.variance is None:
            return None
        vd = self.design.variance
        return self.variance.log_sd(phi[self._n_corr:], vd.v, vd.strata)

    def level_params(self, phi: np.ndarray, level: int) -> np.ndarray:
        k = self.structure.n_params
        return phi[level * k:(level + 1) * k]

    def log_ratios(self, phi: np.ndarray) -> np.ndarray:
        """log(var_level / var_level1) for every by() level."""
        if not self._n_ratios:
            return np.zeros(self.n_levels)
        return np.concatenate([[0.0], phi[self.structure.n_params * self.n_levels:self._n_corr]])

    def matrix(self, phi: np.ndarray, t: np.ndarray, by: np.ndarray) -> np.ndarray:
        """R for one group with time values t and by() codes by (per row)."""
        sd = np.exp(0.5 * self.log_ratios(phi)[by])
        corr = self.structure.matrix(self.level_params(phi, int(by[0])), t)
        return corr * np.outer(sd, sd)

    def whiten(self, phi: np.ndarray, A: np.ndarray) -> tuple[np.ndarray, float]:
        """C_j⁻¹ A_j for every group j, and Σ_j log|R_j|."""
        log_det = 0.0
        log_sd = self.log_sd(phi)
        if log_sd is not None:
            A = A * np.exp(-log_sd)[:, None]
            log_det = 2 * float(np.sum(log_sd))
            if self.structure.n_params == 0 and self.n_levels == 1:   # g alone: diagonal R
                return A, log_det
        out = np.empty_like(A)
        for t, by, idx in self._patterns:
            R = self.matrix(phi, t, by)
            C = np.linalg.cholesky(R)
            W = np.linalg.inv(C)
            out[idx] = np.einsum("ij,mjc->mic", W, A[idx])
            log_det += idx.shape[0] * 2 * np.log(np.diag(C)).sum()
        return out, log_det

    def gradient(self, phi: np.ndarray, A: np.ndarray, md: int, refs: np.ndarray, E: np.ndarray,
                 E22: np.ndarray, h: float = 1e-6) -> np.ndarray:
        """∂/∂φ of ⟨E, zcols(φ)⟩ + ⟨E22, A22(φ)⟩ + Σ_j log|R_j|(φ) at fixed E (G, c, k) and E22
        (md, md), for the whitened cross-products zcols_g = a_gᵀR_g⁻¹z_g and A22 = Σ_g d_gᵀR_g⁻¹d_g
        of a = [d z] = ``A`` (raw rows, ``md`` columns of [X y]; ``refs``: each row's group).

        With dR⁻¹ = −R⁻¹ dR R⁻¹ and d log|R| = tr(R⁻¹dR), the pattern of m groups with the
        same R contributes ⟨∂R/∂φ_i, K⟩, K = m R⁻¹ − R⁻¹ P R⁻¹ with P = Σ_g sym(a_g E_g z_gᵀ) +
        d_g E22 d_gᵀ, one batched product per pattern.  A structure with an analytic
        ``gradient(φ, K)`` (unstructured, banded) gets the K of every pattern placed in its full
        matrix over the t() levels, per by() level; otherwise ∂R/∂φ_i of the small matrix R(φ)
        is a central difference."""
        out = np.zeros(len(phi))
        analytic = hasattr(self.structure, "gradient")
        if analytic:
            T, k = len(self.design.t_levels), self.structure.n_params
            K_full = np.zeros((self.n_levels, T, T))
            ratios = np.exp(self.log_ratios(phi))
            d_ratio = np.zeros(self.n_levels)
        for t, by, idx in self._patterns:
            a = A[idx]                                        # (m, s, c)
            P = np.einsum("msc,mck,mtk->st", a, E[refs[idx[:, 0]]], a[:, :, md:])
            P = 0.5 * (P + P.T) + np.einsum("msi,ij,mtj->st", a[:, :, :md], E22, a[:, :, :md])
            R = self.matrix(phi, t, by)
            Rinv = np.linalg.inv(R)
            K = idx.shape[0] * Rinv - Rinv @ P @ Rinv
            if analytic:                                       # R = ratio_l · full(φ_l)[t, t]
                pos, level = np.searchsorted(self.design.t_levels, t), int(by[0])
                K_full[level][np.ix_(pos, pos)] += ratios[level] * K
                d_ratio[level] += np.sum(R * K)
                continue
            for i in range(len(phi)):
                step = np.zeros(len(phi))
                step[i] = h
                dR = (self.matrix(phi + step, t, by) - self.matrix(phi - step, t, by)) / (2 * h)
                out[i] += np.sum(dR * K)
        if analytic:
            for level in range(self.n_levels):
                out[level * k:(level + 1) * k] = self.structure.gradient(self.level_params(phi, level), K_full[level])
            out[k * self.n_levels:self._n_corr] = d_ratio[1:self._n_ratios + 1]
        return out

    def report(self, phi: np.ndarray, sigma2: float) -> list[tuple[str, float]]:
        """Stata's residual rows (``rho``, ``var(e)``, ...); by() levels prefix them (``1: var(e)``).
        With a variance function: ``sigma2``, its parameters (``delta``, ``_cons``, ``gamma``;
        strata prefix them) and the correlation's rows; for ``distinct``, ``var(e)`` per index
        level (``1: var(e)``), as ``mixed``'s ``independent, by()``."""
        if self.variance is not None:
            return self._variance_report(phi, sigma2)
        if not self.design.spec.by_variances:
            return self._correlation_rows(phi, sigma2) + [("var(e)", float(sigma2))]
        rows = []
        ratios = np.exp(self.log_ratios(phi))
        for level, label in enumerate(self.design.by_levels):
            prefix = f"{label}: " if self.design.spec.by else ""
            for name, value in self.structure.report(self.level_params(phi, level), sigma2 * ratios[level]):
                rows.append((prefix + name, float(value)))
        return rows


    def _variance_report(self, phi: np.ndarray, sigma2: float) -> list[tuple[str, float]]:
        vd, values = self.design.variance, self.variance.natural(phi[self._n_corr:])
        if vd.kind == "distinct":
            rows = [(f"{label}: var(e)", float(sigma2 * d[0] ** 2)) for label, d in zip(vd.labels, values)]
        else:
            rows = [("sigma2", float(sigma2))]
            for label, row in zip(vd.labels, values):
                prefix = f"{label}: " if vd.strata_var else ""
                rows += [(prefix + name, float(x)) for name, x in zip(self.variance.names, row)]
        return rows + self._correlation_rows(phi, sigma2)

    def _correlation_rows(self, phi: np.ndarray, sigma2: float) -> list[tuple[str, float]]:
        """The correlation structure's rows without its variance, by() levels prefixed."""
        rows = []
        for level, label in enumerate(self.design.by_levels):
            prefix = f"{label}: " if self.design.spec.by else ""
            report = self.structure.report(self.level_params(phi, level), sigma2)
            rows += [(prefix + name, float(x)) for name, x in report if not name.startswith("var(")]
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
    the rows with gap d, all formed once: at most one sort by group and time, then tall
    matrix products on views of the rows and sparse group-indicator products that index
    them (no loop over groups; the rows are copied only if they must be sorted).  Only the
    random-effects columns (the last k of a = [X y z]) are kept per group; the [X y]
    block is kept summed over the groups of each by() level.  Each evaluation then costs
    O(G·c·k), not O(n), and so does the gradient in φ (:meth:`gradient`).
    """

    MAX_GAPS = 8

    def __init__(self, rm: "ResidualModel", D: np.ndarray, z: np.ndarray):
        """D = [X y] (n × md) and z = the random-effects columns (n × k), in the design's row order."""
        rd = rm.design
        if rm.time_order is not None:
            D, z = D[rm.time_order], z[rm.time_order]
        g, first, gaps = rm.time_gaps
        self.gaps, n_pairs = rm.gap_counts
        self.md, self.k = D.shape[1], z.shape[1]
        self.n_groups = int(rd.groups.max()) + 1
        self.by_of_group = np.zeros(self.n_groups, dtype=int)
        self.by_of_group[rd.groups] = rd.by
        self.n_levels = len(rd.by_levels)
        self.rows_per_group = np.bincount(rd.groups, minlength=self.n_groups)
        self._D, self._z = np.ascontiguousarray(D), z   # rows contiguous for the sparse products
        self._level = self.by_of_group[g] if self.n_levels > 1 else None
        n, G = len(g), self.n_groups
        heads = np.flatnonzero(first).astype(np.int32 if n < 2 ** 31 else np.int64)
        tails = np.append(heads[1:] - 1, n - 1)
        one_each = np.searchsorted(g[heads], np.arange(G + 1))      # one head (tail) per group present
        self.F = (self._blocks(heads, heads), self._zcols(heads, heads, one_each))
        # all rows, and all consecutive pairs less the group boundaries, as views: the pairs of
        # every gap together; the most frequent gap gets what the others leave
        S = (self._blocks(slice(None), slice(None)),
             self._zcols(np.arange(n, dtype=heads.dtype), slice(None), np.searchsorted(g, np.arange(G + 1))))
        C = self._blocks(slice(1, n), slice(0, n - 1)) - self._blocks(heads[1:], heads[1:] - 1)
        rest_b = np.stack([S[0] - self.F[0], -C - C.transpose(0, 2, 1), S[0] - self._blocks(tails, tails)])
        rest_z = np.stack([S[1] - self.F[1], S[1] - self._zcols(tails, tails, one_each)])   # P0, P2
        main = int(np.argmax(n_pairs))
        self.parts = [None] * len(self.gaps)
        for i in sorted(range(len(self.gaps)), key=lambda i: i == main):   # the main gap last
            rows = np.flatnonzero(~first & (gaps == self.gaps[i])).astype(heads.dtype)  # predecessor d earlier
            prev = rows - 1
            indptr = np.searchsorted(g[rows], np.arange(G + 1))
            if i == main:
                blocks, z02 = rest_b, rest_z
            else:
                P1 = self._blocks(rows, prev)
                blocks = np.stack([self._blocks(rows, rows), -P1 - P1.transpose(0, 2, 1), self._blocks(prev, prev)])
                z02 = np.stack([self._zcols(rows, rows, indptr), self._zcols(prev, prev, indptr)])
                rest_b, rest_z = rest_b - blocks, rest_z - z02
            p1s = self._zcols(rows, prev, indptr) + self._zcols(prev, rows, indptr)
            self.parts[i] = (self.gaps[i], blocks, np.stack([z02[0], -p1s, z02[1]]), np.diff(indptr))
        del self._D, self._z

    def _blocks(self, rows_a, rows_b) -> np.ndarray:
        """Σ D_i D_jᵀ over the row pairs (i, j) (index arrays or slices), per by() level."""
        x, y = self._D[rows_a], self._D[rows_b]
        if self._level is None:
            return (x.T @ y)[None]
        level = self._level[rows_a]
        return np.stack([x[level == lv].T @ y[level == lv] for lv in range(self.n_levels)])

    def _zcols(self, rows_a: np.ndarray, rows_b, indptr: np.ndarray) -> np.ndarray:
        """Σ a_i z_jᵀ (a = [D z]) over the row pairs (i, j) of each group (G, c, k), the pairs sorted
        by group (group g's from indptr[g] to indptr[g+1]): per z column, a sparse group
        indicator weighted by z_j times the rows of D and z (no copy of them)."""
        shape = (self.n_groups, len(self._D))
        out = np.empty((self.n_groups, self.md + self.k, self.k))
        for j in range(self.k):
            W = sparse.csr_matrix((self._z[rows_b, j], rows_a, indptr), shape=shape)
            out[:, :self.md, j], out[:, self.md:, j] = W @ self._D, W @ self._z
        return out

    @staticmethod
    def applies(rm: "ResidualModel") -> bool:
        spec = rm.design.spec
        if rm.variance is not None or not spec.by_variances:
            return False
        if not ((spec.kind == "ar" and (spec.order or 1) == 1) or spec.kind == "exponential"):
            return False
        return len(rm.gap_counts[0]) <= MarkovStatistics.MAX_GAPS

    def _mix(self, weights: list[np.ndarray], first: float) -> tuple[np.ndarray, np.ndarray]:
        """first·F + Σ_d (w0 P0 − w1 (P1 + P1ᵀ) + w2 P2) with weights (3, levels) per gap:
        the [X y] block per level (levels, md, md) and the z columns per group (G, c, k)."""
        full, zcols = first * self.F[0], first * self.F[1]
        for (d, blocks, zc, count), w in zip(self.parts, weights):
            full = full + np.einsum("sl,slij->lij", w, blocks)
            per_group = w[:, self.by_of_group] if self.n_levels > 1 else w[:, :1]
            for s in range(len(w)):  # one multiply-add per statistic (einsum runs no faster kernel here)
                zcols += per_group[s][:, None, None] * zc[s]
        return full, zcols

    def _weights(self, rho: np.ndarray) -> list[np.ndarray]:
        """(1, ρ^d, ρ^{2d}) / (1 − ρ^{2d}) per gap d: the weights of P0, P1 + P1ᵀ, P2, (3, levels)."""
        return [np.stack([np.ones_like(rho), rho ** d, rho ** (2 * d)]) / (1 - rho ** (2 * d)) for d in self.gaps]

    def _per_level(self, per_group: np.ndarray) -> np.ndarray:
        return np.bincount(self.by_of_group, weights=per_group, minlength=self.n_levels)

    def gram(self, rm: "ResidualModel", phi: np.ndarray):
        """A22 (md × md), the z columns of every group's whitened Gram (G, c, k), and Σ log|R_j|
        = Σ_rows log(scale) + Σ_d Σ_rows with gap d log(1 − ρ^{2d})."""
        rho, _ = _markov_rho(rm, phi, self.n_levels)
        full, zcols = self._mix(self._weights(rho), 1.0)
        log_scale = rm.log_ratios(phi)
        log_det = self._per_level(self.rows_per_group) @ log_scale
        log_det += sum(self._per_level(count) @ np.log(1 - rho ** (2 * d)) for d, *_, count in self.parts)
        scale = np.exp(log_scale)
        return np.einsum("l,lij->ij", 1 / scale, full), zcols / scale[self.by_of_group][:, None, None], log_det

    def gradient(self, rm: "ResidualModel", phi: np.ndarray, E: np.ndarray, E22: np.ndarray) -> np.ndarray:
        """∂/∂φ of ⟨E, zcols(φ)⟩ + ⟨E22, A22(φ)⟩ + Σ_j log|R_j|(φ) at fixed E (G, c, k) and E22
        (md, md), with zcols, A22 and Σ log|R_j| as returned by :meth:`gram`.

        Each statistic enters with a scalar weight per group, so only the inner products
        ⟨E_g, P_g⟩ are needed.  With r = ρ^d and D = 1 − r², ∂[(P0 − r P1s + r² P2)/D]/∂r =
        [2r P0 − (1 + r²) P1s + 2r P2]/D² and ∂ log D/∂r = −2r/D; the chain rule adds
        ∂r/∂ρ = d ρ^{d−1} and ∂ρ/∂φ.  The variance ratio exp(φ) of by() level l ≥ 2 divides
        that level's cross-products and adds its number of rows to Σ log|R_j|.
        """
        rho, drho = _markov_rho(rm, phi, self.n_levels)
        scale = np.exp(rm.log_ratios(phi))

        def inner(blocks: np.ndarray, zc: np.ndarray) -> np.ndarray:
            """(⟨E22, ·⟩ + ⟨E, ·⟩) / scale per by() level, for stacked statistics (s, levels | G, ...)."""
            Ef = E.reshape(len(E), -1)
            per_group = [np.einsum("gi,gi->g", z.reshape(Ef.shape), Ef) for z in zc]
            per_level = np.stack([self._per_level(row) for row in per_group])
            return (np.einsum("ij,slij->sl", E22, blocks) + per_level) / scale

        value = inner(self.F[0][None], self.F[1][None])[0]   # the gram's ⟨E, ·⟩ per level
        d_rho = np.zeros(self.n_levels)
        for (d, blocks, zc, count), w in zip(self.parts, self._weights(rho)):
            ip = inner(blocks, zc)                            # (3, levels)
            value += (w * ip).sum(axis=0)
            r, dr = rho ** d, d * rho ** (d - 1) * drho
            dw = np.stack([2 * r, 1 + r * r, 2 * r]) / (1 - r * r) ** 2
            d_rho += dr * ((dw * ip).sum(axis=0) - self._per_level(count) * 2 * r / (1 - r * r))
        n_rho = self.n_levels * rm.structure.n_params
        out = np.zeros(rm.n_params)
        out[:n_rho] = d_rho
        out[n_rho:] = (self._per_level(self.rows_per_group) - value)[1:]
        return out


def _markov_rho(rm: "ResidualModel", phi: np.ndarray, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """ρ of every by() level and ∂ρ/∂φ (ρ = tanh φ for AR(1), logistic(φ) for exponential)."""
    params = np.array([rm.level_params(phi, lv)[0] for lv in range(n_levels)])
    if rm.design.spec.kind == "exponential":
        rho = rm.structure.rho(params[None])
        return rho, rho * (1 - rho)
    rho = np.tanh(params)
    return rho, 1 - rho * rho
