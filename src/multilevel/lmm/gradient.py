"""Analytic gradient of the profiled deviance for a model with one random-effects term.

With M_g = ΛᵀA_gΛ + I per group (A_g = Z_gᵀZ_g), the spherical modes u_g, β̂, and
s_g = Z_gᵀ(y − Xβ̂ − Z_gΛu_g), for each θ_i with D = ∂Λ/∂θ_i:

- ∂ log|L_Z|² = 2 tr(D · Σ_g (M_g⁻¹ΛᵀA_g)ᵀ)   (from tr(M⁻¹ dM), dM = DᵀAΛ + ΛᵀAD);
- ∂ r² = −2 Σ_g s_gᵀ D u_g                      (envelope theorem on the penalized LS problem);
- ∂ log|R_X|² = −2 Σ_ab D_ab Σ_g (K_g − A_gΛN_g)_ab with B_g = ΛᵀZ_gᵀX, S = R_XR_Xᵀ,
  K_g = Z_gᵀX S⁻¹ B_gᵀ M_g⁻¹ and N_g = M_g⁻¹B_g S⁻¹B_gᵀM_g⁻¹  (REML only);

and the deviance gradient is ∂log|L_Z|² [+ ∂log|R_X|²] + ν ∂r²/r² (Bates et al. 2015, JSS
67(1) eqs. 34, 41 differentiated).  Each evaluation is O(G k² p), vectorized over groups.
"""
from __future__ import annotations

import numpy as np

from ..linalg import batched
from .model import Factor, LinearMixedModel


def available(model: LinearMixedModel) -> bool:
    """One random-effects term, no cluster weights, and no residual structure other than
    AR(1)/exponential (whose R_j is positive definite for every φ).  There the θ part
    is analytic on the whitened cross-products and the few residual parameters φ are
    differenced (each costs one factorization, O(groups) on the AR(1) path)."""
    smooth = model.residual is None or model._markov is not None  # AR(1)-type: R always positive definite
    return len(model.terms) == 1 and model._group_w is None and smooth


def _phi_differences(fun, theta: np.ndarray, model: LinearMixedModel, step: float = 1e-6) -> np.ndarray:
    """Central differences of ``fun`` over the residual-structure parameters of θ."""
    sl = model.residual_slice
    out = np.empty(sl.stop - sl.start)
    for j, i in enumerate(range(sl.start, sl.stop)):
        h = step * max(1.0, abs(theta[i]))
        e = np.zeros(len(theta))
        e[i] = h
        out[j] = (fun(theta + e) - fun(theta - e)) / (2 * h)
    return out


def _dlambdas(model: LinearMixedModel, theta: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """∂Λ/∂θ_i for every i (exact for the linear structures; central differences otherwise)."""
    term = model.terms[0]
    out = np.empty((len(theta), term.k, term.k))
    for i in range(len(theta)):
        e = np.zeros(len(theta))
        e[i] = h
        out[i] = (term.lam(theta + e) - term.lam(theta - e)) / (2 * h)
    return out


def pieces(model: LinearMixedModel, f: Factor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(∂ log|L_Z|², ∂ log|R_X|², ∂ r²) with respect to the random-effects θ at the factor f
    (the cross-products are the whitened ones when there is a residual structure)."""
    theta = f.theta[:model.residual_slice.start]
    lam = model.terms[0].lam(theta)
    A = model.A11                                       # (G, k, k)
    p = model.p
    C = model.A21D                                      # (p+1, G, k)
    CX, Cy = C[:p].transpose(1, 2, 0), C[p]             # (G, k, p), (G, k)
    x2, u = model.spherical(f)
    beta = x2[model.q_rest:]
    Linv = batched.tri_inverse(f.L11)                   # (G, k, k)
    Minv = Linv.transpose(0, 2, 1) @ Linv
    AL = A @ lam                                        # A_g Λ
    W = Minv @ lam.T @ A                                # M⁻¹ΛᵀA
    s = Cy - CX @ beta - (AL @ u[:, :, None])[..., 0]   # Z_gᵀ r_g
    D = _dlambdas(model, theta)
    g_logdet = 2 * np.einsum("iab,ba->i", D, W.sum(axis=0))
    g_r2 = -2 * np.einsum("iab,ab->i", D, np.einsum("ga,gb->ab", s, u))
    g_logx = np.zeros(len(theta))
    if model.reml and p:
        RX = f.L22[model.q_rest:-1, model.q_rest:-1]
        Sinv = np.linalg.inv(RX @ RX.T)
        B = lam.T @ CX                                  # (G, k, p) = ΛᵀZ_gᵀX
        MB = Minv @ B                                   # M⁻¹B
        K = CX @ Sinv @ MB.transpose(0, 2, 1)           # Z_gᵀX S⁻¹ Bᵀ M⁻¹
        N = MB @ Sinv @ MB.transpose(0, 2, 1)
        g_logx = -2 * np.einsum("iab,ab->i", D, (K - AL @ N).sum(axis=0))
    return g_logdet, g_logx, g_r2


def deviance_gradient(model: LinearMixedModel, f: Factor) -> np.ndarray:
    """∇_θ of the profiled deviance (ML or REML); residual parameters by differences."""
    g_logdet, g_logx, g_r2 = pieces(model, f)
    grad = g_logdet + (g_logx if model.reml else 0.0) + model.dof * g_r2 / f.pwrss
    if model.residual is None:
        return grad
    return np.concatenate([grad, _phi_differences(model.objective, f.theta.copy(), model)])


def loglik_gradient(model: LinearMixedModel, theta: np.ndarray, sigma2: float) -> np.ndarray:
    """∇ of ℓ(θ, σ²) = −½[log|L_Z|² (+ log|R_X|²) + ν log 2πσ² + r²/σ²] (β profiled out;
    residual-structure parameters by central differences)."""
    f = model.factor(theta)
    g_logdet, g_logx, g_r2 = pieces(model, f)
    d_theta = -0.5 * (g_logdet + (g_logx if model.reml else 0.0) + g_r2 / sigma2)
    d_sigma2 = -0.5 * (model.dof / sigma2 - f.pwrss / sigma2 ** 2)
    if model.residual is not None:  # a wider step: this gradient is itself differenced for the Hessian
        d_phi = _phi_differences(lambda t: model.loglik_at(model.factor(t), sigma2), np.asarray(theta, float),
                                 model, step=1e-4)
        d_theta = np.concatenate([d_theta, d_phi])
    return np.append(d_theta, d_sigma2)
