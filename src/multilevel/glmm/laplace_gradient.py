"""The exact gradient of the Laplace log likelihood for several random-effects terms.

With A = ZΛ (n × q, every row has one k_t-entry slot per term t), the
conditional modes û (Aᵀℓ′(η̂) = û, η̂ = offset + Xβ + Aû) and the dense
penalized Hessian H = AᵀWA + I (W = −ℓ″, q × q),

.. math:: ℓ_L = Σ_i ℓ_i(η̂_i) − ½‖û‖² − ½ \\log|H|.

Differentiating through the modes (implicit function theorem:
H ∂û = ∂Aᵀℓ′ − AᵀW(∂η₀ + ∂A û)) with the leverages h_i = a_iᵀH⁻¹a_i,
c = h ∘ w′ (w′ = −ℓ‴), s = H⁻¹Aᵀc, e = As:

.. math:: ∂ℓ_L/∂β = Xᵀ(ℓ′ − ½c + ½we)

   ∂ℓ_L/∂θ_j = ⟨∂λ_t/∂θ_j,\\; Σ_i z_i[(ℓ′ − ½c + ½we)_i û_{g(i)}ᵀ − ½ℓ′_i s_{g(i)}ᵀ
   − w_i (AH⁻¹)_{i,t}ᵀ]⟩

for θ_j of term t with template λ_t (z_i, g(i) the row's covariates and
group in that term; (AH⁻¹)_{i,t} the k_t entries of row i at the term's
columns, so that −Σ_i w_i… is −tr(H⁻¹AᵀW∂A)), and for an ancillary ξ_c
Σ_i ∂ℓ_i/∂ξ_c − ½e_i ∂ℓ′_i/∂ξ_c + ½h_i ∂ℓ″_i/∂ξ_c (by central differences in ξ).
This is the one-factor gradient of :mod:`.onefactor` (Kristensen et al. 2016,
JSS 70(5)) with a dense H in place of its block-diagonal one; only the
entries of H⁻¹ at each row's slot pairs are needed (O(n(Σk)²)).
H is the dense factor PIRLS leaves at the modes (:meth:`.pirls.PenalizedSystem.dense_factor`).
:meth:`LaplaceGradient.newton_matrix` adds the Newton matrix of :mod:`.newton`.
"""
from __future__ import annotations

import numpy as np

from .onefactor import third, xi_partials


