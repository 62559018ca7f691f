"""One grouping factor: per-group modes, the exact Laplace gradient and fixed-node quadrature.

When the random effects are one grouping factor (random intercepts or slopes
at one level), the marginal likelihood is a product of k-dimensional
integrals, one per group, and everything below is vectorised over groups
(group sums are one sparse product ``S @ columns``).

Notation, per group g with rows i: η_i = o_i + x_iᵀβ + z_iᵀΛu_g,
ℓ_i = log f(y_i | η_i, ξ), ℓ′, ℓ″, ℓ‴ its η-derivatives, w_i = −ℓ″_i,
a_g = Σ z_i ℓ′_i, A_g = Σ w_i z_i z_iᵀ, H_g = I + ΛᵀA_gΛ.

Laplace (exact gradient)
    L = Σ_g [Σ_i ℓ_i(û_g) − ½‖û_g‖² − ½ log|H_g|].  Differentiating through
    the mode (implicit function theorem, Λᵀa_g = û_g) gives, with
    h_i = z_iᵀΛH_g⁻¹Λᵀz_i, C_g = Σ h_i w′_i z_i, s_g = H_g⁻¹ΛᵀC_g,
    e_i = z_iᵀΛs_g (w′ = −ℓ‴):

    .. math:: ∂L/∂β = Xᵀ(ℓ′ − ½hw′ + ½we),\\qquad
              ∂L/∂θ_l = ⟨∂Λ/∂θ_l,\\; Σ_g a_gû_gᵀ − A_gΛH_g⁻¹ − ½C_gû_gᵀ − ½a_gs_gᵀ
              + ½A_gΛs_gû_gᵀ⟩

    and for an ancillary ξ: Σ_i ∂ℓ_i/∂ξ − ½e_i ∂ℓ′_i/∂ξ + ½h_i ∂ℓ″_i/∂ξ.
    (The derivative of the Laplace approximation as in glmmTMB/TMB, Kristensen
    et al. 2016, JSS 70(5), written out for a block-diagonal H.)

Adaptive quadrature (nodes held fixed)
    Q = Σ_g log|C_g| + log Σ_j exp a_gj, a_gj = Σ_i ℓ_i(u_gj) − ½‖u_gj‖² + ½‖t_j‖² + log w_j,
    u_gj = m_g + C_g t_j.  With the nodes fixed, Q's gradient and Hessian in
    (β, ξ, θ) need only ℓ′ and ℓ″ at the nodes; the adaptive parameters are
    updated between Newton steps, as Stata and gllamm do (Rabe-Hesketh,
    Skrondal & Pickles 2005, J. Econometrics 128, §3).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import sparse, special
from scipy.special import logsumexp

from ..covariance.structures import Identity, Independent, Unstructured

H_ETA = 1e-5    # step for a numerical third derivative in η
H_XI = 1e-5     # step for numerical derivatives in the ancillary parameters
H_XI2 = 1e-3    # step for their second derivatives


# --- family derivatives beyond the second ---------------------------------------------------
def third(family, y, eta, xi) -> np.ndarray:
    """ℓ‴ = ∂³ log f/∂η³ per observation (analytic for logit and log-Poisson), times the
    level-1 weights of a :class:`~.families.Weighted` family."""
    weights = getattr(family, "weights", None)
    if weights is not None:
        return (weights if np.ndim(eta) == 1 else weights[:, None]) * third(family.base, y, eta, xi)
    if family.name in ("bernoulli", "binomial") and family.link == "logit":
        n = 1.0 if family.trials is None else (family.trials if np.ndim(eta) == 1 else family.trials[:, None])
        p = special.expit(eta)
        return -n * p * (1 - p) * (1 - 2 * p)
    if family.name == "poisson" and family.link == "log":
        return -np.exp(eta)
    up = family.derivs(y, eta + H_ETA, xi)[2]
    dn = family.derivs(y, eta - H_ETA, xi)[2]
    return (up - dn) / (2 * H_ETA)


def xi_partials(family, y, eta, zxi: np.ndarray, second: bool = False):
    """Derivatives of (ℓ, ℓ′, ℓ″) in the optimizer metric of ξ, by central differences.

    Returns lists over the components c of ξ: dll[c], dd1[c], dd2[c] (each shaped as η),
    and with ``second`` the matrix of ∂²ℓ/∂ξ_c∂ξ_d as a nested list.
    """
    e = len(zxi)
    dll, dd1, dd2 = [], [], []
    for c in range(e):
        step = np.zeros(e)
        step[c] = H_XI
        up = family.derivs(y, eta, family.from_opt(zxi + step))
        dn = family.derivs(y, eta, family.from_opt(zxi - step))
        dll.append((up[0] - dn[0]) / (2 * H_XI))
        dd1.append((up[1] - dn[1]) / (2 * H_XI))
        dd2.append((up[2] - dn[2]) / (2 * H_XI))
    if not second:
        return dll, dd1, dd2, None

    def ll(z):
        return family.loglik(y, eta, family.from_opt(z))

    h = H_XI2
    f0 = ll(zxi)
    d2 = [[None] * e for _ in range(e)]
    E = np.eye(e) * h
    for c in range(e):
        d2[c][c] = (ll(zxi + E[c]) - 2 * f0 + ll(zxi - E[c])) / h ** 2
        for d in range(c):
            d2[c][d] = d2[d][c] = (ll(zxi + E[c] + E[d]) - ll(zxi + E[c] - E[d])
                                   - ll(zxi - E[c] + E[d]) + ll(zxi - E[c] - E[d])) / (4 * h * h)
    return dll, dd1, dd2, d2


@dataclass
class GroupModes:
    """Conditional modes of every group and the quantities of the Laplace approximation."""

    u: np.ndarray        # (G, k) spherical modes
    eta: np.ndarray      # (n,)
    ll: np.ndarray       # (n,) log f at the modes
    d1: np.ndarray
    d2: np.ndarray
    w: np.ndarray        # max(−ℓ″, 0)
    a: np.ndarray        # (G, k) Σ z ℓ′
    A: np.ndarray        # (G, k, k) Σ w z zᵀ
    H: np.ndarray        # (G, k, k) I + ΛᵀAΛ
    Hinv: np.ndarray
    logdet: float        # Σ log|H_g|
    iterations: int
    converged: bool

    @property
    def laplace(self) -> float:
        return float(self.ll.sum() - 0.5 * np.sum(self.u * self.u) - 0.5 * self.logdet)


def _inv_logdet(H: np.ndarray) -> tuple[np.ndarray, float]:
    if H.shape[1] == 1:
        return 1.0 / H, float(np.log(H[:, 0, 0]).sum())
    sign, ld = np.linalg.slogdet(H)
    if np.any(sign <= 0):
        raise np.linalg.LinAlgError("a penalized Hessian block is not positive definite")
    return np.linalg.inv(H), float(ld.sum())


class OneFactor:
    """Laplace and fixed-node quadrature for a GLMM with one grouping factor.

    ``model`` is a :class:`~multilevel.glmm.model.GeneralizedLinearMixedModel`
    with a single random-effects term; parameters are the model's optimizer
    vector x = (β, ξ in the optimizer metric, θ).
    """

    def __init__(self, model):
        t = model.terms[0]
        self.model, self.term, self.family = model, t, model.family
        self.y, self.X, self.z, self.refs = model.y, model.X, t.z, t.refs
        self.G, self.k, self.n = t.n_groups, t.k, len(t.refs)
        self.p, self.e, self.nt = model.p, model.n_extra, t.n_params
        self.S = sparse.csr_matrix((np.ones(self.n), (t.refs, np.arange(self.n))), shape=(self.G, self.n))
        r = np.asarray(t.refs)
        self.sorted = bool(np.all(r[1:] >= r[:-1])) and len(np.unique(r)) == self.G
        self.starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]]) if self.sorted else None
        self.ia, self.ib = np.triu_indices(self.k)
        self.zz = self.z[:, self.ia] * self.z[:, self.ib]
        self.linear = all(isinstance(s, (Identity, Independent, Unstructured)) for s in t.structures)
        self.ones = self.k == 1 and bool(np.all(self.z == 1.0))
        w = model.design.weights
        self.wg = None           # weights of the groups (level-2 weights), or None
        if w is not None and w.cluster is not None:
            self.wg = np.zeros(self.G)
            self.wg[t.refs] = w.cluster
        self._u = None           # warm start of the modes
        self._last = None        # (x, GroupModes) of the last evaluation: the next modes are predicted

    # --- parameters ---------------------------------------------------------------------
    def unpack(self, x):
        p, e = self.p, self.e
        return x[:p], x[p:p + e], x[p + e:]

    def dlam(self, theta: np.ndarray) -> np.ndarray:
        """∂Λ/∂θ_l, (nθ, k, k) (exact for the linear structures)."""
        h = 1e-6
        E = np.eye(self.nt) * h
        return np.array([(self.term.lam(theta + E[l]) - self.term.lam(theta - E[l])) / (2 * h)
                         for l in range(self.nt)])

    def d2lam(self, theta: np.ndarray) -> np.ndarray | None:
        """∂²Λ/∂θ_l∂θ_m, or None when Λ is linear in θ."""
        if self.linear:
            return None
        h, nt = 1e-4, self.nt
        E = np.eye(nt) * h
        lam = self.term.lam
        out = np.empty((nt, nt, self.k, self.k))
        for a in range(nt):
            for b in range(nt):
                out[a, b] = (lam(theta + E[a] + E[b]) - lam(theta + E[a] - E[b])
                             - lam(theta - E[a] + E[b]) + lam(theta - E[a] - E[b])) / (4 * h * h)
        return out

    # --- modes ---------------------------------------------------------------------------
    def _eta(self, eta0, lam, u):
        b = u @ lam.T
        if self.ones:
            return eta0 + b[self.refs, 0]
        if self.k == 1:
            return eta0 + self.z[:, 0] * b[self.refs, 0]
        return eta0 + np.einsum("ic,ic->i", self.z, b[self.refs])

    def gsum(self, M: np.ndarray) -> np.ndarray:
        """Group sums of the rows of M (n, ...) -> (G, ...)."""
        if self.sorted:
            return np.add.reduceat(M, self.starts, axis=0)
        return self.S @ M if M.ndim <= 2 else (self.S @ M.reshape(self.n, -1)).reshape((self.G,) + M.shape[1:])

    def _group_matrix(self, C: np.ndarray) -> sparse.csr_matrix:
        """Sparse (G·r × n) matrix W with (W V)[g·r + c, j] = Σ_{i∈g} C_ic V_ij: weighted group
        sums of all columns of V (n, M) at once, without an (n, M, r) temporary."""
        n, r = C.shape
        refs = np.asarray(self.refs)
        order = np.arange(n) if self.sorted else np.argsort(refs, kind="stable")
        counts = np.bincount(refs, minlength=self.G)
        start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        g = refs[order]
        # entry of row i (t-th of its group g) in column c sits at r·start_g + c·n_g + t
        pos = (r * start[g] + np.arange(n) - start[g])[:, None] + np.arange(r) * counts[g][:, None]
        data, indices = np.empty(n * r), np.empty(n * r, dtype=np.int64)
        data[pos] = C[order]
        indices[pos] = order[:, None]
        indptr = np.concatenate([(r * start[:, None] + np.arange(r) * counts[:, None]).ravel(), [n * r]])
        return sparse.csr_matrix((data, indices, indptr), shape=(self.G * r, n))

    @cached_property
    def _w1(self) -> sparse.csr_matrix:
        """Group sums of [X z] times node columns (the quadrature gradient)."""
        return self._group_matrix(np.column_stack([self.X, self.z]))

    @cached_property
    def _w2(self) -> sparse.csr_matrix:
        """Group sums of [x_b z_a (b, a), z_a z_b (a ≤ b)] times columns (the quadrature
        Hessian; Σ w x zᵀ in the profiled Hessian)."""
        if self.ones:       # z = 1: the same columns as _w1
            return self._w1
        xz = (self.X[:, :, None] * self.z[:, None, :]).reshape(self.n, -1)
        return self._group_matrix(np.column_stack([xz, self.zz]))

    def gmul(self, W: sparse.csr_matrix, V: np.ndarray) -> np.ndarray:
        """(G, r, M) weighted group sums Σ_{i∈g} C_ic V_ij for a :meth:`_group_matrix` W."""
        return (W @ V).reshape(self.G, -1, V.shape[1])

    def _sums(self, ll, d1, w):
        k = self.k
        cols = np.empty((self.n, 1 + k + len(self.ia)))
        cols[:, 0] = ll
        if self.ones:
            cols[:, 1], cols[:, 2] = d1, w
        else:
            cols[:, 1:1 + k] = d1[:, None] * self.z
            cols[:, 1 + k:] = w[:, None] * self.zz
        s = self.gsum(cols)
        A = np.empty((self.G, k, k))
        A[:, self.ia, self.ib] = s[:, 1 + k:]
        A[:, self.ib, self.ia] = s[:, 1 + k:]
        return s[:, 0], s[:, 1:1 + k], A

    def _penalized(self, A, lam):
        LAL = np.einsum("ba,gbc,cd->gad", lam, A, lam) if self.k > 1 else A * lam[0, 0] ** 2
        return LAL + np.eye(self.k)

    def modes(self, eta0, lam, xi, u0=None, max_iter: int = 60) -> GroupModes:
        """û_g for every group by Newton steps, step-halving group by group."""
        fam, y = self.family, self.y
        u = np.zeros((self.G, self.k)) if u0 is None else u0.copy()
        for _ in range(2):
            eta = self._eta(eta0, lam, u)
            ll, d1, d2 = fam.derivs(y, eta, xi)
            w = np.maximum(-d2, 0.0)
            llg, a, A = self._sums(ll, d1, w)
            obj = llg - 0.5 * np.sum(u * u, axis=1)
            bad = ~(np.isfinite(obj) & np.all(np.isfinite(a), axis=1))
            if not bad.any():
                break
            u[bad] = 0.0        # a start where the density underflows: from zero there
        converged, it = False, 0
        for it in range(1, max_iter + 1):
            H = self._penalized(A, lam)
            grad = a @ lam - u
            delta = grad / H[:, :, 0] if self.k == 1 else np.linalg.solve(H, grad[:, :, None])[:, :, 0]
            step = np.ones(self.G)
            while True:
                u_new = u + step[:, None] * delta
                eta_new = self._eta(eta0, lam, u_new)
                ll_n, d1_n, d2_n = fam.derivs(y, eta_new, xi)
                w_n = np.maximum(-d2_n, 0.0)
                llg_n, a_n, A_n = self._sums(ll_n, d1_n, w_n)
                obj_n = llg_n - 0.5 * np.sum(u_new * u_new, axis=1)
                bad = ~(np.isfinite(obj_n) & (obj_n >= obj - 1e-12 * (1 + np.abs(obj))))
                if not bad.any() or np.all(step[bad] == 0.0):
                    break
                step[bad] *= 0.5
                step[step < 1e-10] = 0.0
            moved = np.max(np.abs(step[:, None] * delta), initial=0.0)
            u, eta, ll, d1, d2, w, a, A, obj = u_new, eta_new, ll_n, d1_n, d2_n, w_n, a_n, A_n, obj_n
            if moved < 1e-11 or (moved < 1e-6 and np.all(step == 1.0)):
                converged = True
                break
        H = self._penalized(A, lam)
        Hinv, logdet = _inv_logdet(H)
        return GroupModes(u, eta, ll, d1, d2, w, a, A, H, Hinv, logdet, it, converged)

    def modes_at(self, x) -> GroupModes:
        """The modes at x (those of the last evaluation when x is the same point)."""
        if self._last is not None and np.array_equal(self._last[0], x):
            return self._last[1]
        beta, zxi, theta = self.unpack(x)
        m = self.modes(self.model.offset + self.X @ beta, self.term.lam(theta),
                       self.family.from_opt(zxi), self._predict(x))
        if np.all(np.isfinite(m.u)):
            self._u, self._last = m.u, (np.array(x, dtype=float), m)
        return m

    def _predict(self, x):
        """Modes at x to first order from the last ones: û + H⁻¹ r with r the change of
        ∇_u g (implicit function theorem); the change in ξ is left out."""
        if self._last is None:
            return self._warm()
        x0, m = self._last
        b0, _, t0 = self.unpack(x0)
        b1, _, t1 = self.unpack(x)
        lam0 = self.term.lam(t0)
        dL = self.term.lam(t1) - lam0
        deta = self.X @ (b1 - b0) + (self._eta(0.0, dL, m.u) if np.any(dL) else 0.0)
        r = m.a @ dL - self.gsum((m.w * deta)[:, None] * self.z) @ lam0
        du = np.einsum("gab,gb->ga", m.Hinv, r)
        u = m.u + du
        return u if np.all(np.isfinite(u)) else self._warm()

    def _warm(self):
        return self._u if self._u is not None and np.all(np.isfinite(self._u)) else None

    # --- Laplace ----------------------------------------------------------------------------
    def laplace(self, x: np.ndarray, hessian: bool = False):
        """Laplace log likelihood and its exact gradient in x; with ``hessian`` also a Newton
        matrix: the Hessian of the profiled part max_u{Σℓ − ½‖u‖²} (exact, from ℓ′ and ℓ″
        only) plus the θθ curvature of −½ Σ log|H_g| with A_g held fixed
        (:meth:`_logdet_curvature`); it misses only the terms through ℓ‴ and ℓ⁗."""
        beta, zxi, theta = self.unpack(x)
        xi = self.family.from_opt(zxi)
        lam = self.term.lam(theta)
        m = self.modes_at(x)
        z, refs, fam = self.z, self.refs, self.family
        LHL = np.einsum("ab,gbc,dc->gad", lam, m.Hinv, lam)
        h = (z[:, 0] ** 2 * LHL[refs, 0, 0] if self.k == 1
             else np.einsum("ia,iab,ib->i", z, LHL[refs], z))
        wp = np.where(-m.d2 > 0, -third(fam, self.y, m.eta, xi), 0.0)
        C = self.gsum((h * wp)[:, None] * z)
        s = np.einsum("gab,gb->ga", m.Hinv, C @ lam)
        e = np.einsum("ia,ia->i", z, (s @ lam.T)[refs])
        g_beta = self.X.T @ (m.d1 - 0.5 * h * wp + 0.5 * m.w * e)
        u, a, A = m.u, m.a, m.A
        M = (a.T @ u - np.einsum("gab,bc,gcd->ad", A, lam, m.Hinv) - 0.5 * C.T @ u - 0.5 * a.T @ s
             + 0.5 * np.einsum("gab,bc,gc,gd->ad", A, lam, s, u))
        g_theta = np.einsum("lab,ab->l", self.dlam(theta), M)
        g_xi = np.zeros(self.e)
        dd1 = xx = None
        if self.e:
            dll, dd1, dd2, xx = xi_partials(fam, self.y, m.eta, zxi, second=hessian)
            g_xi = np.array([np.sum(dll[c] - 0.5 * e * dd1[c] + 0.5 * h * dd2[c]) for c in range(self.e)])
        grad = np.concatenate([g_beta, g_xi, g_theta])
        if not hessian:
            return m.laplace, grad
        return (m.laplace, grad,
                self._profiled_hessian(m, theta, lam, dd1, xx) + self._logdet_curvature(m, theta, lam))

    def _logdet_curvature(self, m: GroupModes, theta, lam) -> np.ndarray:
        """∂²/∂θ_l∂θ_m of −½ Σ_g log|H_g|, H_g = I + ΛᵀA_gΛ with A_g fixed, in the (d, d) layout:
        −½ Σ_g [tr(H⁻¹H_lm) − tr(H⁻¹H_l H⁻¹H_m)], H_l = ∂H/∂θ_l, H_lm = ∂²H/∂θ_l∂θ_m.
        (In a random-intercept logit with 100 rows per group this is a third of the θθ
        element; without it Newton converges only linearly.)"""
        A, Hinv, dl = m.A, m.Hinv, self.dlam(theta)
        K = np.einsum("lba,gbc,cd->glad", dl, A, lam)
        Hl = K + K.transpose(0, 1, 3, 2)
        Hlm = np.einsum("lba,gbc,mcd->glmad", dl, A, dl)
        d2l = self.d2lam(theta)
        if d2l is not None:
            Hlm = Hlm + np.einsum("lmba,gbc,cd->glmad", d2l, A, lam)
        Hlm = Hlm + Hlm.transpose(0, 1, 2, 4, 3)
        W = Hinv[:, None] @ Hl
        C = -0.5 * (np.einsum("gda,glmad->lm", Hinv, Hlm) - np.einsum("glab,gmba->lm", W, W))
        out = np.zeros((self.p + self.e + self.nt,) * 2)
        out[self.p + self.e:, self.p + self.e:] = C
        return out

    def _profiled_hessian(self, m: GroupModes, theta, lam, dd1, xx) -> np.ndarray:
        """∇²P = g_ψψ + Σ_g g_ψu H_g⁻¹ g_uψ for P(ψ) = max_u g(ψ, u), g = Σℓ − ½‖u‖²."""
        p, e, nt, k, X, z = self.p, self.e, self.nt, self.k, self.X, self.z
        d = p + e + nt
        u, a, A, w = m.u, m.a, m.A, m.w
        dl = self.dlam(theta)
        R = self.gmul(self._w2, w[:, None])[:, :p * k, 0].reshape(self.G, p, k)   # Σ w x zᵀ
        v = np.einsum("lab,gb->gla", dl, u)                                  # (G, nθ, k) ∂Λ/∂θ_l u_g
        Hpp = np.zeros((d, d))
        Gu = np.zeros((self.G, d, k))
        Hpp[:p, :p] = -(X.T @ (X * w[:, None]))
        Hpp[:p, p + e:] = -np.einsum("gpk,glk->pl", R, v)
        Hpp[p + e:, p + e:] = -np.einsum("gla,gab,gmb->lm", v, A, v)
        d2l = self.d2lam(theta)
        if d2l is not None:
            Hpp[p + e:, p + e:] += np.einsum("ga,lmab,gb->lm", a, d2l, u)
        Gu[:, :p, :] = -(R @ lam)
        Gu[:, p + e:, :] = -np.einsum("gla,gab,bc->glc", v, A, lam) + np.einsum("lba,gb->gla", dl, a)
        for c in range(e):
            F = self.gsum(dd1[c][:, None] * z)                                # (G, k)
            Hpp[:p, p + c] = X.T @ dd1[c]
            Hpp[p + c, p + e:] = np.einsum("ga,gla->l", F, v)
            for c2 in range(e):
                Hpp[p + c, p + c2] = np.sum(xx[c][c2])
            Gu[:, p + c, :] = F @ lam
        Hpp = np.triu(Hpp) + np.triu(Hpp, 1).T
        return Hpp + np.einsum("gda,gab,gfb->df", Gu, m.Hinv, Gu)

    # --- fixed-node quadrature ----------------------------------------------------------------
    def quadrature(self, x, nodes, logw, m, C, logdet_c: float, derivatives: int = 2,
                   per_group: bool = False):
        """Q at x with the nodes u_gj = m_g + C_g t_j fixed; with ``derivatives`` ≥ 1 its
        gradient (with ``per_group`` each group's, (G, d): the scores of the sandwich), with 2
        its Hessian, in x.  Also the posterior weights and the nodes.  With level-2 weights w_g
        (``wg``) Q = Σ_g w_g log L_g + Σ log|C_g| (the latter weighted by the caller).

        Returns (Q, grad, hess, P (G, M), U (G, M, k)).
        """
        beta, zxi, theta = self.unpack(x)
        xi = self.family.from_opt(zxi)
        lam = self.term.lam(theta)
        z, refs, fam = self.z, self.refs, self.family
        U = m[:, None, :] + np.einsum("gab,jb->gja", C, nodes)            # (G, M, k)
        Bn = U @ lam.T
        eta0 = self.model.offset + self.X @ beta
        if self.ones:
            eta = Bn[refs, :, 0]
            eta += eta0[:, None]
        else:
            eta = eta0[:, None] + (z[:, 0, None] * Bn[refs, :, 0] if self.k == 1
                                   else np.einsum("ic,ijc->ij", z, Bn[refs]))
        yy = self.y[:, None]
        ll, d1, d2 = fam.derivs(yy, eta, xi, order=2 if derivatives else 0)
        M = len(logw)
        Ag = self.gsum(ll) + logw - 0.5 * np.sum(U * U, axis=2) + 0.5 * np.sum(nodes ** 2, axis=1)
        lse = logsumexp(Ag, axis=1)
        wg = self.wg        # level-2 weights multiply each group's log integral
        Q = float((lse if wg is None else wg * lse).sum() + logdet_c)
        P = np.exp(Ag - lse[:, None])
        if not derivatives:
            return Q, None, None, P, U
        Pw = P if wg is None else P * wg[:, None]
        p, e, nt, k = self.p, self.e, self.nt, self.k
        d = p + e + nt
        dl = self.dlam(theta)
        dB = np.einsum("lab,gjb->gjla", dl, U)                              # (G, M, nθ, k) ∂Λ/∂θ_l u_gj
        # ∂a_gj/∂x: Σ_i ℓ′_ij x_i, Σ_i ℓ′_ij z_iᵀ ∂Λ/∂θ_l u_gj and Σ_i ∂ℓ_ij/∂ξ_c
        S1 = self.gmul(self._w1, d1)                                        # (G, p + k, M)
        XS, ZS = S1[:, :p, :], S1[:, p:, :]
        Ga = np.empty((self.G, M, d))
        Ga[:, :, :p] = XS.transpose(0, 2, 1)
        Ga[:, :, p + e:] = np.einsum("gjla,gaj->gjl", dB, ZS)
        if e:
            dll, dd1, dd2, xx = xi_partials(fam, yy, eta, zxi, second=derivatives > 1)
            for c in range(e):
                Ga[:, :, p + c] = self.gsum(dll[c])
        gbar = np.einsum("gj,gjd->gd", P, Ga)
        grad = gbar if per_group else (gbar.sum(0) if wg is None else wg @ gbar)
        if derivatives < 2:
            return Q, grad, None, P, U
        # Σ_gj P_gj ∂²a_gj/∂x∂xᵀ: ℓ″ weighted by P, summed against x x, x z, z z
        Pi = Pw[refs]
        q = Pi * d2
        H = np.zeros((d, d))
        H[:p, :p] = self.X.T @ (self.X * q.sum(1)[:, None])
        S2 = self.gmul(self._w2, q)                                         # (G, pk + k(k+1)/2, M)
        XZ = S2[:, :p * k, :].reshape(self.G, p, k, M)
        ZZ = np.empty((self.G, k, k, M))
        ZZ[:, self.ia, self.ib] = S2[:, p * k:, :]
        ZZ[:, self.ib, self.ia] = S2[:, p * k:, :]
        H[:p, p + e:] = np.einsum("gbaj,gjla->bl", XZ, dB)
        H[p + e:, p + e:] = np.einsum("gjla,gabj,gjmb->lm", dB, ZZ, dB)
        for c in range(e):
            qc = Pi * dd1[c]
            H[:p, p + c] = self.X.T @ qc.sum(1)
            H[p + c, p + e:] = np.einsum("gjla,gaj->l", dB, self.gmul(self._w1, qc)[:, p:, :])
            for c3 in range(e):
                H[p + c, p + c3] = np.sum(Pi * xx[c][c3])
        H = np.triu(H) + np.triu(H, 1).T
        d2l = self.d2lam(theta)
        if d2l is not None:
            dd = np.einsum("lmab,gjb->gjlma", d2l, U)
            H[p + e:, p + e:] += np.einsum("gj,gjlma,gaj->lm", Pw, dd, ZS)
        H += np.einsum("gj,gjd,gjf->df", Pw, Ga, Ga) - gbar.T @ (gbar if wg is None else gbar * wg[:, None])
        return Q, grad, H, P, U
