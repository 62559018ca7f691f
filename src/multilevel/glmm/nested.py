"""Adaptive quadrature level by level for nested random effects, scalar or vector.

With levels 1 (top) ⊃ 2 ⊃ … ⊃ L, k_l random effects per group of level l
(u_l ~ N(0, I_{k_l}), b_l = Λ_l u_l: intercepts and slopes), the likelihood
of a top-level group is the nested integral

.. math:: L_a = \\int φ(u_a) \\prod_{b ⊂ a} \\int φ(u_b) \\prod_{c ⊂ b} \\cdots
          \\prod_{i} f(y_i | η_i)\\, \\cdots du_b\\, du_a.

Each integral is the k_l-dimensional product Gauss–Hermite rule (M_l = #^{k_l}
nodes t_j, weights w_j) placed at u = m + R t, with one location m and root R
(RRᵀ a covariance) per group *and per node combination of its ancestors*
(its context):

.. math:: \\int φ(u) g(u)\\,du ≈ |R| \\sum_j w_j
          \\exp\\{\\log g(m + R t_j) − ½‖m + R t_j‖² + ½‖t_j‖²\\}.

* ``mvaghermite`` (Stata's default): m and RRᵀ are the posterior mean and
  covariance of u_l given the ancestors' nodes, computed with the rule itself
  and iterated to a fixed point (Rabe-Hesketh, Skrondal & Pickles 2005,
  J. Econometrics 128).
* ``mcaghermite``: m is the conditional mode of u_l given the ancestors and
  RRᵀ the inverse curvature there, from the Hessian H of −log(integrand) at
  the joint modes û eliminated lowest level first (Schur complements S):
  m_l = û_l − S_ll⁻¹ Σ_a S_la (u_a − û_a), RRᵀ = S_ll⁻¹ (Pinheiro & Chao 2006,
  JCGS 15).  This Gaussian approximation also starts ``mvaghermite``.
* ``ghermite``: m = 0, R = I.

R is the root of :func:`.quadrature.cov_root` (lower Cholesky factor of the
covariance of b, ``_cons`` first), as for one grouping factor.

Arrays: level l has G_l groups and C_l = M_1⋯M_{l−1} contexts; locations are
(G_l, C_l, k_l), roots (G_l, C_l or 1, k_l, k_l), nodes (G_l, C_l, M_l, k_l).
Every pass is vectorized over groups, contexts and nodes; node paths are
taken in blocks of at most MAX_PATHS (observation, node path) pairs.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse

from ..spec.errors import SpecError
from .quadrature import cons_first, cov_root, no_collapse, product_rule

MAX_COMBINATIONS = 50_000   # node paths (∏ M_l) per observation
MAX_PATHS = 5_000_000       # observations × node paths evaluated at once


def nesting(terms) -> list | None:
    """Terms ordered top level first with the parent index of every group, or None
    when the terms are not nested (crossed)."""
    order = sorted(terms, key=lambda t: t.n_groups)
    parents = [None]
    for up, low in zip(order[:-1], order[1:]):
        pair = np.unique(low.refs.astype(np.int64) * up.n_groups + up.refs)
        if len(pair) != low.n_groups:
            return None               # a lower group in two upper groups: crossed, not nested
        parents.append((pair % up.n_groups)[np.argsort(pair // up.n_groups)])
    return list(zip(order, parents))


def _membership(codes: np.ndarray, n_groups: int) -> sparse.csc_matrix:
    """The 0/1 matrix (n_groups × len(codes)) that sums rows by group."""
    n = len(codes)
    return sparse.csc_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_groups, n))


class NestedIntegrator:
    """Level-by-level quadrature for a model whose terms are nested levels.

    ``levels`` is :func:`nesting`'s list; ``method`` one of ``mvaghermite``,
    ``mcaghermite``, ``ghermite``; ``points`` nodes per dimension (Stata's
    ``intpoints()``).
    """

    def __init__(self, levels, points: int, method: str = "mvaghermite"):
        self.terms = [t for t, _ in levels]
        self.L = len(levels)
        self.k = [t.k for t in self.terms]
        paths = points ** sum(self.k)
        if paths > MAX_COMBINATIONS:
            dims = " + ".join(str(k) for k in self.k)
            raise SpecError(f"intpoints({points}) with {dims} random effects over {self.L} nested levels "
                            f"needs {points}^{sum(self.k)} = {paths:,} node combinations per observation "
                            f"(at most {MAX_COMBINATIONS:,}); use fewer points or intmethod(laplace)")
        self.method = method
        rules = [product_rule(points, k) for k in self.k]
        self.T = [t for t, _ in rules]
        self.logw_t2 = [lw + 0.5 * (t ** 2).sum(1) for t, lw in rules]   # log w_j + ½‖t_j‖²
        self.M = [len(t) for t in self.T]
        self.C = [int(np.prod(self.M[:l])) for l in range(self.L + 1)]  # contexts; C[L] paths
        self.perm = [cons_first(t) for t in self.terms]
        self.obs = [_membership(t.refs, t.n_groups) for t in self.terms]
        self.anc = [{l: np.arange(t.n_groups)} for l, t in enumerate(self.terms)]   # group at level a
        for l in range(1, self.L):
            for a in range(l):
                self.anc[l][a] = self.anc[l - 1][a][levels[l][1]]
        self.to_anc = [{a: _membership(self.anc[l][a], self.terms[a].n_groups) for a in range(l)}
                       for l in range(self.L)]                               # sums level l into a

    # --- one pass of the rule ----------------------------------------------------------------
    def _nodes(self, l, loc, R):
        """u at the nodes of level l, (G_l, C_l, M_l, k_l)."""
        return loc[:, :, None, :] + np.swapaxes(R @ self.T[l].T, -1, -2)

    def integrate(self, eta0, lams, loglik, U, logdet):
        """Σ log L_a with nodes U and log|R| (per level); also each level's conditional
        posterior weights over its own nodes, (G_l, C_l, M_l)."""
        n, L, P = len(eta0), self.L, self.C[-1]
        B = [(u @ lam.T).reshape(t.n_groups, c, k) for u, lam, t, c, k in
             zip(U, lams, self.terms, self.C[1:], self.k)]                  # b = Λu over its contexts
        zb = [np.einsum("ik,ick->ic", t.z, b[t.refs]) for t, b in zip(self.terms, B)]   # (n, C_{l+1})
        acc = np.empty((self.terms[-1].n_groups, P))
        step = max(1, MAX_PATHS // n)
        for s in range(0, P, step):                                           # blocks of node paths
            e = min(s + step, P)
            eta = eta0[:, None] + zb[-1][:, s:e]
            for z, c in zip(zb[:-1], self.C[1:]):
                eta += z[:, np.arange(s, e) // (P // c)]
            acc[:, s:e] = self.obs[-1] @ loglik(eta)
        post = [None] * L
        for l in range(L - 1, -1, -1):
            G = self.terms[l].n_groups
            A = acc.reshape(G, self.C[l], self.M[l]) + self.logw_t2[l] - 0.5 * (U[l] ** 2).sum(-1)
            top = A.max(axis=2, keepdims=True)
            E = np.exp(A - top)
            total = E.sum(axis=2)
            post[l] = E / total[:, :, None]
            logI = np.log(total) + top[:, :, 0] + logdet[l]                   # (G_l, C_l)
            if l == 0:
                return float(logI.sum()), post
            acc = self.to_anc[l][l - 1] @ logI                                           # (G_{l−1}, C_l)
        raise AssertionError

    # --- the Gaussian approximation at the joint modes ------------------------------------------
    def gaussian(self, lams, w):
        """Conditional covariances S_ll⁻¹ (G_l, k_l, k_l) and slopes S_ll⁻¹S_la (G_l, k_l, k_a)
        of u_l given its ancestors a < l, the levels below integrated out: H = I + ΛᵀZᵀWZΛ
        (W = −∂²log f/∂η² at the joint modes), eliminated lowest level first."""
        S = []
        for l, t in enumerate(self.terms):
            row = []
            for a in range(l + 1):
                za = self.terms[a].z
                cross = (self.obs[l] @ (w[:, None, None] * t.z[:, :, None] * za[:, None, :])
                         .reshape(len(w), -1)).reshape(t.n_groups, self.k[l], self.k[a])
                row.append(lams[l].T @ cross @ lams[a])
            row[l] = row[l] + np.eye(self.k[l])
            S.append(row)
        for c in range(self.L - 1, 0, -1):               # eliminate level c into its ancestors
            Sinv = np.linalg.inv(S[c][c])
            for a in range(c):
                left = np.swapaxes(S[c][a], 1, 2) @ Sinv  # S_ac S_cc⁻¹
                for b in range(a + 1):
                    D = left @ S[c][b]
                    S[a][b] = S[a][b] - (self.to_anc[c][a] @ D.reshape(len(D), -1)).reshape(S[a][b].shape)
        cov = [np.linalg.inv(S[l][l]) for l in range(self.L)]
        return cov, [[cov[l] @ S[l][a] for a in range(l)] for l in range(self.L)]

    def _locations(self, l, modes, slopes, U):
        """m_l = û_l − Σ_a K_la (u_a − û_a) in every context of level l, (G_l, C_l, k_l)."""
        G, k = self.terms[l].n_groups, self.k[l]
        loc = np.broadcast_to(modes[l][:, None, :], (G, self.C[l], k))
        for a in range(l):
            g = self.anc[l][a]
            d = U[a][g] - modes[a][g][:, None, None, :]                       # (G_l, C_a, M_a, k_a)
            shift = np.einsum("gij,gcmj->gcmi", slopes[l][a], d)
            loc = (loc.reshape(G, self.C[a + 1], -1, k) - shift.reshape(G, self.C[a + 1], 1, k)).reshape(G, -1, k)
        return loc

    # --- the rule for the requested method -------------------------------------------------------
    def loglik(self, eta0, lams, modes, w, loglik, tol: float = 1e-12, max_iter: int = 200) -> float:
        """Σ log L_a.  ``lams`` and ``modes`` (G_l, k_l) per level, top first; ``w`` the
        curvature −∂²log f/∂η² at the joint modes; ``loglik(η)`` log f per observation
        and node path (n × paths).  ``mvaghermite`` stops when an update changes the value by
        less than ``tol`` relative."""
        if self.method == "ghermite":
            U = [np.broadcast_to(t, (g.n_groups, c, m, k)) for t, g, c, m, k in
                 zip(self.T, self.terms, self.C, self.M, self.k)]
            return self.integrate(eta0, lams, loglik, U, [0.0] * self.L)[0]
        cov, slopes = self.gaussian(lams, w)
        U, R, logdet = [], [], []
        for l in range(self.L):          # top down: a level's locations follow its ancestors' nodes
            r, ld = cov_root(cov[l], lams[l], self.perm[l])
            R.append(r[:, None])
            logdet.append(ld[:, None])
            U.append(self._nodes(l, self._locations(l, modes, slopes, U), R[l]))
        if self.method == "mcaghermite":
            return self.integrate(eta0, lams, loglik, U, logdet)[0]
        value = np.inf
        for _ in range(max_iter):        # mean–variance: recentre until the value stops moving
            previous = value
            value, post = self.integrate(eta0, lams, loglik, U, logdet)
            if not np.isfinite(value) or abs(value - previous) <= tol * max(1.0, abs(value)):
                break
            for l in range(self.L):
                G, C, k = self.terms[l].n_groups, self.C[l], self.k[l]
                m = np.einsum("gcj,gcjk->gck", post[l], U[l])
                D = U[l] - m[:, :, None, :]
                V = np.einsum("gcj,gcja,gcjb->gcab", post[l], D, D).reshape(G * C, k, k)
                V = no_collapse(V, np.broadcast_to(R[l], (G, C, k, k)).reshape(G * C, k, k))
                r, ld = cov_root(V, lams[l], self.perm[l])
                R[l], logdet[l] = r.reshape(G, C, k, k), ld.reshape(G, C)
                U[l] = self._nodes(l, m, R[l])
        return value

