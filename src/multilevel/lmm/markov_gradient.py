"""Analytic gradient over the AR(1)-type residual parameters φ (``ar 1``, ``exponential``).

On the Markov path the whitened cross-products A(φ) of [Z X y] are smooth in φ
(rside.MarkovStatistics.gradient), so

    ∂d/∂φ_i = ⟨E, ∂A/∂φ_i⟩ + ∂ Σ_j log|R_j| / ∂φ_i

with E = ∂d/∂A the sensitivity of the profiled criterion to the cross-products.  For one
random-effects term, M_g = ΛᵀA_gΛ + I, Q_g = ΛM_g⁻¹Λᵀ, b_g = Λu_g, c = (−β̂, 1) and
C_g = [X y]ᵀZ_g (md × k):

- ∂ log|L_Z|² = Σ_g ⟨Q_g, dA_g⟩;
- ∂ r² = Σ_g ⟨b_g b_gᵀ, dA_g⟩ − 2 Σ_g ⟨c b_gᵀ, dC_g⟩ + ⟨ccᵀ, dA22⟩ (envelope theorem: r² is the
  minimum of ‖[X y]c − Σ Z_g b_g‖² + ‖u‖² over β and u);
- ∂ log|R_X|² = ⟨S⁻¹, dA_XX⟩ − 2 Σ_g ⟨(H_g S⁻¹)ᵀ, dC_g[:p]⟩ + Σ_g ⟨H_g S⁻¹ H_gᵀ, dA_g⟩ with
  H_g = Q_g C_g[:p]ᵀ and S = R_X R_Xᵀ = A_XX − Σ_g C_g[:p] Q_g C_g[:p]ᵀ (REML only).

The deviance weights ∂r² by ν/r² (Bates et al. 2015, JSS 67(1) eqs. 34, 41), the
log-likelihood at fixed σ² by 1/σ².  Each evaluation is O(G k² p).
"""
from __future__ import annotations

import numpy as np

from ..linalg import batched
from .model import Factor, LinearMixedModel


def _sensitivities(model: LinearMixedModel, f: Factor, w_r2: float) -> tuple[np.ndarray, np.ndarray]:
    """∂/∂A of log|L_Z|² [+ log|R_X|²] + w_r2·r²: for the z columns of every group's Gram
    (G, md + k, k), laid out as MarkovStatistics' zcols, and for the [X y] block (md, md)."""
    p = model.p
    lam = model.terms[0].lam(f.theta[:model.residual_slice.start])
    G, k, _ = f.L11.shape
    x2, u = model.spherical(f)
    b = u @ lam.T                                        # b_g = Λ u_g
    c = np.append(-x2[model.q_rest:], 1.0)              # [X y] c = y − Xβ̂
    B = (f.l11_inverse().reshape(G * k, k) @ lam.T).reshape(G, k, k)   # L_g⁻¹ Λᵀ
    Q = batched.matmul(B.transpose(0, 2, 1), B)          # Λ M_g⁻¹ Λᵀ = B_gᵀ B_g
    EC = np.multiply.outer(b, -2 * w_r2 * c).transpose(0, 2, 1)   # −2 w_r2 c b_gᵀ (G, md, k)
    E = np.concatenate([EC, Q + w_r2 * b[:, :, None] * b[:, None, :]], axis=1)
    E22 = w_r2 * np.outer(c, c)
    if model.reml and p:
        RX = f.L22[model.q_rest:-1, model.q_rest:-1]
        Sinv = np.linalg.inv(RX @ RX.T)
        H = np.einsum("gab,pgb->gap", Q, model.A21D[:p])  # Q_g Z_gᵀX (G, k, p)
        HS = (H.reshape(G * k, p) @ Sinv).reshape(G, k, p)
        E[:, p + 1:, :] += np.einsum("gap,gbp->gab", HS, H)
        E[:, :p, :] -= 2 * HS.transpose(0, 2, 1)
        E22[:p, :p] += Sinv
    return E, E22


def phi_gradient(model: LinearMixedModel, f: Factor, w_r2: float) -> np.ndarray:
    """∂/∂φ of log|L_Z|² [+ log|R_X|² (REML)] + Σ_j log|R_j| + w_r2·r² at the factor f."""
    phi = f.theta[model.residual_slice]
    model._whiten(phi)  # the cross-products at f's φ (cached)
    E, E22 = _sensitivities(model, f, w_r2)
    if model._markov is not None:
        return model._markov.gradient(model.residual, phi, E, E22)
    A = np.column_stack([model._raw, model.terms[0].z])
    return model.residual.gradient(phi, A, model.p + 1, model.terms[0].refs, E, E22)
