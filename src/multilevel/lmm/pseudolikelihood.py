"""Multilevel pseudo-likelihood of a nested linear mixed model with weights at any level.

Rabe-Hesketh & Skrondal (2006, JRSS A 169, eqs. 3-5); [ME] mixed, Methods and
formulas, Survey data.  For levels 1 (observations) < 2 < ... < L (top), with
weights w at every level conditional on the parent being sampled,

    ℓ = Σ_k w_k log ∫ Π_j ( ∫ Π_i f(y_i | u)^{w_i} φ(u_j) du_j )^{w_j} φ(u_k) du_k    (three levels)

In the Gaussian model every inner integral is a Gaussian function of the outer
random effects.  With spherical effects u = Λv, v ~ N(0, σ²I), D = [Z₂Λ₂ ...
Z_LΛ_L X y] and x = (v₂, ..., v_L, β, −1), a group g of level l contributes

    log F_g = −½ [n_g log 2πσ² + log|M_g| + xᵀ S_g x / σ²],
    M_g = Q_g,oo + I,   S_g = Q_g,rr − Q_g,ro M_g⁻¹ Q_g,or,

where Q_g is Σ_i w_i D_iᵀD_i at the lowest level and Σ_{children c} w_c S_c
above it (the child's whole log F raised to its weight scales its quadratic form
and its constants), o its own columns and r the outer ones.  Hence the profiled
deviance keeps the unweighted form (Bates et al. 2015, JSS 67(1) eq. 34)

    d(θ) = Σ_g W_g log|M_g| + N (1 + log(2π r²/N)),

W_g the product of the weights of g and its ancestors, N = Σ_i W_i and r² the
last pivot of the top-level Σ_k w_k S_k.  Every level is one pass of batched
k×k kernels over its groups (``linalg.batched``), the children summed into
their parents with a sparse indicator matrix.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.linalg.lapack import dpotrf

from ..design import Design
from ..linalg import batched
from ..spec.errors import DataError
from .model import Factor, LinearMixedModel, _offsets, _tri_solve
from .terms import make_terms


def applies(design: Design) -> bool:
    """Weights above level 1 in a model with more than one level of groups."""
    return design.weights is not None and bool(design.weights.higher)


def make_model(design: Design, reml: bool = False) -> LinearMixedModel:
    """The model core of ``design``: :class:`PseudoLikelihoodModel` when it :func:`applies`."""
    return PseudoLikelihoodModel(design, reml) if applies(design) else LinearMixedModel(design, reml=reml)


@dataclass(frozen=True)
class Level:
    """One level of the nesting: its term, each group's parent and conditional weight."""

    term: object
    parent: np.ndarray | None     # (G,) group code at the level above (None at the top)
    weight: np.ndarray            # (G,) w of the group given its parent
    to_parent: sparse.csr_matrix | None  # (G_parent × G) indicator


@dataclass
class Sweep:
    """The level-by-level elimination at one Λ: per-top-group sums and the factors for the modes."""

    logdet: np.ndarray            # (G_top,) Σ over the group and its descendants of W_g/w_top log|M_g|
    schur: np.ndarray             # (G_top, m, m) the top groups' S
    factors: list                 # per level (L_g, L_g⁻¹ Q_g,or), lowest first


