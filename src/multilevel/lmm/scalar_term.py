"""Profiled deviance and its derivative for a lone scalar random-effects term, in closed form.

The most common model (Stata ``mixed y x || id:``, lme4 ``y ~ x + (1 | id)``): every block of
the penalized system is a number, so at θ the blocked factor of :mod:`.model` reduces to

    ℓ_g² = λ² n_g + 1,   M = A₂₂ − Cᵀ diag(w) C,   w_g = λ²/ℓ_g²,   M = R Rᵀ,

with n_g = Σ_{i∈g} z_i², C the (G, p+1) group sums Z_gᵀ[X y], A₂₂ = [X y]ᵀ[X y] and λ = Λ(θ).
Then log|L_Z|² = Σ log ℓ_g², log|R_X|² = 2 Σ log diag R_X, r² = R_{yy}² and β̂ = R_X⁻ᵀ r_y
(Bates et al. 2015, JSS 67(1) §3).  Differentiating, with w'_g = ∂w_g/∂λ = 2λ/ℓ_g⁴ and
e_g = c_gᵀ(−β̂, 1) the groups' residual sums (envelope theorem for r²):

    ∂ log|L_Z|² = Σ 2λ n_g/ℓ_g²,   ∂ r² = −Σ w'_g e_g²,   ∂ log|R_X|² = −Σ w'_g ‖R_X⁻¹ c_g,X‖²,

each times ∂λ/∂θ.  The same numbers as ``LinearMixedModel.factor`` with
``gradient.deviance_gradient``, from a dozen vector operations over the groups and one
(p+1)² Cholesky factor instead of the general block machinery: the optimizer's and the
standard errors' evaluations of a random-intercept model cost microseconds.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.linalg.lapack import dpotrf, dtrtrs

from .hessian import loglik_hessian
from .model import LinearMixedModel


def applies(model: LinearMixedModel) -> bool:
    """One random-effects term with one column, independent residuals, no cluster weights."""
    return (len(model.terms) == 1 and model.terms[0].k == 1 and model.residual is None
            and model._group_w is None)


def criterion(model: LinearMixedModel) -> "ScalarCriterion":
    """The model's closed-form criterion (built once per model)."""
    cached = model.__dict__.get("_scalar_criterion")
    if cached is None:
        cached = model._scalar_criterion = ScalarCriterion(model)
    return cached


