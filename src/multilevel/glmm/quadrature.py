"""Integrating the random effects out: Laplace and (adaptive) Gauss–Hermite.

For one grouping factor the marginal likelihood factors over groups; with
u_g ~ N(0, I_k) and the change of variables u = m_g + C_g t,

.. math:: L_g = |C_g| (2π)^{k/2} \\int \\exp\\{\\ell_g(m_g + C_g t) − ½‖m_g + C_g t‖² + ½‖t‖²\\}
          φ_k(t)\\,dt ≈ |C_g| \\sum_j w_j \\exp\\{\\ell_g(u_{gj}) − ½‖u_{gj}‖² + ½‖t_j‖²\\}

with the k-dimensional product rule (M = #^k nodes t_j, weights w_j for the
standard normal; nodes from ``numpy.polynomial.hermite.hermgauss``).

* ``ghermite``: m = 0, C = I (non-adaptive).
* ``mcaghermite``: mode–curvature adaptive: m = û (PIRLS), C = L_g⁻ᵀ with
  L_g L_gᵀ the penalized Hessian block of group g (Liu & Pierce 1994;
  Pinheiro & Bates 1995; lme4 nAGQ > 1).
* ``mvaghermite``: mean–variance adaptive, Stata's default: m and CCᵀ the
  posterior mean and covariance of u_g, computed with the rule itself and
  iterated to a fixed point (Naylor & Smith 1982; Rabe-Hesketh, Skrondal &
  Pickles 2005, J. Econometrics 128).
* One node at the mode (``laplace``) is the Laplace approximation.

Groups are handled in one vectorized pass per node; there is no loop over
groups.
"""
from __future__ import annotations

import functools
import itertools

import numpy as np
from scipy import sparse
from scipy.special import logsumexp

from ..linalg import batched
from ..spec.errors import SpecError

MAX_NODES = 20000  # per group, #^k
CHUNK = 1 << 20    # observations × nodes evaluated at once