class Nesting:
    """The nested levels of a design and the weighted cross-products of its lowest groups."""

    def __init__(self, design: Design, terms: list):
        w = design.weights
        order = sorted(terms, key=lambda t: (-t.n_groups, -len(t.equations[0].group_key)))
        if any(not t.equations[0].group_key for t in order):
            raise DataError("weights above level 1 need nested levels (not _all:)")
        group_w = {key: values for key, values in w.higher}
        self.levels = []
        for low, high in zip(order, order[1:] + [None]):
            parent = None
            if high is not None:
                parent = np.zeros(low.n_groups, dtype=np.int64)
                parent[low.refs] = high.refs
                if not np.array_equal(parent[low.refs], high.refs):
                    raise DataError("weights above level 1 need nested levels: the groups of "
                                    f"'{low.equations[0].label}' are not nested in '{high.equations[0].label}'")
            weight = np.ones(low.n_groups)
            for eq in low.equations:
                if eq.group_key in group_w:
                    weight[low.refs] = group_w[eq.group_key]
            to_parent = None if parent is None else sparse.csr_matrix(
                (np.ones(low.n_groups), (parent, np.arange(low.n_groups))), shape=(high.n_groups, low.n_groups))
            self.levels.append(Level(low, parent, weight, to_parent))
        self.level1 = w.level1

    @property
    def columns(self) -> list[np.ndarray]:
        """The z columns of every level, lowest first."""
        return [lv.term.z for lv in self.levels]

    def gram(self, D: np.ndarray) -> np.ndarray:
        """Σ_i w_i d_i d_iᵀ per lowest-level group for the rows d_i of [Z₁ ... Z_L D] (G₁, K, K)."""
        first = self.levels[0].term
        A = np.column_stack(self.columns + [D])
        K = A.shape[1]
        out = np.empty((first.n_groups, K, K))
        for a in range(K):
            for b in range(a, K):
                out[:, a, b] = out[:, b, a] = np.bincount(first.refs, weights=self.level1 * A[:, a] * A[:, b],
                                                          minlength=first.n_groups)
        return out

    def sweep(self, A: np.ndarray, lams: list[np.ndarray]) -> Sweep:
        """Eliminate the levels' own columns bottom-up (see the module docstring); ``lams`` lowest first."""
        K = A.shape[1]
        T = np.eye(K)
        off = 0
        for lam in lams:
            k = lam.shape[0]
            T[off:off + k, off:off + k] = lam
            off += k
        Q = batched.congruence(A, T)
        acc = np.zeros(len(Q))
        factors = []
        for lv, lam in zip(self.levels, lams):
            k = lam.shape[0]
            M = Q[:, :k, :k] + np.eye(k)
            L = np.sqrt(M) if k == 1 else batched.cholesky(M)
            acc = acc + 2 * batched.log_det_tri(L)
            C = batched.tri_inverse(L) @ Q[:, :k, k:]
            S = Q[:, k:, k:] - C.transpose(0, 2, 1) @ C
            factors.append((L, C))
            if lv.to_parent is not None:  # the children's w S summed into their parents
                m = S.shape[1]
                Q = (lv.to_parent @ (lv.weight[:, None] * S.reshape(len(S), m * m))).reshape(-1, m, m)
                acc = lv.to_parent @ (lv.weight * acc)
        return Sweep(acc, S, factors)

    def modes(self, sweep: Sweep, x_top: np.ndarray, lams: list[np.ndarray]) -> list[np.ndarray]:
        """Conditional modes b = Λv per level (lowest first), top-down from x = (β, −1):
        v_g = −M_g⁻¹ Q_g,or x_g = −L_g⁻ᵀ C_g x_g with x_g the parent's (v, x)."""
        out = [None] * len(self.levels)
        x = np.broadcast_to(x_top, (len(sweep.schur), len(x_top)))
        for i in range(len(self.levels) - 1, -1, -1):
            L, C = sweep.factors[i]
            v = -np.einsum("gba,gb->ga", batched.tri_inverse(L), np.einsum("gab,gb->ga", C, x))
            out[i] = v @ lams[i].T
            if i:
                child = self.levels[i - 1].parent
                x = np.column_stack([v, x])[child]
        return out

    def top_weights(self) -> np.ndarray:
        return self.levels[-1].weight


class PseudoLikelihoodModel(LinearMixedModel):
    """A nested LMM with weights above level 1 (ML only): the profiled multilevel pseudo-deviance."""

    def __init__(self, design: Design, reml: bool = False):
        if reml:
            raise DataError("weights are not allowed with reml, as in Stata")
        self.design, self.reml = design, False
        self.terms = make_terms(design.equations)
        self.n, self.p = design.X.shape
        self.residual = None
        *self._theta_slices, self.residual_slice = _offsets([t.n_params for t in self.terms] + [0])
        self.nesting = Nesting(design, self.terms)
        self.n_obs = design.n_effective
        D = self._centered_data(design.X, design.y)
        total = design.weights.total
        self.raw_gram = (D * total[:, None]).T @ D
        self._A = self.nesting.gram(D)
        self.q_rest, self.m = 0, self.p + 1
        self._group_w = self.nesting.top_weights()  # marks the model as weighted above level 1

    def _lams_low_first(self, theta: np.ndarray) -> list[np.ndarray]:
        lams = {id(t): lam for t, lam in zip(self.terms, self.lambdas(theta))}
        return [lams[id(lv.term)] for lv in self.nesting.levels]

    def factor(self, theta: np.ndarray) -> Factor:
        theta = np.asarray(theta, dtype=float)
        sweep = self.nesting.sweep(self._A, self._lams_low_first(theta))
        w = self.nesting.top_weights()
        top = np.tensordot(w, sweep.schur, axes=1)
        L22, info = dpotrf(top, lower=1, clean=1)
        if info:
            raise np.linalg.LinAlgError("the weighted fixed-effects system is not positive definite")
        d = np.diag(L22)
        return Factor(theta, np.zeros((0, 0, 0)), None, np.zeros((self.m, 0)), L22, float(w @ sweep.logdet),
                      2 * np.log(d[:-1]).sum(), d[-1] ** 2)

    def solve(self, f: Factor) -> tuple[np.ndarray, list[np.ndarray]]:
        """β̂ and the conditional modes per term (G, k), top-down through the levels."""
        L22 = f.L22
        x2 = _tri_solve(L22[:-1, :-1], L22[-1, :-1], transpose=True)
        beta = self._C @ x2
        if "_cons" in self.design.fixed.names:
            beta[self.design.fixed.names.index("_cons")] += self._y_shift
        lams = self._lams_low_first(f.theta)
        sweep = self.nesting.sweep(self._A, lams)
        b = self.nesting.modes(sweep, np.append(x2, -1.0), lams)
        by_term = {id(lv.term): bl for lv, bl in zip(self.nesting.levels, b)}
        return beta, [by_term[id(t)] for t in self.terms]