class ScalarCriterion:
    """Deviance and gradient pieces of a lone scalar term at θ (module docstring)."""

    def __init__(self, model: LinearMixedModel):
        self.term = model.terms[0]
        self.n_g = model.A11[:, 0, 0]
        self.C = np.ascontiguousarray(model.A21D[:, :, 0].T)      # (G, p+1)
        self.CX_T = np.ascontiguousarray(self.C[:, :model.p].T)    # (p, G)
        self.A22 = model.A22
        self.p, self.nu, self.reml = model.p, model.dof, model.reml
        self.linear = all(s.linear for s in self.term.structures)  # λ = (∂λ/∂θ) θ
        self._last = None

    def _at(self, theta: np.ndarray):
        """λ, ∂λ/∂θ, ℓ_g², the Cholesky factor R of M and the groups' residual sums e_g at θ
        (None if M is singular)."""
        dlam = self.term.dlam(theta)[0, 0, 0]
        lam = dlam * theta[0] if self.linear else self.term.lam(theta)[0, 0]
        l2 = lam * lam * self.n_g + 1.0
        M = self.A22 - (self.C.T * (lam * lam / l2)) @ self.C
        R, info = dpotrf(M, lower=1, overwrite_a=1)
        if info:
            return None
        p = self.p
        beta = dtrtrs(R[:p, :p], R[p, :p], lower=1, trans=1)[0] if p else np.zeros(0)
        return lam, dlam, l2, R, self.C[:, p] - beta @ self.CX_T

    def _derivatives(self, theta: np.ndarray, second: bool):
        """(deviance, ∂λ/∂θ, r², ∂ log|L_Z|² [+ ∂ log|R_X|²], ∂ r²[, their second derivatives]) in λ
        (module docstring; the second derivatives in :meth:`loglik_hessian`'s); None if M is singular.
        The last θ's are kept: the optimizer ends where the standard errors start."""
        last = self._last
        if last is not None and last[0] == theta[0] and (not second or len(last[1]) == 7):
            return last[1] if second else last[1][:5]
        out = self._compute(theta, second)
        self._last = (float(theta[0]), out) if out is not None else None
        return out

    def _compute(self, theta: np.ndarray, second: bool):
        at = self._at(theta)
        if at is None:
            return None
        lam, dlam, l2, R, e = at
        p, n = self.p, self.n_g
        r2 = R[p, p] ** 2
        wp = 2 * lam / (l2 * l2)
        d_det = 2 * lam * (n / l2).sum()
        d_r2 = -(wp @ (e * e))
        deviance = np.log(l2).sum() + self.nu * (1 + math.log(2 * math.pi * r2 / self.nu))
        if second:
            wpp = 2 / (l2 * l2) - 8 * lam * lam * n / (l2 ** 3)
            dd_det = (2 * n * (1 - lam * lam * n) / (l2 * l2)).sum()
            dd_r2 = -(wpp @ (e * e))
            if p:
                dd_r2 -= 2 * np.sum(dtrtrs(R[:p, :p], self.CX_T @ (wp * e), lower=1)[0] ** 2)
        if self.reml and p:
            V = dtrtrs(R[:p, :p], self.CX_T, lower=1)[0]
            q = (V * V).sum(axis=0)
            d_det -= wp @ q
            deviance += 2 * np.log(R.diagonal()[:p]).sum()
            if second:
                dd_det -= wpp @ q + np.sum(((V * wp) @ V.T) ** 2)
        first = (deviance, dlam, r2, d_det, d_r2)
        return first + (dd_det, dd_r2) if second else first

    def pieces(self, theta: np.ndarray) -> tuple[float, float, float, float] | None:
        """(profiled deviance, ∂ log|L_Z|² [+ ∂ log|R_X|²], ∂ r², r²) at θ; None if M is singular."""
        out = self._derivatives(theta, second=False)
        if out is None:
            return None
        deviance, dlam, r2, d_det, d_r2 = out
        return deviance, dlam * d_det, dlam * d_r2, r2

    def loglik_hessian(self, theta: np.ndarray, sigma2: float) -> np.ndarray:
        """∂²ℓ/∂ψ∂ψᵀ for ψ = (θ, σ²) and ℓ = −½[log|L_Z|² (+ log|R_X|²) + ν log 2πσ² + r²/σ²].

        With w''_g = 2/ℓ_g⁴ − 8λ²n_g/ℓ_g⁶, V = R_X⁻¹C_Xᵀ and the envelope theorem once more
        (∂β̂/∂λ = M_XX⁻¹(∂M·e)_X):  ∂² log|L_Z|² = Σ 2n_g(1 − λ²n_g)/ℓ_g⁴,
        ∂² r² = −Σ w''_g e_g² − 2‖R_X⁻¹C_Xᵀ(w'∘e)‖²,
        ∂² log|R_X|² = −Σ w''_g ‖v_g‖² − ‖V diag(w') Vᵀ‖²_F  (each times (∂λ/∂θ)², λ linear in θ).
        """
        _, dlam, r2, _, d_r2, dd_det, dd_r2 = self._derivatives(theta, second=True)
        return loglik_hessian(np.array([[dd_det]]) * dlam ** 2, np.array([[dd_r2]]) * dlam ** 2,
                              np.array([d_r2 * dlam]), r2, self.nu, sigma2)

    def value_gradient_curvature(self, theta: np.ndarray) -> tuple[float, np.ndarray, float]:
        """The profiled deviance d = log|L_Z|² [+ log|R_X|²] + ν(1 + log 2πr²/ν), d' and d'' in θ
        (d'' = ∂² log|… | + ν(∂²r²/r² − (∂r²/r²)²)), for Newton steps; ∞ where M is singular."""
        out = self._derivatives(theta, second=True)
        if out is None:
            return np.inf, np.zeros(1), np.nan
        deviance, dlam, r2, d_det, d_r2, dd_det, dd_r2 = out
        curvature = dlam ** 2 * (dd_det + self.nu * (dd_r2 / r2 - (d_r2 / r2) ** 2))
        return deviance, np.array([dlam * (d_det + self.nu * d_r2 / r2)]), curvature