@functools.lru_cache(maxsize=64)
def product_rule(points: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (M×k) and log weights (M) of the #^k Gauss–Hermite rule for N(0, I_k)."""
    if points ** k > MAX_NODES:
        raise SpecError(f"intpoints({points}) with {k} random effects at one level needs "
                        f"{points}^{k} = {points ** k:,} quadrature nodes per group (more than "
                        f"{MAX_NODES:,}); use fewer points or intmethod(laplace)")
    x, w = np.polynomial.hermite.hermgauss(points)
    t1, lw1 = np.sqrt(2.0) * x, np.log(w) - 0.5 * np.log(np.pi)
    nodes = np.array(list(itertools.product(t1, repeat=k))).reshape(-1, k)
    logw = np.array([sum(c) for c in itertools.product(lw1, repeat=k)])
    return nodes, logw


def cons_first(term) -> np.ndarray:
    """The order of a term's columns with ``_cons`` first (else unchanged)."""
    names = [nm for eq in term.equations for nm in eq.names]
    first = names.index("_cons") if "_cons" in names else 0
    return np.array([first] + [i for i in range(term.k) if i != first])


def cov_root(V: np.ndarray, lam: np.ndarray, perm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Square roots C (CCᵀ = V) of u-space covariances V (N, k, k) that put the nodes on
    the lower Cholesky factor of the covariance of b = Λu, taken in the column order
    ``perm`` (``_cons`` first: the convention of the reference implementation), and
    log|C| per block.

    For k = 1 every root is the same; with a zero variance in Λ the root is the
    Cholesky factor of V itself.
    """
    L = batched.cholesky(V)
    k = V.shape[-1]
    d = np.abs(np.diag(lam))
    if k == 1 or np.any(d <= 1e-10 * max(d.max(), 1e-300)):
        return L, np.log(np.diagonal(L, axis1=1, axis2=2)).sum(-1)
    P = np.einsum("ab,gbc,dc->gad", lam, np.einsum("gab,gcb->gac", L, L), lam)   # Cov(b)
    Lb = batched.cholesky(P[:, perm][:, :, perm])
    Rb = np.empty_like(Lb)
    Rb[:, perm, :] = Lb                       # rows back in the term's order
    C = np.linalg.solve(lam, Rb)
    return C, np.log(np.diagonal(Lb, axis1=1, axis2=2)).sum(-1) - np.log(d).sum()


class GroupIntegrator:
    """Quadrature for a model whose random effects are one grouping factor.

    ``term`` is the single :class:`~multilevel.lmm.terms.RandomTerm`;
    ``loglik(η)`` returns log f(y | η) per observation.
    """

    def __init__(self, term, points: int):
        self.term = term
        self.points = points
        self.nodes, self.logw = product_rule(points, term.k)
        G, n = term.n_groups, len(term.refs)
        self.S = sparse.csr_matrix((np.ones(n), (term.refs, np.arange(n))), shape=(G, n))
        self.perm = cons_first(term)
        self._last = None   # (posterior means, covariances) of the last mean–variance fit

    def root(self, V: np.ndarray, lam: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """Roots C_g of the u-space covariances V_g (:func:`cov_root`) and Σ log|C_g|
        (Σ w_g log|C_g| with the groups' ``weights``)."""
        C, logdet = cov_root(V, lam, self.perm)
        return C, float((logdet if weights is None else weights * logdet).sum())

    def _node_terms(self, eta0, lam, m, C, loglik):
        """u_gj (G, M, k) and a_gj = ℓ_g(u_gj) − ½‖u_gj‖² + ½‖t_j‖² + log w_j."""
        t = self.term
        U = m[:, None, :] + np.einsum("gab,jb->gja", C, self.nodes)
        B = U @ lam.T
        M = len(self.nodes)
        A = np.empty(U.shape[:2])
        chunk = max(1, CHUNK // max(len(t.refs), 1))
        for j in range(0, M, chunk):   # blocks of nodes, vectorized over all groups and observations
            Bj = B[:, j:j + chunk, :][t.refs]                       # (n, m, k)
            eta = eta0[:, None] + np.einsum("ic,ijc->ij", t.z, Bj)
            A[:, j:j + chunk] = self.S @ loglik(eta)
        A += self.logw - 0.5 * (U * U).sum(-1) + 0.5 * (self.nodes ** 2).sum(-1)
        return U, A

    def integrate(self, eta0, lam, m, C, loglik, logdet_c: float) -> tuple[float, np.ndarray, np.ndarray]:
        """Σ_g log L_g with nodes at m + C t (Σ log|C_g| given); also the posterior
        weights and the nodes."""
        U, A = self._node_terms(eta0, lam, m, C, loglik)
        per_group = logsumexp(A, axis=1)
        return float(per_group.sum() + logdet_c), A - per_group[:, None], U

    def _mode_scale(self, modes, lam) -> tuple[np.ndarray, np.ndarray, float]:
        """Modes, and roots of the curvature-based posterior covariance H_g⁻¹."""
        m = modes.u.reshape(self.term.n_groups, self.term.k)
        Li = modes.factor.L11inv
        return (m, *self.root(np.einsum("gba,gbc->gac", Li, Li), lam))

    def mode_curvature(self, eta0, lam, modes, loglik) -> float:
        """Mode–curvature AGHQ at the PIRLS modes."""
        m, C, logdet = self._mode_scale(modes, lam)
        return self.integrate(eta0, lam, m, C, loglik, logdet)[0]

    def non_adaptive(self, eta0, lam, loglik) -> float:
        G, k = self.term.n_groups, self.term.k
        return self.integrate(eta0, lam, np.zeros((G, k)), np.broadcast_to(np.eye(k), (G, k, k)), loglik, 0.0)[0]

    def mean_variance(self, eta0, lam, modes, loglik, tol: float = 1e-10, max_iter: int = 100):
        """Mean–variance AGHQ: recentre at the posterior moments until they stop moving.

        Starts from the previous call's fixed point, and from the mode and curvature when that
        does not converge in ``max_iter`` steps: the value is then a function of x alone, which
        the derivative-free optimizer needs.  Returns (log likelihood, m, C).
        """
        starts = [self._mode_scale(modes, lam)]
        if self._last is not None:          # warm start at the previous fixed point, if it gets there
            m0, V0 = self._last
            starts.insert(0, (m0, *self.root(V0, lam)))
        for m, C, logdet in starts:
            V, converged = None, False
            for _ in range(max_iter):
                _, logp, U = self.integrate(eta0, lam, m, C, loglik, logdet)
                p = np.exp(logp)
                m_new = np.einsum("gj,gja->ga", p, U)
                D = U - m_new[:, None, :]
                V = no_collapse(np.einsum("gj,gja,gjb->gab", p, D, D), C)
                C_new, logdet = self.root(V, lam)
                change = max(np.max(np.abs(m_new - m)), np.max(np.abs(C_new - C)))
                m, C = m_new, C_new
                if change < tol:
                    converged = True
                    break
            if converged:   # else (a warm start far from this x's fixed point): from the mode
                break
        if np.all(np.isfinite(m)) and V is not None and np.all(np.isfinite(V)):
            self._last = (m, V)
        return self.integrate(eta0, lam, m, C, loglik, logdet)[0], m, C


def no_collapse(V: np.ndarray, C: np.ndarray) -> np.ndarray:
    """V with its spread relative to the current nodes' (CCᵀ) kept ≥ 1/4 in every direction:
    the scale shrinks at most by half per step.  With few points a poorly placed rule sees one
    node's mass and its variance estimate collapses to 0 (also used level by level in :mod:`.nested`)."""
    W = np.linalg.solve(C, np.linalg.solve(C, V).transpose(0, 2, 1))     # C⁻¹ V C⁻ᵀ
    e, Q = np.linalg.eigh(0.5 * (W + W.transpose(0, 2, 1)))
    W = np.einsum("gab,gb,gcb->gac", Q, np.maximum(e, 0.25), Q)
    return np.einsum("gab,gbc,gdc->gad", C, W, C)
