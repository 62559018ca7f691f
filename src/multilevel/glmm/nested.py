"""Adaptive quadrature level by level for nested scalar random effects.

With levels 1 (top) ⊃ 2 ⊃ … ⊃ L and one random effect per level
(b_l = λ_l v_l, v_l ~ N(0, 1)), the likelihood of a top-level group is the
nested integral

.. math:: L_a = \\int φ(v_a) \\prod_{b ⊂ a} \\int φ(v_b) \\prod_{c ⊂ b} \\cdots
          \\prod_{i} f(y_i | η_i)\\, \\cdots dv_b\\, dv_a.

Each integral is an M-point Gauss–Hermite rule whose nodes are placed at the
posterior mean and standard deviation of that level's effect *given the
effects above it* (one location and scale per group and per node
combination of its ancestors), computed with the rule itself and iterated
to a fixed point: mean–variance adaptive quadrature applied level by level
(Rabe-Hesketh, Skrondal & Pickles 2005, J. Econometrics 128; Stata's
``mvaghermite`` for nested models).  ``ghermite`` uses the prior nodes.

Arrays: level l has G_l groups and C_l = M^(l−1) ancestor contexts; its
locations and scales are (G_l, C_l), its nodes (G_l, C_l, M).  Every level is
evaluated in one vectorized pass; there is no loop over groups.
"""
from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from ..spec.errors import SpecError
from .quadrature import product_rule

MAX_PATHS = 5_000_000   # observations × node combinations evaluated at once


