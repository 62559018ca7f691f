"""Penalized iteratively reweighted least squares for the conditional modes.

With b = Λu, u ~ N(0, I) and η = offset + Xβ + ZΛu, the conditional mode
û maximizes

.. math:: g(u) = \\sum_i \\log f(y_i | η_i) − ½‖u‖²

by Newton steps with step-halving (Bates et al. 2015, JSS 67(1), §5 of the
GLMM vignette; MixedModels.jl ``pirls!``).  The Newton matrix is the
penalized weighted cross-product H = ΛᵀZᵀWZΛ + I with W = −∂²log f/∂η²
(the observed curvature, so that at û it is also the matrix of the Laplace
approximation).  It is factored in the LMM's blocked layout: the term with
the most groups is block diagonal (one k×k block per group, factored as a
batch); the other terms are a small dense Schur complement.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
from scipy import sparse

from ..linalg import batched
from ..lmm.terms import RandomTerm


@dataclass
class PenalizedFactor:
    """Cholesky factor of H = ΛᵀZᵀWZΛ + I in blocked form."""

    L11: np.ndarray                 # (G₁, k₁, k₁) lower-triangular blocks
    L11inv: np.ndarray              # their inverses
    L21: sparse.csr_matrix | None   # (q_r × q₁)
    L22: np.ndarray | None          # (q_r × q_r) lower triangular
    logdet: float                   # log |H|

    def solve(self, r: np.ndarray) -> np.ndarray:
        """H⁻¹ r for a flat vector r (term 1's entries first, group-major)."""
        G, k, _ = self.L11.shape
        r1 = r[:G * k].reshape(G, k)
        y1 = np.einsum("gab,gb->ga", self.L11inv, r1)
        if self.L22 is None:
            return np.einsum("gba,gb->ga", self.L11inv, y1).ravel()
        y2 = scipy.linalg.solve_triangular(self.L22, r[G * k:] - self.L21 @ y1.ravel(), lower=True,
                                           check_finite=False)
        x2 = scipy.linalg.solve_triangular(self.L22, y2, lower=True, trans="T", check_finite=False)
        t = (y1.ravel() - self.L21.T @ x2).reshape(G, k)
        return np.concatenate([np.einsum("gba,gb->ga", self.L11inv, t).ravel(), x2])


class PenalizedSystem:
    """The random-effects structure of a GLMM: Z applied and H factored at weights W.

    ``terms`` are the LMM's :class:`~multilevel.lmm.terms.RandomTerm` objects
    (most groups first); u is one flat vector, term by term, group-major.
    """

    def __init__(self, terms: list[RandomTerm], n: int):
        self.terms = terms
        self.n = n
        self.sizes = [t.q for t in terms]
        self.q = sum(self.sizes)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        if len(terms) > 1:
            self.Z1 = terms[0].zt_sparse().tocsr()
            self.Zr = sparse.hstack([t.zt_sparse() for t in terms[1:]]).tocsr()

    def split(self, u: np.ndarray) -> list[np.ndarray]:
        """Flat u -> per-term (G, k) arrays."""
        return [u[a:b].reshape(t.n_groups, t.k) for t, a, b in zip(self.terms, self.offsets[:-1], self.offsets[1:])]

    def zlam(self, u: np.ndarray, lams: list[np.ndarray]) -> np.ndarray:
        """ZΛu, an n-vector."""
        out = np.zeros(self.n)
        for t, ut, lam in zip(self.terms, self.split(u), lams):
            b = ut @ lam.T
            out += np.einsum("ic,ic->i", t.z, b[t.refs])
        return out

    def zlam_t(self, v: np.ndarray, lams: list[np.ndarray]) -> np.ndarray:
        """ΛᵀZᵀv, flat."""
        parts = []
        for t, lam in zip(self.terms, lams):
            zv = np.column_stack([np.bincount(t.refs, weights=v * t.z[:, a], minlength=t.n_groups)
                                  for a in range(t.k)])
            parts.append((zv @ lam).ravel())
        return np.concatenate(parts)

    def factor(self, w: np.ndarray, lams: list[np.ndarray]) -> PenalizedFactor:
        """Blocked Cholesky factor of ΛᵀZᵀWZΛ + I."""
        t1, lam1 = self.terms[0], lams[0]
        M = batched.congruence(t1.block_gram(w), lam1)
        M += np.eye(t1.k)
        L11 = batched.cholesky(M)
        L11inv = batched.tri_inverse(L11)
        logdet = 2 * np.log(np.diagonal(L11, axis1=1, axis2=2)).sum()
        if len(self.terms) == 1:
            return PenalizedFactor(L11, L11inv, None, None, logdet)
        lam_r = sparse.block_diag([sparse.kron(sparse.identity(t.n_groups), lam)
                                   for t, lam in zip(self.terms[1:], lams[1:])], format="csr")
        lam_1 = sparse.kron(sparse.identity(t1.n_groups), lam1, format="csr")
        Wr = sparse.diags(w) @ self.Zr
        H21 = lam_r.T @ (Wr.T @ self.Z1) @ lam_1
        H22 = (lam_r.T @ (Wr.T @ self.Zr) @ lam_r).toarray() + np.eye(self.Zr.shape[1])
        Linv_t = sparse.block_diag(list(L11inv.transpose(0, 2, 1)), format="csr")
        L21 = (H21 @ Linv_t).tocsr()
        L22 = np.linalg.cholesky(H22 - (L21 @ L21.T).toarray())
        logdet += 2 * np.log(np.diag(L22)).sum()
        return PenalizedFactor(L11, L11inv, L21, L22, logdet)


@dataclass
class Modes:
    """The result of PIRLS at one parameter value."""

    u: np.ndarray          # conditional modes (spherical), flat
    eta: np.ndarray        # linear predictor at û
    loglik: float          # Σ log f(y | η(û))
    factor: PenalizedFactor  # H at û
    iterations: int
    converged: bool

    @property
    def laplace(self) -> float:
        """Laplace approximation of the log likelihood:
        Σ log f(y|η(û)) − ½‖û‖² − ½ log|H(û)|."""
        return self.loglik - 0.5 * self.u @ self.u - 0.5 * self.factor.logdet


def pirls(system: PenalizedSystem, family, y: np.ndarray, eta0: np.ndarray, lams: list[np.ndarray],
          xi: np.ndarray, u0: np.ndarray | None = None, tol: float = 1e-10, max_iter: int = 60) -> Modes:
    """Conditional modes û by Newton steps with step-halving on g(u)."""
    u = np.zeros(system.q) if u0 is None else u0.copy()
    eta = eta0 + system.zlam(u, lams)
    ll, d1, d2 = family.derivs(y, eta, xi)
    obj = ll.sum() - 0.5 * u @ u
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        F = system.factor(np.maximum(-d2, 0.0), lams)
        grad = system.zlam_t(d1, lams) - u
        delta = F.solve(grad)
        step = 1.0
        while True:
            u_new = u + step * delta
            eta_new = eta0 + system.zlam(u_new, lams)
            ll_new = family.loglik(y, eta_new, xi)
            obj_new = ll_new.sum() - 0.5 * u_new @ u_new
            if np.isfinite(obj_new) and obj_new >= obj - 1e-12 * (1 + abs(obj)):
                break
            step *= 0.5
            if step < 1e-12:
                break
        if step < 1e-12:  # no progress possible: at the mode within rounding
            converged = np.max(np.abs(delta), initial=0.0) < 1e-6
            break
        gain = obj_new - obj
        u, eta, obj = u_new, eta_new, obj_new
        ll, d1, d2 = family.derivs(y, eta, xi)
        if np.max(np.abs(step * delta), initial=0.0) < tol or gain < 1e-14 * (1 + abs(obj)):
            converged = True
            break
    F = system.factor(np.maximum(-d2, 0.0), lams)
    return Modes(u, eta, float(ll.sum()), F, it, converged)