def cluster_scores(res, clusters: np.ndarray, parts: list, sigmas: list) -> tuple:
    """Scores and observed Hessian of the pseudo-likelihood in ψ = (β, σ) for the robust sandwich.

    σ are the values of the linear bases ``parts`` ((equation, basis) pairs, Σ_eq = Σ σ_k basis_k)
    and the residual variance, as in :func:`inference.robust.cluster_scores`.  Each top-level group k
    contributes ℓ_k = −½[n_k log 2πσ² + Σ W_g/w_k log|M_g| + xᵀS_kx/σ²] (module docstring), with
    Λ Λᵀ = Σ/σ² for each level; the scores are central differences of the vector (ℓ_k), the Hessian of
    Σ_k w_k ℓ_k by Richardson-extrapolated differences.  Returns (S, cluster weights, H): rows of S
    are the top-level groups (weights w_k) when they are the clusters, otherwise the clusters'
    sums of w_k s_k (weights 1).
    """
    from ..inference.information import richardson_hessian

    design = res.design
    terms = make_terms(design.equations)
    nest = Nesting(design, terms)
    X, beta = design.X, res.fixed.coef
    A = nest.gram(np.column_stack([X, design.y - X @ beta]))   # β = β̂ + δ: x = (δ, −1)
    top = nest.levels[-1]
    below = nest.level1.copy()
    for lv in nest.levels[:-1]:
        below = below * lv.weight[lv.term.refs]
    n_top = np.bincount(top.term.refs, weights=below, minlength=top.term.n_groups)
    p = len(beta)
    where = [next((t, t.col_slices[i]) for t in terms for i, e in enumerate(t.equations) if e is eq)
             for eq, _ in parts]

    def contributions(psi: np.ndarray) -> np.ndarray:
        s2 = psi[-1]
        covs = {id(t): np.zeros((t.k, t.k)) for t in terms}
        for (t, cs), (_, basis), value in zip(where, parts, psi[p:-1]):
            covs[id(t)][cs, cs] += value * basis
        lams = [_sqrt_psd(covs[id(lv.term)] / s2) for lv in nest.levels]
        sweep = nest.sweep(A, lams)
        x = np.append(psi[:p], -1.0)
        quad = np.einsum("a,gab,b->g", x, sweep.schur, x)
        return -0.5 * (n_top * np.log(2 * np.pi * s2) + sweep.logdet + quad / s2)

    psi0 = np.concatenate([np.zeros(p), sigmas])
    var_scale = np.max(np.abs(sigmas))
    scale = np.concatenate([res.fixed.se, np.maximum(np.abs(sigmas), 1e-3 * var_scale)])
    S = np.empty((top.term.n_groups, len(psi0)))
    for j in range(len(psi0)):
        e = np.zeros(len(psi0))
        e[j] = 1e-5 * scale[j]
        S[:, j] = (contributions(psi0 + e) - contributions(psi0 - e)) / (2 * e[j])
    wk = top.weight
    H = richardson_hessian(lambda u: wk @ contributions(psi0 + u * scale), np.zeros(len(psi0)), h=2e-2)
    H = H / np.outer(scale, scale)
    cluster_of_top = np.zeros(top.term.n_groups, dtype=np.int64)
    cluster_of_top[top.term.refs] = clusters
    n_clusters = int(clusters.max()) + 1
    if n_clusters == top.term.n_groups and len(np.unique(cluster_of_top)) == n_clusters:
        order = np.argsort(cluster_of_top)
        return S[order], wk[order], H
    agg = sparse.csr_matrix((wk, (cluster_of_top, np.arange(len(wk)))), shape=(n_clusters, len(wk)))
    return agg @ S, np.ones(n_clusters), H


def _sqrt_psd(C: np.ndarray) -> np.ndarray:
    """A square root Λ (Λ Λᵀ = C) of a positive semi-definite matrix (negative eigenvalues set to 0)."""
    d, V = np.linalg.eigh((C + C.T) / 2)
    return V * np.sqrt(np.clip(d, 0.0, None))