def nesting(terms) -> list | None:
    """Terms ordered top level first with the parent index of every group, or None
    when the terms are not a chain of nested scalar effects."""
    order = sorted(terms, key=lambda t: t.n_groups)
    if any(t.k != 1 for t in order):
        return None
    parents = [None]
    for up, low in zip(order[:-1], order[1:]):
        pair = np.unique(low.refs.astype(np.int64) * up.n_groups + up.refs)
        if len(pair) != low.n_groups:
            return None               # a lower group in two upper groups: crossed, not nested
        parents.append((pair % up.n_groups)[np.argsort(pair // up.n_groups)])
    return list(zip(order, parents))


class NestedIntegrator:
    """Level-by-level adaptive quadrature for a model whose terms are nested scalars."""

    def __init__(self, levels, points: int, adaptive: bool = True):
        self.levels = levels                  # [(term, parent index or None)], top first
        self.L = len(levels)
        if points ** self.L > 50_000:
            raise SpecError(f"intpoints({points}) with {self.L} nested levels needs {points}^{self.L} "
                            f"= {points ** self.L:,} node combinations per observation; use fewer points "
                            "or intmethod(laplace)")
        nodes, self.logw = product_rule(points, 1)
        self.t = nodes[:, 0]
        self.M = points
        self.adaptive = adaptive
        self._last = None

    # --- one pass ---------------------------------------------------------------------------
    def _values(self, lams, loc, scale):
        """Node values v_l (G_l, C_l, M) of every level."""
        return [m[:, :, None] + s[:, :, None] * self.t for m, s in zip(loc, scale)]

    def _eta(self, eta0, lams, V):
        """η for every observation and node path, (n, M^L)."""
        n, M, L = len(eta0), self.M, self.L
        eta = eta0.reshape((n,) + (1,) * L).copy()
        for l, ((term, _), v) in enumerate(zip(self.levels, V)):
            g = term.refs
            b = lams[l] * v[g].reshape((n,) + (M,) * (l + 1))      # v[g]: (n, C_l, M) = (n, M^(l+1))
            eta = eta + term.z[:, 0].reshape((n,) + (1,) * L) * b.reshape((n,) + (M,) * (l + 1) + (1,) * (L - l - 1))
        return eta.reshape(n, -1)

    def integrate(self, eta0, lams, loglik, loc, scale):
        """Σ log L_a with the given locations and scales; also each level's conditional
        posterior weights over its own nodes, (G_l, C_l, M)."""
        M, L = self.M, self.L
        V = self._values(lams, loc, scale)
        eta = self._eta(eta0, lams, V)
        ll = loglik(eta)                                               # (n, M^L)
        bottom = self.levels[-1][0]
        acc = np.zeros((bottom.n_groups, ll.shape[1]))
        np.add.at(acc, bottom.refs, ll)                                # Σ_i ℓ per lowest group and path
        post = [None] * L
        half_t2 = 0.5 * self.t ** 2
        for l in range(L - 1, -1, -1):
            G = self.levels[l][0].n_groups
            A = acc.reshape(G, M ** l, M) + self.logw + half_t2 - 0.5 * V[l] ** 2
            lse = logsumexp(A, axis=2)
            post[l] = np.exp(A - lse[:, :, None])
            logI = lse + np.log(scale[l])                              # (G_l, C_l)
            if l == 0:
                return float(logI.sum()), post, V
            parent = self.levels[l][1]
            acc = np.zeros((self.levels[l - 1][0].n_groups, M ** l))
            np.add.at(acc, parent, logI)
        raise AssertionError

    # --- adaptive locations and scales ----------------------------------------------------------
    def start(self, modes_u, H_diag, H_anc):
        """Start values from the Gaussian (Laplace) approximation at the joint modes: for
        level l and every ancestor context, the conditional mean of v_l given its ancestors'
        nodes, v̂_l − Σ_a H_la (v_a − v̂_a)/H_ll, and the scale 1/√h_l with h_l the precision
        after the levels below are integrated out (h_l = H_ll − Σ_children H_cl²/h_c; exact
        for the tree of nested Gaussian effects).  ``H_anc[l][a]`` is H_la per group of l."""
        L, M = self.L, self.M
        h = [None] * L
        for l in range(L - 1, -1, -1):
            h[l] = H_diag[l].astype(float).copy()
            if l + 1 < L:
                parent = self.levels[l + 1][1]
                h[l] -= np.bincount(parent, weights=H_anc[l + 1][l] ** 2 / h[l + 1], minlength=len(h[l]))
            h[l] = np.maximum(h[l], 1e-8 * H_diag[l])
        loc, scale, V = [], [], []
        for l in range(L):
            G = len(modes_u[l])
            shift = np.zeros((G,) + (M,) * l)
            chain = np.arange(G)
            for a in range(l - 1, -1, -1):       # ancestors from the parent upwards
                chain = self.levels[a + 1][1][chain]
                col = (G,) + (1,) * l
                va = V[a][chain].reshape((G,) + (M,) * (a + 1) + (1,) * (l - a - 1)) \
                    - modes_u[a][chain].reshape(col)
                shift = shift + (H_anc[l][a] / H_diag[l]).reshape(col) * va
            shift = shift.reshape(G, M ** l)
            loc.append(modes_u[l][:, None] - shift)
            scale.append(np.repeat((1 / np.sqrt(h[l]))[:, None], M ** l, axis=1))
            V.append(loc[l][:, :, None] + scale[l][:, :, None] * self.t)
        return loc, scale

    def loglik(self, eta0, lams, loglik, start, tol: float = 1e-10, max_iter: int = 200) -> float:
        """The mean–variance adaptive rule iterated to its fixed point (or the prior rule)."""
        if not self.adaptive:
            loc = [np.zeros((t.n_groups, self.M ** l)) for l, (t, _) in enumerate(self.levels)]
            return self.integrate(eta0, lams, loglik, loc, [np.ones_like(m) for m in loc])[0]
        loc, scale = start()      # fresh each time: warm starts from other parameters can collapse
        value = -np.inf
        for _ in range(max_iter):
            value, post, V = self.integrate(eta0, lams, loglik, loc, scale)
            new_loc = [np.einsum("gcj,gcj->gc", p, v) for p, v in zip(post, V)]
            # a scale shrinks at most by half per step: nodes placed badly at first (an extreme
            # ancestor node) would otherwise see one node's mass and collapse
            new_scale = [np.maximum(np.sqrt(np.einsum("gcj,gcj->gc", p, (v - m[:, :, None]) ** 2)), 0.5 * s)
                         for p, v, m, s in zip(post, V, new_loc, scale)]
            change = max(max(np.max(np.abs(a - b)) for a, b in zip(new_loc, loc)),
                         max(np.max(np.abs(a - b)) for a, b in zip(new_scale, scale)))
            loc, scale = new_loc, new_scale
            if change < tol:
                break
        value = self.integrate(eta0, lams, loglik, loc, scale)[0]
        if np.isfinite(value):
            self._last = (loc, scale)
        return value