class LaplaceGradient:
    """−2 × Laplace log likelihood and its gradient in the optimizer vector x = (β, ξ_opt, θ)
    of a :class:`~multilevel.glmm.model.GeneralizedLinearMixedModel` with any number of terms."""

    def __init__(self, model):
        self.model = model
        self.slots = model.system.slots
        self.cols = self.slots.cols

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """(−2ℓ_L, its gradient); (inf, 0) where the modes or H break down, as
        :meth:`~multilevel.glmm.model.GeneralizedLinearMixedModel.objective`."""
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                value, grad = self._evaluate(np.asarray(x, dtype=float))
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            return np.inf, np.zeros(len(x))
        return (value, grad) if np.isfinite(value) and np.all(np.isfinite(grad)) else (np.inf, np.zeros(len(x)))

    def _evaluate(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        model, fam = self.model, self.model.family
        p, e = model.p, model.n_extra
        beta, xi, theta = model.split(x)
        zxi = x[p:p + e]
        lams = model.lambdas(theta)
        m = model.modes(beta, xi, theta, dense=True)
        ll, d1, d2 = fam.derivs(model.y, m.eta, xi)
        w = np.maximum(-d2, 0.0)
        wp = np.where(-d2 > 0, -third(fam, model.y, m.eta, xi), 0.0)
        vals = self.slots.values(lams)
        q = model.system.q
        Hinv = m.factor.inverse()
        # Q[s, i] = (AH⁻¹)[i, cols_s(i)]; h_i = Σ_s vals_s(i) Q[s, i]
        Q = np.einsum("rsi,ri->si", Hinv[self.cols[:, None, :], self.cols[None, :, :]], vals)
        h = np.einsum("si,si->i", vals, Q)
        c = h * wp
        s = m.factor.solve(np.bincount(self.cols.ravel(), weights=(vals * c).ravel(), minlength=q))
        ev = np.einsum("si,si->i", vals, s[self.cols])
        r = d1 - 0.5 * c + 0.5 * w * ev
        g_beta = model.X.T @ r
        g_theta = []
        us, ss = model.system.split(m.u), model.system.split(s)
        k0 = 0
        for t, term in enumerate(model.terms):
            k, refs, z = term.k, term.refs, term.z
            Qt = Q[k0:k0 + k].T                                                  # (n, k)
            M = (z * r[:, None]).T @ us[t][refs] - 0.5 * (z * d1[:, None]).T @ ss[t][refs] \
                - (z * w[:, None]).T @ Qt
            th = theta[model._theta_slices[t]]
            g_theta.append(np.einsum("lab,ab->l", term.dlam(th), M))
            k0 += k
        g_xi = np.zeros(e)
        if e:
            dll, dd1, dd2, _ = xi_partials(fam, model.y, m.eta, zxi)
            g_xi = np.array([np.sum(dll[j] - 0.5 * ev * dd1[j] + 0.5 * h * dd2[j]) for j in range(e)])
        value = float(ll.sum() - 0.5 * m.u @ m.u - 0.5 * m.factor.logdet)
        self._state = (theta, m, w, d1, Hinv, vals)
        return -2.0 * value, -2.0 * np.concatenate([g_beta, g_xi, *g_theta])

    def newton_matrix(self) -> np.ndarray:
        """Newton matrix of −2ℓ_L at the last evaluated point (no ancillary parameters, Λ linear
        in θ): −2 × [∇²P + the θθ curvature of −½log|H| at fixed W], P(β, θ) = max_u Σℓ − ½‖u‖².

        ∇²P = −[X V]ᵀW[X V] + G_uᵀH⁻¹G_u with V_l = ZΛ_lû (Λ_l = ∂Λ/∂θ_l) and G_u = −AᵀW[X V]
        + [0, Λ_lᵀZᵀℓ′]; with H_l = C_l + C_lᵀ, C_l = AᵀWZΛ_l, H_lm = D_lm + D_lmᵀ,
        D_lm = Λ_lᵀZᵀWZΛ_m, the log-determinant term is −½[tr(H⁻¹H_lm) − tr(H⁻¹H_lH⁻¹H_m)]
        (the one-factor matrix of :meth:`.onefactor.OneFactor.laplace` with a dense H).  Only
        the terms through ℓ‴ are missing."""
        model = self.model
        theta, m, w, d1, Hinv, vals = self._state
        p = model.p
        us = model.system.split(m.u)
        V, B = [], []                      # ZΛ_lû (n,) and ZΛ_l at the slots (K, n)
        k0 = 0
        for t, term in enumerate(model.terms):
            for dl in term.dlam(theta[model._theta_slices[t]]):
                V.append(np.einsum("ic,ic->i", term.z, (us[t] @ dl.T)[term.refs]))
                b = np.zeros_like(vals)
                b[k0:k0 + term.k] = (term.z @ dl).T
                B.append(b)
            k0 += term.k
        XV = np.column_stack([model.X, *V])
        Gu = -self.slots.t_times(vals, w[:, None] * XV)
        for l, b in enumerate(B):
            Gu[:, p + l] += self.slots.t_times(b, d1[:, None])[:, 0]
        Hp = -(XV.T @ (w[:, None] * XV)) + Gu.T @ m.factor.solve(Gu)
        S = [(self.slots.sym_sparse(vals, w * b) @ Hinv).T for b in B]     # H⁻¹H_l (H_l symmetric)
        nt = len(B)
        for l in range(nt):
            for j in range(l, nt):
                tr_lm = 2 * np.sum(Hinv * self.slots.gram(B[l], w * B[j]))
                Hp[p + l, p + j] = Hp[p + j, p + l] = Hp[p + l, p + j] - 0.5 * (tr_lm - np.sum(S[l] * S[j].T))
        return -2.0 * Hp
