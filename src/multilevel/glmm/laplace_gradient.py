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
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from .onefactor import third, xi_partials


class LaplaceGradient:
    """−2 × Laplace log likelihood and its gradient in the optimizer vector x = (β, ξ_opt, θ)
    of a :class:`~multilevel.glmm.model.GeneralizedLinearMixedModel` with any number of terms."""

    def __init__(self, model):
        self.model = model
        terms = model.terms
        self.offsets = model.system.offsets
        # slot s = (term t, column c): the column of A that row i touches there
        self.slots = [(t, c) for t in range(len(terms)) for c in range(terms[t].k)]
        self.cols = np.array([self.offsets[t] + terms[t].refs.astype(np.int64) * terms[t].k + c
                              for t, c in self.slots])                           # (K, n)
        q = model.system.q
        # AᵀWA + I is assembled by one bincount over the (fixed) pattern of slot pairs
        keys = (self.cols[:, None, :] * q + self.cols[None, :, :]).ravel()
        self._pattern, self._pair = np.unique(keys, return_inverse=True)

    def _a_values(self, lams) -> np.ndarray:
        """(K, n) values of A = ZΛ at the slots: (z_i λ_t)_c."""
        return np.concatenate([(t.z @ lam).T for t, lam in zip(self.model.terms, lams)])

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
        m = model.modes(beta, xi, theta)
        ll, d1, d2 = fam.derivs(model.y, m.eta, xi)
        w = np.maximum(-d2, 0.0)
        wp = np.where(-d2 > 0, -third(fam, model.y, m.eta, xi), 0.0)
        vals = self._a_values(lams)
        q = model.system.q
        H = np.zeros(q * q)
        H[self._pattern] = np.bincount(self._pair.ravel(), weights=(vals[:, None, :] * (vals * w)[None, :, :]).ravel(),
                                       minlength=len(self._pattern))
        H = H.reshape(q, q) + np.eye(q)
        cf = scipy.linalg.cho_factor(H, lower=True, check_finite=False)
        Hinv = scipy.linalg.cho_solve(cf, np.eye(q), check_finite=False)
        # Q[s, i] = (AH⁻¹)[i, cols_s(i)]; h_i = Σ_s vals_s(i) Q[s, i]
        Q = np.einsum("rsi,ri->si", Hinv[self.cols[:, None, :], self.cols[None, :, :]], vals)
        h = np.einsum("si,si->i", vals, Q)
        c = h * wp
        s = scipy.linalg.cho_solve(cf, np.bincount(self.cols.ravel(), weights=(vals * c).ravel(), minlength=q),
                                   check_finite=False)
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
        logdet = 2 * np.log(np.diag(cf[0])).sum()
        value = float(ll.sum() - 0.5 * m.u @ m.u - 0.5 * logdet)
        return -2.0 * value, -2.0 * np.concatenate([g_beta, g_xi, *g_theta])
